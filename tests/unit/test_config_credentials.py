"""Where the token's AWS call gets the role's credentials: the access key variables, or (SnapStart)
the container credentials endpoint; compared with botocore's choice and its URL check."""

from __future__ import annotations

import pytest

from ext import config
from ext.errors import ConfigError

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk/hec-AbCdEf"
BASE = {"SPLUNK_HOST": "https://splunk.example:8088", "AWS_REGION": "eu-west-1",
        "SPLUNK_HEC_TOKEN_SECRET_ARN": ARN}
KEYS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "role-secret-key",
        "AWS_SESSION_TOKEN": "role-session"}
# As Lambda sets them when SnapStart is on (the Runtime API's credentials path).
AUTH = "snapstart-authorization-token-0123456789"
SNAPSTART = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9001/2021-04-23/credentials",
             "AWS_CONTAINER_AUTHORIZATION_TOKEN": AUTH}


def problems(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(env)
    return str(info.value)


def test_snapstart_container_credentials_are_accepted() -> None:
    cfg = config.load({**BASE, **SNAPSTART})
    assert cfg.aws_credentials is None
    assert cfg.aws_container_credentials == (
        "http://127.0.0.1:9001/2021-04-23/credentials", AUTH, "")
    assert AUTH not in repr(cfg)


def test_the_access_keys_win_over_the_container_variables_as_in_botocore() -> None:
    cfg = config.load({**BASE, **KEYS, **SNAPSTART})
    assert cfg.aws_credentials == ("AKIDEXAMPLE", "role-secret-key", "role-session")
    assert cfg.aws_container_credentials is None


def test_a_relative_uri_is_ecs_s_address_and_wins_over_a_full_uri() -> None:
    cfg = config.load({**BASE, **SNAPSTART,
                       "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc"})
    assert cfg.aws_container_credentials == ("http://169.254.170.2/v2/credentials/abc", AUTH, "")


def test_the_token_file_is_kept_to_be_read_at_each_fetch() -> None:
    cfg = config.load({**BASE, "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1",
                       "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/var/run/token"})
    assert cfg.aws_container_credentials == ("http://169.254.170.23/v1", "", "/var/run/token")


def test_without_either_the_error_names_both_ways() -> None:
    text = problems(BASE)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "SnapStart"):
        assert name in text


def test_an_access_key_without_its_secret_is_still_refused() -> None:
    # botocore: PartialCredentialsError, the container variables are not tried.
    text = problems({**BASE, **SNAPSTART, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"})
    assert "AWS_SECRET_ACCESS_KEY not set (AWS_ACCESS_KEY_ID is set" in text


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam",  # the EC2 metadata address: not allowed
    "http://credentials.example.com/creds",
    "http://10.0.0.1:9001/2021-04-23/credentials",
    "ftp://127.0.0.1/creds",
    "/2021-04-23/credentials",
    "http://user:pw@127.0.0.1/creds",
    "http://127.0.0.1:99999/creds",
])
def test_a_full_uri_the_sdks_would_not_call_is_refused_at_init(url: str) -> None:
    text = problems({**BASE, **SNAPSTART, "AWS_CONTAINER_CREDENTIALS_FULL_URI": url})
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in text
    assert AUTH not in text and "pw@" not in text


@pytest.mark.parametrize("line_break", ["\r\n", "\n", "\r"])
def test_a_line_break_in_the_authorization_token_is_refused_without_quoting_it(
    line_break: str,
) -> None:
    text = problems({**BASE, **SNAPSTART,
                     "AWS_CONTAINER_AUTHORIZATION_TOKEN": f"abcdefgh{line_break}X-Injected: 1"})
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" in text and "abcdefgh" not in text


HOSTS = [
    "127.0.0.1", "127.0.0.1:9001", "127.1.2.3:80", "localhost", "LOCALHOST:8080", "[::1]",
    "[::1]:9001", "[0:0:0:0:0:0:0:1]", "169.254.170.2", "169.254.170.23:80", "[fd00:ec2::23]",
    "[FD00:EC2::23]:80", "169.254.169.254", "10.0.0.1", "example.com", "127.0.0.01",
    "128.0.0.1", "[::2]", "[::]", "[::ffff:127.0.0.1]", "localhost.localdomain", "0x7f.0.0.1",
]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_full_uri_check_agrees_with_botocore(scheme: str, host: str) -> None:
    from botocore.utils import ContainerMetadataFetcher

    url = f"{scheme}://{host}/creds"
    try:
        ContainerMetadataFetcher()._validate_allowed_url(url)
        botocore_calls = True
    except ValueError:
        botocore_calls = False
    env = {**BASE, "AWS_CONTAINER_CREDENTIALS_FULL_URI": url}
    try:
        ours = config.load(env).aws_container_credentials
    except ConfigError:
        ours = None
    assert (ours is not None) == botocore_calls, url
