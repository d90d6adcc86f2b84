"""Extensions API client (2020-01-01): register, next event, init/error, exit/error.

Runs in the main process on the cold-start path, so it imports only `_socket` (the C module;
`socket` pulls in enum and selectors and costs several ms) and speaks HTTP/1.1 itself over
one keep-alive connection. It never puts a timeout on /event/next: the sandbox may freeze
while that call is pending (lambda-protocol.md §1.2).
"""

from __future__ import annotations

import _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

VERSION = "2020-01-01"
REGISTER_PATH = f"/{VERSION}/extension/register"
NEXT_PATH = f"/{VERSION}/extension/event/next"
INIT_ERROR_PATH = f"/{VERSION}/extension/init/error"
EXIT_ERROR_PATH = f"/{VERSION}/extension/exit/error"
NAME_HEADER = "Lambda-Extension-Name"
ID_HEADER = "Lambda-Extension-Identifier"
ERROR_TYPE_HEADER = "Lambda-Extension-Function-Error-Type"

_MAX_HEADER_BYTES = 65_536

# On Lambda Managed Instances an execution environment runs several invocations at once and is
# never frozen; an external extension may register for SHUTDOWN only (INVOKE: 403
# Extension.InvalidEventType, lambda-protocol.md §5.1), so one that asks for INVOKE there fails
# the whole environment's init. Lambda tells the mode in this variable (peers.md).
INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"
MANAGED_INSTANCES = "lambda-managed-instances"
EVENTS = ("INVOKE", "SHUTDOWN")
MANAGED_INSTANCES_EVENTS = ("SHUTDOWN",)


def on_managed_instances(environ: Mapping[str, str]) -> bool:
    """Whether this environment is one of Lambda Managed Instances'."""
    return environ.get(INITIALIZATION_TYPE, "").strip() == MANAGED_INSTANCES


# SnapStart: Lambda snapshots the environment (memory and /tmp) once its init is done and resumes
# new environments from it later, maybe hours later and elsewhere: what was connected at the
# snapshot is not connected after the restore (lambda-protocol.md §2.7).
SNAP_START = "snap-start"


def on_snap_start(environ: Mapping[str, str]) -> bool:
    """Whether this environment's init is the one SnapStart snapshots."""
    return environ.get(INITIALIZATION_TYPE, "").strip() == SNAP_START


def lifecycle_events(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The events to register for in this environment."""
    return MANAGED_INSTANCES_EVENTS if on_managed_instances(environ) else EVENTS


class HttpReply:
    """Status, headers and body of one response; the headers (lower-cased names) are parsed
    only when asked for: the loop reads only an event's body."""

    __slots__ = ("_head", "_headers", "body", "status")

    def __init__(self, status: int, head: bytes, body: bytes) -> None:
        self.status = status
        self._head = head  # the status line and the header lines, without the blank line
        self._headers: dict[str, str] | None = None
        self.body = body

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            headers: dict[str, str] = {}
            for line in self._head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self._headers = headers
        return self._headers


class LambdaApiClient:
    """A tiny HTTP/1.1 client for the local Lambda APIs (plain HTTP on loopback)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._address = (host or "127.0.0.1", int(port))
        self._host_header = address
        self._sock: _socket.socket | None = None

    def fileno(self) -> int:
        """The fd of the kept-alive connection; -1 while there is none."""
        return -1 if self._sock is None else self._sock.fileno()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> HttpReply:
        """Sends one request; reconnects once if a kept-alive connection turns out closed."""
        return self.send(self.wire(method, path, headers, body))

    def wire(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> bytes:
        """A request as it goes on the wire (a request made again may be kept and sent)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def send(self, wire: bytes, wait: Callable[[int], None] | None = None) -> HttpReply:
        """Sends a request made by `wire`; reconnects once if a kept-alive connection turns
        out closed. `wait`, given the connection's fd once the request is sent, returns when
        the answer may be read (the caller's other work meanwhile)."""
        reused = self._sock is not None
        try:
            return self._exchange(wire, wait)
        except (ConnectionError, _EmptyReplyError):
            self.close()
            if not reused:
                raise
            return self._exchange(wire, wait)

    def _exchange(self, wire: bytes, wait: Callable[[int], None] | None = None) -> HttpReply:
        if self._sock is None:
            sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
            try:
                sock.connect(self._address)
            except OSError:
                sock.close()
                raise
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            self._sock = sock
        self._sock.sendall(wire)
        if wait is not None:
            wait(self._sock.fileno())
        reply, keep_alive = _read_reply(self._sock)
        if not keep_alive:
            self.close()
        return reply


class _EmptyReplyError(ConnectionError):
    """The peer closed the connection before sending a status line."""


def _read_reply(sock: _socket.socket) -> tuple[HttpReply, bool]:
    # Once per invocation: the framing headers are looked up in the lower-cased head (C
    # searches), not parsed line by line.
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buf) > _MAX_HEADER_BYTES:
            raise ConnectionError("response headers too large")
        chunk = sock.recv(65_536)
        if not chunk:
            raise _EmptyReplyError("connection closed before the response")
        buf += chunk
    head = buf[:end]
    if end > _MAX_HEADER_BYTES:
        raise ConnectionError("response headers too large")
    rest = buf[end + 4 :]
    # The code between the status line's first two spaces (or after its only one): a line
    # without one (not HTTP, or an answer that begins with a blank line) is a ValueError, which
    # register's caller reports in one line, as it does an unreadable code.
    status = int(head.partition(b"\r\n")[0].partition(b" ")[2].partition(b" ")[0])
    lower = head.lower()
    keep_alive = _field(lower, b"connection") != b"close"
    length = _field(lower, b"content-length")
    if _field(lower, b"transfer-encoding") == b"chunked":
        body = _read_chunked(sock, rest)
    elif length is not None:
        body = _read_exact(sock, rest, int(length))
    else:
        body = _read_to_close(sock, rest)
        keep_alive = False
    return HttpReply(status, head, body), keep_alive


