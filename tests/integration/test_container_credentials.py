"""The role's credentials from a container credentials endpoint (SnapStart), against a local one:
the request, the token file, the cache by Expiration (a stand-in clock), the failures; then the
secret store signing with them and holding the token's fetch while the endpoint fails."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import urllib3

from ext import config
from ext.sender.container_credentials import (
    ADVISORY_REFRESH_S,
    MANDATORY_REFRESH_S,
    ContainerCredentials,
    CredentialsError,
)
from ext.sender.secret_store import SecretStore, TokenFetchError
from ext.sender.token_source import FetchedToken
from tests.integration.credentials_server import CredentialsServer

pytestmark = pytest.mark.integration

TOKEN = "Bearer-like-authorization-token-0123456789"
ROLE = {"AccessKeyId": "ASIAROLEEXAMPLE", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
        "Token": "IQoJb3JpZ2luX2VjEJr" * 10}
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def endpoint(clock: Clock) -> Iterator[CredentialsServer]:
    with CredentialsServer(ROLE, TOKEN, clock=clock).running() as server:
        yield server


def test_a_get_with_the_authorization_token_answers_the_credentials(
    endpoint: CredentialsServer, clock: Clock,
) -> None:
    credentials = ContainerCredentials(endpoint.url, TOKEN, "", clock=clock).get()
    assert (credentials.access_key_id, credentials.secret_access_key,
            credentials.session_token) == (ROLE["AccessKeyId"], ROLE["SecretAccessKey"],
                                           ROLE["Token"])
    (request,) = endpoint.requests
    assert request == {"method": "GET", "path": "/2021-04-23/credentials",
                       "authorization": TOKEN, "accept": "application/json"}
    assert ROLE["SecretAccessKey"] not in repr(credentials)


def test_the_answer_is_read_as_botocore_reads_it() -> None:
    from botocore.credentials import ContainerProvider

    with CredentialsServer(ROLE, TOKEN).running() as endpoint:  # the real clock: botocore's
        environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url,
                   "AWS_CONTAINER_AUTHORIZATION_TOKEN": TOKEN}
        theirs = ContainerProvider(environ=environ).load().get_frozen_credentials()
        ours = ContainerCredentials(endpoint.url, TOKEN, "").get()
    assert (ours.access_key_id, ours.secret_access_key, ours.session_token) == (
        theirs.access_key, theirs.secret_key, theirs.token)
    assert endpoint.requests[0] == endpoint.requests[1]  # the same GET, headers and all


def test_the_token_file_is_read_at_each_fetch(
    endpoint: CredentialsServer, clock: Clock, tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    source = ContainerCredentials(endpoint.url, "a-stale-token-from-the-variable",
                                  str(token_file), clock=clock)
    source.get()
    token_file.write_text("rotated-token-abcdefgh")
    endpoint.token = "rotated-token-abcdefgh"
    clock.now += endpoint.lifetime_s  # expired: fetched again, with the file's new token
    source.get()
    assert [r["authorization"] for r in endpoint.requests] == [TOKEN, "rotated-token-abcdefgh"]
    token_file.unlink()
    clock.now += endpoint.lifetime_s
    with pytest.raises(CredentialsError, match="token file"):
        source.get()


def test_cached_until_shortly_before_their_expiration(
    endpoint: CredentialsServer, clock: Clock,
) -> None:
    endpoint.lifetime_s = 3600
    source = ContainerCredentials(endpoint.url, TOKEN, "", clock=clock)
    first = source.get()
    clock.now = T0 + 3600 - ADVISORY_REFRESH_S - 1
    assert source.get() is first and len(endpoint.requests) == 1
    clock.now = T0 + 3600 - ADVISORY_REFRESH_S + 1
    endpoint.credentials["AccessKeyId"] = "ASIANEWKEY"
    assert source.get().access_key_id == "ASIANEWKEY" and len(endpoint.requests) == 2


def test_a_failed_refresh_serves_the_cached_ones_until_the_mandatory_margin(
    endpoint: CredentialsServer, clock: Clock, caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint.lifetime_s = 3600
    source = ContainerCredentials(endpoint.url, TOKEN, "", clock=clock)
    first = source.get()
    endpoint.fail_with = 500
    clock.now = T0 + 3600 - ADVISORY_REFRESH_S + 1
    assert source.get() is first  # botocore's advisory window: a warning, the old ones serve
    assert "cannot refresh the role credentials" in caplog.text
    assert f"serve {ADVISORY_REFRESH_S - MANDATORY_REFRESH_S - 1} s more" in caplog.text
    clock.now = T0 + 3600 - MANDATORY_REFRESH_S + 1
    with pytest.raises(CredentialsError) as info:
        source.get()
    assert "HTTP 500" in str(info.value) and info.value.throttled
    for secret in (TOKEN, ROLE["SecretAccessKey"], ROLE["Token"][:30]):
        assert secret not in str(info.value) and secret not in caplog.text


def test_the_margins_are_exclusive_and_expired_ones_never_serve(
    endpoint: CredentialsServer, clock: Clock,
) -> None:
    endpoint.lifetime_s = 3600
    source = ContainerCredentials(endpoint.url, TOKEN, "", clock=clock)
    source.get()
    clock.now = T0 + 3600 - ADVISORY_REFRESH_S  # exactly at the advisory margin: refreshed
    source.get()
    assert len(endpoint.requests) == 2
    endpoint.fail_with = 404
    clock.now = T0 + 3600 - ADVISORY_REFRESH_S + 3600 - MANDATORY_REFRESH_S  # mandatory margin
    with pytest.raises(CredentialsError):
        source.get()
    clock.now = T0 + 10 * 3600  # long expired (a snapshot restored hours later)
    with pytest.raises(CredentialsError):
        source.get()
    assert "cached=True" in repr(source)
    assert "cached=False" in repr(ContainerCredentials(endpoint.url, TOKEN, ""))


def test_lambda_s_16_minute_credentials_serve_a_minute_then_5_more_while_a_refresh_fails(
    endpoint: CredentialsServer, clock: Clock, caplog: pytest.LogCaptureFixture,
) -> None:
    # The margins in seconds, not through the constants: botocore's 15 and 10 minutes, which
    # with Lambda's 16-minute credentials mean a fetch per minute and 5 minutes of grace.
    assert endpoint.lifetime_s == 16 * 60
    source = ContainerCredentials(endpoint.url, TOKEN, "", clock=clock)
    first = source.get()
    clock.now = T0 + 59  # 901 s left
    assert source.get() is first and len(endpoint.requests) == 1
    clock.now = T0 + 61  # 899 s left: refreshed
    second = source.get()
    assert second is not first and len(endpoint.requests) == 2
    endpoint.fail_with = 503
    clock.now = T0 + 61 + 359  # 601 s left: the refresh fails, the cached ones serve
    assert source.get() is second and len(endpoint.requests) == 3
    assert "serve 1 s more" in caplog.text
    clock.now = T0 + 61 + 361  # 599 s left: no longer
    with pytest.raises(CredentialsError, match="HTTP 503"):
        source.get()


@pytest.mark.parametrize(("expiration", "valid_s"), [
    ("2023-11-14T23:13:20", 3600),  # no zone: UTC
    ("2023-11-15T01:13:20+02:00", 3600),
    ("2023-11-14T22:13:20Z", 0),  # expires at this very second: already expired
])
def test_the_expiration_is_read_with_its_zone(
    endpoint: CredentialsServer, clock: Clock, expiration: str, valid_s: int,
) -> None:
    clock.now = T0  # 2023-11-14T22:13:20Z
    endpoint.answer = json.dumps({**ROLE, "Expiration": expiration}).encode()
    source = ContainerCredentials(endpoint.url, TOKEN, "", clock=clock)
    if not valid_s:
        with pytest.raises(CredentialsError, match="expired"):
            source.get()
        return
    source.get()
    clock.now += valid_s - ADVISORY_REFRESH_S - 1
    source.get()
    assert len(endpoint.requests) == 1
    clock.now += 2
    source.get()
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize(("status", "throttled"), [
    (404, False), (403, False), (428, False), (429, True), (430, False), (499, False),
    (500, True), (503, True),
])
def test_which_failures_are_throttling(
    endpoint: CredentialsServer, status: int, throttled: bool,
) -> None:
    endpoint.fail_with = status
    with pytest.raises(CredentialsError) as info:
        ContainerCredentials(endpoint.url, TOKEN, "").get()
    assert info.value.throttled is throttled


@pytest.mark.parametrize(("status", "headers"), [
    (101, {}),  # a 1xx other than 100 reaches the caller as the answer (http.client)
    (204, {}),
    # Not followed, though the endpoint would answer the credentials there.
    (307, {"Location": "/2021-04-23/credentials"}),
])
def test_an_answer_other_than_200_is_an_error_naming_its_status(
    endpoint: CredentialsServer, status: int, headers: dict[str, str],
) -> None:
    endpoint.script.append((status, headers, b""))
    with pytest.raises(CredentialsError) as info:
        ContainerCredentials(endpoint.url, TOKEN, "").get()
    assert str(info.value) == f"{endpoint.url} answered HTTP {status}"  # no text: no colon
    assert len(endpoint.requests) == 1


def test_a_failure_s_text_is_quoted_on_one_line_cut_to_200_characters(
    endpoint: CredentialsServer,
) -> None:
    endpoint.script.append((500, {}, b"word\r\n\t " * 100))
    with pytest.raises(CredentialsError) as info:
        ContainerCredentials(endpoint.url, TOKEN, "").get()
    text = " ".join(["word"] * 100)[:200]
    assert str(info.value) == f"{endpoint.url} answered HTTP 500: {text}"


def test_one_get_per_fetch_within_bounded_waits_and_never_retried_inside_it(
    endpoint: CredentialsServer, clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fetch that fails is retried by the token fetch's backoff (FetchedToken); a retry
    # inside it as well would double the calls an endpoint in trouble gets.
    pools: list[dict[str, object]] = []
    real = urllib3.connection_from_url

    def spy(url: str, **options: object) -> urllib3.HTTPConnectionPool:
        pools.append(options)
        return real(url, **options)

    monkeypatch.setattr(urllib3, "connection_from_url", spy)
    source = ContainerCredentials(endpoint.url, TOKEN, "", clock=clock)
    endpoint.script.append((0, {}, b""))  # the connection closed without an answer
    with pytest.raises(CredentialsError, match="unreachable") as info:
        source.get()
    assert not info.value.throttled and len(endpoint.requests) == 1
    assert source.get().access_key_id == ROLE["AccessKeyId"]  # the next fetch
    assert len(endpoint.requests) == 2 and len(pools) == 2
    timeout = pools[0]["timeout"]
    assert isinstance(timeout, urllib3.Timeout)
    assert (timeout.connect_timeout, timeout.read_timeout) == (1.0, 2.0)


def test_a_line_break_in_the_token_file_is_refused_before_any_call(
    endpoint: CredentialsServer, tmp_path: Path,
) -> None:
    for text in ("abc\ndef", "abc\rdef"):
        (tmp_path / "token").write_text(text)
        with pytest.raises(CredentialsError, match="line break"):
            ContainerCredentials(endpoint.url, "", str(tmp_path / "token")).get()
    assert endpoint.requests == []


@pytest.mark.parametrize("answer", [
    json.dumps({**ROLE, "AccessKeyId": "", "Expiration": "2099-01-01T00:00:00Z"}).encode(),
    json.dumps({**ROLE, "Token": 5, "Expiration": "2099-01-01T00:00:00Z"}).encode(),
    b"not json " + ROLE["SecretAccessKey"].encode(),
    json.dumps({"AccessKeyId": "A", "SecretAccessKey": ROLE["SecretAccessKey"]}).encode(),
    json.dumps({**ROLE, "Expiration": "soon"}).encode(),
    json.dumps({**ROLE, "Expiration": "2001-01-01T00:00:00Z"}).encode(),  # already expired
    json.dumps([ROLE]).encode(),
])
def test_an_answer_without_usable_credentials_is_an_error_quoting_nothing_of_it(
    endpoint: CredentialsServer, answer: bytes,
) -> None:
    endpoint.answer = answer
    with pytest.raises(CredentialsError) as info:
        ContainerCredentials(endpoint.url, TOKEN, "").get()
    assert ROLE["SecretAccessKey"] not in str(info.value) and ROLE["Token"] not in str(info.value)


def test_a_wrong_token_is_refused_and_the_error_never_quotes_it(
    endpoint: CredentialsServer,
) -> None:
    endpoint.fail_with = 403
    with pytest.raises(CredentialsError) as info:
        ContainerCredentials(endpoint.url, TOKEN, "").get()
    assert "HTTP 403" in str(info.value) and TOKEN not in str(info.value)
    assert "<token>" in str(info.value)  # the echo is masked, the rest of the answer kept


def test_an_unreachable_endpoint() -> None:
    with pytest.raises(CredentialsError, match="unreachable") as info:
        ContainerCredentials("http://127.0.0.1:9/2021-04-23/credentials", TOKEN, "").get()
    assert not info.value.throttled


# --- through the secret store ----------------------------------------------------------------

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hec-AbCdEf"


def store(endpoint: CredentialsServer, aws_url: str, clock: Clock) -> SecretStore:
    env = {"SPLUNK_HOST": "https://h:8088", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": aws_url,
           "SPLUNK_HEC_TOKEN_SECRET_ARN": ARN, **endpoint.environment()}
    return SecretStore(config.load(env), clock=clock)


def test_a_failing_endpoint_holds_the_token_fetch_and_is_retried_with_backoff(
    endpoint: CredentialsServer, clock: Clock, caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint.fail_with = 503
    secrets = store(endpoint, "http://127.0.0.1:9", clock)
    with pytest.raises(TokenFetchError) as info:
        secrets.fetch()
    assert info.value.reason == "RoleCredentialsUnavailable" and info.value.throttled
    assert ARN in str(info.value) and TOKEN not in str(info.value)
    now = [100.0]
    tokens = FetchedToken(secrets, 30, clock=lambda: now[0])
    assert tokens.current() is None  # the data stays spooled
    assert "RoleCredentialsUnavailable" in tokens.problem
    asked = len(endpoint.requests)
    assert tokens.current() is None and len(endpoint.requests) == asked  # backing off
    now[0] += 301
    tokens.current()
    assert len(endpoint.requests) == asked + 1  # retried once the backoff is over
    assert "cannot read the HEC token" in caplog.text and TOKEN not in caplog.text


class EchoingAws(BaseHTTPRequestHandler):
    """An AWS API (a proxy's error page) that refuses every call, echoing its headers."""

    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        headers = dict(self.headers)
        self.seen.append(headers)
        self.rfile.read(int(headers.get("Content-Length", "0")))
        body = json.dumps({"__type": "AccessDeniedException", "message": f"denied {headers}"})
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


def test_the_call_is_signed_with_the_endpoint_s_credentials_and_its_error_hides_them(
    endpoint: CredentialsServer, clock: Clock,
) -> None:
    EchoingAws.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingAws)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        secrets = store(endpoint, f"http://127.0.0.1:{server.server_address[1]}", clock)
        with pytest.raises(TokenFetchError) as info:
            secrets.fetch()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    (sent,) = EchoingAws.seen
    assert sent["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ROLE['AccessKeyId']}/")
    assert sent["X-Amz-Security-Token"] == ROLE["Token"]
    assert info.value.reason == "AccessDeniedException"
    assert ROLE["Token"][:40] not in str(info.value)
    assert "<credential>" in str(info.value)
