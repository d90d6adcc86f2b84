"""The listener's HTTP server: one thread, an epoll loop over the listening socket (bound by the
main process and inherited) and every connection, with limits on everything (listener process).

It frames requests (`ext.listener.http_intake`) and hands each complete body to a handler that
returns the response (the Listener spools the batch). Error answers: 400 malformed, 413 body over
MAX_BODY_BYTES, 431 head over 16 KiB, 501 transfer coding other than chunked, 408 too slow,
503 request memory exhausted; each is reported to an `on_refused(kind)` callback.

Memory bound, whatever arrives: at most MAX_CONNECTIONS (64) connections, one more evicting the
least recently active; each buffers at most a 16 KiB head, or 1 KiB of chunk-size line, plus
what one 64 KiB read brought; bodies reserve their size from BODY_BUDGET_BYTES (8 MiB) shared by
all connections before they are read (a Content-Length body waits for its whole size, a chunked
body that would pass it gets 503), and none exceeds MAX_BODY_BYTES (4 MiB); the one batch being
checked adds its decoded events or its salvaged copy (about 1.5 x 4 MiB). So requests hold at most
64 x 80 KiB + 8 MiB + 6 MiB = 19 MiB beyond the interpreter (about 20 MiB): the listener stays
under 40 MiB RSS (benchmarks/bench_listener.py measures it). An endless chunk-size line costs
1 KiB, then 400. `accept()` errors (EMFILE) evict the least recently active connection, or pause
accepting for 0.1 s; they never end the process.

Restart without duplicates: the listening socket outlives a killed listener, so connections
queue in its backlog until the next listener accepts them. An HTTP client that gives up on a
POST closes its connection (Lambda's timeout is not documented; the emulator's is 10 s), and
Lambda retries the batch on a new connection (lambda-protocol.md 2.4). A request whose
peer has already closed (its FIN is queued behind the body) is therefore not handled (spooled):
no one will hear the answer, and the retry brings the same batch again. What remains is the
batch spooled just before a crash and never answered: at most one duplicate batch per crash.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import time
from collections import deque
from typing import TYPE_CHECKING

from ext.listener.http_intake import (
    MAX_HEAD_BYTES,
    ChunkedBody,
    Head,
    HttpError,
    parse_head,
    response,
)

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

# Lambda sends at most 2 x maxBytes (maxBytes <= 1 MiB) plus metadata (~0.7 MiB) in one POST.
MAX_BODY_BYTES = 4 * 2**20
BODY_BUDGET_BYTES = 8 * 2**20
MAX_CONNECTIONS = 64  # Lambda keeps one connection per subscription
READ_BYTES = 65_536
TICK_S = 0.25  # timeouts run this often while a request, an answer or a pause is in progress
# With every connection between requests only the idle timeout is left (and the parent, which
# the process loop looks at after the timers): the loop then wakes this often, not every TICK_S
# of the function's time (a wake-up costs ~50 us of CPU the function pays for).
IDLE_TICK_S = 2.0
IDLE_TIMEOUT_S = 120.0  # a keep-alive connection with no request in progress
HEAD_TIMEOUT_S = 10.0  # first byte of a request to the end of its head
STALL_TIMEOUT_S = 10.0  # no byte at all in the middle of a request
REQUEST_TIMEOUT_S = 60.0  # first byte of a request to its last
LINGER_S = 1.0  # after an error answer, read and discard this long so the peer sees it
FREEZE_GAP_S = 2.0  # a loop gap this much over its wait means the environment was frozen
ACCEPT_PAUSE_S = 0.1
SLOW_S = 1.0  # a request that took longer may have been given up on by its sender

_READABLE = select.EPOLLIN
_WRITABLE = select.EPOLLOUT
_READABLE_OR_GONE = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REFUSAL_KINDS = {408: "timed_out", 413: "too_large", 503: "busy"}  # others: "malformed"


class _Conn:
    """One client connection and the request in progress on it."""

    __slots__ = ("active", "body", "buf", "chunks", "closing", "fd", "got", "head", "mask",
                 "out", "reserved", "served", "sock", "started")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # kept: the socket's own reads -1 once closed
        self.buf = bytearray()  # bytes read but not yet parsed (head, chunk lines)
        self.head: Head | None = None
        self.body: bytearray | None = None  # a Content-Length body, filled in place
        self.got = 0
        self.chunks: ChunkedBody | None = None
        self.reserved = 0  # bytes of the body budget this request holds
        self.out = bytearray()
        self.closing = False  # an error was answered: discard input, then close
        self.started = 0.0  # first byte of the request in progress (0: none)
        self.active = now  # last byte received or sent
        self.mask = 0
        self.served = 0  # requests answered on this connection

    @property
    def in_request(self) -> bool:
        return self.started != 0.0


class HttpServer:
    """Serves requests on `server`; `handle(body)` returns the response of a complete one."""

    max_connections = MAX_CONNECTIONS
    max_body = MAX_BODY_BYTES
    body_budget = BODY_BUDGET_BYTES

    def __init__(self, server: socket.socket, handle: Callable[[bytearray], bytes],
                 on_refused: Callable[[str], None]) -> None:
        self.server = server
        self.handle = handle
        self.on_refused = on_refused
        self.abandoned = 0  # complete requests whose peer had already gone: not handled
        self.accept_errors = 0
        self.evicted = 0
        self.internal_errors = 0
        self._conns: dict[int, _Conn] = {}
        self._epoll = select.epoll()  # Linux, as Lambda; plain epoll costs less than selectors
        self._server_fd = server.fileno()
        self._scratch = bytearray(READ_BYTES)
        self._reserved = 0
        self._waiting: deque[_Conn] = deque()  # Content-Length bodies waiting for the budget
        self._accept_paused_until = 0.0
        self._accepting = False
        self._last_tick = time.monotonic()
        self._longest_wait = 0.0  # of the polls since the last tick: a gap past it is a freeze

    def listen(self) -> None:
        """Starts accepting connections; then poll() serves them."""
        self.server.setblocking(False)
        self._set_accepting(True)

    def wait_s(self) -> float:
        """How long the next poll may wait: TICK_S while a timer can run out (a request, an
        answer or a close in progress, a body waiting for the budget, accepting paused), else
        IDLE_TICK_S."""
        if self._waiting or not self._accepting:
            return TICK_S
        for conn in self._conns.values():
            if conn.started or conn.out or conn.closing:
                return TICK_S
        return IDLE_TICK_S

    def poll(self, timeout: float) -> bool:
        """One round of the loop: waits up to `timeout` for sockets, serves them, runs timers
        (every TICK_S at most); True if it ran them."""
        self._longest_wait = max(self._longest_wait, timeout)
        for fd, mask in self._epoll.poll(timeout):
            conn = self._conns.get(fd)
            if conn is None:
                if fd == self._server_fd:
                    self._accept()
                continue
            try:
                self._serve(conn, mask)
            except Exception:
                # A bug met by one connection must not end the process (and every other
                # request in flight with it): that connection goes, the error is logged.
                self.internal_errors += 1
                if _power_of_two(self.internal_errors):
                    log.exception("listener error %d; the connection is closed",
                                  self.internal_errors)
                self._close(conn)
        now = time.monotonic()
        if now - self._last_tick >= TICK_S:
            self._tick(now)
            return True
        return False

    def _serve(self, conn: _Conn, mask: int) -> None:
        if mask & _WRITABLE and conn.out:
            self._flush(conn)
            if not conn.out and not conn.closing and conn.buf:
                self._advance(conn)  # a pipelined request waited for this answer
        # An error or hang-up is read as such by recv.
        if (mask & _READABLE_OR_GONE and self._conns.get(conn.fd) is conn
                and conn.mask & _READABLE):
            self._on_readable(conn)

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        self._epoll.close()

    def _set_accepting(self, on: bool) -> None:
        if on and not self._accepting:
            self._epoll.register(self._server_fd, _READABLE)
        elif not on and self._accepting:
            self._epoll.unregister(self._server_fd)
        self._accepting = on

    def _accept(self) -> None:
        for _ in range(self.max_connections):
            try:
                sock, _ = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno == errno.ECONNABORTED:
                    continue
                # EMFILE/ENFILE/ENOBUFS/ENOMEM: make room, or wait a moment before retrying.
                self.accept_errors += 1
                if _power_of_two(self.accept_errors):
                    log.warning("accept failed %d time(s): %s", self.accept_errors, err)
                if not self._evict():
                    self._set_accepting(False)
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_S
                return
            if len(self._conns) >= self.max_connections:
                self._evict()
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic())
            self._conns[conn.fd] = conn
            self._want(conn, _READABLE)

    def _evict(self) -> bool:
        """Closes the least recently active connection; False if there is none."""
        if not self._conns:
            return False
        victim = min(self._conns.values(), key=lambda c: c.active)
        self.evicted += 1
        if victim.in_request:
            self.on_refused("evicted")
        self._close(victim)
        return True

    def _want(self, conn: _Conn, mask: int) -> None:
        if mask == conn.mask:
            return
        if not conn.mask:
            self._epoll.register(conn.fd, mask)
        elif not mask:
            self._epoll.unregister(conn.fd)
        else:
            self._epoll.modify(conn.fd, mask)
        conn.mask = mask

    def _close(self, conn: _Conn) -> None:
        conn.closing = True  # ends any loop still working on it
        held = conn.reserved
        self._release(conn)
        if conn in self._waiting:
            self._waiting.remove(conn)
        self._want(conn, 0)
        if self._conns.get(conn.fd) is conn:
            self._conns.pop(conn.fd)
        conn.sock.close()
        if held:  # the memory it held may let a body waiting for it in
            self._wake_waiters()

    def _on_readable(self, conn: _Conn) -> None:
        try:
            if conn.closing:
                received = conn.sock.recv_into(self._scratch)  # discarded
            elif conn.body is not None:
                received = conn.sock.recv_into(memoryview(conn.body)[conn.got :])
                conn.got += received
            else:
                room = READ_BYTES if conn.head else MAX_HEAD_BYTES + 4 - len(conn.buf)
                received = conn.sock.recv_into(self._scratch, max(1, room))
                conn.buf += memoryview(self._scratch)[:received]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not received:
            if conn.in_request and not conn.closing:
                self.abandoned += 1
            self._close(conn)
            return
        conn.active = time.monotonic()
        if not conn.closing:
            self._advance(conn)

    def _advance(self, conn: _Conn) -> None:
        """Parses what arrived; serves every request completed (pipelined ones too)."""
        try:
            while not conn.out and not conn.closing:
                if conn.head is None and not self._read_head(conn):
                    return
                assert conn.head is not None
                if conn.chunks is None and conn.body is None:
                    early = bool(conn.buf)  # the body, or some of it, came with the head
                    if not self._start_body(conn):
                        return
                    if conn.head.expect_continue and not early:
                        conn.sock.send(_CONTINUE)
                if conn.chunks is not None:
                    if not conn.chunks.feed(conn.buf, lambda size: self._grow(conn, size)):
                        return
                    self._finish(conn, conn.chunks.body)
                else:
                    assert conn.body is not None
                    if conn.got < len(conn.body):
                        return
                    self._finish(conn, conn.body)
        except HttpError as err:
            self._fail(conn, err.status)
        except OSError:
            self._close(conn)

    def _read_head(self, conn: _Conn) -> bool:
        """Parses the head of the next request once it is complete; False: not yet."""
        if not conn.buf:
            return False
        if not conn.started:
            conn.started = time.monotonic()
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > MAX_HEAD_BYTES:
                raise HttpError(431, "request head too large")
            if b"\n\n" in conn.buf:  # a head whose lines end in LF alone: 400 now, not 408
                raise HttpError(400, "head lines end in a bare LF")
            return False
        conn.head = parse_head(conn.buf[:end], self.max_body)
        del conn.buf[: end + 4]
        if conn.head.chunked:
            conn.chunks = ChunkedBody(self.max_body)
            if conn.head.expect_continue and not conn.buf:
                conn.sock.send(_CONTINUE)
        return True

    def _start_body(self, conn: _Conn) -> bool:
        """Reserves a Content-Length body and starts filling it; False: waiting for memory."""
        assert conn.head is not None
        length = conn.head.content_length
        if length > self.body_budget:
            raise HttpError(503, "body larger than the request memory")
        if length and ((self._waiting and self._waiting[0] is not conn)
                       or self._reserved + length > self.body_budget):
            if conn not in self._waiting:
                self._waiting.append(conn)
            self._want(conn, 0)
            return False
        if self._waiting and self._waiting[0] is conn:
            self._waiting.popleft()
        self._reserved += length
        conn.reserved = length
        if len(conn.buf) >= length:  # the whole body came with its head (the common case)
            conn.body = conn.buf[:length]
            conn.got = length
        else:
            conn.body = bytearray(length)
            conn.body[: len(conn.buf)] = conn.buf
            conn.got = len(conn.buf)
        del conn.buf[: conn.got]
        self._want(conn, _READABLE)
        return True

    def _grow(self, conn: _Conn, size: int) -> None:
        if self._reserved + size > self.body_budget:
            raise HttpError(503, "request memory exhausted")
        self._reserved += size
        conn.reserved += size

    def _release(self, conn: _Conn) -> None:
        self._reserved -= conn.reserved
        conn.reserved = 0
        conn.body = None
        conn.chunks = None

    def _finish(self, conn: _Conn, body: bytearray) -> None:
        assert conn.head is not None
        keep_alive = conn.head.keep_alive
        # Only a connection's first request (it may have waited in the backlog) or a slow one
        # can have been given up on; a prompt keep-alive request saves the extra syscall.
        if (not conn.buf and (not conn.served or time.monotonic() - conn.started > SLOW_S)
                and _peer_gone(conn.sock)):
            # Its sender gave up (e.g. it timed out while this listener was down) and will
            # send the batch again: spooling this one would duplicate it.
            self.abandoned += 1
            self._close(conn)
            self._wake_waiters()
            return
        answer = self.handle(body)
        self._release(conn)
        conn.head = None
        conn.got = 0
        conn.started = 0.0
        conn.served += 1
        self._send(conn, answer, close=not keep_alive)
        self._wake_waiters()

    def _fail(self, conn: _Conn, status: int) -> None:
        """Answers an error and closes the connection after a short linger."""
        self.on_refused(_REFUSAL_KINDS.get(status, "malformed"))
        self._release(conn)
        if conn in self._waiting:
            self._waiting.remove(conn)
        conn.buf = bytearray()
        conn.closing = True
        conn.started = 0.0
        self._send(conn, response(status, close=True), close=True)
        self._wake_waiters()

    def _send(self, conn: _Conn, data: bytes, close: bool) -> None:
        conn.out += data
        if close:
            conn.closing = True
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        del conn.out[:sent]
        if sent:
            conn.active = time.monotonic()
        if conn.out:
            self._want(conn, _WRITABLE)
            return
        if conn.closing:
            try:
                conn.sock.shutdown(socket.SHUT_WR)  # then read and discard: the peer sees it
            except OSError:
                self._close(conn)
                return
        self._want(conn, _READABLE)

    def _wake_waiters(self) -> None:
        while self._waiting:
            conn = self._waiting[0]
            if self._reserved + (conn.head.content_length if conn.head else 0) > self.body_budget:
                return
            self._advance(conn)
            if self._waiting and self._waiting[0] is conn:
                return

    def _tick(self, now: float) -> None:
        gap = now - self._last_tick - max(TICK_S, self._longest_wait)
        self._last_tick = now
        self._longest_wait = 0.0
        if gap > FREEZE_GAP_S:
            # The environment was frozen: no peer could send meanwhile, so no clock ran out.
            for conn in self._conns.values():
                conn.active = min(now, conn.active + gap)
                if conn.started:
                    conn.started = min(now, conn.started + gap)
        if not self._accepting and now >= self._accept_paused_until:
            self._set_accepting(True)
        for conn in list(self._conns.values()):
            if self._conns.get(conn.fd) is not conn:
                continue  # closed earlier in this round
            quiet = now - conn.active
            if conn.closing:
                if quiet > LINGER_S or (conn.out and quiet > STALL_TIMEOUT_S):
                    self._close(conn)
            elif conn.out:
                if quiet > STALL_TIMEOUT_S:
                    self._close(conn)
            elif not conn.in_request:
                if quiet > IDLE_TIMEOUT_S:
                    self._close(conn)
            elif ((quiet > STALL_TIMEOUT_S and conn not in self._waiting)
                  or now - conn.started > (REQUEST_TIMEOUT_S if conn.head else HEAD_TIMEOUT_S)):
                self._fail(conn, 408)


def _peer_gone(sock: socket.socket) -> bool:
    """True when the peer closed or reset the connection (nothing will read the answer)."""
    try:
        return not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _power_of_two(count: int) -> bool:
    """1, 2, 4, 8...: logs stay visible but never flood (they come back as telemetry)."""
    return count & (count - 1) == 0
