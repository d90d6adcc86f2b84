"""The listener's HTTP server loop (ext.listener.http_server) in-process: its limits (connections,
shared body memory, timeouts), accept() errors, pipelining, slow readers and peers that left.
The loop runs only when a test calls it; timers run with the clock a test hands them."""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.listener import http_server
from ext.listener.http_server import HttpServer
from tests.unit.test_listener_http_answers import BATCH, EVENT, Loop, chunked, post, status

# The limits as documented (ext/listener/http_server.py), written out: a changed limit fails a test.
IDLE_S, HEAD_S, STALL_S, REQUEST_S, LINGER_S = 120.0, 10.0, 10.0, 60.0, 1.0
FREEZE_S = 2.0  # a loop gap this much over its tick is a freeze


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    running = Loop(tmp_path)
    yield running
    running.close()


def tick(http: HttpServer, now: float) -> None:
    """Runs the timers at `now` as a loop that never stopped would (no freeze seen)."""
    http._last_tick = now - http_server.TICK_S
    http._tick(now)


def only_conn(http: HttpServer) -> http_server._Conn:
    [conn] = http._conns.values()
    return conn


# --- connections past the cap, accept() errors ------------------------------------------------

def test_a_connection_past_the_cap_evicts_the_least_recently_active(tmp_path: Path) -> None:
    loop = Loop(tmp_path, max_connections=2)
    try:
        first, second = loop.connect(), loop.connect()
        loop.talk(b"POST / HTTP/1.1\r\n", second, answers=0)  # a request in progress
        assert status(loop.talk(post(BATCH), first)) == 200  # first is the more recent
        third = loop.connect()
        loop.talk(b"", third, answers=0)
        assert loop.ends(second)
        assert (loop.http.evicted, loop.kinds) == (1, ["evicted"])
        assert status(loop.talk(post(BATCH), third)) == 200
        loop.talk(b"", loop.connect(), answers=0)  # evicts first, idle: no request lost
        assert loop.ends(first)
        assert (loop.http.evicted, loop.kinds) == (2, ["evicted"])
        assert len(loop.http._conns) == 2
    finally:
        loop.close()


class FlakyServer:
    """The listening socket, with accept() failing as told first."""

    def __init__(self, real: socket.socket, *errors: int) -> None:
        self.real = real
        self.errors = list(errors)

    def accept(self) -> tuple[socket.socket, object]:
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, errno.errorcode[code])
        return self.real.accept()


def accepting(http: HttpServer) -> bool:
    """Whether the server accepts connections (a function: mypy would narrow the attribute)."""
    return http._accepting


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
def test_an_accept_error_with_no_connection_pauses_accepting_then_resumes(
        loop: Loop, code: int) -> None:
    loop.http.server = FlakyServer(loop.server, code)  # type: ignore[assignment]
    sock = loop.connect()
    loop.talk(b"", sock, answers=0)
    assert (loop.http.accept_errors, loop.http._accepting, loop.http._conns) == (1, False, {})
    tick(loop.http, loop.http._accept_paused_until - 0.01)
    assert not accepting(loop.http)
    tick(loop.http, loop.http._accept_paused_until + 0.05)
    assert accepting(loop.http)
    assert status(loop.talk(post(BATCH), sock)) == 200  # it waited in the backlog


def test_an_accept_error_evicts_the_least_recently_active_connection(loop: Loop) -> None:
    idle = loop.connect()
    assert status(loop.talk(post(BATCH), idle)) == 200
    loop.http.server = FlakyServer(loop.server, errno.EMFILE)  # type: ignore[assignment]
    sock = loop.connect()
    for _ in range(3):
        loop.http.poll(0.01)
    assert loop.http._accepting  # room was made: no pause
    assert status(loop.talk(post(BATCH), sock)) == 200
    assert loop.ends(idle)
    assert (loop.http.accept_errors, loop.http.evicted, loop.http._accepting) == (1, 1, True)


def test_an_aborted_connection_in_the_backlog_is_skipped(loop: Loop) -> None:
    loop.http.server = FlakyServer(loop.server, errno.ECONNABORTED)  # type: ignore[assignment]
    assert status(loop.talk(post(BATCH))) == 200
    assert (loop.http.accept_errors, loop.http._accepting) == (0, True)


# --- the shared body memory ---------------------------------------------------------------------

def test_a_body_waits_for_the_shared_memory_and_bodies_are_served_in_order(
        tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=2 * len(BATCH) - 1)
    try:
        first, second, third = loop.connect(), loop.connect(), loop.connect()
        loop.talk(post(BATCH)[:-1], first, answers=0)  # holds its body's size, one byte short
        loop.talk(post(BATCH), second, answers=0)  # does not fit beside it: waits
        loop.talk(post(b"[]"), third, answers=0)  # would fit, but waits behind the second
        assert loop.http._reserved == len(BATCH)
        assert len(loop.http._waiting) == 2
        assert status(loop.talk(BATCH[-1:], first)) == 200
        assert status(loop.talk(b"", second)) == 200 and status(loop.talk(b"", third)) == 200
        assert (loop.http._reserved, len(loop.http._waiting)) == (0, 0)
        assert loop.spooled() == [[EVENT], [EVENT]]
        assert loop.http.internal_errors == 0
    finally:
        loop.close()


