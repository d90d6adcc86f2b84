"""One HTTP/1.1 exchange on the socket of the pooled HEC connection: the request's head, and the
answer read and framed.

The HEC client needs three things of an answer: its status, its (small) body and Retry-After.
http.client parses every header through the `email` package and urllib3 wraps the result twice
more; for the few-line requests most invocations send, that was two thirds of the sender's CPU
per request (issue 12). urllib3 still owns the connection: it connects, negotiates and verifies
TLS, detects a dropped keep-alive and keeps the single pooled connection (ext/sender/hec.py).
Framing follows RFC 9112 §6: interim 1xx answers are skipped, Transfer-Encoding chunked wins over
Content-Length, no length means "until the server closes", and an answer that leaves any doubt
about where the next one would start leaves the connection unusable (`reusable` False).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import msgspec

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

RECV_BYTES = 65536
# Status line and header fields: HEC sends ~300 bytes, a proxy a few KiB. The blank line is
# looked for from the start at each read: bounded, that costs nothing even if bytes trickle.
MAX_HEAD_BYTES = 16384
MAX_FIELDS = 100  # http.client's limit too
# Kept of a body: an HEC answer is ~30 bytes, an HTML error page a few KiB. Past this the rest
# is not read and the connection is closed instead of drained.
MAX_BODY_BYTES = 256 * 1024
MAX_CHUNK_LINE = 4096
_NO_BODY = frozenset({204, 304})
_PERSISTENT = frozenset({"HTTP/1.1"})  # keep-alive unless "Connection: close" (RFC 9112 §9.3)
_HEAD_END = re.compile(rb"\r?\n\r?\n")  # the blank line after the fields (bare LF tolerated)
_CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7F)) - {"\t"}  # no field value holds one


class WireError(Exception):
    """The answer breaks HTTP/1.1 framing or ended early: the connection cannot be reused."""


class ClosedUnansweredError(WireError):
    """The connection ended before a byte of an answer came: on a kept-alive connection, the
    mark of one the server (or a load balancer, or a SnapStart restore) had dropped."""


class Answer(msgspec.Struct, frozen=True, gc=False):
    status: int
    body: bytes
    retry_after: str | None
    reusable: bool  # the connection may carry the next request


def request_head(path: str, host: str, fields: list[tuple[str, str]]) -> bytes:
    """The request line and header fields up to, and including, "Content-Length: ", which the
    caller completes with each body's length and the blank line.

    Raises ValueError for a value a header cannot carry (a control character: CR/LF would split
    the request), as http.client does.
    """
    target = quote(path, safe="/%:@!$&'()*+,;=~")  # as urllib3 sends a path it is given
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}"]
    for name, value in fields:
        if not _CONTROL.isdisjoint(value) or not name.isascii() or not _latin1(value):
            raise ValueError(f"header {name} has a character HTTP cannot carry")
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: ")
    return "\r\n".join(lines).encode("latin-1")


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def host_field(host: str, port: int | None, default_port: int) -> str:
    """The Host header for `host` (as urllib3 normalised it) and `port`."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return host if port is None or port == default_port else f"{host}:{port}"


def read_answer(sock: socket.socket) -> Answer:
    """Reads one final answer to the request just sent (interim 1xx answers are skipped)."""
    reader = _Reader(sock)
    while True:
        status, fields, keep_alive = _parse_head(reader.head())
        if status >= 200:
            break
        if status == 101:
            raise WireError("101 Switching Protocols to a request that asked for no switch")
    retry_after = fields.get("retry-after")
    coding = fields.get("transfer-encoding")
    if status in _NO_BODY:
        body, complete = b"", True
    elif coding is not None and coding.lower().split(",")[-1].strip() == "chunked":
        body, complete = reader.chunked()
        keep_alive = keep_alive and "content-length" not in fields  # RFC 9112 §6.3 (3)
    elif coding is None and "content-length" in fields:
        body, complete = reader.exactly(_content_length(fields["content-length"]))
    else:  # neither framing: the body ends when the server closes
        return Answer(status, reader.until_closed(), retry_after, False)
    return Answer(status, body, retry_after, keep_alive and complete and reader.drained())


