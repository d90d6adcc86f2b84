"""The HEC client's HTTP/1.1 framing (ext/sender/hec_wire.py): what http.client reads from the
same bytes, whatever pieces they arrive in, and when a connection must not be reused."""

from __future__ import annotations

import http.client
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext.sender import hec_wire
from ext.sender.hec_wire import Answer, ClosedUnansweredError, WireError, read_answer


class Wire:
    """A socket that returns `data` in the given piece sizes, then the end of the stream."""

    def __init__(self, data: bytes, pieces: list[int] | None = None) -> None:
        self.data = data
        self.pieces = list(pieces or [])
        self.at = 0
        self.read_past_end = False

    def recv(self, size: int) -> bytes:
        if self.at >= len(self.data):
            self.read_past_end = True
            return b""
        step = size
        if self.pieces:
            want = self.pieces.pop(0)
            if want > size:  # the rest of this piece comes with the next read
                self.pieces.insert(0, want - size)
            step = min(size, want)
        piece = self.data[self.at:self.at + max(1, step)]
        self.at += len(piece)
        return piece

    def makefile(self, mode: str) -> io.BytesIO:  # for http.client
        return io.BytesIO(self.data)


def read(data: bytes, pieces: list[int] | None = None) -> Answer:
    return read_answer(Wire(data, pieces))  # type: ignore[arg-type]


TOKEN_CHARS = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
OWN = {"content-length", "transfer-encoding", "connection", "retry-after", "keep-alive"}


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, bool, bool, str | None, int, bytes]:
    """(wire bytes, http/1.1, framed by length or chunks, Retry-After, status, body)."""
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    status = draw(st.integers(200, 599).filter(lambda s: s not in (204, 304)))
    body = draw(st.binary(max_size=3000))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    connection = draw(st.sampled_from([None, "close", "keep-alive", "Keep-Alive, TE"]))
    retry_after = draw(st.none() | st.integers(0, 600).map(str))
    fields = [(n, v) for n, v in draw(st.lists(st.tuples(TOKEN_CHARS, VALUE), max_size=6))
              if n.lower() not in OWN]
    if connection is not None:
        fields.append(("Connection", connection))
    if retry_after is not None:
        fields.append(("Retry-After", retry_after))
    if framing == "length":
        fields.append(("Content-Length", str(len(body))))
        payload = body
    elif framing == "chunked":
        fields.append(("Transfer-Encoding", "chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=5)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        payload = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
    else:
        payload = body
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.booleans()) else b""
    head = f"{version} {status} Some Reason\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    data = interim + head.encode() + b"\r\n" + payload
    return data, version == "HTTP/1.1", framing != "close", retry_after, status, body


@given(answers(), st.lists(st.integers(1, 400), max_size=20))
def test_reads_what_http_client_reads_whatever_the_pieces(
    answer: tuple[bytes, bool, bool, str | None, int, bytes], pieces: list[int],
) -> None:
    data, _, framed, retry_after, status, body = answer
    reference = http.client.HTTPResponse(Wire(data))  # type: ignore[arg-type]
    reference.begin()
    expected_body = reference.read()
    wire = Wire(data, pieces)
    got = read_answer(wire)  # type: ignore[arg-type]
    assert (got.status, got.body, got.retry_after) == (status, body, retry_after)
    assert (reference.status, expected_body, reference.getheader("Retry-After")) == (
        status, body, retry_after)
    # Reused exactly when http.client would keep the connection open too.
    assert got.reusable is (not reference.will_close)
    assert wire.read_past_end is not framed  # a framed answer never waits for the close


def test_a_typical_hec_answer() -> None:
    body = b'{"text":"Server is busy","code":9}'
    data = (b"HTTP/1.1 503 Service Unavailable\r\nDate: Sun, 29 Nov 2026 21:00:00 GMT\r\n"
            b"Content-Type: application/json; charset=UTF-8\r\nRetry-After: 4\r\n"
            b"Content-Length: 34\r\nConnection: Keep-Alive\r\nServer: Splunkd\r\n\r\n" + body)
    assert read(data, [7, 1, 50]) == Answer(503, body, "4", True)


@pytest.mark.parametrize(
    ("data", "reusable"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", True),  # bare LF line ends
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: br\r\n\r\nok", False),  # framed by the close
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: deflate\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1", False),  # more than asked
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n"
         b"2;ext=1\r\nok\r\n0\r\nTrailer: x\r\n\r\n", False),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n"
         b"Content-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 199 Odd\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\n0\n\n", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
         True),
        (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 99 + b"Content-Length: 2\r\n\r\nok", True),
    ],
)
def test_framing_and_reuse(data: bytes, reusable: bool) -> None:
    answer = read(data)
    assert answer.reusable is reusable
    assert answer.body == (b"" if answer.status in (204, 304) else b"ok")