def test_a_waiting_body_that_leaves_frees_its_place(tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=len(BATCH))
    try:
        first, second = loop.connect(), loop.connect()
        loop.talk(post(BATCH)[:-1], first, answers=0)
        loop.talk(post(BATCH), second, answers=0)
        second.close()
        loop.http.poll(0.01)
        assert status(loop.talk(BATCH[-1:], first)) == 200
        assert (loop.http._reserved, list(loop.http._waiting)) == (0, [])
    finally:
        loop.close()


def test_a_refused_request_gives_its_memory_back(tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=len(BATCH))
    try:
        sock = loop.connect()
        raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n" + BATCH[:8]
        loop.talk(raw + b"\r\nzz\r\n", sock)
        assert loop.http._reserved == 0
        assert status(loop.talk(post(BATCH))) == 200
    finally:
        loop.close()


# --- timers ---------------------------------------------------------------------------------------

def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(loop: Loop) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200
    conn = only_conn(loop.http)
    tick(loop.http, conn.active + IDLE_S - 0.1)
    assert loop.http._conns
    tick(loop.http, conn.active + IDLE_S + 0.1)
    assert not loop.http._conns and loop.ends(sock)
    assert loop.listener.refused == {}


def test_a_request_that_stalls_gets_408(loop: Loop) -> None:
    sock = loop.connect()
    loop.talk(post(BATCH)[:-5], sock, answers=0)
    conn = only_conn(loop.http)
    tick(loop.http, conn.active + STALL_S - 0.1)
    assert not conn.out and not conn.closing
    tick(loop.http, conn.active + STALL_S + 0.1)
    assert status(loop.talk(b"", sock)) == 408
    assert loop.listener.refused == {"timed_out": 1}


@pytest.mark.parametrize(("sent", "limit"), [
    (b"POST / HTTP/1.1\r\n", HEAD_S),
    (post(BATCH)[:-5], REQUEST_S),
])
def test_a_request_that_trickles_gets_408_at_its_deadline(
        loop: Loop, sent: bytes, limit: float) -> None:
    sock = loop.connect()
    loop.talk(sent, sock, answers=0)
    conn = only_conn(loop.http)
    conn.active = conn.started + limit  # a byte now and then: never quiet for long
    tick(loop.http, conn.started + limit - 0.1)
    assert not conn.out and not conn.closing
    tick(loop.http, conn.started + limit + 0.1)
    assert status(loop.talk(b"", sock)) == 408


def test_a_body_waiting_for_memory_is_not_stalled_but_has_its_deadline(tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=len(BATCH))
    try:
        first, second = loop.connect(), loop.connect()
        loop.talk(post(BATCH)[:-1], first, answers=0)
        loop.talk(post(BATCH), second, answers=0)
        conn = loop.http._waiting[0]  # the second, not read while it waits
        sending = next(c for c in loop.http._conns.values() if c is not conn)
        now = conn.active + STALL_S + 1
        sending.active = sending.started = now  # the first one's bytes keep coming
        tick(loop.http, now)
        assert not conn.out and loop.kinds == []
        now = conn.started + REQUEST_S + 0.1
        sending.active = sending.started = now
        tick(loop.http, now)
        assert status(loop.talk(b"", second)) == 408
        assert loop.kinds == ["timed_out"] and not sending.out
    finally:
        loop.close()


def test_an_error_answer_lingers_then_the_connection_closes(loop: Loop) -> None:
    sock = loop.connect()
    assert status(loop.talk(b"GARBAGE\r\n\r\n", sock)) == 400
    sock.send(b"more bytes the peer sent before it read the answer")
    loop.http.poll(0.01)
    conn = only_conn(loop.http)
    assert conn.closing
    tick(loop.http, conn.active + LINGER_S - 0.1)
    assert loop.http._conns
    tick(loop.http, conn.active + LINGER_S + 0.1)
    assert not loop.http._conns


def test_the_loop_ticks_every_quarter_second_only_while_a_timer_can_run_out(loop: Loop) -> None:
    idle_tick = 2.0  # with every connection between requests
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200
    assert loop.http.wait_s() == idle_tick  # a keep-alive connection between requests
    loop.talk(b"POST / HTTP/1.1\r\n", sock, answers=0)
    assert loop.http.wait_s() == http_server.TICK_S == 0.25  # its head's 10 s run
    conn = only_conn(loop.http)
    conn.started = 0.0
    conn.out += b"HTTP/1.1 200 OK\r\n"  # an answer the peer has not read yet
    assert loop.http.wait_s() == 0.25
    conn.out.clear()
    conn.closing = True  # an error answered: closed after LINGER_S
    assert loop.http.wait_s() == 0.25
    conn.closing = False
    assert loop.http.wait_s() == idle_tick
    loop.http._set_accepting(False)  # accept() paused after EMFILE: resumed by a tick
    assert loop.http.wait_s() == 0.25
    loop.http._set_accepting(True)
    loop.http._waiting.append(conn)  # a body waiting for the shared budget
    assert loop.http.wait_s() == 0.25


