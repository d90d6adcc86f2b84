"""The HEC client against a loopback HTTP server: what goes on the wire, and what it never does
(retry, follow a redirect, leak the token)."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import os
import random
import shutil
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ext.config import Config
from ext.local.hec.certificates import self_signed
from ext.sender.hec import TOKEN_NOTICE, USER_AGENT, HecClient, Verdict, compress

pytestmark = pytest.mark.integration
TOKEN = "tok-7f3a-secret"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]  # the client's address: the same one for a reused connection


@dataclass
class Script:
    """What the server answers next; every request it reads is recorded."""

    status: int = 200
    body: bytes = b'{"text":"Success","code":0}'
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    answers: list[tuple[int, bytes]] = field(default_factory=list)  # (status, body) first
    declared_extra: int = 0  # Content-Length claims this many bytes more than are sent
    hang_up: bool = False  # close each connection after the answer, without saying so
    drops: int = 0  # this many requests are read and the connection closed, unanswered
    seen: list[Seen] = field(default_factory=list)


@contextlib.contextmanager
def serving(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A loopback HTTP/1.1 server answering from `script` (over TLS with `tls`)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            script.seen.append(
                Seen(self.path, dict(self.headers), self.rfile.read(length), self.client_address)
            )
            if script.drops:  # gone without an answer, as a keep-alive connection that died
                script.drops -= 1
                self.close_connection = True
                return
            time.sleep(script.delay_s)
            status, body = script.answers.pop(0) if script.answers else (script.status,
                                                                         script.body)
            self.send_response(status)
            for name, value in script.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body) + script.declared_extra))
            self.end_headers()
            self.wfile.write(body)
            if script.declared_extra or script.hang_up:
                self.close_connection = True  # without saying so

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    with serving(script) as url:
        yield url, script


def hec_body(code: int) -> bytes:
    return json.dumps({"text": f"code {code}", "code": code}).encode()


def config(url: str, **overrides: object) -> Config:
    values: dict[str, object] = {
        "hec_url": url, "hec_path": "/services/collector/event", "hec_token": TOKEN,
    }
    values.update(overrides)
    return Config(**values)


def test_a_post_sends_the_gzip_body_with_the_hec_headers(server: tuple[str, Script]) -> None:
    url, script = server
    client = HecClient(config(url))
    body = b'{"event":"a"}\n{"event":"b"}'
    try:
        first = client.post(compress(body, 1))
        second = client.post(compress(body, 1))
    finally:
        client.close()
    assert first.verdict is Verdict.ACCEPTED and first.status == 200 and first.code == 0
    assert second.verdict is Verdict.ACCEPTED
    sent = script.seen[0]
    assert sent.path == "/services/collector/event"
    assert gzip.decompress(sent.body) == body
    assert sent.headers["Authorization"] == f"Splunk {TOKEN}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Content-Encoding"] == "gzip"
    assert sent.headers["User-Agent"] == USER_AGENT
    channel = sent.headers["X-Splunk-Request-Channel"]
    assert str(uuid.UUID(channel)) == channel
    assert script.seen[1].headers["X-Splunk-Request-Channel"] == channel  # one per process
    assert script.seen[1].peer == sent.peer  # the connection is kept alive and reused


def test_each_client_has_its_own_channel(server: tuple[str, Script]) -> None:
    url, script = server
    for _ in range(2):
        client = HecClient(config(url))
        client.post(b"{}")
        client.close()
    channels = {seen.headers["X-Splunk-Request-Channel"] for seen in script.seen}
    assert len(channels) == 2


def test_gzip_level_zero_sends_the_body_as_is(server: tuple[str, Script]) -> None:
    url, script = server
    client = HecClient(config(url, gzip_level=0))
    body = b'{"event":"plain"}'
    client.post(compress(body, 0))
    client.close()
    assert script.seen[0].body == body
    assert "Content-Encoding" not in script.seen[0].headers


def test_an_error_answer_is_classified_and_never_retried_by_urllib3(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.status, script.body, script.headers = 503, b'{"text":"Server is busy","code":9}', {
        "Retry-After": "4"
    }
    client = HecClient(config(url))
    out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.status, out.code, out.retry_after_s) == (Verdict.RETRY, 503, 9, 4.0)
    assert len(script.seen) == 1


def test_a_proxy_page_echoing_the_token_is_classified_without_it(
    server: tuple[str, Script],
) -> None:
    url, script = server
    echoed = f"<html>Bad Gateway. Your request: Authorization: Splunk {TOKEN}</html>"
    script.status, script.body = 502, echoed.encode()
    client = HecClient(config(url))
    out = client.post(b"{}")
    client.close()
    assert out.verdict is Verdict.RETRY and out.status == 502
    assert TOKEN not in out.text and "Splunk <token>" in out.text
    assert script.seen[0].headers["Authorization"] == f"Splunk {TOKEN}"  # sent, as it must be


def test_an_error_body_nested_too_deep_to_parse_is_text(server: tuple[str, Script]) -> None:
    url, script = server
    script.status, script.body = 502, b"[" * 100_000 + b"]" * 100_000
    client = HecClient(config(url))
    out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.status, out.code, out.text) == (Verdict.RETRY, 502, None, "[" * 200)


def test_a_redirect_is_not_followed(server: tuple[str, Script]) -> None:
    url, script = server
    script.status, script.body = 302, b""
    script.headers = {"Location": f"{url}/elsewhere"}
    client = HecClient(config(url))
    out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.status) == (Verdict.HOLD, 302)
    assert [seen.path for seen in script.seen] == ["/services/collector/event"]


def test_an_answer_cut_short_is_a_retry_not_an_exception(server: tuple[str, Script]) -> None:
    url, script = server
    script.declared_extra = 50  # the body is read inside the guarded request, not after it
    client = HecClient(config(url))
    out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.status, out.text) == (Verdict.RETRY, 0, "ProtocolError")


@pytest.mark.timing  # answered within 1.2 s of a 300 ms timeout
def test_a_slow_answer_times_out_as_a_retry(server: tuple[str, Script]) -> None:
    url, script = server
    script.delay_s = 1.5
    client = HecClient(config(url, request_timeout_ms=300))
    started = time.monotonic()
    out = client.post(b"{}")
    elapsed = time.monotonic() - started
    client.close()
    assert (out.verdict, out.status, out.text) == (Verdict.RETRY, 0, "ReadTimeoutError")
    assert elapsed < 1.2


@pytest.mark.timing  # answered within 1 s of a 200 ms limit, under a 5 s request timeout
def test_a_post_within_a_time_limit_times_out_then_and_the_next_keeps_the_configured(
    server: tuple[str, Script],
) -> None:
    url, script = server
    client = HecClient(config(url, request_timeout_ms=5000))
    assert client.post(b"{}", within_s=0.3).verdict is Verdict.ACCEPTED
    script.delay_s = 0.5  # over the last limit, within the configured timeout: restored
    assert client.post(b"{}").verdict is Verdict.ACCEPTED
    assert len({seen.peer for seen in script.seen}) == 1  # over the same connection
    script.delay_s = 1.2
    started = time.monotonic()
    out = client.post(b"{}", within_s=0.2)
    assert (out.verdict, out.text) == (Verdict.RETRY, "ReadTimeoutError")
    assert time.monotonic() - started < 1.0
    client.close()


def test_a_refused_connection_is_one_attempt_and_a_retry_verdict() -> None:
    client = HecClient(config("http://127.0.0.1:1"))
    out = client.post(b"{}")
    client.close()
    # The error of the single attempt: urllib3 retrying would have wrapped it in MaxRetryError.
    assert (out.verdict, out.status, out.text) == (Verdict.RETRY, 0, "NewConnectionError")


def test_timeouts_and_the_single_connection_pool() -> None:
    client = HecClient(
        config("http://127.0.0.1:1", connect_timeout_ms=250, request_timeout_ms=1500)
    )
    pool = client._pool
    assert (pool.timeout.connect_timeout, pool.timeout.read_timeout) == (0.25, 1.5)
    assert pool.pool is not None and pool.pool.maxsize == 1 and pool.block is False
    client.close()
    assert pool.pool is None


@pytest.mark.parametrize(
    ("overrides", "verify_mode", "ca_bundle"),
    [
        ({}, ssl.CERT_REQUIRED, None),
        ({"verify_tls": False}, ssl.CERT_NONE, None),
        ({"ca_bundle": "/opt/ca.pem"}, ssl.CERT_REQUIRED, "/opt/ca.pem"),
    ],
)
def test_tls_is_verified_unless_turned_off(
    overrides: dict[str, object], verify_mode: ssl.VerifyMode, ca_bundle: str | None
) -> None:
    client = HecClient(config("https://hec.example:8088", **overrides))
    pool = client._pool
    context = pool.conn_kw["ssl_context"]
    assert (pool.cert_reqs, context.verify_mode) == (verify_mode, verify_mode)  # type: ignore[attr-defined]
    assert context.check_hostname is (verify_mode == ssl.CERT_REQUIRED)
    assert client._ca_bundle == ca_bundle
    client.close()


def test_compress_is_gzip_at_the_level_asked() -> None:
    body = json.dumps([{"event": "x" * 40, "n": n} for n in range(200)]).encode()
    fast, best = compress(body, 1), compress(body, 9)
    assert gzip.decompress(fast) == body and gzip.decompress(best) == body
    # The gzip header's XFL byte records the level class: 4 fastest, 2 best.
    assert fast[:2] == b"\x1f\x8b" and (fast[8], best[8]) == (4, 2)
    assert compress(body, 0) is body


class Tokens:
    """A token source that records what the client tells it; `held` is handed out once."""

    problem = ""

    def __init__(self, token: str = TOKEN, held: dict[str, int | str] | None = None) -> None:
        self.token = token
        self.held = held
        self.rejections: list[str] = []
        self.acceptances = 0

    def current(self) -> str | None:
        return self.token

    def rejected(self, token: str) -> None:
        self.rejections.append(token)

    def accepted(self) -> dict[str, int | str] | None:
        self.acceptances += 1
        held, self.held = self.held, None
        return held

    def close(self) -> None:
        """Nothing to close."""


def sent_events(script: Script) -> list[object]:
    """The event objects of every request the server read, in order (gzip bodies)."""
    return [json.loads(line)["event"]
            for seen in script.seen for line in gzip.decompress(seen.body).splitlines()]


@pytest.mark.parametrize(
    ("status", "code", "rejected"),
    [(403, 4, True), (403, 1, True), (403, 0, False), (403, 3, False), (401, 4, False),
     (400, 4, False), (503, 4, False), (200, 0, False), (400, 21, True), (400, 22, True),
     (403, 21, False)],
)
def test_only_an_invalid_or_disabled_token_is_reported_as_rejected(
    server: tuple[str, Script], status: int, code: int, rejected: bool,
) -> None:
    # The source re-reads its secret on a rejection: anything else (another status, another
    # code) must not make it fetch again.
    url, script = server
    script.status, script.body = status, hec_body(code)
    tokens = Tokens()
    client = HecClient(config(url), tokens)  # type: ignore[arg-type]
    client.post(b"{}")
    client.close()
    assert tokens.rejections == ([TOKEN] if rejected else [])


@pytest.mark.parametrize(("status", "code"), [(403, 4), (503, 9), (400, 6), (401, 2)])
def test_the_token_source_hears_of_accepted_requests_only(
    server: tuple[str, Script], status: int, code: int,
) -> None:
    url, script = server
    tokens = Tokens(held={"held_ms": 1})
    client = HecClient(config(url), tokens)  # type: ignore[arg-type]
    script.status, script.body = status, hec_body(code)
    client.post(compress(b'{"event":"a"}', 1))
    assert (tokens.acceptances, len(script.seen)) == (0, 1)  # no notice after a refusal
    script.status, script.body = 200, hec_body(0)
    client.post(compress(b'{"event":"a"}', 1))
    client.close()
    assert tokens.acceptances == 1


def after_a_hold(url: str, **held: int) -> HecClient:
    """A client whose token source ended a hold (`held`: its notice's details)."""
    return HecClient(config(url), Tokens(held=held))  # type: ignore[arg-type]


def test_after_a_hold_the_first_accepted_request_is_followed_by_one_token_notice(
    server: tuple[str, Script],
) -> None:
    url, script = server
    client = after_a_hold(url, held_ms=1500, rejections=2)
    for n in range(3):
        client.post(compress(b'{"event":"line %d"}' % n, 1))
    client.close()
    events = sent_events(script)
    assert events[:2] == ["line 0", {"type": TOKEN_NOTICE, "held_ms": 1500, "rejections": 2}]
    assert events[2:] == ["line 1", "line 2"]
    assert script.seen[1].headers["Authorization"] == f"Splunk {TOKEN}"


def test_a_token_notice_hec_refuses_is_sent_again_after_the_next_accepted_request(
    server: tuple[str, Script],
) -> None:
    url, script = server
    client = after_a_hold(url, held_ms=10)
    script.answers = [(200, hec_body(0)), (503, hec_body(9))]  # the data, then its notice
    first = client.post(compress(b'{"event":"a"}', 1))
    client.post(compress(b'{"event":"b"}', 1))  # accepted: the notice goes again, accepted
    client.post(compress(b'{"event":"c"}', 1))
    client.close()
    notice = {"type": TOKEN_NOTICE, "held_ms": 10}
    assert first.verdict is Verdict.ACCEPTED  # the notice's refusal is not the data's outcome
    assert sent_events(script) == ["a", notice, "b", notice, "c"]


def test_a_token_notice_keeps_within_what_is_left_of_the_budget(
    server: tuple[str, Script],
) -> None:
    # A flush waits for the data, not for the notice: once the data is in, the notice gets what
    # is left of the budget, and goes again after the next accepted request if that is too short.
    url, script = server
    client = after_a_hold(url, held_ms=10)
    script.delay_s = 1.0  # each answer
    started = time.monotonic()
    first = client.post(compress(b'{"event":"a"}', 1), within_s=1.3)
    elapsed = time.monotonic() - started
    script.delay_s = 0.0
    client.post(compress(b'{"event":"b"}', 1))
    client.close()
    assert first.verdict is Verdict.ACCEPTED
    assert elapsed < 1.8, elapsed  # not the 2 s of the data and a notice answered in full
    notice = {"type": TOKEN_NOTICE, "held_ms": 10}
    assert sent_events(script) == ["a", notice, "b", notice]


class SlowStore:
    """A secret store answering TOKEN; each read takes `delay_s` (a slow or distant endpoint)."""

    reference = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hec-AbCdEf"
    operation = "GetSecretValue"

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.calls = 0

    def fetch(self) -> str:
        self.calls += 1
        time.sleep(self.delay_s)
        return TOKEN

    def close(self) -> None:
        """Nothing to close."""


def test_a_post_within_a_limit_does_not_wait_on_reading_a_token_hec_accepts(
    server: tuple[str, Script],
) -> None:
    # The courier posts inline (within the flush's budget) only once HEC accepted a request;
    # a token HEC accepted must not be read again then, on the caller's time.
    from ext.sender.token_source import FetchedToken

    url, script = server
    store, now = SlowStore(), [1000.0]
    tokens = FetchedToken(store, refetch_s=30, clock=lambda: now[0])
    client = HecClient(config(url), tokens)
    script.answers = [(403, hec_body(4))]  # refused once, accepted from then on
    assert client.post(b"{}").verdict is Verdict.HOLD
    now[0] += 1
    assert client.post(b"{}").verdict is Verdict.ACCEPTED
    store.delay_s, now[0] = 1.0, now[0] + 60
    started = time.monotonic()
    assert client.post(b"{}", within_s=0.3).verdict is Verdict.ACCEPTED
    elapsed = time.monotonic() - started
    client.close()
    assert store.calls == 1
    assert elapsed < 0.9


def test_compress_finds_repeats_anywhere_in_gzips_32_kib_window() -> None:
    # A Lambda's log lines repeat (same request, same stack trace) further apart than 16 KiB in
    # a 1 MiB request: the whole window is what keeps the body small.
    unique = random.Random(7).randbytes(20_000)  # incompressible on its own
    body = unique + unique
    packed = compress(body, 1)
    assert gzip.decompress(packed) == body
    assert len(packed) < len(unique) * 1.1


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_request(
    server: tuple[str, Script],
) -> None:
    # A keep-alive connection HEC (or a load balancer) closed during a freeze: urllib3's pool
    # notices it is gone and connects again, so no attempt is spent on it.
    url, script = server
    script.hang_up = True
    client = HecClient(config(url))
    first = client.post(b"{}")
    time.sleep(0.1)  # the server's FIN arrives
    second = client.post(b"{}")
    client.close()
    assert (first.verdict, second.verdict) == (Verdict.ACCEPTED, Verdict.ACCEPTED)
    assert script.seen[0].peer != script.seen[1].peer


def test_a_connection_that_dies_with_the_request_is_a_retry_and_the_next_one_connects_again(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.drops = 1
    client = HecClient(config(url))
    lost = client.post(b"{}")
    again = client.post(b"{}")
    client.close()
    assert (lost.verdict, lost.status, lost.text) == (Verdict.RETRY, 0, "ProtocolError")
    assert again.verdict is Verdict.ACCEPTED
    assert script.seen[0].peer != script.seen[1].peer


def test_connection_close_is_honoured_without_waiting_for_the_close(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.headers = {"Connection": "close"}
    client = HecClient(config(url, request_timeout_ms=5000))
    started = time.monotonic()
    outcomes = [client.post(b"{}").verdict for _ in range(2)]
    elapsed = time.monotonic() - started
    client.close()
    assert outcomes == [Verdict.ACCEPTED, Verdict.ACCEPTED]
    assert script.seen[0].peer != script.seen[1].peer
    assert elapsed < 2.0  # framed by Content-Length: never read up to the read timeout


def test_a_token_no_header_can_carry_is_held_and_never_sent(server: tuple[str, Script]) -> None:
    url, script = server
    secret = "s3cr3t\r\nX-Injected: 1"
    client = HecClient(config(url), Tokens(secret))  # type: ignore[arg-type]
    out = client.post(b"{}")
    client.close()
    assert out.verdict is Verdict.HOLD and "s3cr3t" not in out.text
    assert script.seen == []


def test_prepare_connects_before_the_first_request_which_uses_that_connection() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    client = HecClient(config(f"http://127.0.0.1:{listener.getsockname()[1]}"))
    try:
        client.prepare()
        conn, _ = listener.accept()  # connected before any request was asked for
        with conn:
            conn.settimeout(0.1)
            with pytest.raises(TimeoutError):
                conn.recv(1)  # and nothing sent on it yet
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\n" + Script().body
            posted: list[object] = []
            poster = threading.Thread(target=lambda: posted.append(client.post(b"{}")))
            poster.start()
            conn.settimeout(5)
            request = conn.recv(65536)
            conn.sendall(answer)
            poster.join(5)
        assert request.startswith(b"POST /services/collector/event HTTP/1.1\r\n")
        assert [getattr(p, "verdict", None) for p in posted] == [Verdict.ACCEPTED]
    finally:
        client.close()
        listener.close()


def test_prepare_with_hec_unreachable_returns_and_the_request_meets_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = HecClient(config("http://127.0.0.1:1", connect_timeout_ms=500))
    started = time.monotonic()
    with caplog.at_level("INFO", logger="ext.sender.hec"):
        client.prepare()  # no exception: the first request meets the error as usual
    assert time.monotonic() - started < 2.0
    assert "NewConnectionError" in caplog.text and TOKEN not in caplog.text
    out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "NewConnectionError")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (only), and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI")
    return self_signed(tmp_path)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[str, Script]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    script = Script()
    with serving(script, context) as url:
        yield url, script


def test_tls_refuses_an_unknown_issuer_by_default_and_trusts_the_bundle_given(
    tls_server: tuple[str, Script], certificate: tuple[Path, Path],
) -> None:
    url, script = tls_server
    untrusting = HecClient(config(url))
    refused = untrusting.post(b"{}")
    untrusting.close()
    assert (refused.verdict, refused.text) == (Verdict.RETRY, "SSLError")
    assert script.seen == []
    trusting = HecClient(config(url, ca_bundle=str(certificate[0])))
    outcomes = [trusting.post(b"{}").verdict for _ in range(2)]
    trusting.close()
    assert outcomes == [Verdict.ACCEPTED, Verdict.ACCEPTED]
    assert script.seen[0].peer == script.seen[1].peer  # one TLS connection, kept alive


def test_tls_checks_the_host_name(
    tls_server: tuple[str, Script], certificate: tuple[Path, Path],
) -> None:
    url, script = tls_server
    client = HecClient(config(url.replace("127.0.0.1", "localhost"),
                              ca_bundle=str(certificate[0])))
    out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "SSLError")  # the name is not 127.0.0.1
    assert script.seen == []


def test_tls_unverified_only_when_turned_off(tls_server: tuple[str, Script]) -> None:
    url, _ = tls_server
    client = HecClient(config(url, verify_tls=False))
    out = client.post(b"{}")
    client.close()
    assert out.verdict is Verdict.ACCEPTED


def test_tls_reads_the_trust_store_once_and_prepare_does_the_handshake(
    tls_server: tuple[str, Script], certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, script = tls_server
    script.headers = {"Connection": "close"}  # a new connection, and handshake, per request
    client = HecClient(config(url, ca_bundle=str(certificate[0])))
    context = client._pool.conn_kw["ssl_context"]
    loads: list[object] = []
    real_load = context.load_verify_locations

    def load_verify_locations(*a: Any, **k: Any) -> None:
        loads.append(a or k)
        real_load(*a, **k)

    monkeypatch.setattr(context, "load_verify_locations", load_verify_locations)
    client.prepare()
    assert len(loads) == 1
    pooled = client._pool.pool.queue[-1]  # type: ignore[union-attr]
    assert pooled.sock is not None and pooled.sock.version() is not None  # TLS is up
    prepared = pooled.sock.getsockname()
    time.sleep(0.1)  # TLS 1.3: the server's session tickets arrive, unread
    outcomes = [client.post(b"{}").verdict for _ in range(3)]
    client.close()
    assert outcomes == [Verdict.ACCEPTED] * 3
    assert script.seen[0].peer == prepared  # the first request used the prepared connection
    assert len({seen.peer for seen in script.seen}) == 3
    assert len(loads) == 1  # three connections, one reading of the CA bundle


def test_a_ca_bundle_that_cannot_be_read_is_logged_then_met_by_the_request(
    tls_server: tuple[str, Script], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    url, script = tls_server
    client = HecClient(config(url, ca_bundle=str(tmp_path / "gone.pem")))
    with caplog.at_level("INFO", logger="ext.sender.hec"):
        client.trust()  # no exception
        client.prepare()
    assert "cannot load the CAs" in caplog.text
    out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "SSLError") and script.seen == []


def _refusing_server(
    refusal: bytes, tls: ssl.SSLContext | None = None,
) -> tuple[socket.socket, threading.Thread]:
    """A server that answers its one connection's request with `refusal` as soon as it has the
    head, before reading the body, then closes (which resets the connection)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def refuse() -> None:
        conn, _ = listener.accept()
        if tls is not None:
            conn = tls.wrap_socket(conn, server_side=True)
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            conn.sendall(refusal)
            time.sleep(0.2)  # the answer leaves before the close resets the connection

    server = threading.Thread(target=refuse, daemon=True)
    server.start()
    return listener, server


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_an_answer_sent_before_the_body_was_read_is_still_classified(
    tls: bool, tmp_path: Path,
) -> None:
    # A proxy or HEC refusing a body over its limit answers 413 as soon as it has the head and
    # closes: the batch must be split (TOO_LARGE), not retried as a broken connection forever.
    # Over TLS the cut send fails as SSLEOFError rather than a reset or a broken pipe.
    context, overrides = None, {}
    if tls:
        certificate = self_signed(tmp_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        overrides = {"ca_bundle": str(certificate[0])}
    answer = b'{"text":"Content too large","code":27}'
    listener, _ = _refusing_server(
        b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(answer), answer), context)
    scheme = "https" if tls else "http"
    client = HecClient(config(f"{scheme}://127.0.0.1:{listener.getsockname()[1]}", **overrides))
    try:
        out = client.post(random.Random(3).randbytes(16 * 1024 * 1024))
    finally:
        client.close()
        listener.close()
    assert (out.verdict, out.status, out.code) == (Verdict.TOO_LARGE, 413, 27), out


def test_a_body_over_the_joined_size_arrives_whole(server: tuple[str, Script]) -> None:
    # Small bodies go out with the head in one send, larger ones in a second: both whole.
    url, script = server
    client = HecClient(config(url))
    bodies = [random.Random(n).randbytes(size) for n, size in enumerate((10, 200_000))]
    outcomes = [client.post(body).verdict for body in bodies]
    client.close()
    assert outcomes == [Verdict.ACCEPTED, Verdict.ACCEPTED]
    assert [seen.body for seen in script.seen] == bodies


def test_a_new_token_is_sent_from_the_next_request_on(server: tuple[str, Script]) -> None:
    url, script = server
    tokens = Tokens("tok-9")
    client = HecClient(config(url), tokens)  # type: ignore[arg-type]
    client.post(b"{}")
    tokens.token = "tok-1"  # rotated (sorts before the old one)
    client.post(b"{}")
    tokens.token = "tok-9"
    client.post(b"{}")
    client.close()
    assert [seen.headers["Authorization"] for seen in script.seen] == [
        "Splunk tok-9", "Splunk tok-1", "Splunk tok-9"]


@pytest.mark.parametrize(
    ("url", "host"),
    [("http://hec.example", "hec.example"), ("https://hec.example", "hec.example"),
     ("http://hec.example:8088", "hec.example:8088"), ("https://hec.example:80", "hec.example:80"),
     ("http://[::1]:8088", "[::1]:8088")],
)
def test_the_host_field_names_the_port_unless_it_is_the_schemes(url: str, host: str) -> None:
    client = HecClient(config(url))
    head = client._request_head(TOKEN)
    client.close()
    assert head is not None and head.startswith(
        b"POST /services/collector/event HTTP/1.1\r\nHost: %b\r\n" % host.encode())


@pytest.mark.timing  # three requests well within a second
def test_tls_keeps_the_connection_until_the_server_closes_it(
    tls_server: tuple[str, Script], certificate: tuple[Path, Path],
) -> None:
    url, script = tls_server
    client = HecClient(config(url, ca_bundle=str(certificate[0])))
    started = time.monotonic()
    kept = [client.post(b"{}").verdict for _ in range(3)]
    elapsed = time.monotonic() - started
    script.hang_up = True  # from now on each connection is closed after its answer, unsaid
    client.post(b"{}")
    time.sleep(0.1)  # the server's close (a TLS close_notify, then FIN) arrives
    after_close = client.post(b"{}")
    client.close()
    assert kept == [Verdict.ACCEPTED] * 3 and elapsed < 0.8
    assert len({seen.peer for seen in script.seen[:4]}) == 1
    assert after_close.verdict is Verdict.ACCEPTED  # connected again, no attempt lost
    assert script.seen[4].peer != script.seen[3].peer


@pytest.mark.timing  # the handshake gives up after the 300 ms connect timeout, not later
def test_a_tls_handshake_that_never_completes_is_a_connect_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    client = HecClient(config(f"https://127.0.0.1:{silent.getsockname()[1]}",
                              connect_timeout_ms=300, request_timeout_ms=5000))
    started = time.monotonic()
    out = client.post(b"{}")
    elapsed = time.monotonic() - started
    client.close()
    silent.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "ConnectTimeoutError")
    assert elapsed < 2.0


def test_a_closed_client_sends_nothing_and_prepares_nothing(server: tuple[str, Script]) -> None:
    url, script = server
    client = HecClient(config(url))
    client.close()
    client.prepare()  # no exception: the sender is stopping
    out = client.post(b"{}")
    assert (out.verdict, out.text) == (Verdict.RETRY, "ClosedPoolError")
    assert script.seen == []


@pytest.mark.timing  # gives up at the 300 ms request timeout, not the 5 s limit
def test_a_post_within_a_limit_longer_than_the_request_timeout_keeps_the_request_timeout(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.delay_s = 1.5
    client = HecClient(config(url, request_timeout_ms=300))
    started = time.monotonic()
    out = client.post(b"{}", within_s=5.0)
    elapsed = time.monotonic() - started
    client.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "ReadTimeoutError")
    assert elapsed < 1.2


@pytest.mark.timing  # each handshake gives up at the shorter of the limit and the connect timeout
def test_a_connect_within_a_limit_gives_up_at_the_shorter_and_the_next_waits_the_configured(
) -> None:
    # The TLS handshake is what never ends (the kernel accepts; nobody answers). Unverified, so
    # no probe handshake chooses CAs first: only the request's own connect is timed.
    silent = socket.create_server(("127.0.0.1", 0))
    client = HecClient(config(f"https://127.0.0.1:{silent.getsockname()[1]}", verify_tls=False,
                              connect_timeout_ms=600, request_timeout_ms=5000))
    try:
        waits: list[float] = []
        for within_s in (5.0, 0.05, None):
            started = time.monotonic()
            out = client.post(b"{}", within_s=within_s)
            waits.append(time.monotonic() - started)
            assert (out.verdict, out.text) == (Verdict.RETRY, "ConnectTimeoutError")
    finally:
        client.close()
        silent.close()
    longer, shorter, unlimited = waits
    assert 0.55 < longer < 3.0  # the connect timeout, not the 5 s limit
    assert shorter < 0.45  # the limit, not the connect timeout
    assert unlimited > 0.55  # the limit did not stay on the connection


def test_a_connection_reset_while_the_body_was_sent_is_closed_not_pooled() -> None:
    # The 413 that came before the body was read (above) is read, and that connection closed:
    # the server has reset it.
    listener, server = _refusing_server(
        b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
    client = HecClient(config(f"http://127.0.0.1:{listener.getsockname()[1]}"))
    try:
        out = client.post(random.Random(4).randbytes(16 * 1024 * 1024))
        pooled = client._pool.pool.queue[-1]  # type: ignore[union-attr]
        assert out.verdict is Verdict.TOO_LARGE
        assert pooled.sock is None
    finally:
        client.close()
        listener.close()
    server.join(5)


def _serve_tls(serve: Callable[[], None], listener: socket.socket,
               certificate: tuple[Path, Path]) -> tuple[threading.Thread, HecClient]:
    """`serve` started on a thread, and a client of the HEC on `listener` that trusts
    `certificate`."""
    server = threading.Thread(target=serve, daemon=True)
    server.start()
    return server, HecClient(config(f"https://127.0.0.1:{listener.getsockname()[1]}",
                                    ca_bundle=str(certificate[0])))


def _break_tls(conn: ssl.SSLSocket, breakage: str) -> bool:
    """Breaks a server's end of a kept-alive TLS connection as a load balancer or an idle
    timeout may; whether it is left open (bytes written into it, or nothing done) or closed."""
    if breakage == "closed":
        conn.close()
        return False
    if breakage == "reset":  # closed with no close_notify and no FIN
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()
        return False
    if breakage == "bytes that are no TLS record":
        os.write(conn.fileno(), b"\x00garbage, beneath TLS\r\n")
    elif breakage == "an answer nobody asked for":
        conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
    return True


@pytest.mark.parametrize("breakage", ["reset", "bytes that are no TLS record",
                                      "an answer nobody asked for"])
def test_a_tls_connection_broken_while_idle_is_replaced_before_the_request(
    certificate: tuple[Path, Path], breakage: str,
) -> None:
    # A load balancer resets an idle connection, or something writes into it (beneath TLS, or
    # an answer to no request, as a server's idle timeout may send): the client notices before
    # sending, so no attempt is spent on it, and no answer is read off it for the next request.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(3)
    answered, broken, done = threading.Event(), threading.Event(), threading.Event()
    peers: list[tuple[str, int]] = []

    def answer_then_break() -> None:
        held: list[ssl.SSLSocket] = []  # the broken connection stays open till the end
        for n in range(2):
            raw, peer = listener.accept()
            peers.append(peer)
            conn = context.wrap_socket(raw, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(head.lower().partition(b"content-length: ")[2].split(b"\r\n")[0])
            while len(body) < length:  # read whole: a close with bytes unread would be a reset
                body += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\n" + Script().body)
            if n == 0:
                answered.wait(5)
                if _break_tls(conn, breakage):
                    held.append(conn)
                broken.set()
                continue
            conn.close()
            broken.set()
        done.wait(5)
        for conn in held:
            conn.close()

    server, client = _serve_tls(answer_then_break, listener, certificate)
    try:
        first = client.post(b"{}")
        answered.set()
        assert broken.wait(5)
        time.sleep(0.05)  # the reset, or the bytes, arrive
        second = client.post(b"{}")
    finally:
        done.set()
        client.close()
        listener.close()
    server.join(5)
    assert (first.verdict, second.verdict) == (Verdict.ACCEPTED, Verdict.ACCEPTED)
    assert len(peers) == 2


@pytest.mark.parametrize(("breakage", "reusable"), [
    ("none: only the session tickets wait", True),
    ("closed", False),
    ("reset", False),
    ("bytes that are no TLS record", False),
    ("an answer nobody asked for", False),
])
def test_a_kept_alive_tls_connection_is_handed_out_again_only_if_the_server_left_it_alone(
    certificate: tuple[Path, Path], breakage: str, reusable: bool,
) -> None:
    # What urllib3's pool asks of a kept-alive connection before it hands it out again: one the
    # server closed, reset or wrote into is not reused (a request on it would be an attempt
    # spent, or read an answer meant for nothing), one with TLS 1.3 tickets alone waiting is.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(3)
    broken, done = threading.Event(), threading.Event()

    def handshake_then_break() -> None:
        raw, _ = listener.accept()
        conn = context.wrap_socket(raw, server_side=True)
        _break_tls(conn, breakage)
        broken.set()
        done.wait(5)
        conn.close()

    server, client = _serve_tls(handshake_then_break, listener, certificate)
    try:
        client.prepare()  # TCP and the handshake; the connection is pooled
        assert broken.wait(5)
        time.sleep(0.05)  # the close, the reset, the bytes or the tickets arrive
        pooled = client._pool.pool.queue[-1]  # type: ignore[union-attr]
        assert pooled.sock is not None
        assert pooled.is_connected is reusable
    finally:
        done.set()
        client.close()
        listener.close()
    server.join(5)
