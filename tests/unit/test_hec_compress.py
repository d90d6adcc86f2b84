"""The request body gzipped a slice of envelopes at a time is the body gzipped whole."""

from __future__ import annotations

import gzip
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.sender.batching import COMPRESS_SLICE_LINES, compress_lines
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