class NoEvents:
    """Stands in for the epoll: a poll that returns nothing (the test moves the clock)."""

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return []


@pytest.mark.parametrize(("late", "frozen"), [(FREEZE_S - 0.1, False), (FREEZE_S + 0.1, True)])
def test_a_long_idle_wait_is_no_freeze_but_a_gap_past_it_is(
        loop: Loop, monkeypatch: pytest.MonkeyPatch, late: float, frozen: bool) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200
    conn = only_conn(loop.http)
    start = loop.http._last_tick
    conn.active = start - 5.0
    now = [start]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(loop.http, "_epoll", NoEvents())
    loop.http.poll(0.0)  # a round too early for the timers
    now[0] = start + 2.0 + late  # back from an idle wait of 2 s, `late` past its end
    assert loop.http.poll(2.0)  # the timers ran
    assert conn.active == pytest.approx(start - 5.0 + (late if frozen else 0.0))  # past the wait
    before = conn.active
    now[0] += 0.25 + FREEZE_S + 0.1  # then a quarter-second wait, and a freeze past it
    assert loop.http.poll(0.25)
    assert conn.active == pytest.approx(min(now[0], before + FREEZE_S + 0.1))


@pytest.mark.parametrize(("gap", "frozen"), [(FREEZE_S - 0.1, False), (FREEZE_S + 0.1, True)])
def test_a_gap_in_the_loop_past_two_seconds_is_a_freeze(
        loop: Loop, gap: float, frozen: bool) -> None:
    sock = loop.connect()
    loop.talk(b"POST / HTTP/1.1\r\n", sock, answers=0)
    conn = only_conn(loop.http)
    conn.active = conn.started = loop.http._last_tick - 5.0
    loop.http._tick(loop.http._last_tick + 0.25 + gap)  # the loop ticks every 0.25 s
    assert conn.started == pytest.approx(loop.http._last_tick - 5.0 - 0.25 - gap
                                         + (gap if frozen else 0.0))


def test_a_freeze_moves_every_clock_by_its_length(loop: Loop) -> None:
    sock = loop.connect()
    loop.talk(b"POST / HTTP/1.1\r\n", sock, answers=0)
    conn = only_conn(loop.http)
    started, active = conn.started, conn.active
    frozen = 100.0
    later = loop.http._last_tick + http_server.TICK_S + frozen
    loop.http._tick(later)
    assert conn.started == pytest.approx(started + frozen)
    assert conn.active == pytest.approx(min(later, active + frozen))
    assert not conn.out  # the head's 10 s did not run out while frozen
    tick(loop.http, conn.started + HEAD_S + 0.1)
    assert status(loop.talk(b"", sock)) == 408


# --- what arrives with or after a request ---------------------------------------------------------

def test_pipelined_requests_are_answered_in_order(loop: Loop) -> None:
    sock = loop.connect()
    two = post(BATCH) + post(b"{}") + post(BATCH)
    answers = loop.talk(two, sock, answers=3)
    assert [int(h.split(b" ")[1]) for h in answers.split(b"\r\n\r\n")[:3]] == [200, 400, 200]
    assert [batch for batch in loop.spooled() if batch == [EVENT]] == [[EVENT], [EVENT]]


def test_a_request_whose_peer_left_is_not_spooled(loop: Loop) -> None:
    sock = loop.connect()
    sock.sendall(post(BATCH))
    sock.close()
    loop.talk(b"", loop.connect(), answers=0)
    assert loop.http.abandoned == 1 and loop.spooled() == []


def test_a_peer_that_leaves_mid_request_is_counted_as_abandoned(loop: Loop) -> None:
    sock = loop.connect()
    loop.talk(post(BATCH)[:-3], sock, answers=0)
    sock.close()
    loop.talk(b"", loop.connect(), answers=0)
    assert loop.http.abandoned == 1 and len(loop.http._conns) == 1
    assert loop.http._reserved == 0


def test_a_peer_that_leaves_between_requests_is_not_abandoned(loop: Loop) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200
    sock.close()
    loop.talk(b"", loop.connect(), answers=0)
    assert loop.http.abandoned == 0 and len(loop.http._conns) == 1


def test_a_body_sent_with_its_head_gets_no_100_continue(loop: Loop) -> None:
    raw = post(BATCH, b"Expect: 100-continue\r\n")
    assert loop.talk(raw) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_an_unexpected_error_costs_one_connection(loop: Loop, caplog: pytest.LogCaptureFixture
                                                  ) -> None:
    def broken(body: bytearray) -> bytes:
        raise RuntimeError("a bug")

    real = loop.http.handle
    loop.http.handle = broken
    for count in (1, 2, 3):
        sock = loop.connect()
        assert loop.talk(post(BATCH), sock) == b"" and loop.ends(sock)
        assert loop.http.internal_errors == count
    assert [r.getMessage() for r in caplog.records if r.name == "ext.listener.http_server"] == [
        "listener error 1; the connection is closed", "listener error 2; the connection is closed"]
    loop.http.handle = real
    assert status(loop.talk(post(BATCH))) == 200


