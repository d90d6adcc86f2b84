"""The request body gzipped a slice of envelopes at a time is the body gzipped whole."""

from __future__ import annotations

import gzip
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.sender.batching import COMPRESS_SLICE_LINES, compress_lines, window_bits
from ext.sender.hec import compress

lines = st.lists(st.binary(max_size=40), max_size=3 * COMPRESS_SLICE_LINES + 5)


@settings(max_examples=200, deadline=None)
@given(lines, st.integers(min_value=0, max_value=9))
def test_slices_gzip_to_the_same_bytes_as_the_joined_body(envelopes: list[bytes],
                                                           level: int) -> None:
    body = b"\n".join(envelopes)
    sent = compress_lines(envelopes, level)
    assert sent == compress(body, level)
    assert (gzip.decompress(sent) if level else sent) == body


@pytest.mark.parametrize("count", [1, COMPRESS_SLICE_LINES, COMPRESS_SLICE_LINES + 1,
                                   2 * COMPRESS_SLICE_LINES])
def test_a_newline_between_slices_and_none_after_the_last(count: int) -> None:
    envelopes = [b'{"event":%d}' % n for n in range(count)]
    assert gzip.decompress(compress_lines(envelopes, 1)) == b"\n".join(envelopes)


def test_a_line_repeated_20_kb_later_in_the_request_is_found_across_slices() -> None:
    # Lambda's log lines repeat (the same stack trace, the same request) further apart than
    # 16 KiB in a 1 MiB request: gzip's whole 32 KiB window, kept from slice to slice, is what
    # keeps such a body small.
    rng = random.Random(7)
    unique = [rng.randbytes(400) for _ in range(50)]  # 20 KB, incompressible on its own
    envelopes = unique + unique  # more lines than a slice: the repeat spans two of them
    assert len(envelopes) > COMPRESS_SLICE_LINES
    packed = compress_lines(envelopes, 1)
    assert gzip.decompress(packed) == b"\n".join(envelopes)
    assert len(packed) < sum(map(len, unique)) * 1.1


@pytest.mark.parametrize("size", [1_000, 4_050, 8_150, 16_340, 32_400])
def test_a_sized_window_still_reaches_from_the_end_of_the_body_back_to_its_start(
    size: int,
) -> None:
    # The window is sized to the body: too small, and the last 100 bytes (a copy of the first,
    # from an alphabet the text between them does not use) would no longer be found.
    rng = random.Random(size)
    head, other = (bytes(rng.randrange(128, 256) for _ in range(100)) for _ in range(2))
    text = bytes(rng.randrange(97, 123) for _ in range(size - 202))  # compressible: no stored block
    packed = compress_lines([head, text, head], 1)
    assert gzip.decompress(packed) == b"\n".join([head, text, head])
    assert len(packed) < len(compress_lines([head, text, other], 1)) - 80


def test_the_window_covers_the_body_and_no_more_than_needed() -> None:
    assert window_bits(0) == 9 and window_bits(3_000) == 12 and window_bits(10**6) == 15
    for size in range(0, 2**15 - 262, 97):
        bits = window_bits(size)
        assert 2**bits - 262 >= size  # zlib reaches back its window less 262 bytes
        assert bits == 9 or 2**(bits - 1) - 262 < size
