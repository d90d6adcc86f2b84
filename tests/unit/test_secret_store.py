"""How the store reads AWS's answers (no network): errors classified, values never echoed."""

from __future__ import annotations

import json

import pytest

from ext import config
from ext.sender.secret_store import SecretStore, TokenFetchError

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hec-AbCdEf"
ENV = {"SPLUNK_HOST": "https://h:8088", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKID",
       "AWS_SECRET_ACCESS_KEY": "key", "SPLUNK_HEC_TOKEN_SECRET_ARN": ARN}


def store(**extra: str) -> SecretStore:
    return SecretStore(config.load({**ENV, **extra}))


@pytest.mark.parametrize(
    ("status", "body", "reason", "throttled"),
    [
        (400, {"__type": "ThrottlingException", "message": "Rate exceeded"},
         "ThrottlingException", True),
        (400, {"__type": "DecryptionFailure", "Message": "KMS key disabled"},
         "DecryptionFailure", False),
        (400, {"__type": "com.amazonaws.kms#KMSInvalidStateException"},
         "KMSInvalidStateException", False),
        (400, {"__type": "AccessDeniedException", "message": "not authorized"},
         "AccessDeniedException", False),
        (503, {}, "HTTP503", True),
        (500, {"__type": "InternalServiceError"}, "InternalServiceError", True),
    ],
)
def test_errors_classified(status: int, body: dict[str, str], reason: str,
                           throttled: bool) -> None:
    err = store()._error(status, json.dumps(body).encode(), "")
    assert (err.reason, err.throttled) == (reason, throttled)
    assert ARN in str(err)


def test_xml_error_from_a_proxy() -> None:
    data = b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error>"
    err = store()._error(403, data, "")
    assert err.reason == "AccessDenied" and err.detail == "no"
    bare = store()._error(403, b"<Code>Forbidden</Code>", "")  # an emulator's shortest form
    assert (bare.reason, bare.detail) == ("Forbidden", "")


@pytest.mark.parametrize("key", ["message", "Message"])
def test_the_message_of_an_error_is_kept_whichever_its_case(key: str) -> None:
    err = store()._error(400, json.dumps({"__type": "DecryptionFailure", key: "KMS"}).encode(), "")
    assert err.detail == "KMS"