def test_an_answer_the_peer_does_not_read_waits_and_holds_the_next_request(
        loop: Loop) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % 2**23 + b"x" * 2**23
    answers = [big]
    real = loop.http.handle

    def handle(body: bytearray) -> bytes:
        return answers.pop() if answers else real(body)

    loop.http.handle = handle
    sock = loop.connect()
    sock.sendall(post(BATCH) + post(BATCH))  # the second waits for the first answer to go
    for _ in range(20):
        loop.http.poll(0.001)
    conn = only_conn(loop.http)
    assert conn.out and conn.mask == http_server._WRITABLE
    assert len(loop.spooled()) == 0  # the big answer came from the stand-in handler
    got = b""
    for _ in range(5_000):
        loop.http.poll(0.001)
        with contextlib.suppress(BlockingIOError):
            got += sock.recv(2**20)
        if got.endswith(b"Content-Length: 0\r\n\r\n"):
            break
    assert got.startswith(big) and status(got[len(big):]) == 200
    assert loop.spooled() == [[EVENT]]
    tick(loop.http, conn.active + STALL_S + 1)
    assert loop.http._conns  # answered and idle: not stalled
    assert status(loop.talk(post(BATCH), sock)) == 200  # and reading again


def test_an_answer_the_peer_never_reads_is_dropped_after_the_stall_timeout(loop: Loop) -> None:
    big = b"x" * 2**23
    loop.http.handle = lambda body: big
    sock = loop.connect()
    sock.sendall(post(BATCH))
    for _ in range(20):
        loop.http.poll(0.001)
    conn = only_conn(loop.http)
    assert conn.out
    tick(loop.http, conn.active + STALL_S - 0.1)
    assert loop.http._conns
    tick(loop.http, conn.active + STALL_S + 0.1)
    assert not loop.http._conns


def test_a_client_that_pipelines_and_never_reads_is_not_read_further_until_it_drains(
        loop: Loop) -> None:
    count = 2_000
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    handled = 0
    real = loop.http.handle

    def handle(body: bytearray) -> bytes:
        nonlocal handled
        handled += 1
        return real(body)

    loop.http.handle = handle
    # Small buffers both ways (the accepted socket inherits the listening socket's): a few
    # hundred answers fill the way back to the client, a few KiB of requests the way there.
    small = 4_096
    client = socket.socket()
    loop.socks.append(client)
    for sock in (loop.server, client):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, small)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, small)
    client.connect(loop.server.getsockname())
    client.setblocking(False)
    unsent = memoryview(post(BATCH) * count)

    def pipeline(rounds: int) -> None:
        nonlocal unsent
        for _ in range(rounds):
            with contextlib.suppress(BlockingIOError):
                unsent = unsent[client.send(unsent):]
            loop.http.poll(0.001)  # returns at once while a socket is ready

    pipeline(100)  # a few rounds fill both ways; the rest (~0.1 s) would let more in, if any
    assert 0 < handled < count // 2 and unsent  # the client is held back
    conn = only_conn(loop.http)
    # What it holds meanwhile: part of one answer, and at most a head's worth of requests.
    assert conn.mask == http_server._WRITABLE and 0 < len(conn.out) <= len(answer)
    assert len(conn.buf) <= 16 * 1024 + 4
    got = bytearray()
    # The client reads: every request answered, in order, none lost. Bounded, not timed: the
    # way back waits for TCP's delayed acknowledgements (40 ms) now and then.
    for _ in range(10_000):
        pipeline(1)
        with contextlib.suppress(BlockingIOError):
            got += client.recv(2**16)
        if len(got) >= count * len(answer):
            break
    assert got == answer * count and handled == count and not unsent


def test_close_ends_every_connection(loop: Loop) -> None:
    socks = [loop.connect() for _ in range(3)]
    loop.talk(b"POST / HTTP/1.1\r\n", socks[0], answers=0)
    loop.talk(b"", socks[2], answers=0)
    loop.http.close()
    for sock in socks:
        sock.setblocking(True)
        sock.settimeout(1)
        assert sock.recv(10) == b""
    assert not loop.http._conns


# --- the documented bounds, written out ---------------------------------------------------------

def head(length: int) -> bytes:
    return b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % length


def test_bodies_up_to_4_mib_are_taken_and_reserve_from_8_mib_of_shared_memory(
        loop: Loop) -> None:
    assert status(loop.talk(head(4 * 2**20 + 1))) == 413
    first, second, third = loop.connect(), loop.connect(), loop.connect()
    for sock in (first, second):  # heads only: each reserves its body's 4 MiB
        assert loop.talk(head(4 * 2**20), sock, answers=0) == b""
    assert loop.http._reserved == 8 * 2**20
    loop.talk(head(1), third, answers=0)
    assert len(loop.http._waiting) == 1  # one byte more than 8 MiB waits