@pytest.mark.parametrize(
    "data",
    [
        b"",  # closed before an answer
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokk\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 5000 + b"2\r\nok",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 \xb200 OK\r\n\r\n",  # Latin-1 superscript two: a digit, not an ASCII one
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
)
def test_an_answer_that_breaks_framing_is_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        read(data, [3000] * 100)


@pytest.mark.parametrize(("data", "pieces", "unanswered"), [
    (b"", [], True),
    (b"H", [], False),  # a byte of an answer came: the server took the request
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", [5, 5], False),
])
def test_only_an_end_before_a_byte_of_an_answer_is_closed_unanswered(
    data: bytes, pieces: list[int], unanswered: bool,
) -> None:
    # The client sends a request again on a new connection only for ClosedUnansweredError:
    # an answer cut in its head may be of a request HEC indexed.
    with pytest.raises(WireError) as caught:
        read(data, pieces)
    assert isinstance(caught.value, ClosedUnansweredError) is unanswered


def test_a_chunk_size_line_of_the_limit_is_read_to_its_end() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    size_line = b"0" * (hec_wire.MAX_CHUNK_LINE - 1) + b"2"  # the limit, its end not yet read
    data = head + size_line + b"\r\nok\r\n0\r\n\r\n"
    assert read(data, [len(head) + len(size_line), 100]) == Answer(200, b"ok", None, True)


def test_a_body_framed_by_the_close_stops_at_the_limit() -> None:
    head = b"HTTP/1.1 502 Bad Gateway\r\n\r\n"
    wire = Wire(head + b"<" * (hec_wire.MAX_BODY_BYTES * 2),
                [len(head)] + [hec_wire.RECV_BYTES] * 8)
    answer = read_answer(wire)  # type: ignore[arg-type]
    assert (len(answer.body), answer.reusable) == (hec_wire.MAX_BODY_BYTES, False)
    assert wire.at == len(head) + hec_wire.MAX_BODY_BYTES  # not one read more


def test_an_answer_in_one_byte_pieces() -> None:
    data = (b"HTTP/1.1 200 OK\r\nRetry-After: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2;x=y\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n")
    assert read(data, [1] * len(data)) == Answer(200, b"ok!!!", "3", True)


def test_a_body_cut_at_the_limit_leaves_the_connection_unusable_whatever_is_buffered() -> None:
    # The reads end exactly at the limit: nothing past it is buffered, yet the rest is unread.
    head = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n" % (
        hec_wire.MAX_BODY_BYTES + 10)
    pieces = [len(head)] + [hec_wire.RECV_BYTES] * (hec_wire.MAX_BODY_BYTES // hec_wire.RECV_BYTES)
    answer = read(head + b"<" * (hec_wire.MAX_BODY_BYTES + 10), pieces)
    assert (len(answer.body), answer.reusable) == (hec_wire.MAX_BODY_BYTES, False)
    head = b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = b"3e8\r\n%b\r\n%x\r\n" % (b"a" * 1000, hec_wire.MAX_BODY_BYTES)
    rest = b"b" * hec_wire.MAX_BODY_BYTES + b"\r\n0\r\n\r\n"
    up_to_cut = len(head) + len(first) + hec_wire.MAX_BODY_BYTES - 1000
    answer = read(head + first + rest, [up_to_cut])  # nothing past the cut is buffered
    assert answer.body == b"a" * 1000 + b"b" * (hec_wire.MAX_BODY_BYTES - 1000)
    assert not answer.reusable


def test_a_body_of_exactly_the_limit_is_whole() -> None:
    size = hec_wire.MAX_BODY_BYTES
    answer = read(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (size, b"k" * size))
    assert (len(answer.body), answer.reusable) == (size, True)
    chunk = b"%x\r\n%b\r\n0\r\n\r\n" % (size, b"k" * size)
    answer = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
    assert (len(answer.body), answer.reusable) == (size, True)


def test_a_head_of_the_limit_is_read_to_its_end() -> None:
    start = b"HTTP/1.1 204 No Content\r\nX-Pad: "
    head = start + b"p" * (hec_wire.MAX_HEAD_BYTES - len(start))  # the limit, no end yet
    assert read(head + b"\r\n\r\n", [hec_wire.MAX_HEAD_BYTES, 100]).status == 204


def test_a_chunk_size_line_without_end_is_not_read_to_the_close() -> None:
    wire = Wire(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 200_000)
    with pytest.raises(WireError):
        read_answer(wire)  # type: ignore[arg-type]
    assert wire.at <= hec_wire.RECV_BYTES + hec_wire.MAX_CHUNK_LINE


def test_a_large_body_is_cut_and_the_connection_not_reused() -> None:
    size = hec_wire.MAX_BODY_BYTES * 2
    for framing in (b"Content-Length: %d\r\n" % size, b""):
        wire = Wire(b"HTTP/1.1 502 Bad Gateway\r\n%b\r\n%b" % (framing, b"<" * size))
        answer = read_answer(wire)  # type: ignore[arg-type]
        assert (len(answer.body), answer.reusable) == (hec_wire.MAX_BODY_BYTES, False)
        assert wire.at < len(wire.data) - hec_wire.RECV_BYTES  # the rest is never read
    chunk = b"%x\r\n%b\r\n" % (size, b"<" * size)
    answer = read(b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
    assert (len(answer.body), answer.reusable) == (hec_wire.MAX_BODY_BYTES, False)


def test_the_request_head_is_built_once_with_every_field() -> None:
    head = hec_wire.request_head("/services/collector/event", "hec.example:8088",
                                 [("User-Agent", "ua/1"), ("Authorization", "Splunk t-1")])
    assert head == (b"POST /services/collector/event HTTP/1.1\r\nHost: hec.example:8088\r\n"
                    b"User-Agent: ua/1\r\nAuthorization: Splunk t-1\r\nContent-Length: ")


@pytest.mark.parametrize(
    "value", ["Splunk a\r\nX-Evil: 1", "Splunk a\nb", "Splunk \x00", "Splunk \x1f", "Splunk \x7f",
              "é€"])
def test_a_value_no_header_can_carry_is_refused_without_quoting_it(value: str) -> None:
    with pytest.raises(ValueError, match="Authorization") as raised:
        hec_wire.request_head("/p", "h", [("Authorization", value)])
    assert value not in str(raised.value)


def test_every_visible_character_and_tab_may_be_sent() -> None:
    value = "".join(map(chr, range(0x20, 0x7F))) + "\t" + "é"
    head = hec_wire.request_head("/p", "h", [("X-All", value)])
    assert b"\r\nX-All: " + value.encode("latin-1") + b"\r\n" in head


def test_a_path_is_sent_percent_encoded() -> None:
    head = hec_wire.request_head("/hec/événements", "h", [])
    assert head.startswith(b"POST /hec/%C3%A9v%C3%A9nements HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("host", "port", "default", "field"),
    [("hec.example", 443, 443, "hec.example"), ("hec.example", 8088, 443, "hec.example:8088"),
     ("127.0.0.1", None, 80, "127.0.0.1"), ("::1", 8088, 443, "[::1]:8088"),
     ("[::1]", 80, 80, "[::1]"), ("hec.example", 80, 443, "hec.example:80"),
     ("hec.example", int("443"), 443, "hec.example")],  # an equal port, not the same object
)
def test_host_field(host: str, port: int | None, default: int, field: str) -> None:
    assert hec_wire.host_field(host, port, default) == field