def test_a_redirect_is_an_error_not_followed() -> None:
    # Following it would send the signed request, session token included, where the answer says.
    import http.server
    import threading

    paths: list[str] = []

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            paths.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/":
                self.send_response(307)
                self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"SecretString": "tok-1"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reader = store(AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(TokenFetchError) as info:
            reader.fetch()
        assert (info.value.reason, info.value.throttled) == ("HTTP307", False)
        assert paths == ["/"]
    finally:
        server.shutdown()
        server.server_close()


def test_error_type_header_when_the_body_says_nothing() -> None:
    err = store()._error(400, b"", "ResourceNotFoundException:http://internal.amazon.com/")
    assert err.reason == "ResourceNotFoundException"


@pytest.mark.parametrize("secret", ["caf\u00e9-token", "two words", ""])
def test_an_invalid_token_in_the_secret_is_refused_without_echo(secret: str) -> None:
    with pytest.raises(TokenFetchError) as info:
        store()._token_from(secret)
    assert info.value.reason == "InvalidToken"
    if secret:
        assert secret not in str(info.value)


def test_json_key_errors_never_echo_the_secret() -> None:
    keyed = store(SPLUNK_HEC_TOKEN_SECRET_KEY="hec")
    assert keyed._token_from(json.dumps({"hec": " tok-1 ", "other": "x"})) == "tok-1"
    for text, reason in (("plain-secret-text", "NotJson"),
                         (json.dumps({"other": "plain-secret-text"}), "KeyNotFound"),
                         (json.dumps({"hec": 12345}), "KeyNotFound")):
        with pytest.raises(TokenFetchError) as info:
            keyed._token_from(text)
        assert info.value.reason == reason
        assert info.value.throttled is False  # no reason to wait longer before the next read
        assert "plain-secret-text" not in str(info.value)


def test_a_json_secret_without_a_key_is_refused_not_sent_whole() -> None:
    # The console's key/value secret is compact JSON: all of it is visible ASCII without spaces,
    # so it passed as a token and went, every key of it, in HEC's Authorization header.
    token = "11111111-2222-3333-4444-555555555555"
    secret = json.dumps({"hec_token": token, "db_password": "hunter2"}, separators=(",", ":"))
    with pytest.raises(TokenFetchError) as info:
        store()._token_from(secret)
    assert info.value.reason == "NoKey"
    assert "SPLUNK_HEC_TOKEN_SECRET_KEY" in str(info.value)
    assert token not in str(info.value) and "hunter2" not in str(info.value)
    assert store(SPLUNK_HEC_TOKEN_SECRET_KEY="hec_token")._token_from(secret) == token
    assert store()._token_from("{not-json}") == "{not-json}"  # a token is whatever HEC says


def test_a_json_parameter_is_refused_with_advice_the_configuration_takes() -> None:
    # SPLUNK_HEC_TOKEN_SECRET_KEY is for Secrets Manager only: init refuses it beside an SSM
    # parameter, so advising it there sent the operator into an init error.
    env = {k: v for k, v in ENV.items() if k != "SPLUNK_HEC_TOKEN_SECRET_ARN"}
    ssm = SecretStore(config.load({**env, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/splunk/hec"}))
    with pytest.raises(TokenFetchError) as info:
        ssm._token_from(json.dumps({"token": "11111111-2222-3333-4444-555555555555"}))
    assert info.value.reason == "NoKey"
    assert "store the token alone in the parameter" in str(info.value)
    assert "SPLUNK_HEC_TOKEN_SECRET_KEY" not in str(info.value)
    assert "11111111" not in str(info.value)


def test_a_connection_the_endpoint_forgot_does_not_fail_the_next_read() -> None:
    # Between two reads (a rotation may come days after the first) the sandbox sleeps frozen;
    # the endpoint or a load balancer drops the idle connection and its FIN is never seen. The
    # next request on it is answered with a reset. Here: one answer per connection, then a reset.
    import socket
    import struct
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    answer = json.dumps({"SecretString": "tok-1"}).encode()

    def read_request(conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().partition(b"content-length:")[2].split(b"\r\n")[0] or 0)
        while len(body) < length:
            body += conn.recv(65536)
        return True

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                if not read_request(conn):
                    continue
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b"
                             % (len(answer), answer))
                read_request(conn)  # the next request on this connection: forgotten
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    threading.Thread(target=serve, daemon=True).start()
    port = listener.getsockname()[1]
    try:
        reader = store(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        assert reader.fetch() == "tok-1"
        assert reader.fetch() == "tok-1"
        reader.close()
    finally:
        listener.close()


def test_host_header_drops_the_default_port() -> None:
    assert store(AWS_ENDPOINT_URL="https://sm.internal:443").host == "sm.internal"
    assert store(AWS_ENDPOINT_URL="http://sm.internal:80").host == "sm.internal"
    assert store(AWS_ENDPOINT_URL="http://sm.internal:443").host == "sm.internal:443"
    assert store(AWS_ENDPOINT_URL="http://127.0.0.1:4566").host == "127.0.0.1:4566"
    assert store().host == "secretsmanager.us-east-1.amazonaws.com"


def test_fetch_error_pickles() -> None:
    import pickle

    err = TokenFetchError(ARN, "ThrottlingException", "slow down", throttled=True)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.reference, copy.reason, copy.detail, copy.throttled) == (
        ARN, "ThrottlingException", "slow down", True)


@pytest.mark.parametrize("answer", [
    b'{"__type": "AccessDeniedException", "message": "denied for X-Amz-Security-Token: %s"}',
    b"<Error><Code>Forbidden</Code><Message>headers: %s</Message></Error>",
    b"[" * 100_000 + b"%s",  # deeper than the parser goes: no RecursionError either
])
def test_an_error_answer_that_echoes_the_credentials_is_logged_without_them(
    answer: bytes,
) -> None:
    # A proxy's error page may echo the signed request's headers; the error's text is logged.
    session, secret = "IQoJb3JpZ2luX2VjEJr" * 20, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    s = store(AWS_SECRET_ACCESS_KEY=secret, AWS_SESSION_TOKEN=session)
    err = s._error(403, answer % f"{session} {secret}".encode(), "")
    assert session[:40] not in str(err) and secret not in str(err)
    assert session[:40] not in repr(err.detail) and secret not in err.detail


class _Pool:
    """Stands in for urllib3's pool: records the request, answers a secret."""

    def __init__(self, url: str, **_: object) -> None:
        self.url = url
        self.sent: dict[str, object] = {}

    def urlopen(self, method: str, path: str, **kwargs: object) -> object:
        self.sent = {"url": self.url, "method": method, "path": path, **kwargs}
        SENT.append(self.sent)

        class Answer:
            status, data = int(ANSWER.get("status", 200)), ANSWER["body"]
            headers: dict[str, str] = {}

        return Answer()

    def close(self) -> None:
        pass


SENT: list[dict[str, object]] = []
ANSWER: dict[str, bytes | int] = {"body": json.dumps({"SecretString": "tok-1"}).encode()}


@pytest.mark.parametrize(
    ("extra", "url", "host", "path"),
    [
        # A VPC endpoint behind a proxy that routes on a path: POST to it, and sign that path.
        ({"AWS_ENDPOINT_URL_SECRETS_MANAGER": "https://proxy.internal/vpce/sm"},
         "https://proxy.internal/vpce/sm", "proxy.internal", "/vpce/sm"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:4566/"}, "http://127.0.0.1:4566",
         "127.0.0.1:4566", "/"),
        # FIPS: another host, the same signing name and region.
        ({"AWS_USE_FIPS_ENDPOINT": "true"}, "https://secretsmanager-fips.us-east-1.amazonaws.com",
         "secretsmanager-fips.us-east-1.amazonaws.com", "/"),
    ],
)
def test_the_request_goes_to_the_endpoint_and_is_signed_for_it(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, str], url: str, host: str, path: str,
) -> None:
    import urllib3

    from ext.sender import sigv4

    SENT.clear()
    monkeypatch.setattr(urllib3, "connection_from_url", _Pool)
    reader = SecretStore(config.load({**ENV, **extra}), clock=lambda: 1_700_000_000.0)
    assert reader.fetch() == "tok-1"
    (sent,) = SENT
    assert (sent["url"], sent["method"], sent["path"]) == (url, "POST", path)
    headers = sent["headers"]
    assert isinstance(headers, dict) and isinstance(sent["body"], bytes)
    assert headers["Host"] == host
    # The signature covers the host and path sent, for Secrets Manager in the secret's region.
    expected = sigv4.sign(
        "POST", host, path, query=[], body=sent["body"],
        headers=[(n, headers[n]) for n in ("Content-Type", "X-Amz-Target")],
        credentials=sigv4.Credentials("AKID", "key"), region="us-east-1",
        service="secretsmanager", amz_date="20231114T221320Z",
    )
    assert headers["Authorization"] == expected["Authorization"]
    assert "/us-east-1/secretsmanager/aws4_request" in headers["Authorization"]


@pytest.mark.parametrize(
    ("source", "answer"),
    [
        ({}, b"<html>a captive portal</html>"),  # not JSON: ValueError
        ({"SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/hec"}, b"{}"),  # KeyError
        ({"SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/hec"}, b'{"Parameter": {"Value": 5}}'),  # TypeError
        ({"SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/hec"}, b'{"Parameter": "x"}'),
        # Not an object: the membership test took a list or a string for a binary secret.
        ({}, b'["SecretBinary"]'),
        ({}, b'"no SecretString here"'),
        ({}, b'{"Name": "hec"}'),  # neither SecretString nor SecretBinary
        ({"SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/hec"}, b'["Parameter"]'),
    ],
)
def test_an_answer_without_a_value_is_an_unexpected_response(
    monkeypatch: pytest.MonkeyPatch, source: dict[str, str], answer: bytes,
) -> None:
    import urllib3

    monkeypatch.setattr(urllib3, "connection_from_url", _Pool)
    monkeypatch.setitem(ANSWER, "body", answer)
    env = {**ENV, **source}
    if source:
        del env["SPLUNK_HEC_TOKEN_SECRET_ARN"]
    reader = SecretStore(config.load(env))
    with pytest.raises(TokenFetchError) as info:
        reader.fetch()
    operation = "GetParameter" if source else "GetSecretValue"
    assert (info.value.reason, info.value.detail, info.value.throttled) == (
        "UnexpectedResponse", f"{operation} answered without a value", False)
    assert reader.operation == operation


def test_one_call_per_read_within_the_bounded_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bounded so a read that hangs cannot hold the sender for long; never retried inside the
    # call: FetchedToken retries with its own backoff, and a retry here doubles the calls a
    # throttled endpoint gets.
    import urllib3

    SENT.clear()
    pools: list[dict[str, object]] = []

    def pool(url: str, **kwargs: object) -> _Pool:
        pools.append(kwargs)
        return _Pool(url)

    monkeypatch.setattr(urllib3, "connection_from_url", pool)
    assert store().fetch() == "tok-1"
    ((options,), (sent,)) = pools, SENT
    timeout = options["timeout"]
    assert isinstance(timeout, urllib3.Timeout)
    assert (timeout.connect_timeout, timeout.read_timeout) == (2.0, 5.0)
    assert (sent["retries"], sent["redirect"]) == (False, False)


@pytest.mark.parametrize(("status", "throttled"),
                         [(429, True), (403, False), (431, False), (499, False), (500, True)])
def test_only_429_and_5xx_without_an_error_type_are_throttling(status: int,
                                                               throttled: bool) -> None:
    assert store()._error(status, b"", "").throttled is throttled


def test_an_error_message_is_cut_at_300_characters() -> None:
    body = json.dumps({"__type": "ValidationException", "message": "m" * 400}).encode()
    assert store()._error(400, body, "").detail == "m" * 300


def test_an_xml_error_cut_short_gives_no_message() -> None:
    err = store()._error(502, b"<Error><Code>BadGateway</Code><Message>upstream reset", "")
    assert (err.reason, err.detail) == ("BadGateway", "")


@pytest.mark.parametrize("status", [103, 204, 206])
def test_only_a_200_answer_holds_the_value(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    # http.client skips 100 Continue only: another 1xx (103 Early Hints from a proxy) comes back
    # as the answer, with whatever body follows it.
    import urllib3

    monkeypatch.setattr(urllib3, "connection_from_url", _Pool)
    monkeypatch.setitem(ANSWER, "status", status)
    with pytest.raises(TokenFetchError) as info:
        store().fetch()
    assert info.value.reason == f"HTTP{status}"


def test_a_binary_secret_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib3

    monkeypatch.setattr(urllib3, "connection_from_url", _Pool)
    monkeypatch.setitem(ANSWER, "body", b'{"Name": "hec", "SecretBinary": "dG9rZW4="}')
    with pytest.raises(TokenFetchError) as info:
        store().fetch()
    assert (info.value.reason, info.value.detail) == (
        "BinarySecret", "the secret holds binary data, not a string")