def test_64_connections_are_kept_and_the_65th_evicts_one(loop: Loop) -> None:
    for _ in range(64):
        loop.connect()
    loop.talk(b"", loop.socks[-1], answers=0)
    assert (len(loop.http._conns), loop.http.evicted) == (64, 0)
    loop.talk(b"", loop.connect(), answers=0)
    assert (len(loop.http._conns), loop.http.evicted) == (64, 1)


def test_accepting_pauses_for_a_tenth_of_a_second(loop: Loop) -> None:
    loop.http.server = FlakyServer(loop.server, errno.ENFILE)  # type: ignore[assignment]
    before = time.monotonic()
    loop.talk(b"", loop.connect(), answers=0)
    assert before + 0.1 <= loop.http._accept_paused_until <= time.monotonic() + 0.1


def test_a_chunked_body_of_exactly_the_shared_memory_is_taken(tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=len(BATCH), max_body=10 * len(BATCH))
    try:
        assert status(loop.talk(chunked(BATCH[:9], BATCH[9:]))) == 200
        assert status(loop.talk(chunked(BATCH[:9], BATCH[9:] + b" "))) == 503
    finally:
        loop.close()


def test_an_evicted_waiting_body_leaves_the_queue(tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=len(BATCH), max_connections=2)
    try:
        first, second = loop.connect(), loop.connect()
        loop.talk(post(BATCH)[:-2], first, answers=0)
        loop.talk(post(BATCH), second, answers=0)  # waits, and is not read meanwhile
        loop.talk(BATCH[-2:-1], first, answers=0)  # first is the more recently active
        loop.talk(b"", loop.connect(), answers=0)  # evicts second
        assert loop.kinds == ["evicted"] and list(loop.http._waiting) == []
        assert loop.ends(second)
        assert status(loop.talk(BATCH[-1:], first)) == 200
        assert loop.spooled()[-1] == [EVENT]
    finally:
        loop.close()


def test_a_slow_keep_alive_request_whose_peer_left_is_not_spooled(loop: Loop) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200
    loop.talk(post(BATCH)[:-1], sock, answers=0)
    only_conn(loop.http).started -= 1.1  # it has taken more than a second
    sock.send(BATCH[-1:])
    sock.close()
    for _ in range(10):
        loop.http.poll(0.001)
    assert loop.http.abandoned == 1
    assert [batch for batch in loop.spooled() if batch == [EVENT]] == [[EVENT]]


def test_a_prompt_keep_alive_request_is_spooled_without_a_look_at_the_peer(
        loop: Loop, young: YoungClock) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200
    loop.talk(post(BATCH)[:-1], sock, answers=0)
    young.now += 0.9  # the module's clock: a busy machine adds nothing to the 0.9 s
    sock.send(BATCH[-1:])
    sock.close()  # gone, but a request that prompt is answered unchecked (saves a syscall)
    for _ in range(10):
        loop.http.poll(0.001)
    assert loop.http.abandoned == 0
    assert loop.spooled() == [[EVENT], [EVENT]]


def test_a_request_whose_peer_reset_the_connection_is_not_spooled(loop: Loop) -> None:
    sock = loop.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    loop.talk(post(BATCH)[:-1], sock, answers=0)
    sock.send(BATCH[-1:])
    sock.close()  # linger 0: a reset
    for _ in range(10):
        loop.http.poll(0.001)
    assert loop.spooled() == []
    assert not loop.http._conns and loop.http.internal_errors == 0


