"""The HEC token from Secrets Manager or SSM against a real local AWS API (moto server, IAM and
SigV4 enforced): the store on its own, then the whole extension in the emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ext import config
from ext.local.hec import HecReceiver, HecToken
from ext.sender.secret_store import SecretStore, TokenFetchError
from tests.integration.aws_fake import FakeAws, moto_server
from tests.integration.conftest import TOKEN
from tests.integration.credentials_server import CredentialsServer
from tests.integration.extension_harness import expected_lines, lines_of, sandbox

pytestmark = pytest.mark.integration

READ_SECRET = ["secretsmanager:GetSecretValue"]
READ_PARAMETER = ["ssm:GetParameter", "kms:Decrypt"]
NEW_TOKEN = "99999999-8888-7777-6666-555555555555"
TOKEN_NOTICE = "splunk-extension.token-error"


@pytest.fixture(scope="module")
def aws() -> Iterator[FakeAws]:
    with moto_server() as fake:
        yield fake


def store_for(identity: dict[str, str], **source: str) -> SecretStore:
    return SecretStore(config.load({"SPLUNK_HOST": "http://127.0.0.1:1", **identity, **source}))


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


# --- the store alone ---------------------------------------------------------------------------

def test_plain_secret(aws: FakeAws) -> None:
    arn = aws.secrets.create_secret(Name=unique("plain"), SecretString=TOKEN)["ARN"]
    identity = aws.function_identity(unique("fn"), READ_SECRET)
    assert store_for(identity, SPLUNK_HEC_TOKEN_SECRET_ARN=arn).fetch() == TOKEN


def test_key_of_a_json_secret(aws: FakeAws) -> None:
    secret = json.dumps({"hec_token": TOKEN, "other": "x"})
    arn = aws.secrets.create_secret(Name=unique("json"), SecretString=secret)["ARN"]
    identity = aws.function_identity(unique("fn"), READ_SECRET)
    store = store_for(identity, SPLUNK_HEC_TOKEN_SECRET_ARN=arn,
                      SPLUNK_HEC_TOKEN_SECRET_KEY="hec_token")
    assert store.fetch() == TOKEN
    missing = store_for(identity, SPLUNK_HEC_TOKEN_SECRET_ARN=arn,
                        SPLUNK_HEC_TOKEN_SECRET_KEY="nope")
    with pytest.raises(TokenFetchError) as info:
        missing.fetch()
    assert info.value.reason == "KeyNotFound"
    assert TOKEN not in str(info.value)


def test_ssm_secure_string_decrypted(aws: FakeAws) -> None:
    name = "/" + unique("splunk") + "/hec-token"
    aws.ssm.put_parameter(Name=name, Value=TOKEN, Type="SecureString")
    identity = aws.function_identity(unique("fn"), READ_PARAMETER)
    assert store_for(identity, SPLUNK_HEC_TOKEN_SSM_PARAMETER=name).fetch() == TOKEN


def test_a_secret_in_another_region_is_read_there(aws: FakeAws) -> None:
    other = boto3.client("secretsmanager", **{**aws.admin, "region_name": "eu-central-1"})
    arn = other.create_secret(Name=unique("remote"), SecretString=TOKEN)["ARN"]
    assert ":eu-central-1:" in arn
    identity = aws.function_identity(unique("fn"), READ_SECRET)  # a function in us-east-1
    assert store_for(identity, SPLUNK_HEC_TOKEN_SECRET_ARN=arn).fetch() == TOKEN


def test_access_denied_names_the_secret_never_the_value(aws: FakeAws) -> None:
    arn = aws.secrets.create_secret(Name=unique("denied"), SecretString=TOKEN)["ARN"]
    identity = aws.function_identity(unique("fn"), ["ssm:GetParameter"])
    with pytest.raises(TokenFetchError) as info:
        store_for(identity, SPLUNK_HEC_TOKEN_SECRET_ARN=arn).fetch()
    assert info.value.reason.startswith("AccessDenied")
    assert arn in str(info.value)
    assert TOKEN not in str(info.value)
    assert not info.value.throttled


def test_not_found(aws: FakeAws) -> None:
    identity = aws.function_identity(unique("fn"), READ_SECRET + READ_PARAMETER)
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf"
    with pytest.raises(TokenFetchError) as info:
        store_for(identity, SPLUNK_HEC_TOKEN_SECRET_ARN=arn).fetch()
    assert info.value.reason == "ResourceNotFoundException"
    with pytest.raises(TokenFetchError) as info:
        store_for(identity, SPLUNK_HEC_TOKEN_SSM_PARAMETER="/absent").fetch()
    assert info.value.reason == "ParameterNotFound"


def test_a_wrong_secret_key_fails_the_signature_check(aws: FakeAws) -> None:
    arn = aws.secrets.create_secret(Name=unique("sig"), SecretString=TOKEN)["ARN"]
    identity = aws.function_identity(unique("fn"), READ_SECRET)
    with pytest.raises(TokenFetchError) as info:
        store_for({**identity, "AWS_SECRET_ACCESS_KEY": "not-the-key"},
                  SPLUNK_HEC_TOKEN_SECRET_ARN=arn).fetch()
    assert info.value.reason == "SignatureDoesNotMatch"


def test_network_failure(aws: FakeAws) -> None:
    identity = aws.function_identity(unique("fn"), READ_SECRET)
    store = store_for({**identity, "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:9"},
                      SPLUNK_HEC_TOKEN_SECRET_ARN="arn:aws:secretsmanager:us-east-1:1:secret:x")
    with pytest.raises(TokenFetchError) as info:
        store.fetch()
    assert info.value.reason == "network"


def snapstart(identity: dict[str, str]) -> tuple[dict[str, str], CredentialsServer]:
    """A SnapStart function's identity: no access keys in the environment, the role's
    credentials (those `identity` had, which the fake AWS accepts) served by a local endpoint."""
    env = dict(identity)
    role = {"AccessKeyId": env.pop("AWS_ACCESS_KEY_ID"),
            "SecretAccessKey": env.pop("AWS_SECRET_ACCESS_KEY"),
            "Token": env.pop("AWS_SESSION_TOKEN")}
    return env, CredentialsServer(role, unique("snapstart-authorization"))


def test_snapstart_credentials_from_the_container_endpoint(aws: FakeAws) -> None:
    arn = aws.secrets.create_secret(Name=unique("snap"), SecretString=TOKEN)["ARN"]
    identity, endpoint = snapstart(aws.function_identity(unique("fn"), READ_SECRET))
    with endpoint.running():
        env = {**identity, **endpoint.environment()}
        assert store_for(env, SPLUNK_HEC_TOKEN_SECRET_ARN=arn).fetch() == TOKEN
    (request,) = endpoint.requests
    assert request["authorization"] == endpoint.token


# --- the whole extension ------------------------------------------------------------------------

def extension_env(hec: HecReceiver, identity: dict[str, str], **extra: str) -> dict[str, str]:
    import sys

    return {
        "SPLUNK_HOST": hec.url,
        "SPLUNK_EXTENSION_PYTHON": sys.executable,
        "SPLUNK_FORWARD_OWN_LOGS": "true",  # every line it writes reaches HEC: search them all
        "SPLUNK_LOG_LEVEL": "INFO",
        **identity,
        **extra,
    }


def all_event_text(hec: HecReceiver) -> list[str]:
    return [e.event for e in hec.events(limit=10**7)]


def own_lines(hec: HecReceiver) -> list[str]:
    return [json.loads(e.event) for e in hec.events(sourcetype="aws:lambda:extension",
                                                    limit=10**7)]


def notices(hec: HecReceiver) -> list[dict[str, Any]]:
    found = []
    for event in hec.events(sourcetype="aws:lambda:extension", limit=10**7):
        parsed = json.loads(event.event)
        if isinstance(parsed, dict) and parsed.get("type") == TOKEN_NOTICE:
            found.append(parsed)
    return found


def assert_never_written(tmp: Path, hec: HecReceiver, *tokens: str) -> None:
    """No token in any event HEC stored (the extension's own output included) or any file."""
    for text in all_event_text(hec):
        for token in tokens:
            assert token not in text
    for path in tmp.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for token in tokens:
                assert token.encode() not in data, path


def invoke_until(sb: Any, done: Any, tag: str, timeout_s: float = 20.0) -> int:
    """Invokes (each one a chance for the courier to retry) until `done()`; returns the count."""
    deadline = time.monotonic() + timeout_s
    n = 0
    while not done():
        assert time.monotonic() < deadline, "timed out"
        sb.invoke({"lines": 1, "tag": f"{tag}{n}"})
        n += 1
        time.sleep(0.2)
    return n


def test_extension_reads_a_plain_secret(
    aws: FakeAws, hec: HecReceiver, local_opt: Path, tmp_path: Path
) -> None:
    arn = aws.secrets.create_secret(Name=unique("e2e"), SecretString=TOKEN)["ARN"]
    identity = aws.function_identity(unique("fn"), READ_SECRET)
    env = extension_env(hec, identity, SPLUNK_HEC_TOKEN_SECRET_ARN=arn)
    with sandbox(local_opt, env, tmp_dir=tmp_path / "tmp") as sb:
        for n in range(3):
            sb.invoke({"lines": 10, "tag": f"p{n}"})
            assert lines_of(hec, f"p{n}") == expected_lines(f"p{n}", 10)
        sb.shutdown()
    assert notices(hec) == []
    assert_never_written(tmp_path, hec, TOKEN)


def test_extension_under_snapstart_reads_the_secret_with_the_container_credentials(
    aws: FakeAws, hec: HecReceiver, local_opt: Path, tmp_path: Path
) -> None:
    arn = aws.secrets.create_secret(Name=unique("e2e-snap"), SecretString=TOKEN)["ARN"]
    identity, endpoint = snapstart(aws.function_identity(unique("fn"), READ_SECRET))
    with endpoint.running():
        env = extension_env(hec, {**identity, **endpoint.environment()},
                            SPLUNK_HEC_TOKEN_SECRET_ARN=arn)
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
        with sandbox(local_opt, env, tmp_dir=tmp_path / "tmp") as sb:
            for n in range(2):
                sb.invoke({"lines": 10, "tag": f"s{n}"})
                assert lines_of(hec, f"s{n}") == expected_lines(f"s{n}", 10)
            sb.shutdown()
    assert endpoint.requests and {r["authorization"] for r in endpoint.requests} == {
        endpoint.token}
    assert notices(hec) == []
    assert_never_written(tmp_path, hec, TOKEN, endpoint.token,
                         endpoint.credentials["SecretAccessKey"])


def test_a_failing_credentials_endpoint_holds_the_data_then_delivers_it_with_one_notice(
    aws: FakeAws, hec: HecReceiver, local_opt: Path, tmp_path: Path
) -> None:
    arn = aws.secrets.create_secret(Name=unique("e2e-snap-down"), SecretString=TOKEN)["ARN"]
    identity, endpoint = snapstart(aws.function_identity(unique("fn"), READ_SECRET))
    endpoint.fail_with = 404  # not throttled: retried after 1 s, 2 s, ...
    with endpoint.running():
        env = extension_env(hec, {**identity, **endpoint.environment()},
                            SPLUNK_HEC_TOKEN_SECRET_ARN=arn, SPLUNK_FORWARD_OWN_LOGS="false",
                            SPLUNK_LOG_LEVEL="WARNING")
        with sandbox(local_opt, env, tmp_dir=tmp_path / "tmp") as sb:
            for n in range(2):
                assert sb.invoke({"lines": 20, "tag": f"c{n}"}).status == "success"
            assert hec.count() == 0 and endpoint.requests  # tried, and held
            endpoint.fail_with = None
            invoke_until(sb, lambda: len(lines_of(hec, "c1")) == 20, "after")
            sb.shutdown()
    for n in range(2):
        assert lines_of(hec, f"c{n}") == expected_lines(f"c{n}", 20)
    (notice,) = notices(hec)
    assert notice["token_source"] == arn and notice["last_error"] == "RoleCredentialsUnavailable"
    errors = [line for line in own_lines(hec) if isinstance(line, str) and "ERROR" in line]
    assert any("RoleCredentialsUnavailable" in line and "HTTP 404" in line for line in errors)
    assert_never_written(tmp_path, hec, TOKEN, endpoint.token,
                         endpoint.credentials["SecretAccessKey"])


def test_access_denied_holds_the_data_then_delivers_it_with_one_notice(
    aws: FakeAws, hec: HecReceiver, local_opt: Path, tmp_path: Path
) -> None:
    arn = aws.secrets.create_secret(Name=unique("later"), SecretString=TOKEN)["ARN"]
    user = unique("fn")
    identity = aws.function_identity(user, [])
    # Default forwarding: the extension's errors reach Splunk without SPLUNK_FORWARD_OWN_LOGS.
    env = extension_env(hec, identity, SPLUNK_HEC_TOKEN_SECRET_ARN=arn,
                        SPLUNK_FORWARD_OWN_LOGS="false", SPLUNK_LOG_LEVEL="WARNING")
    with sandbox(local_opt, env, tmp_dir=tmp_path / "tmp") as sb:
        for n in range(3):
            result = sb.invoke({"lines": 20, "tag": f"d{n}"})
            assert result.status == "success"
        assert hec.count() == 0  # nothing can be sent without the token
        aws.allow(user, READ_SECRET)  # the operator fixes the role
        invoke_until(sb, lambda: len(lines_of(hec, "d2")) == 20, "after")
        sb.shutdown()
    for n in range(3):
        assert lines_of(hec, f"d{n}") == expected_lines(f"d{n}", 20)
    (notice,) = notices(hec)
    assert notice["token_source"] == arn
    assert notice["last_error"].startswith("AccessDenied")
    assert notice["held_ms"] > 0 and notice["failed_fetches"] >= 1
    errors = [line for line in own_lines(hec) if isinstance(line, str) and "ERROR" in line]
    assert any(arn in line and "AccessDenied" in line for line in errors)
    assert_never_written(tmp_path, hec, TOKEN)


def test_missing_ssm_parameter_holds_the_data_until_it_exists(
    aws: FakeAws, hec: HecReceiver, local_opt: Path, tmp_path: Path
) -> None:
    name = "/" + unique("later") + "/token"
    identity = aws.function_identity(unique("fn"), READ_PARAMETER)
    env = extension_env(hec, identity, SPLUNK_HEC_TOKEN_SSM_PARAMETER=name)
    with sandbox(local_opt, env, tmp_dir=tmp_path / "tmp") as sb:
        sb.invoke({"lines": 15, "tag": "m0"})
        assert hec.count() == 0
        aws.ssm.put_parameter(Name=name, Value=TOKEN, Type="SecureString")
        invoke_until(sb, lambda: len(lines_of(hec, "m0")) == 15, "after")
        sb.shutdown()
    assert lines_of(hec, "m0") == expected_lines("m0", 15)
    (notice,) = notices(hec)
    assert notice["token_source"] == name and notice["last_error"] == "ParameterNotFound"
    assert_never_written(tmp_path, hec, TOKEN)


def test_rotation_mid_run_loses_and_duplicates_nothing(
    aws: FakeAws, hec: HecReceiver, local_opt: Path, tmp_path: Path
) -> None:
    arn = aws.secrets.create_secret(Name=unique("rotated"), SecretString=TOKEN)["ARN"]
    identity = aws.function_identity(unique("fn"), READ_SECRET)
    env = extension_env(hec, identity, SPLUNK_HEC_TOKEN_SECRET_ARN=arn,
                        SPLUNK_HEC_TOKEN_REFETCH_S="2")
    with sandbox(local_opt, env, tmp_dir=tmp_path / "tmp") as sb:
        for n in range(5):
            sb.invoke({"lines": 30, "tag": f"r{n}"})
        # The operator rotates: the secret and the HEC token change together.
        aws.secrets.put_secret_value(SecretId=arn, SecretString=NEW_TOKEN)
        hec.put_tokens(HecToken(name="lambda", value=NEW_TOKEN, indexes=("main", "lambda")))
        for n in range(5, 10):
            sb.invoke({"lines": 30, "tag": f"r{n}"})
        invoke_until(sb, lambda: len(lines_of(hec, "r9")) == 30, "after")
        sb.shutdown()
    for n in range(10):
        assert lines_of(hec, f"r{n}") == expected_lines(f"r{n}", 30)  # none lost, none twice
    (notice,) = notices(hec)
    assert notice["last_error"] == "rejected by HEC" and notice["rejections"] == 1
    assert_never_written(tmp_path, hec, TOKEN, NEW_TOKEN)
