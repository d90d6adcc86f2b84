"""The Extensions API client and the Telemetry API subscription, against a scripted local API:
what goes on the wire, how each answer framing is read, keep-alive and reconnects, errors."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ext import __main__ as entry
from ext import config
from ext.errors import ApiError
from ext.main import telemetry_api
from ext.main.extensions_api import (
    _MAX_HEADER_BYTES,
    ID_HEADER,
    INIT_ERROR_PATH,
    NAME_HEADER,
    NEXT_PATH,
    REGISTER_PATH,
    ExtensionsApi,
    LambdaApiClient,
    _EmptyReplyError,
    _read_reply,
)
from tests.unit.lambda_api_stub import ScriptedApi, reply

INVOKE = b'{"eventType":"INVOKE","requestId":"r1","deadlineMs":1}'


@contextmanager
def api(*connections: list[bytes | None]) -> Iterator[tuple[ExtensionsApi, ScriptedApi]]:
    stub = ScriptedApi(list(connections))
    client = LambdaApiClient(stub.address)
    try:
        yield ExtensionsApi(client), stub
    finally:
        client.close()
        stub.close()


def test_register_names_the_extension_and_keeps_its_identifier() -> None:
    answer = reply(200, b'{"functionName":"f","accountId":"123456789012"}',
                   {"Lambda-Extension-Identifier": "id-1"})
    with api([answer]) as (ext_api, stub):
        body = ext_api.register("splunk-hec-extension", ("INVOKE", "SHUTDOWN"))
    assert body == b'{"functionName":"f","accountId":"123456789012"}'
    assert ext_api.extension_id == "id-1"
    assert ext_api.account_id() == "123456789012"
    [(line, headers, sent)] = stub.requests
    assert line == f"POST {REGISTER_PATH} HTTP/1.1"
    assert headers[NAME_HEADER.lower()] == "splunk-hec-extension"
    assert headers["lambda-extension-accept-feature"] == "accountId"
    assert json.loads(sent) == {"events": ["INVOKE", "SHUTDOWN"]}


@pytest.mark.parametrize("registration", [b"not json", b'["a"]', b'{"accountId": 5}', b"{}"])
def test_no_account_id_unless_register_gave_one_as_text(registration: bytes) -> None:
    ext_api = ExtensionsApi(LambdaApiClient("127.0.0.1:9"))
    ext_api.registration = registration
    assert ext_api.account_id() == ""


def test_next_event_is_a_get_with_the_identifier_on_one_kept_alive_connection() -> None:
    with api([reply(200, INVOKE), reply(200, INVOKE)]) as (ext_api, stub):
        ext_api.extension_id = "id-1"
        assert ext_api.next_event() == INVOKE
        assert ext_api.next_event() == INVOKE
    assert stub.connections == 1
    for line, headers, body in stub.requests:
        assert line == f"GET {NEXT_PATH} HTTP/1.1"
        assert headers[ID_HEADER.lower()] == "id-1"
        assert "content-length" not in headers  # a GET carries no body
        assert body == b""


def test_a_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    chunked = b"5\r\n" + INVOKE[:5] + b"\r\n" + f"{len(INVOKE) - 5:x}".encode() + b";ext=1\r\n"
    chunked += INVOKE[5:] + b"\r\n0\r\n\r\n"
    answer = reply(200, chunked, {"Transfer-Encoding": "chunked"}, length=False)
    with api([answer, reply(200, b"{}")]) as (ext_api, stub):
        assert ext_api.next_event() == INVOKE
        assert ext_api.next_event() == b"{}"
    assert stub.connections == 1


def test_an_answer_without_length_ends_with_the_connection_and_the_next_call_reconnects() -> None:
    close = reply(200, INVOKE, {"Connection": "close"}, length=False)
    with api([close], [reply(200, b"{}")]) as (ext_api, stub):
        assert ext_api.next_event() == INVOKE
        assert ext_api.next_event() == b"{}"
    assert stub.connections == 2


def test_connection_close_is_honoured_even_with_a_length() -> None:
    with api([reply(200, b"{}", {"Connection": "close"})], [reply(200, INVOKE)]) as (ext_api,
                                                                                   stub):
        assert ext_api.next_event() == b"{}"
        assert ext_api.next_event() == INVOKE
    assert stub.connections == 2


def test_a_kept_alive_connection_found_closed_is_retried_once_on_a_new_one() -> None:
    # The platform dropped the idle connection (e.g. across a freeze): the second request
    # finds it closed and goes again on a fresh connection.
    with api([reply(200, b"{}"), None], [reply(200, INVOKE)]) as (ext_api, stub):
        assert ext_api.next_event() == b"{}"
        assert ext_api.next_event() == INVOKE
    assert stub.connections == 2


def test_a_fresh_connection_that_fails_is_not_retried() -> None:
    with api([None], [reply(200, INVOKE)]) as (ext_api, stub), pytest.raises(ConnectionError):
        ext_api.next_event()
    assert stub.connections == 1


def test_no_api_listening_is_an_error_not_a_hang() -> None:
    with pytest.raises(ConnectionRefusedError):
        ExtensionsApi(LambdaApiClient("127.0.0.1:1")).next_event()


def test_a_non_2xx_answer_raises_with_path_and_status() -> None:
    with api([reply(403, b'{"errorType":"Extension.Forbidden"}')]) as (ext_api, _), \
            pytest.raises(ApiError) as raised:
        ext_api.next_event()
    assert (raised.value.path, raised.value.status) == (NEXT_PATH, 403)
    assert b"Forbidden" in raised.value.body


def test_init_error_posts_the_type_in_header_and_body() -> None:
    with api([reply(202)]) as (ext_api, stub):
        ext_api.extension_id = "id-1"
        ext_api.init_error("Extension.ConfigError", "SPLUNK_HOST is missing")
    [(line, headers, body)] = stub.requests
    assert line == f"POST {INIT_ERROR_PATH} HTTP/1.1"
    assert headers["lambda-extension-function-error-type"] == "Extension.ConfigError"
    assert json.loads(body) == {"errorMessage": "SPLUNK_HOST is missing",
                                "errorType": "Extension.ConfigError", "stackTrace": []}


def test_oversized_answer_headers_are_refused() -> None:
    huge = b"HTTP/1.1 200 X\r\nX-Pad: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n"
    with api([huge]) as (ext_api, _), pytest.raises(ConnectionError, match="too large"):
        ext_api.next_event()


def test_a_body_cut_short_is_an_error() -> None:
    cut = b"HTTP/1.1 200 X\r\nContent-Length: 100\r\n\r\n{}"
    with api([cut]) as (ext_api, _), pytest.raises(ConnectionError):
        ext_api.next_event()


# -- the Telemetry API subscription -------------------------------------------------------------


def _config(**env: str) -> config.Config:
    return config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t", **env})


def test_the_subscription_states_every_buffering_value_and_the_destination() -> None:
    cfg = _config(SPLUNK_BUFFER_TIMEOUT_MS="40")
    body = json.loads(telemetry_api.build_subscription(cfg, 4243))
    assert body == {
        "schemaVersion": telemetry_api.SCHEMA_VERSION,
        "types": list(cfg.telemetry_types),
        "buffering": {"maxItems": cfg.buffer_max_items, "maxBytes": cfg.buffer_max_bytes,
                      "timeoutMs": 40},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/"},
    }


@pytest.mark.parametrize(("status", "delivers"), [(200, True), (202, False)])
def test_subscribe_tells_whether_telemetry_will_come(status: int, delivers: bool) -> None:
    with api([reply(status, b"OK")]) as (ext_api, stub):
        ext_api.extension_id = "id-1"
        assert telemetry_api.subscribe(ext_api, b'{"x":1}') is delivers
    [(line, headers, body)] = stub.requests
    assert line == f"PUT {telemetry_api.SUBSCRIBE_PATH} HTTP/1.1"
    assert headers[ID_HEADER.lower()] == "id-1"
    assert body == b'{"x":1}'


def test_a_refused_subscription_raises() -> None:
    with api([reply(400, b"bad types")]) as (ext_api, _), pytest.raises(ApiError) as raised:
        telemetry_api.subscribe(ext_api, b"{}")
    assert raised.value.status == 400


def test_the_next_event_request_is_made_once_per_identifier(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The same bytes at every invocation: building them again cost main CPU each time.
    with api([reply(200, INVOKE)] * 4) as (ext_api, stub):
        made: list[str] = []
        real_wire = ext_api.client.wire

        def wire(*args: Any) -> bytes:
            made.append(args[1])
            return real_wire(*args)

        monkeypatch.setattr(ext_api.client, "wire", wire)
        ext_api.extension_id = "id-1"
        ext_api.next_event()
        ext_api.extension_id = "".join(["id-", "1"])  # the same identifier, another str
        ext_api.next_event()
        assert made == [NEXT_PATH]
        ext_api.extension_id = "id-2"  # registered again: a new identifier
        ext_api.next_event()
        assert made == [NEXT_PATH, NEXT_PATH]
        ext_api.extension_id = "id-0"  # one that sorts before: a change all the same
        ext_api.next_event()
        assert made == [NEXT_PATH, NEXT_PATH, NEXT_PATH]
    assert [headers[ID_HEADER.lower()] for _, headers, _ in stub.requests] == [
        "id-1", "id-1", "id-2", "id-0"]


@pytest.mark.parametrize("framing", [
    {"CONTENT-LENGTH": f"  {len(INVOKE)} "},
    {"transfer-encoding": "Chunked"},
])
def test_framing_headers_are_found_whatever_their_case_and_spacing(
        framing: dict[str, str]) -> None:
    chunked = "transfer-encoding" in framing
    body = f"{len(INVOKE):x}\r\n".encode() + INVOKE + b"\r\n0\r\n\r\n" if chunked else INVOKE
    with api([reply(200, body, {"X-Content-Length-Note": "9", **framing}, length=False),
              reply(200, b"{}")]) as (ext_api, stub):
        assert ext_api.next_event() == INVOKE
        assert ext_api.next_event() == b"{}"  # the length was right: the connection is kept
    assert stub.connections == 1


def test_a_reply_header_is_read_by_its_lower_cased_name() -> None:
    answer = reply(200, b"{}", {"Lambda-Extension-Identifier": "  Id-9 "})
    with api([answer]) as (ext_api, _):
        ext_api.register("x", ("INVOKE",))
    assert ext_api.extension_id == "Id-9"


# -- the HTTP/1.1 reading, on a scripted socket --------------------------------------------------
#
# Each recv returns the next piece the test wrote (cut to the size asked for), so where a
# reply splits between reads is the test's choice, not TCP's.


class WouldBlockError(Exception):
    """A recv the real socket would block in: the peer sent all it had and keeps the
    connection open (the next reply comes only after the next request)."""


class ScriptedSocket:
    def __init__(self, *pieces: bytes, closes: bool = False) -> None:
        self.pieces = list(pieces)
        self.closes = closes  # the peer closes the connection after the pieces
        self.asked: list[int] = []  # the size of each recv

    def recv(self, size: int) -> bytes:
        self.asked.append(size)
        if size == 0:
            return b""  # as recv(2) does: nothing asked, nothing read
        if not self.pieces:
            if self.closes:
                return b""
            raise WouldBlockError
        piece = self.pieces.pop(0)
        if len(piece) > size:
            self.pieces.insert(0, piece[size:])
        return piece[:size]


def _head(length: int, *fields: str) -> bytes:
    """A head (status line and header lines, no blank line) of exactly `length` bytes."""
    start = "HTTP/1.1 200 X\r\n" + "".join(f"{f}\r\n" for f in fields) + "X-Pad: "
    assert len(start) <= length
    return (start + "a" * (length - len(start))).encode()


def test_a_head_of_exactly_the_limit_is_read_and_one_byte_more_refused() -> None:
    head = _head(_MAX_HEADER_BYTES, "Content-Length: 2")
    answer, keep_alive = _read_reply(ScriptedSocket(head + b"\r\n\r\n{}"))  # type: ignore[arg-type]
    assert (answer.status, answer.body, keep_alive) == (200, b"{}", True)
    longer = _head(_MAX_HEADER_BYTES + 1, "Content-Length: 2")
    with pytest.raises(ConnectionError, match="response headers too large"):
        _read_reply(ScriptedSocket(longer + b"\r\n\r\n{}"))  # type: ignore[arg-type]


def test_a_head_whose_blank_line_ends_after_a_full_read_is_still_read() -> None:
    # The first read fills the limit with the head and "\r\n\r"; the last "\n" comes next.
    head = _head(_MAX_HEADER_BYTES - 3, "Content-Length: 2")
    sock = ScriptedSocket(head + b"\r\n\r", b"\n{}")
    answer, _ = _read_reply(sock)  # type: ignore[arg-type]
    assert (answer.status, answer.body) == (200, b"{}")
    assert sock.asked == [65_536, 65_536]


def test_a_head_that_never_ends_is_refused_once_past_the_limit_without_reading_on() -> None:
    line = b"X-Pad: " + b"a" * 991 + b"\r\n"  # 1 KB a line, never a blank one
    sock = ScriptedSocket(b"HTTP/1.1 200 X\r\n", *[line] * 200)
    with pytest.raises(ConnectionError, match="response headers too large"):
        _read_reply(sock)  # type: ignore[arg-type]
    # 16 + 65 * 1000 bytes are not over the limit yet; 66 lines are.
    assert len(sock.asked) == 1 + 66
    assert len(sock.pieces) == 200 - 66


def test_a_connection_closed_before_a_whole_head_is_an_empty_reply() -> None:
    with pytest.raises(_EmptyReplyError, match="before the response"):
        _read_reply(ScriptedSocket(b"HTTP/1.1 200 X\r\nContent-Le", closes=True))  # type: ignore[arg-type]


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 204", b"HTTP/1.1 204 No Content here"])
def test_the_status_is_read_with_or_without_a_reason_phrase(status_line: bytes) -> None:
    answer, keep_alive = _read_reply(ScriptedSocket(  # type: ignore[arg-type]
        status_line + b"\r\nContent-Length: 0\r\n\r\n"))
    assert (answer.status, answer.body, keep_alive) == (204, b"", True)


def test_the_headers_are_the_header_lines_only() -> None:
    answer, _ = _read_reply(ScriptedSocket(  # type: ignore[arg-type]
        b"HTTP/1.1 200 X\r\nContent-Length: 2\r\nLambda-Extension-Identifier:id-1\r\n\r\n{}"))
    assert answer.headers == {"content-length": "2", "lambda-extension-identifier": "id-1"}
    assert answer.headers is answer.headers  # parsed once


@pytest.mark.parametrize("framing", [
    b"Content-Length:2",  # no space after the colon
    b"X-Content-Length: 5\r\ncontent-length:2",  # the last line; another header ends alike
])
def test_a_framing_header_is_read_whole_wherever_it_stands(framing: bytes) -> None:
    sock = ScriptedSocket(b"HTTP/1.1 200 X\r\n" + framing + b"\r\n\r\n{}")
    answer, keep_alive = _read_reply(sock)  # type: ignore[arg-type]
    assert (answer.body, keep_alive) == (b"{}", True)


@pytest.mark.parametrize(("field", "keep_alive"), [
    (b"Connection: close", False), (b"Connection:close", False),
    (b"Connection: keep-alive", True), (b"X-Connection: close", True),
])
def test_connection_close_as_the_last_header_ends_the_connection(
        field: bytes, keep_alive: bool) -> None:
    sock = ScriptedSocket(b"HTTP/1.1 200 X\r\nContent-Length: 2\r\n" + field + b"\r\n\r\n{}")
    assert _read_reply(sock)[1] is keep_alive  # type: ignore[arg-type]


def test_the_client_lets_go_of_a_connection_the_answer_closes() -> None:
    close = reply(200, INVOKE, {"Connection": "close"})
    to_close = reply(200, INVOKE, length=False)
    with api([close], [to_close], [reply(200, b"{}")]) as (ext_api, stub):
        assert ext_api.connection_fd() == -1  # none yet
        assert ext_api.next_event() == INVOKE
        assert ext_api.connection_fd() == -1
        assert ext_api.next_event() == INVOKE
        assert ext_api.connection_fd() == -1
        assert ext_api.next_event() == b"{}"
        assert ext_api.connection_fd() >= 0  # kept alive
        ext_api.client.close()
        assert ext_api.connection_fd() == -1
    assert stub.connections == 3


def test_a_body_is_read_to_its_length_across_reads_and_no_further() -> None:
    sock = ScriptedSocket(b"HTTP/1.1 200 X\r\nContent-Length: 10\r\n\r\n01", b"234", b"56789")
    answer, keep_alive = _read_reply(sock)  # type: ignore[arg-type]
    assert (answer.body, keep_alive) == (b"0123456789", True)
    assert sock.asked == [65_536, 8, 5]  # never more than is left: the next reply is not ours


def test_bytes_past_the_body_in_the_head_s_read_are_not_the_body() -> None:
    sock = ScriptedSocket(b"HTTP/1.1 200 X\r\nContent-Length: 2\r\n\r\n{}\r\nHTTP/1.1")
    answer, keep_alive = _read_reply(sock)  # type: ignore[arg-type]
    assert (answer.body, keep_alive) == (b"{}", True)
    assert sock.asked == [65_536]


def test_a_large_body_is_read_a_mebibyte_at_most_at_a_time() -> None:
    size = (5 << 20) // 2
    body = bytes(range(256)) * (size // 256)
    sock = ScriptedSocket(f"HTTP/1.1 200 X\r\nContent-Length: {size}\r\n\r\n".encode(), body)
    answer, _ = _read_reply(sock)  # type: ignore[arg-type]
    assert answer.body == body
    assert sock.asked == [65_536, 1 << 20, 1 << 20, 1 << 19]


def test_a_body_cut_short_across_reads_is_an_error() -> None:
    sock = ScriptedSocket(b"HTTP/1.1 200 X\r\nContent-Length: 10\r\n\r\n01", b"234", closes=True)
    with pytest.raises(ConnectionError, match="inside the response body"):
        _read_reply(sock)  # type: ignore[arg-type]


def test_a_body_without_framing_is_read_to_the_close_a_mebibyte_at_most_at_a_time() -> None:
    sock = ScriptedSocket(b"HTTP/1.1 200 X\r\n\r\n01", b"234", b"5" * (3 << 19), closes=True)
    answer, keep_alive = _read_reply(sock)  # type: ignore[arg-type]
    assert (answer.body, keep_alive) == (b"01234" + b"5" * (3 << 19), False)
    assert sock.asked == [65_536] + [1 << 20] * 4


def test_a_chunked_body_split_anywhere_across_reads_is_read_to_its_very_end() -> None:
    # Sizes in hex with letters and digits both; an extension; the size line, the data and
    # every CRLF cut in two; the last CRLF's "\n" alone in the last read.
    data = bytes(range(256)) * 2
    wire = (b"HTTP/1.1 200 X\r\nTransfer-Encoding: chunked\r\n\r\n1",
            b"e;ext=1\r\n" + data[:10], data[10:30] + b"\r",
            b"\n1E2\r\n" + data[30:300], data[300:] + b"\r\n0\r", b"\n\r", b"\n")
    sock = ScriptedSocket(*wire)
    answer, keep_alive = _read_reply(sock)  # type: ignore[arg-type]
    assert (answer.body, keep_alive) == (data, True)
    assert sock.pieces == []  # all of it read, and nothing past it


def test_a_chunked_body_cut_short_is_an_error() -> None:
    for cut in (b"5\r\nab", b"5\r\nabcde\r\n", b"5\r\nabcde\r\n0\r\n"):
        sock = ScriptedSocket(b"HTTP/1.1 200 X\r\nTransfer-Encoding: chunked\r\n\r\n", cut,
                              closes=True)
        with pytest.raises(ConnectionError, match="inside a chunked body"):
            _read_reply(sock)  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "ok"), [(199, False), (200, True), (299, True),
                                            (300, False)])
def test_only_a_2xx_answer_is_a_success(status: int, ok: bool) -> None:
    with api([reply(status, b"{}")]) as (ext_api, _):
        if ok:
            assert ext_api.next_event() == b"{}"
        else:
            with pytest.raises(ApiError):
                ext_api.next_event()


def test_a_post_without_a_body_says_its_length_is_0() -> None:
    with api([reply(200), reply(200)]) as (ext_api, stub):
        ext_api.client.request("POST", "/p")
        ext_api.client.request("GET", "/g")
    [(_, posted, _), (_, got, _)] = stub.requests
    assert posted["content-length"] == "0"
    assert "content-length" not in got


def test_an_address_without_a_host_is_on_the_loopback() -> None:
    assert LambdaApiClient(":9001")._address == ("127.0.0.1", 9001)
    assert LambdaApiClient("sandbox:9001")._address == ("sandbox", 9001)


def test_a_connection_that_fails_leaves_no_socket_open() -> None:
    client = LambdaApiClient("127.0.0.1:1")  # nothing listens on port 1

    def fail() -> None:
        with pytest.raises(ConnectionRefusedError):
            client.request("GET", NEXT_PATH)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        fail()
        gc.collect()  # a socket left open would be finalized here, with a ResourceWarning
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
    assert client.fileno() == -1


def test_requests_go_out_without_nagle_delay() -> None:
    with api([reply(200, b"{}")]) as (ext_api, _):
        ext_api.next_event()
        with socket.socket(fileno=os.dup(ext_api.connection_fd())) as sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.parametrize("garbage", [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"\r\n\r\nHTTP/1.1 200 X\r\n"])
def test_a_peer_that_answers_register_without_a_status_is_refused_in_one_line(
        garbage: bytes, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    # Not HTTP at AWS_LAMBDA_RUNTIME_API (or an answer that begins with its blank line): the
    # extension says it cannot register and exits 2, as for any other refusal; no traceback.
    stub = ScriptedApi([[garbage]])
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", stub.address)
    monkeypatch.setattr("sys.argv", ["ext", "splunk-hec-extension"])
    try:
        assert entry.main() == entry.EXIT_NO_RUNTIME_API
    finally:
        stub.close()
    assert "cannot register with the Extensions API" in capfd.readouterr().err


def test_an_answer_that_begins_with_its_blank_line_is_refused_at_once() -> None:
    # Not waited on for a head that never comes: the peer keeps the connection open.
    sock = ScriptedSocket(b"\r\n\r\nHTTP/1.1 200 X\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ValueError):
        _read_reply(sock)  # type: ignore[arg-type]
    assert sock.asked == [65_536]


@pytest.mark.parametrize("size", [b"-1", b"-5"])
def test_a_negative_chunk_size_is_refused(size: bytes) -> None:
    sock = ScriptedSocket(b"HTTP/1.1 200 X\r\nTransfer-Encoding: chunked\r\n\r\n",
                          size + b"\r\nabcde\r\n0\r\n\r\n")
    with pytest.raises(ValueError, match="negative chunk size"):
        _read_reply(sock)  # type: ignore[arg-type]


def test_importing_the_client_loads_nothing_but_the_socket_module() -> None:
    # It is imported before register, on the cold start; its type-only imports stay unmade.
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules)\n"
             "import ext.main.extensions_api\n"
             "print(' '.join(sorted(set(sys.modules) - before)))")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-S", "-c", probe, root], capture_output=True,
                         text=True, check=True).stdout.split()
    assert set(out) <= {"__future__", "_socket", "ext", "ext.main", "ext.main.extensions_api"}, out