class FullSocket:
    """A connection's socket with no room to send: send() raises EAGAIN."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real

    def send(self, data: bytes) -> int:
        raise BlockingIOError(errno.EAGAIN, "no room")

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_a_flush_that_finds_the_socket_full_keeps_the_whole_answer(loop: Loop) -> None:
    big = b"y" * 2**23
    loop.http.handle = lambda body: big
    sock = loop.connect()
    sock.sendall(post(BATCH))
    for _ in range(20):
        loop.http.poll(0.001)
    conn = only_conn(loop.http)
    left = len(conn.out)
    assert left
    # A wake-up that finds no room. The real socket cannot be held full: the kernel frees
    # room as the peer's ACKs come in, late on a busy machine.
    real, conn.sock = conn.sock, FullSocket(conn.sock)  # type: ignore[assignment]
    loop.http._flush(conn)
    conn.sock = real
    assert len(conn.out) == left
    assert conn.mask == select.EPOLLOUT  # woken again when there is room
    got = b""
    for _ in range(5_000):
        loop.http.poll(0.001)
        with contextlib.suppress(BlockingIOError):
            got += sock.recv(2**20)
        if len(got) >= len(big):
            break
    assert got == big


def test_a_woken_body_still_arriving_keeps_its_place_ahead_of_the_next(tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=len(BATCH))
    try:
        first, second, third = loop.connect(), loop.connect(), loop.connect()
        loop.talk(post(BATCH)[:-1], first, answers=0)
        loop.talk(post(BATCH)[:-1], second, answers=0)  # waits, its body not all sent
        loop.talk(post(BATCH), third, answers=0)  # waits behind it
        assert status(loop.talk(BATCH[-1:], first)) == 200
        assert loop.http.internal_errors == 0
        assert len(loop.http._waiting) == 1  # the third: the second holds the memory now
        assert status(loop.talk(BATCH[-1:], second)) == 200
        assert status(loop.talk(b"", third)) == 200
        assert [batch for batch in loop.spooled() if batch == [EVENT]] == [[EVENT]] * 3
        assert loop.http.internal_errors == 0
    finally:
        loop.close()


def test_a_last_answer_the_peer_does_not_read_gets_the_linger_time(loop: Loop) -> None:
    loop.http.handle = lambda body: b"z" * 2**23
    sock = loop.connect()
    sock.sendall(b"POST / HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(BATCH) + BATCH)
    for _ in range(20):
        loop.http.poll(0.001)
    conn = only_conn(loop.http)
    assert conn.closing and conn.out  # answered, to be closed once sent
    tick(loop.http, conn.active + LINGER_S - 0.1)
    assert loop.http._conns
    tick(loop.http, conn.active + LINGER_S + 0.1)
    assert not loop.http._conns


# --- a host up for seconds only (Lambda boots the VM just before init) ---------------------------

class YoungClock:
    """Stands in for the time module in ext.listener.http_server: a monotonic clock that starts at
    1 s."""

    def __init__(self) -> None:
        self.now = 1.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def young(loop: Loop, monkeypatch: pytest.MonkeyPatch) -> YoungClock:
    clock = YoungClock()
    monkeypatch.setattr(http_server, "time", clock)
    loop.http._last_tick = clock.now
    return clock


def test_timers_run_on_a_young_host(loop: Loop, young: YoungClock) -> None:
    young.now = 2.2
    assert loop.http.poll(0)  # it says so: the listener looks at its parent then
    assert loop.http._last_tick == 2.2  # a tick was due (1.2 s since the last)


def test_a_round_says_whether_its_timers_ran(loop: Loop, young: YoungClock) -> None:
    young.now = 1.0 + http_server.TICK_S / 2
    assert not loop.http.poll(0)
    young.now = 1.0 + http_server.TICK_S
    assert loop.http.poll(0)
    assert not loop.http.poll(0)


@pytest.mark.parametrize(("sent", "deadline"), [
    (b"POST / HTTP/1.1\r\n", HEAD_S), (post(BATCH)[:-5], REQUEST_S)])
def test_a_deadline_runs_out_on_a_young_host(
        loop: Loop, young: YoungClock, sent: bytes, deadline: float) -> None:
    sock = loop.connect()
    loop.talk(sent, sock, answers=0)
    conn = only_conn(loop.http)
    assert conn.started == 1.0
    young.now = 1.0 + deadline + 0.5
    conn.active = young.now  # bytes kept coming
    tick(loop.http, young.now)
    assert status(loop.talk(b"", sock)) == 408


def test_an_idle_connection_is_closed_on_a_young_host(loop: Loop, young: YoungClock) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200
    young.now = 1.0 + IDLE_S + 1.0
    tick(loop.http, young.now)
    assert not loop.http._conns


def test_a_freeze_is_seen_on_a_young_host(loop: Loop, young: YoungClock) -> None:
    sock = loop.connect()
    loop.talk(b"POST / HTTP/1.1\r\n", sock, answers=0)
    conn = only_conn(loop.http)
    young.now = 4.5  # 3.5 s since the last tick: frozen
    loop.http._tick(young.now)
    assert conn.started == pytest.approx(1.0 + 3.5 - http_server.TICK_S)


def test_a_slow_request_is_checked_for_its_peer_on_a_young_host(
        loop: Loop, young: YoungClock) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200
    loop.talk(post(BATCH)[:-1], sock, answers=0)
    young.now = 3.5  # 2.5 s after it started
    sock.send(BATCH[-1:])
    sock.close()
    for _ in range(10):
        loop.http.poll(0.001)
    assert loop.http.abandoned == 1


# --- more of the loop's bookkeeping --------------------------------------------------------------

def test_accept_errors_are_logged_at_powers_of_two(
        loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    idle = [loop.connect() for _ in range(3)]
    loop.talk(b"", idle[-1], answers=0)
    loop.http.server = FlakyServer(loop.server, *[errno.EMFILE] * 3)  # type: ignore[assignment]
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200  # after three errors, each evicting one
    assert (loop.http.accept_errors, loop.http.evicted) == (3, 3)
    assert [r.getMessage() for r in caplog.records if r.name == "ext.listener.http_server"] == [
        "accept failed 1 time(s): [Errno 24] EMFILE", "accept failed 2 time(s): [Errno 24] EMFILE"]


def test_evicting_a_connection_that_was_refused_is_no_second_refusal(tmp_path: Path) -> None:
    loop = Loop(tmp_path, max_connections=1)
    try:
        refused = loop.connect()
        assert status(loop.talk(b"GARBAGE\r\n\r\n", refused)) == 400  # answered, lingering
        loop.talk(b"", loop.connect(), answers=0)
        assert loop.http.evicted == 1 and loop.kinds == ["malformed"]
    finally:
        loop.close()


def test_a_freeze_leaves_an_idle_connection_idle(loop: Loop) -> None:
    sock = loop.connect()
    assert status(loop.talk(post(BATCH), sock)) == 200
    conn = only_conn(loop.http)
    loop.http._tick(loop.http._last_tick + 0.25 + 100.0)
    assert not conn.in_request
    assert loop.listener.refused == {}


def readable(sock: socket.socket) -> None:
    """Until what the peer sent (bytes, its FIN or its reset) has reached `sock`."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    assert poller.poll(5_000)


