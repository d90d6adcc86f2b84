"""HTTP/1.1 framing of the listener (ext.listener.http_intake), without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext.listener.http_intake import MAX_LINE_BYTES, ChunkedBody, HttpError, parse_head


def no_limit(size: int) -> None:
    return None


@given(st.lists(st.binary(min_size=1, max_size=50), max_size=8), st.data())
def test_a_chunked_body_decodes_the_same_however_it_is_split(
        chunks: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(b"%x;x=1\r\n" % len(c) + c + b"\r\n" for c in chunks) + b"0\r\nT: v\r\n\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    decoder = ChunkedBody(10_000)
    buffer = bytearray()
    done = False
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        buffer += wire[start:end]
        done = decoder.feed(buffer, no_limit)
        assert len(buffer) <= MAX_LINE_BYTES + 2 + 50  # never more than a line and a piece
    assert done
    assert bytes(decoder.body) == b"".join(chunks)


def test_the_body_reservation_can_refuse() -> None:
    def refuse(size: int) -> None:
        raise HttpError(503, "no memory")

    with pytest.raises(HttpError) as err:
        ChunkedBody(100).feed(bytearray(b"3\r\nabc\r\n0\r\n\r\n"), refuse)
    assert err.value.status == 503


@pytest.mark.parametrize(("head", "keep_alive", "length"), [
    (b"POST / HTTP/1.1\r\nContent-Length: 5", True, 5),
    (b"POST / HTTP/1.1\r\nConnection: close", False, 0),
    (b"POST / HTTP/1.1\r\nConnection: keep-alive", True, 0),
    (b"POST / HTTP/1.1\r\nConnection: Close", False, 0),
    (b"POST / HTTP/1.0\r\nContent-Length: 1", False, 1),
    (b"POST / HTTP/1.0\r\nConnection: Keep-Alive", True, 0),
    (b"POST / HTTP/1.0\r\nConnection: upgrade", False, 0),
])
def test_heads(head: bytes, keep_alive: bool, length: int) -> None:
    parsed = parse_head(head, 100)
    assert (parsed.keep_alive, parsed.content_length, parsed.chunked) == (keep_alive, length, False)
    assert parsed.method == "POST"


@pytest.mark.parametrize(("head", "status"), [
    (b"POST /\r\n", 400),
    (b"POST / HTTP/2.0", 400),
    (b"POST / HTTP/1.1\r\nno colon", 400),
    (b"POST / HTTP/1.1\r\n Content-Length: 1", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 101", 413),
    (b"POST / HTTP/1.1" + b"\r\nA: b" * 65, 431),
])
def test_bad_heads(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as err:
        parse_head(head, 100)
    assert err.value.status == status


def feed_bytewise(wire: bytes) -> tuple[ChunkedBody, int]:
    """Feeds `wire` one byte at a time; the decoder and how many bytes it took to finish or
    refuse (HttpError propagates with the count in its notes)."""
    decoder = ChunkedBody(10_000)
    buffer = bytearray()
    for count, byte in enumerate(wire, 1):
        buffer.append(byte)
        try:
            if decoder.feed(buffer, no_limit):
                return decoder, count
        except HttpError as err:
            err.add_note(str(count))
            raise
    return decoder, len(wire)


def test_a_1_kib_chunk_line_arriving_byte_by_byte_is_taken() -> None:
    size_line = b"3;" + b"e" * (MAX_LINE_BYTES - 2)
    trailer = b"T: " + b"t" * (MAX_LINE_BYTES - 3)
    wire = size_line + b"\r\nabc\r\n0\r\n" + trailer + b"\r\n\r\n"
    decoder, taken = feed_bytewise(wire)
    assert (decoder.done, bytes(decoder.body), taken) == (True, b"abc", len(wire))


def test_a_longer_chunk_line_is_refused_once_its_bound_is_passed() -> None:
    with pytest.raises(HttpError) as err:
        feed_bytewise(b"3;" + b"e" * (MAX_LINE_BYTES - 1) + b"\r\nabc\r\n0\r\n\r\n")
    assert err.value.status == 400
    assert err.value.__notes__ == [str(MAX_LINE_BYTES + 2)]  # the line and its CR: no LF


@pytest.mark.parametrize("extension", [b";a=1", b";a=1;b=2", b" ;a", b"\t; a = \"x;y\""])
def test_chunk_extensions_are_ignored(extension: bytes) -> None:
    decoder = ChunkedBody(100)
    assert decoder.feed(bytearray(b"3" + extension + b"\r\nabc\r\n0\r\n\r\n"), no_limit)
    assert bytes(decoder.body) == b"abc"


def test_a_chunked_head() -> None:
    parsed = parse_head(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: Chunked", 100)
    assert (parsed.method, parsed.chunked, parsed.keep_alive) == ("PUT", True, True)
