"""HTTP/1.1 request framing for the Telemetry listener (listener process; no I/O).

Only what Lambda's Telemetry API client sends is needed: a request line, headers, and a body
framed by Content-Length or chunked transfer coding. Every input is bounded: the head by
MAX_HEAD_BYTES, a chunk-size or trailer line by MAX_LINE_BYTES, a body by the caller's limit.
A request that breaks the grammar raises HttpError with the status to answer
(400 malformed, 413 too large, 431 head too large, 501 unsupported coding). A size written with
more digits than the bounds allow is too large (413), not malformed: leading zeros aside, its
value is past any bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_HEAD_BYTES = 16_384  # request line and headers; Lambda's are ~200 bytes
MAX_LINE_BYTES = 1_024  # one chunk-size line (hex size plus extensions) or trailer line
MAX_HEADERS = 64
# A header name is a token (RFC 9110 5.1); a space or a control byte in one is malformed.
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

REASONS = {  # 100 Continue is written out where it is sent (ext.listener.http_server)
    200: "OK",
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """The request cannot be served; `status` is the answer (the connection is then closed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Head:
    """The parts of a request head the listener uses."""

    __slots__ = ("chunked", "content_length", "expect_continue", "keep_alive", "method")

    def __init__(self, method: str, content_length: int, chunked: bool, keep_alive: bool,
                 expect_continue: bool) -> None:
        self.method = method
        self.content_length = content_length  # 0 when chunked
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue


def response(status: int, close: bool = False) -> bytes:
    """A complete response without a body."""
    connection = b"Connection: close\r\n" if close else b""
    return (b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status].encode())
            + connection + b"Content-Length: 0\r\n\r\n")


def parse_head(head: bytes | bytearray, max_body: int) -> Head:
    """Parses a request head (without its final blank line); raises HttpError."""
    text = bytes(head)
    lines = text.split(b"\r\n")
    if text.count(b"\n") + text.count(b"\r") != 2 * (len(lines) - 1):
        raise HttpError(400, "bare CR or LF in the head")  # a line another parser splits
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith(b"HTTP/1."):
        raise HttpError(400, "malformed request line")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, "too many header fields")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TOKEN_BYTES):
            raise HttpError(400, "malformed header field")
        key = name.lower()
        value = value.strip(b" \t")
        if key in headers and key in (b"content-length", b"transfer-encoding"):
            raise HttpError(400, f"repeated {key.decode()}")  # request smuggling guard
        headers[key] = value
    http10 = parts[2] == b"HTTP/1.0"
    connection = headers.get(b"connection", b"").lower()
    keep_alive = connection == b"keep-alive" if http10 else connection != b"close"
    expect_continue = headers.get(b"expect", b"").lower() == b"100-continue"
    coding = headers.get(b"transfer-encoding")
    if coding is not None:
        if b"content-length" in headers:
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        if coding.lower() != b"chunked":
            raise HttpError(501, "unsupported transfer coding")
        return Head(parts[0].decode(), 0, True, keep_alive, expect_continue)
    text = headers.get(b"content-length", b"0")
    if not text.isdigit():
        raise HttpError(400, "malformed Content-Length")
    digits = text.lstrip(b"0")
    # Past 12 digits any value is over the bound (and int() refuses 4,300 digits and more).
    length = int(digits or b"0") if len(digits) <= 12 else max_body + 1
    if length > max_body:
        raise HttpError(413, "body too large")
    return Head(parts[0].decode(), length, False, keep_alive, expect_continue)


class ChunkedBody:
    """Decodes a chunked body incrementally from a connection's buffer into `body`.

    `feed` consumes what it can from `buffer` and leaves at most one partial line behind, so
    the buffer stays bounded whatever the peer sends; `reserve(n)` is called before `n` more
    body bytes are kept and may refuse (raise HttpError) when memory is short.
    """

    __slots__ = ("body", "done", "left", "max_body", "state")

    def __init__(self, max_body: int) -> None:
        self.body = bytearray()
        self.max_body = max_body
        self.left = 0  # bytes of the current chunk still to come
        self.state = "size"  # size | data | crlf | trailer
        self.done = False

    def feed(self, buffer: bytearray, reserve: Callable[[int], None]) -> bool:
        """Consumes `buffer`; True once the body (and its trailers) is complete."""
        while not self.done:
            if self.state == "data":
                if not buffer:
                    return False
                take = min(self.left, len(buffer))
                reserve(take)
                self.body += memoryview(buffer)[:take]
                del buffer[:take]
                self.left -= take
                if self.left == 0:
                    self.state = "crlf"
                continue
            line = _take_line(buffer)
            if line is None:
                return False
            if self.state == "crlf":
                if line:
                    raise HttpError(400, "chunk data longer than its size")
                self.state = "size"
            elif self.state == "size":
                size = _chunk_size(line)
                if size == 0:
                    self.state = "trailer"
                elif len(self.body) + size > self.max_body:
                    raise HttpError(413, "body too large")
                else:
                    self.left = size
                    self.state = "data"
            elif not line:  # the blank line after the trailers
                self.done = True
        return True


def _take_line(buffer: bytearray) -> bytes | None:
    end = buffer.find(b"\r\n", 0, MAX_LINE_BYTES + 2)
    if end < 0:
        if len(buffer) > MAX_LINE_BYTES + 1:
            raise HttpError(400, "chunk-size or trailer line too long")
        return None
    line = bytes(buffer[:end])
    del buffer[: end + 2]
    return line


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip(b" \t")
    if not text or text.strip(b"0123456789abcdefABCDEF"):
        raise HttpError(400, "malformed chunk size")
    return int(text, 16)  # at most MAX_LINE_BYTES hex digits: linear, and compared to max_body