def test_a_peer_is_gone_once_it_closed_or_reset_and_not_while_it_may_read(loop: Loop) -> None:
    def accepted(client: socket.socket) -> socket.socket:  # the server side of `client`
        server_side, _ = loop.server.accept()
        server_side.setblocking(False)
        loop.socks.append(server_side)
        return server_side

    loop.http.close()  # the loop stays out: these sockets are the test's own
    alive = socket.create_connection(loop.server.getsockname())
    loop.socks.append(alive)
    side = accepted(alive)
    assert not http_server._peer_gone(side)  # nothing to read
    alive.send(b"x")
    readable(side)
    assert not http_server._peer_gone(side)  # data pending
    assert side.recv(10) == b"x"  # and the look took none of it
    closed = socket.create_connection(loop.server.getsockname())
    side = accepted(closed)
    closed.close()
    readable(side)
    assert http_server._peer_gone(side)
    reset = socket.create_connection(loop.server.getsockname())
    side = accepted(reset)
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    reset.close()
    readable(side)
    assert http_server._peer_gone(side)


def test_a_body_waiting_for_memory_is_left_in_the_socket(tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=100_000, max_body=100_000)
    try:
        first, second = loop.connect(), loop.connect()
        loop.talk(head(60_000) + b"[", first, answers=0)
        loop.talk(head(60_000) + b"[" + b" " * 50_000, second, answers=0)
        [waiting] = loop.http._waiting
        assert len(waiting.buf) < 20_000  # the head's read, not the body: memory stays bounded
        loop.talk(b" " * 59_998 + b"]", first)
        loop.talk(b" " * 9_998 + b"]", second)
        assert loop.http._reserved == 0 and loop.http.internal_errors == 0
    finally:
        loop.close()


def test_a_request_whose_peer_left_takes_no_place_in_the_queue_for_memory(
        tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=100)
    try:
        holder, gone, waiting, small = (loop.connect() for _ in range(4))
        loop.talk(head(50) + b"[", holder, answers=0)
        loop.talk(head(45) + b"[", gone, answers=0)  # 95 held
        loop.talk(head(60) + b"[", waiting, answers=0)  # waits: 95 + 60 > 100
        gone.sendall(b" " * 43 + b"]")
        gone.close()  # before its answer: not spooled, and its 45 are free
        loop.talk(b"", holder, answers=0)
        assert loop.http.abandoned == 1
        assert status(loop.talk(b" " * 48 + b"]", holder)) == 200  # the waiting body goes on
        assert status(loop.talk(post(b"[ ]"), small)) == 200  # 60 + 3 fit: served at once
        assert status(loop.talk(b" " * 58 + b"]", waiting)) == 200
        assert loop.http._reserved == 0 and not loop.http._waiting
    finally:
        loop.close()

def test_memory_held_returns_to_zero_when_connections_close(loop: Loop) -> None:
    socks = [loop.connect() for _ in range(3)]
    assert status(loop.talk(post(BATCH), socks[0])) == 200
    assert status(loop.talk(chunked(BATCH), socks[1])) == 200
    loop.talk(post(BATCH)[:-3], socks[2], answers=0)
    for sock in socks:
        sock.close()
    for _ in range(10):
        loop.http.poll(0.001)
    assert not loop.http._conns and loop.http._reserved == 0


def test_a_smaller_body_behind_one_still_arriving_is_served_when_both_fit(
        tmp_path: Path) -> None:
    loop = Loop(tmp_path, body_budget=100)
    try:
        first, second, third = loop.connect(), loop.connect(), loop.connect()
        loop.talk(head(90) + b"[", first, answers=0)
        loop.talk(head(50) + b"[", second, answers=0)  # waits: 90 + 50 > 100
        loop.talk(post(b"[ ]"), third, answers=0)  # fits beside the second, waits behind it
        assert status(loop.talk(b" " * 88 + b"]", first)) == 200
        assert status(loop.talk(b"", third)) == 200  # 50 + 3 fit: served before the second ends
        assert status(loop.talk(b" " * 48 + b"]", second)) == 200
        assert loop.http.internal_errors == 0
    finally:
        loop.close()


