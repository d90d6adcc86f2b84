"""How a batch's body is gzipped: the window sized to the body, zlib's defaults for a full-size
request, a small state for a small one, and a body that comes back whole however far its
repeats reach."""

from __future__ import annotations

import gzip
import random
import tracemalloc
import zlib

import pytest

from ext.sender.batching import compress_lines, gzip_compressor, plan_batches, window_bits

LOOKAHEAD = 262  # zlib reaches back its window less this many bytes


def hex_lines(size: int, seed: int) -> list[bytes]:
    """Lines of random hex (compressible, but not to nothing) joined to exactly `size` bytes."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    left = size
    while left > 0:
        n = 98 if left == 100 else min(99, left)  # never a last line of no bytes
        lines.append(rng.randbytes(n).hex().encode()[:n])
        left -= n + 1
    assert len(b"\n".join(lines)) == size
    return lines


@pytest.mark.parametrize("bits", range(9, 15))
def test_the_window_is_the_smallest_whose_reach_covers_the_body(bits: int) -> None:
    assert window_bits(2**bits - LOOKAHEAD) == bits
    assert window_bits(2**bits - LOOKAHEAD + 1) == bits + 1


def test_the_window_is_at_least_512_bytes_and_at_most_32_kib() -> None:
    assert window_bits(0) == 9
    assert window_bits(2**15 - LOOKAHEAD + 1) == window_bits(10**7) == 15


@pytest.mark.parametrize("size", [2**10 - LOOKAHEAD, 2**10 - LOOKAHEAD + 1,
                                  2**14 - LOOKAHEAD, 2**14 - LOOKAHEAD + 1])
def test_compress_lines_counts_the_joined_size_as_the_caller_would(size: int) -> None:
    # At a window's edge one byte of size changes the window: the count must be exact.
    lines = hex_lines(size, seed=size)
    packed = compress_lines(lines, 1)
    assert packed == compress_lines(lines, 1, size)
    assert gzip.decompress(packed) == b"\n".join(lines)


def test_a_full_size_request_is_gzipped_as_zlib_defaults_would() -> None:
    lines = hex_lines(60_000, seed=1)
    reference = zlib.compressobj(1, zlib.DEFLATED, 31)  # a 32 KiB window, memLevel 8
    assert compress_lines(lines, 1) == reference.compress(b"\n".join(lines)) + reference.flush()


def test_a_few_kb_request_allocates_a_fraction_of_zlibs_default_state() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        small = gzip_compressor(1, 3_000)
        sized = tracemalloc.get_traced_memory()[0] - before
        default = zlib.compressobj(1, zlib.DEFLATED, 31)
        full = tracemalloc.get_traced_memory()[0] - before - sized
    finally:
        tracemalloc.stop()
    assert small is not None and default is not None
    assert sized * 4 < full


def test_a_large_batch_whose_lines_repeat_far_apart_gives_its_envelopes_back() -> None:
    # Each 24 KB block is repeated right after itself: deflate reaches back more than 16 KiB,
    # which the batch's own decompression (a split, a poison event) must allow for.
    rng = random.Random(5)
    envelopes: list[bytes] = []
    for _ in range(8):
        block = [rng.randbytes(300).hex().encode() for _ in range(40)]
        envelopes += block + block
    (batch,) = plan_batches([(7, envelopes)], max_bytes=1 << 20, level=1)
    assert len(batch.body) < len(batch.joined()) // 3  # the repeats were found
    assert batch.envelopes() == envelopes


def test_batches_are_gzipped_at_level_1_unless_told() -> None:
    envelopes = hex_lines(5_000, seed=2)
    (batch,) = plan_batches([(1, envelopes)], max_bytes=1 << 20)
    assert batch.level == 1
    assert batch.body == compress_lines(envelopes, 1)