def _parse_head(head: bytes) -> tuple[int, dict[str, str], bool]:
    """(status, lower-cased field name -> value, keep-alive) of a status line and its fields.
    Repeated fields are joined with ", " (RFC 9110 §5.3)."""
    status_line, *lines = head.decode("latin-1").split("\n")
    version, _, rest = status_line.rstrip("\r").partition(" ")
    code = rest[:3]
    if version not in {"HTTP/1.1", "HTTP/1.0"} or not (code.isdigit() and code.isascii()) or (
            rest[3:4] not in {"", " "}):
        raise WireError("not an HTTP/1.x status line")
    if len(lines) > MAX_FIELDS:
        raise WireError("more than 100 header fields")
    fields: dict[str, str] = {}
    for line in lines:
        if line[:1] in {" ", "\t"}:
            continue  # obsolete line folding: none of the fields read here is ever folded
        name, colon, value = line.rstrip("\r").partition(":")
        if not colon or not name or name[-1] in {" ", "\t"}:
            raise WireError("a malformed header field")
        key = name.lower()
        value = value.strip(" \t")
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    tokens = {t.strip().lower() for t in fields.get("connection", "").split(",")}
    keep_alive = "close" not in tokens and (version in _PERSISTENT or "keep-alive" in tokens)
    return int(code), fields, keep_alive


def _content_length(value: str) -> int:
    length, *others = {v.strip() for v in value.split(",")}  # "5, 5": a repeated field
    if others:
        raise WireError("conflicting Content-Length values")
    if not (length.isdigit() and length.isascii()):
        raise WireError("a malformed Content-Length")
    return int(length)


class _Reader:
    """Buffered reads from the socket, each bounded; running out of data before the framing
    says the answer ends is a WireError."""

    __slots__ = ("_buf", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def _fill(self) -> bool:
        """Reads what arrived; False at the end of the stream (never read again after)."""
        data = self._sock.recv(RECV_BYTES)
        self._buf += data
        return bool(data)

    def head(self) -> bytes:
        """The status line and fields, without the blank line that ends them."""
        while (end := _HEAD_END.search(self._buf)) is None:  # a head is a read or two
            if len(self._buf) > MAX_HEAD_BYTES:
                raise WireError("the answer's head exceeds 16 KiB")
            if not self._fill():
                if not self._buf:
                    raise ClosedUnansweredError("the connection closed before an answer")
                raise WireError("the connection closed inside an answer's head")
        head, self._buf = self._buf[:end.start()], self._buf[end.end():]
        return head

    def _line(self) -> bytes:
        while (end := self._buf.find(b"\n")) < 0:
            if len(self._buf) > MAX_CHUNK_LINE:
                raise WireError("a chunk size line exceeds 4 KiB")
            if not self._fill():
                raise WireError("the connection closed inside a chunked body")
        line, self._buf = self._buf[:end], self._buf[end + 1:]
        return line.rstrip(b"\r")

    def exactly(self, length: int) -> tuple[bytes, bool]:
        """`length` bytes of body (at most MAX_BODY_BYTES are read: then complete is False)."""
        wanted = min(length, MAX_BODY_BYTES)
        while len(self._buf) < wanted:
            if not self._fill():
                raise WireError("the connection closed before the announced length")
        body, self._buf = self._buf[:wanted], self._buf[wanted:]
        return body, length <= MAX_BODY_BYTES

    def chunked(self) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        kept = 0
        while True:
            size_text = self._line().partition(b";")[0].strip(b" \t")
            if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
                raise WireError("a malformed chunk size")
            size = int(size_text, 16)
            if not size:
                while self._line():  # trailer fields, up to the blank line
                    pass
                return b"".join(parts), True
            if kept + size > MAX_BODY_BYTES:
                part, _ = self.exactly(MAX_BODY_BYTES - kept)
                parts.append(part)
                return b"".join(parts), False
            part, _ = self.exactly(size)
            parts.append(part)
            kept += size
            if self._line():
                raise WireError("a chunk longer than its size")

    def until_closed(self) -> bytes:
        while len(self._buf) < MAX_BODY_BYTES and self._fill():
            pass
        return self._buf[:MAX_BODY_BYTES]

    def drained(self) -> bool:
        """Nothing was sent past the answer (a server that did would desynchronise the next)."""
        return not self._buf