def test_a_slow_reader_kept_busy_is_not_stalled(loop: Loop, young: YoungClock) -> None:
    loop.http.handle = lambda body: b"w" * 2**23
    sock = loop.connect()
    sock.sendall(post(BATCH))
    for _ in range(20):
        loop.http.poll(0.001)
    conn = only_conn(loop.http)
    assert conn.out and conn.active == 1.0
    young.now = 20.0
    for _ in range(20):  # the reader takes some: the rest moves on
        with contextlib.suppress(BlockingIOError):
            sock.recv(2**20)
        loop.http.poll(0.001)
    assert conn.active == 20.0
    tick(loop.http, 25.0)
    assert loop.http._conns  # 5 s since the last byte went out: not stalled


@pytest.mark.parametrize("leaves", ["closes", "evicted"])
def test_a_body_waiting_for_memory_goes_on_when_the_one_ahead_leaves(
        tmp_path: Path, leaves: str) -> None:
    loop = Loop(tmp_path, body_budget=len(BATCH), max_connections=2)
    try:
        first, second = loop.connect(), loop.connect()
        loop.talk(post(BATCH)[:-1], first, answers=0)  # holds the memory, one byte short
        loop.talk(post(BATCH), second, answers=0)  # waits for it
        only = [c for c in loop.http._conns.values() if c not in loop.http._waiting]
        only[0].active -= 1  # the first is the least recently active
        if leaves == "closes":
            first.close()
        else:
            loop.talk(b"", loop.connect(), answers=0)  # one connection too many: evicts it
        assert status(loop.talk(b"", second)) == 200
        assert loop.http._reserved == 0 and not loop.http._waiting
    finally:
        loop.close()


class ResetAt:
    """A connection's socket whose peer resets: seen when reading the request ("recv"), when
    answering ("send"), or once the answer is out and the listener shuts its side."""

    def __init__(self, real: socket.socket, at: str) -> None:
        self.real = real
        self.at = at

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def _reset(self, where: str) -> None:
        if where == self.at:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    def recv_into(self, buffer: memoryview | bytearray, size: int = 0) -> int:
        self._reset("recv")
        return self.real.recv_into(buffer, size)

    def send(self, data: bytes) -> int:
        self._reset("send")
        return self.real.send(data)

    def shutdown(self, how: int) -> None:
        self._reset("shutdown")
        self.real.shutdown(how)


@pytest.mark.parametrize("at", ["send", "shutdown"])
def test_a_peer_that_resets_as_it_is_answered_holds_up_no_waiting_body(
        tmp_path: Path, at: str) -> None:
    loop = Loop(tmp_path, body_budget=len(BATCH))
    try:
        first, second = loop.connect(), loop.connect()
        loop.talk(post(BATCH, b"Connection: close\r\n")[:-1], first, answers=0)
        loop.talk(post(BATCH), second, answers=0)  # waits for the first's memory
        [conn] = [c for c in loop.http._conns.values() if c not in loop.http._waiting]
        conn.sock = ResetAt(conn.sock, at)  # type: ignore[assignment]
        loop.talk(BATCH[-1:], first, answers=0)
        assert conn.fd not in loop.http._conns  # closed when its answer could not go
        assert status(loop.talk(b"", second)) == 200
        assert loop.http._reserved == 0 and loop.http.internal_errors == 0
    finally:
        loop.close()


def test_a_peer_that_resets_before_its_100_continue_costs_only_its_connection(
        loop: Loop) -> None:
    sock = loop.connect()
    loop.talk(b"POST / HTTP/1.1\r\n", sock, answers=0)
    conn = only_conn(loop.http)
    conn.sock = ResetAt(conn.sock, "send")  # type: ignore[assignment]
    loop.talk(b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n", sock, answers=0)
    assert not loop.http._conns and loop.http.internal_errors == 0
    assert status(loop.talk(post(BATCH))) == 200


def test_a_peer_that_resets_mid_request_costs_only_its_connection(loop: Loop) -> None:
    sock = loop.connect()
    loop.talk(post(BATCH)[:-3], sock, answers=0)
    conn = only_conn(loop.http)
    conn.sock = ResetAt(conn.sock, "recv")  # type: ignore[assignment]
    loop.talk(BATCH[-3:], sock, answers=0)  # what arrives next is read as a reset
    assert not loop.http._conns and loop.http.internal_errors == 0
    assert loop.http._reserved == 0 and loop.spooled() == []


def test_the_head_bound_holds_however_the_head_arrives(loop: Loop) -> None:
    sock = loop.connect()
    start = b"POST / HTTP/1.1\r\nContent-Length: %d\r\nX: " % len(BATCH)
    raw = start + b"a" * (20_000 - len(start)) + b"\r\n\r\n" + BATCH
    loop.talk(raw[:10_000], sock, answers=0)
    assert status(loop.talk(raw[10_000:], sock)) == 431


def test_a_head_of_16_kib_whose_end_comes_later_is_read(loop: Loop) -> None:
    sock = loop.connect()
    start = b"POST / HTTP/1.1\r\nContent-Length: %d\r\nX: " % len(BATCH)
    head = start + b"a" * (16_384 - len(start))
    loop.talk(head, sock, answers=0)  # 16 KiB in, no end yet: keep reading
    assert status(loop.talk(b"\r\n\r\n" + BATCH, sock)) == 200