def _field(lower_head: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower case) in a lower-cased head; None if it has none."""
    start = lower_head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = lower_head.find(b"\r\n", start)
    return lower_head[start : end if end >= 0 else len(lower_head)].strip()


def _read_exact(sock: _socket.socket, have: bytes, size: int) -> bytes:
    parts = [have]
    got = len(have)
    while got < size:
        chunk = sock.recv(min(size - got, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed inside the response body")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)[:size]


def _read_to_close(sock: _socket.socket, have: bytes) -> bytes:
    parts = [have]
    while chunk := sock.recv(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _read_chunked(sock: _socket.socket, have: bytes) -> bytes:
    buf = bytearray(have)
    body = bytearray()
    while True:
        while b"\r\n" not in buf:
            buf += _recv_some(sock)
        line, _, remainder = bytes(buf).partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size < 0:  # int() takes a sign
            raise ValueError(f"negative chunk size {size}")
        buf = bytearray(remainder)
        while len(buf) < size + 2:
            buf += _recv_some(sock)
        if size == 0:
            return bytes(body)
        body += buf[:size]
        buf = buf[size + 2 :]


def _recv_some(sock: _socket.socket) -> bytes:
    chunk = sock.recv(65_536)
    if not chunk:
        raise ConnectionError("connection closed inside a chunked body")
    return chunk


class ExtensionsApi:
    """The calls of the Extensions API; raises ApiError (imported lazily) on a non-2xx."""

    def __init__(self, client: LambdaApiClient) -> None:
        self.client = client
        self.extension_id = ""
        self.registration = b""  # register's JSON body
        self._next_wire: tuple[str, bytes] | None = None  # (for this extension id, request)

    def register(self, name: str, events: tuple[str, ...]) -> bytes:
        """Registers `name` (must equal the launcher's file name); returns the JSON body."""
        body = ('{"events":[' + ",".join(f'"{e}"' for e in events) + "]}").encode()
        reply = self.client.request(
            "POST", REGISTER_PATH,
            {NAME_HEADER: name, "Lambda-Extension-Accept-Feature": "accountId",
             "Content-Type": "application/json"},
            body,
        )
        _check(REGISTER_PATH, reply)
        self.extension_id = reply.headers.get(ID_HEADER.lower(), "")
        self.registration = reply.body
        return reply.body

    def connection_fd(self) -> int:
        """The fd of the connection to Lambda (-1: none now): one no child may hold."""
        return self.client.fileno()

    def account_id(self) -> str:
        """The function's AWS account id from register's answer ("" when Lambda gave none);
        parsed on demand, after register."""
        from ext.main import minijson

        try:
            parsed = minijson.loads(self.registration)
        except ValueError:
            return ""
        account = parsed.get("accountId") if isinstance(parsed, dict) else None
        return account if isinstance(account, str) else ""

    def next_event(self, wait: Callable[[int], None] | None = None) -> bytes:
        """Blocks until Lambda sends the next INVOKE or SHUTDOWN event; returns its JSON.
        `wait`: as LambdaApiClient.send's."""
        made = self._next_wire
        if made is None or made[0] != self.extension_id:  # made once: the same every time
            made = (self.extension_id,
                    self.client.wire("GET", NEXT_PATH, {ID_HEADER: self.extension_id}))
            self._next_wire = made
        reply = self.client.send(made[1], wait)
        _check(NEXT_PATH, reply)
        return reply.body

    def init_error(self, error_type: str, message: str) -> None:
        self._report(INIT_ERROR_PATH, error_type, message)

    def exit_error(self, error_type: str, message: str) -> None:
        self._report(EXIT_ERROR_PATH, error_type, message)

    def _report(self, path: str, error_type: str, message: str) -> None:
        import json

        body = json.dumps(
            {"errorMessage": message, "errorType": error_type, "stackTrace": []}
        ).encode()
        reply = self.client.request(
            "POST", path,
            {ID_HEADER: self.extension_id, ERROR_TYPE_HEADER: error_type,
             "Content-Type": "application/json"},
            body,
        )
        _check(path, reply)


def _check(path: str, reply: HttpReply) -> None:
    if not 200 <= reply.status < 300:
        from ext.errors import ApiError

        raise ApiError(path, reply.status, reply.body)
