"""Each answer of the listener's HTTP handling, one request at a time, with the loop run by the
test itself (a Listener on 127.0.0.1, no thread): 200 spooled, 400 malformed, 413 too large,
431 head too large, 501 unsupported coding, 503 spool or request memory refused, 408 too slow."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext import config
from ext.listener import http_server
from ext.listener.http_intake import MAX_HEAD_BYTES, MAX_HEADERS, MAX_LINE_BYTES
from ext.listener.process import Listener
from ext.spool import SpoolReader

EVENT = {"time": "2026-10-08T07:30:28.235Z", "type": "function", "record": "line"}
BATCH = json.dumps([EVENT]).encode()
CHUNKED = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"


def post(payload: bytes, extra: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(payload) + payload


def chunked(*chunks: bytes) -> bytes:
    return CHUNKED + b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"


class Loop:
    """A Listener on a loopback port whose HTTP loop runs only inside `talk`."""

    def __init__(self, tmp: Path, **limits: int) -> None:
        self.spool = tmp / "spool"
        cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t",
                           "SPLUNK_SPOOL_DIR": str(self.spool)})
        self.server = socket.create_server(("127.0.0.1", 0))
        self.listener = Listener(cfg, self.server, -1)
        self.http = self.listener.http
        for name, value in limits.items():
            setattr(self.http, name, value)
        self.http.listen()
        self.socks: list[socket.socket] = []
        self.kinds: list[str] = []  # every refusal the server reported, in order
        report = self.http.on_refused

        def on_refused(kind: str) -> None:
            self.kinds.append(kind)
            report(kind)

        self.http.on_refused = on_refused

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.listener.close()
        self.server.close()

    def connect(self) -> socket.socket:
        sock = socket.create_connection(self.server.getsockname(), timeout=5)
        sock.setblocking(False)
        self.socks.append(sock)
        return sock

    def talk(self, raw: bytes, sock: socket.socket | None = None, answers: int = 1) -> bytes:
        """Sends `raw` while running the loop; what came back once `answers` final response
        heads are in, or the connection ended (answers=0: a few rounds after the last byte)."""
        sock = sock or self.connect()
        pending = memoryview(raw)
        got = b""
        quiet = 0
        for _ in range(2_000):
            if not pending and not answers:
                quiet += 1
                if quiet > 20:
                    return got
            if pending:
                try:
                    pending = pending[sock.send(pending):]
                except BlockingIOError:
                    pass
                except OSError:  # the listener closed while we were still sending
                    pending = pending[:0]
            self.http.poll(0.001)
            try:
                chunk = sock.recv(65_536)
            except BlockingIOError:
                continue
            except OSError:
                return got
            if not chunk:
                return got
            got += chunk
            if answers and final_heads(got) >= answers:
                return got
        raise AssertionError(f"no answer; got {got!r}")

    def ends(self, sock: socket.socket) -> bool:
        """True once the listener has closed its side of `sock` (after what it already sent)."""
        for _ in range(500):
            self.http.poll(0.001)
            try:
                if not sock.recv(65_536):
                    return True
            except BlockingIOError:
                continue
            except OSError:
                return True
        return False

    def spooled(self) -> list[object]:
        with SpoolReader(self.spool) as reader:
            return [json.loads(bytes(r.payload)) for r in reader.read(1_000, 2**30)]


def final_heads(data: bytes) -> int:
    return sum(1 for head in data.split(b"\r\n\r\n")[:-1]
               if head.startswith(b"HTTP/1.1 ") and not head.startswith(b"HTTP/1.1 100 "))


def status(answer: bytes) -> int:
    heads = [h for h in answer.split(b"\r\n\r\n") if h.startswith(b"HTTP/1.1 ")]
    return int(heads[-1].split(b" ", 2)[1]) if heads else 0


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    running = Loop(tmp_path)
    yield running
    running.close()


def assert_refused(loop: Loop, raw: bytes, code: int, kind: str) -> None:
    sock = loop.connect()
    answer = loop.talk(raw, sock)
    assert status(answer) == code
    assert b"\r\nConnection: close\r\n" in answer and answer.endswith(b"Content-Length: 0\r\n\r\n")
    assert loop.ends(sock)  # an error answer ends the connection
    assert loop.listener.refused == {kind: 1}
    assert loop.spooled() == []


# --- 400: the request breaks HTTP/1.1's grammar ----------------------------------------------

@pytest.mark.parametrize("line", [
    b"GARBAGE", b"POST /", b"POST / HTTP/2.0", b"POST / FTP/1.1", b"P0ST / HTTP/1.1",
    b"POST  / HTTP/1.1", b"POST / HTTP/1.1 x", b"",
])
def test_a_malformed_request_line_gets_400(loop: Loop, line: bytes) -> None:
    assert_refused(loop, line + b"\r\nContent-Length: 2\r\n\r\n[]", 400, "malformed")
    assert loop.listener.malformed == 1


def test_a_request_that_starts_with_a_blank_line_gets_400_at_once(loop: Loop) -> None:
    assert_refused(loop, b"\r\n\r\n" + post(BATCH), 400, "malformed")


@pytest.mark.parametrize("field", [
    b"no colon", b": empty name", b" Content-Length: 2", b"Content-Length : 2",
    b"Bad Name: x", b"Bad\x00Name: x", b"Caf\xc3\xa9: x",
])
def test_a_malformed_header_field_gets_400(loop: Loop, field: bytes) -> None:
    assert_refused(loop, b"POST / HTTP/1.1\r\n" + field + b"\r\n\r\n", 400, "malformed")


@pytest.mark.parametrize("head", [
    b"POST / HTTP/1.1\nContent-Length: 2\n\n[]",  # LF line ends: refused at once, not at 10 s
    b"POST / HTTP/1.1\r\nX: a\nContent-Length: 2\r\n\r\n[]",  # a field hidden in a value
    b"POST / HTTP/1.1\r\nX: a\rContent-Length: 2\r\n\r\n[]",
    b"POST / HTTP/1.1\nContent-Length: 2\r\n\r\n[]",
])
def test_a_bare_cr_or_lf_in_the_head_gets_400(loop: Loop, head: bytes) -> None:
    assert_refused(loop, head, 400, "malformed")


@pytest.mark.parametrize("value", [b"ten", b"-1", b"+2", b"2, 2", b"", b"0x2", b"\xd9\xa2"])
def test_a_malformed_content_length_gets_400(loop: Loop, value: bytes) -> None:
    assert_refused(loop, b"POST / HTTP/1.1\r\nContent-Length: " + value + b"\r\n\r\n[]",
                   400, "malformed")


@pytest.mark.parametrize("fields", [
    b"Content-Length: 2\r\ncontent-length: 2",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked",
])
def test_an_ambiguous_body_length_gets_400(loop: Loop, fields: bytes) -> None:
    assert_refused(loop, b"POST / HTTP/1.1\r\n" + fields + b"\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
                   400, "malformed")


@pytest.mark.parametrize("body", [
    b"zz\r\n",  # not hex
    b"\r\n",  # no size at all
    b"2 2\r\n[]\r\n0\r\n\r\n",  # two sizes
    b"-2\r\n[]\r\n0\r\n\r\n",
    b"2\r\n[]xx\r\n0\r\n\r\n",  # data longer than its size
    b"1" * (MAX_LINE_BYTES + 2),  # a chunk-size line that never ends
    b"2\r\n[]\r\n0\r\nX: " + b"y" * MAX_LINE_BYTES + b"\r\n\r\n",  # a trailer line too long
])
def test_a_malformed_chunked_body_gets_400(loop: Loop, body: bytes) -> None:
    assert_refused(loop, CHUNKED + body, 400, "malformed")


def test_an_endless_chunk_size_line_is_refused_within_its_bound(loop: Loop) -> None:
    sock = loop.connect()
    answer = loop.talk(CHUNKED + b"1" * 3 * MAX_LINE_BYTES, sock)
    assert status(answer) == 400
    [conn] = loop.http._conns.values()
    assert conn.closing and not conn.buf  # nothing of it is kept


@pytest.mark.parametrize("body", [b"", b"hello", b"{}", b'{"time":"t"}', b'"text"', b"12",
                                  b"null", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_array_gets_400_and_the_connection_stays(
        loop: Loop, body: bytes) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(body), sock)) == 400
    assert loop.listener.refused == {"malformed": 1}
    assert loop.listener.malformed == 1
    # Framing was fine: the connection still serves the next request, and the refusal is
    # spooled ahead of it.
    assert status(loop.talk(post(BATCH), sock)) == 200
    assert loop.spooled() == [
        [{"time": loop.spooled()[0][0]["time"],  # type: ignore[index]
          "type": "splunk-extension.intake-refused", "record": {"requests": {"malformed": 1}}}],
        [EVENT],
    ]


# --- 413 / 431: too large ---------------------------------------------------------------------

@pytest.mark.parametrize("length", [
    b"%d" % (4 * 2**20 + 1), b"99999999999", b"1" + b"0" * 12,
    pytest.param(b"9" * 40, id="40-digits"),
    # Past what int() converts: still 413, never an internal error.
    pytest.param(b"9" * 5_000, id="5000-digits"),
])
def test_a_content_length_over_the_bound_gets_413(loop: Loop, length: bytes) -> None:
    assert_refused(loop, b"POST / HTTP/1.1\r\nContent-Length: " + length + b"\r\n\r\n",
                   413, "too_large")


def test_a_body_of_exactly_the_bound_is_taken(tmp_path: Path) -> None:
    loop = Loop(tmp_path, max_body=len(BATCH))
    try:
        assert status(loop.talk(post(BATCH))) == 200
        assert status(loop.talk(post(BATCH + b" "))) == 413
        assert status(loop.talk(chunked(BATCH[:5], BATCH[5:]))) == 200
        assert status(loop.talk(chunked(BATCH[:5], BATCH[5:] + b" "))) == 413
        assert [batch for batch in loop.spooled() if batch == [EVENT]] == [[EVENT], [EVENT]]
    finally:
        loop.close()


@pytest.mark.parametrize("size", [b"1" + b"0" * 8, b"f" * 9,
                                  pytest.param(b"F" * 300, id="300-hex-digits")])
def test_a_chunk_size_over_the_bound_gets_413(loop: Loop, size: bytes) -> None:
    assert_refused(loop, CHUNKED + size + b"\r\n", 413, "too_large")


def test_a_chunked_body_over_the_bound_gets_413(tmp_path: Path) -> None:
    loop = Loop(tmp_path, max_body=100)
    try:
        assert_refused(loop, CHUNKED + b"40\r\n" + b" " * 64 + b"\r\n40\r\n", 413, "too_large")
    finally:
        loop.close()


def test_leading_zeros_do_not_make_a_size_too_large(loop: Loop) -> None:
    sock = loop.connect()
    raw = b"POST / HTTP/1.1\r\nContent-Length: 0000000000000%d\r\n\r\n" % len(BATCH) + BATCH
    assert status(loop.talk(raw, sock)) == 200
    raw = CHUNKED + b"0000000000%x\r\n" % len(BATCH) + BATCH + b"\r\n00000000000\r\n\r\n"
    assert status(loop.talk(raw, sock)) == 200
    assert loop.spooled() == [[EVENT], [EVENT]]


def test_a_head_over_its_bound_gets_431(loop: Loop) -> None:
    assert_refused(loop, b"POST / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES, 431, "malformed")


def test_a_head_of_exactly_its_bound_is_read(loop: Loop) -> None:
    start = b"POST / HTTP/1.1\r\nContent-Length: %d\r\nX: " % len(BATCH)
    head = start + b"a" * (MAX_HEAD_BYTES - len(start))
    assert len(head) == MAX_HEAD_BYTES
    assert status(loop.talk(head + b"\r\n\r\n" + BATCH)) == 200


@pytest.mark.parametrize(("size", "code"), [(16_384, 200), (16_385, 431)])
def test_the_head_bound_is_16_kib(loop: Loop, size: int, code: int) -> None:
    start = b"POST / HTTP/1.1\r\nContent-Length: %d\r\nX: " % len(BATCH)
    assert status(loop.talk(start + b"a" * (size - len(start)) + b"\r\n\r\n" + BATCH)) == code


@pytest.mark.parametrize(("size", "code"), [(1_024, 200), (1_025, 400)])
def test_the_chunk_line_bound_is_1_kib(loop: Loop, size: int, code: int) -> None:
    size_line = b"%x;" % len(BATCH)
    size_line += b"e" * (size - len(size_line))
    trailer = b"T: " + b"t" * (size - 3)
    for raw in (CHUNKED + size_line + b"\r\n" + BATCH + b"\r\n0\r\n\r\n",
                CHUNKED + b"%x\r\n" % len(BATCH) + BATCH + b"\r\n0\r\n" + trailer + b"\r\n\r\n"):
        assert status(loop.talk(raw)) == code


@pytest.mark.parametrize(("count", "code"), [(64, 200), (65, 431)])
def test_the_header_field_bound_is_64(loop: Loop, count: int, code: int) -> None:
    fields = b"".join(b"X-%d: v\r\n" % n for n in range(count - 1))  # and Content-Length
    assert status(loop.talk(post(BATCH, fields))) == code


def test_far_too_many_header_fields_get_431(loop: Loop) -> None:
    fields = b"".join(b"X-%d: v\r\n" % n for n in range(200))
    assert_refused(loop, post(BATCH, fields), 431, "malformed")


def test_too_many_header_fields_get_431(loop: Loop) -> None:
    fields = b"".join(b"X-%d: v\r\n" % n for n in range(MAX_HEADERS))
    assert_refused(loop, post(BATCH, fields), 431, "malformed")
    # Content-Length makes the 64th field: the bound is on fields, whichever they are.
    assert status(loop.talk(post(BATCH, fields[: -len(b"X-63: v\r\n")]))) == 200


# --- 501, 503, 408 ------------------------------------------------------------------------------

@pytest.mark.parametrize("coding", [b"gzip", b"gzip, chunked", b"identity", b"br", b"aes128gcm"])
def test_a_transfer_coding_other_than_chunked_gets_501(loop: Loop, coding: bytes) -> None:
    assert_refused(loop, b"POST / HTTP/1.1\r\nTransfer-Encoding: " + coding + b"\r\n\r\n",
                   501, "malformed")


def test_a_spool_that_refuses_the_batch_gets_503_never_200(
        loop: Loop, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(payload: object, count: int, read_now: bool = True) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop.listener.writer, "append", full)
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 503
    assert loop.listener.refused == {"spool_failed": 1}
    monkeypatch.undo()
    assert status(loop.talk(post(BATCH), sock)) == 200  # Lambda's retry, on the same connection
    # The refusal's notice follows the batch: tried first, a still-full spool would refuse it.
    assert [batch[0]["type"] for batch in loop.spooled()] == [  # type: ignore[index]
        "function", "splunk-extension.intake-refused"]


def test_a_batch_larger_than_the_spool_gets_503(loop: Loop) -> None:
    loop.listener.writer.max_bytes = 1_000
    huge = json.dumps([{**EVENT, "record": "x" * 2_000}]).encode()
    assert status(loop.talk(post(huge))) == 503
    assert loop.spooled() == []


def test_a_chunked_body_past_the_shared_memory_gets_503(tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=100, max_body=1_000)
    try:
        assert_refused(loop, CHUNKED + b"40\r\n" + b" " * 64 + b"\r\n40\r\n" + b" " * 64,
                       503, "busy")
        assert loop.http._reserved == 0  # what the refused request held is given back
        assert status(loop.talk(chunked(BATCH))) == 200
    finally:
        loop.close()


def test_a_content_length_past_the_shared_memory_gets_503(tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=100, max_body=1_000)
    try:
        assert_refused(loop, post(b" " * 101), 503, "busy")
        assert status(loop.talk(post(b"[" + b" " * 98 + b"]"))) == 200  # exactly the budget
    finally:
        loop.close()


def test_a_request_too_slow_gets_408(loop: Loop) -> None:
    sock = loop.connect()
    loop.talk(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n", sock, answers=0)
    [conn] = loop.http._conns.values()
    now = time.monotonic()
    loop.http._tick(now)
    assert conn.in_request and not conn.out  # in time: nothing answered
    later = now + 10.1  # the head's deadline is 10 s
    loop.http._last_tick = later - http_server.TICK_S  # the loop ran all along: no freeze
    loop.http._tick(later)
    assert status(loop.talk(b"", sock)) == 408
    assert loop.listener.refused == {"timed_out": 1}


# --- what a good request gets -----------------------------------------------------------------

def test_a_batch_gets_200_once_spooled_and_the_connection_is_kept(loop: Loop) -> None:
    sock = loop.connect()
    answer = loop.talk(post(BATCH), sock)
    assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert loop.spooled() == [[EVENT]]
    assert status(loop.talk(chunked(BATCH[:3], BATCH[3:]), sock)) == 200
    assert loop.spooled() == [[EVENT], [EVENT]]
    assert loop.listener.refused == {}


def test_an_empty_array_gets_200_and_nothing_is_spooled(loop: Loop) -> None:
    assert status(loop.talk(post(b"[]"))) == 200
    assert loop.spooled() == []


@pytest.mark.parametrize("framing", [b"Content-Length: %d" % len(BATCH),
                                     b"Transfer-Encoding: chunked"])
@pytest.mark.parametrize("expect", [b"", b"Expect: x-other\r\n", b"Expect: 0\r\n"])
def test_no_100_continue_unless_asked(loop: Loop, expect: bytes, framing: bytes) -> None:
    sock = loop.connect()
    head = b"POST / HTTP/1.1\r\n" + expect + framing + b"\r\n\r\n"
    assert loop.talk(head, sock, answers=0) == b""  # the head alone: nothing said yet
    body = chunked(BATCH)[len(CHUNKED):] if framing.endswith(b"chunked") else BATCH
    assert loop.talk(body, sock) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("framing", [b"Content-Length: %d" % len(BATCH),
                                     b"Transfer-Encoding: chunked"])
def test_expect_continue_gets_100_before_the_body(loop: Loop, framing: bytes) -> None:
    sock = loop.connect()
    head = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n" + framing + b"\r\n\r\n"
    assert loop.talk(head, sock, answers=0) == b"HTTP/1.1 100 Continue\r\n\r\n"
    body = chunked(BATCH)[len(CHUNKED):] if framing.endswith(b"chunked") else BATCH
    assert loop.talk(body, sock) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert loop.spooled() == [[EVENT]]


def test_http_1_0_without_keep_alive_is_answered_then_closed(loop: Loop) -> None:
    sock = loop.connect()
    raw = b"POST / HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(BATCH) + BATCH
    assert status(loop.talk(raw, sock)) == 200
    assert loop.ends(sock)
    assert loop.spooled() == [[EVENT]]


def test_connection_close_is_answered_then_closed(loop: Loop) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(BATCH, b"Connection: close\r\n"), sock)) == 200
    assert loop.ends(sock)
