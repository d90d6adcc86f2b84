"""The request body gzipped a slice of envelopes at a time is the body gzipped whole."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.sender.hec import COMPRESS_SLICE_LINES, compress, compress_lines

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
