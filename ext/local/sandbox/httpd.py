"""Minimal threaded HTTP/1.1 server for the emulated Lambda APIs (emulator process).

One thread per connection, keep-alive, Content-Length and chunked request bodies,
`Expect: 100-continue` (libcurl in awslambdaric sends it for larger responses). Raw sockets:
http.server's header parsing costs more than the whole emulated round trip we want to measure.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 7 * 1024 * 1024  # a little above Lambda's 6 MB sync payload limit
RECV_BYTES = 65536

REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}


@dataclass(slots=True)
class Request:
    """One parsed request; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Response:
    """What a handler returns; Content-Length and Connection are added by the server."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


Handler = Callable[[Request], Response]


class MalformedRequestError(Exception):
    """The peer sent something that is not HTTP/1.1 we understand; the connection is dropped."""


class _Connection:
    """Reads requests from one socket and writes responses; owns its receive buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        chunk = self.sock.recv(RECV_BYTES)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _read_until(self, marker: bytes, limit: int) -> bytes | None:
        while True:
            idx = self.buf.find(marker)
            if idx >= 0:
                head = bytes(self.buf[:idx])
                del self.buf[: idx + len(marker)]
                return head
            if len(self.buf) > limit:
                raise MalformedRequestError("header too large")
            if not self._fill():
                return None

    def _read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            if not self._fill():
                raise MalformedRequestError("connection closed inside body")
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def read_request(self) -> tuple[Request, bool] | None:
        """Return (request, keep_alive) or None at a clean end of stream."""
        head = self._read_until(b"\r\n\r\n", MAX_HEADER_BYTES)
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError as err:
            raise MalformedRequestError(f"bad request line {lines[0]!r}") from err
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("expect", "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self._read_body(headers)
        conn_hdr = headers.get("connection", "").lower()
        keep_alive = version == "HTTP/1.1" and conn_hdr != "close"
        return Request(method, target, headers, body), keep_alive

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            total = 0
            while True:
                size_line = self._read_until(b"\r\n", 1024)
                if size_line is None:
                    raise MalformedRequestError("connection closed inside chunked body")
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    self._read_until(b"\r\n", MAX_HEADER_BYTES)  # trailers end
                    return b"".join(parts)
                total += size
                if total > MAX_BODY_BYTES:
                    raise MalformedRequestError("body too large")
                parts.append(self._read_exact(size))
                self._read_exact(2)
        length = int(headers.get("content-length", "0") or "0")
        if length > MAX_BODY_BYTES:
            raise MalformedRequestError("body too large")
        return self._read_exact(length) if length else b""

    def write_response(self, resp: Response, keep_alive: bool) -> None:
        """Serialise `resp` with Content-Length and send it in one write."""
        lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}"]
        if resp.body or resp.content_type:
            lines.append(f"Content-Type: {resp.content_type}")
        lines.extend(f"{k}: {v}" for k, v in resp.headers)
        lines.append(f"Content-Length: {len(resp.body)}")
        if not keep_alive:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(head + resp.body)


class ApiServer:
    """Serves `handler` on 127.0.0.1:<random port> until close()."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._listener = socket.create_server((host, port))
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept_loop, name="api-accept", daemon=True)

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._listener.getsockname()[1])

    def start(self) -> None:
        """Start accepting connections."""
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._conns.add(sock)
                thread = threading.Thread(
                    target=self._serve, args=(sock,), name="api-conn", daemon=True
                )
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        conn = _Connection(sock)
        try:
            while True:
                parsed = conn.read_request()
                if parsed is None:
                    return
                request, keep_alive = parsed
                response = self._handler(request)
                conn.write_response(response, keep_alive)
                if not keep_alive:
                    return
        except (OSError, MalformedRequestError, ValueError) as err:
            if not self._closed:
                log.debug("connection dropped: %s", err)
        finally:
            with self._lock:
                self._conns.discard(sock)
            sock.close()

    def close(self, join_timeout_s: float = 2.0) -> None:
        """Stop accepting, cut every connection and wait (bounded) for their threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns)
            threads = list(self._threads)
        # shutdown() (not close) wakes a thread blocked in accept() on Linux.
        with contextlib.suppress(OSError):  # never connected: nothing to wake
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in conns:
            with contextlib.suppress(OSError):  # peer already gone
                sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(join_timeout_s)
        for thread in threads:
            thread.join(join_timeout_s)
