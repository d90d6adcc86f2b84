"""Groups HEC envelopes into requests under a size bound, remembering which spool records end,
and keeps each request as it will be sent.

Pure functions, used by the sender. A request never exceeds `max_bytes` uncompressed unless a
single envelope alone does (it is then sent on its own: HEC's per-event limit is 5 MB, far above
any telemetry record). A spool record is committed only once every envelope of it was accepted.

A batch holds its body as sent (gzipped unless the level is 0) and the length of each envelope,
not the envelopes: the batches planned, the one waiting for the courier and the one on the wire
are what the sender holds across a freeze (with `adaptive` and `background` flushing, the data of
several invocations), and gzip makes them 5-60 times smaller (docs/memory.md). The envelopes are
decompressed again only to cut a request (HEC 413, an event HEC rejected), which is rare.
"""

from __future__ import annotations

import zlib
from array import array

import msgspec

# Envelopes gzipped per slice (~45 KB of the usual ~700-byte envelopes): small enough for
# malloc to reuse one buffer, large enough that the per-call cost does not show.
COMPRESS_SLICE_LINES = 64
_GZIP = 31  # zlib's wbits for a gzip header and trailer


class HecBatch(msgspec.Struct, gc=False):
    """One HEC request: its body as sent, the envelopes' lengths, and the spool seq it
    completes (if any). Made by `seal`."""

    body: bytes  # the newline-joined envelopes, gzipped at `level` (as is at level 0)
    lengths: array[int]  # bytes of each envelope, in order
    size: int  # bytes of the newline-joined envelopes (uncompressed)
    completes_seq: int | None  # every record <= this seq is fully in this or earlier batches
    level: int

    @property
    def count(self) -> int:
        """How many envelopes the request carries."""
        return len(self.lengths)

    def joined(self) -> bytes:
        """The newline-joined envelopes (decompressed)."""
        if not self.level or not self.body:
            return self.body
        return zlib.decompress(self.body, _GZIP)

    def envelopes(self) -> list[bytes]:
        """The envelopes, decompressed from the body: to cut the request, not to send it."""
        joined = self.joined()
        out, start = [], 0
        for length in self.lengths:
            out.append(joined[start:start + length])
            start += length + 1
        return out


def seal(envelopes: list[bytes], completes_seq: int | None, level: int,
         size: int | None = None) -> HecBatch:
    """The batch of `envelopes`, compressed at `level` now (they are not kept); `size`, their
    newline-joined length, when the caller counted it already."""
    lengths = array("I", map(len, envelopes))
    if size is None:
        size = sum(lengths) + max(0, len(lengths) - 1)
    body = compress_lines(envelopes, level, size) if envelopes else b""
    return HecBatch(body, lengths, size, completes_seq, level)


# zlib reaches back at most its window less MIN_LOOKAHEAD (262 bytes) for a match.
_ZLIB_LOOKAHEAD = 262
_MIN_WINDOW_BITS = 9
_MAX_WINDOW_BITS = 15


def window_bits(size: int) -> int:
    """The smallest deflate window (log2) whose reach covers a body of `size` bytes, so a
    smaller window finds every match the full 32 KiB one would."""
    return max(_MIN_WINDOW_BITS, min(_MAX_WINDOW_BITS, (size + _ZLIB_LOOKAHEAD - 1).bit_length()))


def gzip_compressor(level: int, size: int) -> zlib._Compress:
    """A gzip compressor sized for a body of `size` bytes: zlib's default state (a 32 KiB
    window and a 64 Ki-entry hash, ~256 KiB to allocate and clear) costs ~4x the compression
    itself of a few-KB request, the usual one per invocation (and fresh heap pages each time,
    as the allocator gives them back between requests). A window that covers the whole body,
    with a hash table in proportion, finds the same matches."""
    bits = window_bits(size)
    # Below the full window, memLevel bits - 8: half as many hash heads as window bytes (zlib's
    # defaults have as many). The tables and buffers zlib sizes from memLevel are most of what
    # a small request pays to allocate; on log-line envelopes the output is the same size.
    mem_level = 8 if bits == _MAX_WINDOW_BITS else max(1, bits - 8)
    return zlib.compressobj(level, zlib.DEFLATED, 16 + bits, mem_level)


def compress_lines(lines: list[bytes], level: int, size: int | None = None) -> bytes:
    """The newline-joined `lines` gzipped at `level` (as is at level 0), a slice at a time: the
    same bytes as gzip of the joined body, but the whole uncompressed body (up to
    SPLUNK_MAX_REQUEST_BYTES) is never copied into one buffer, whose fresh pages cost the sender
    more than joining them (issue 12). `size`: the joined length, if the caller knows it."""
    if not level:
        return b"\n".join(lines)
    if size is None:
        size = sum(map(len, lines)) + len(lines) - 1
    compressor = gzip_compressor(level, size)
    parts = []
    for start in range(0, len(lines), COMPRESS_SLICE_LINES):
        if start:
            parts.append(compressor.compress(b"\n"))
        parts.append(compressor.compress(b"\n".join(lines[start:start + COMPRESS_SLICE_LINES])))
    parts.append(compressor.flush())
    return b"".join(parts)


def plan_batches(
    records: list[tuple[int | None, list[bytes]]], max_bytes: int, level: int = 1
) -> list[HecBatch]:
    """Splits (seq, envelopes) records, in order, into batches of at most `max_bytes`, each
    sealed (gzipped at `level`) as it is cut."""
    batches: list[HecBatch] = []
    # Locals rather than attributes: this loop runs once per event.
    envelopes_out: list[bytes] = []
    size = 0
    completes: int | None = None
    for seq, envelopes in records:
        # A record that fits whole is taken at once: sizes only grow, so no envelope of it
        # would have started a new batch.
        whole = sum(map(len, envelopes)) + len(envelopes) - (0 if envelopes_out else 1)
        fits = bool(envelopes) and size + whole <= max_bytes
        if fits:
            envelopes_out.extend(envelopes)
            size += whole
        for envelope in () if fits else envelopes:
            length = len(envelope)
            if envelopes_out and size + 1 + length > max_bytes:
                batches.append(seal(envelopes_out, completes, level, size))
                envelopes_out, size, completes = [], 0, None
            size += length + 1 if envelopes_out else length
            envelopes_out.append(envelope)
        if seq is not None:  # a record of the extension's own (self-metrics) completes nothing
            completes = seq
    if envelopes_out or completes is not None:
        batches.append(seal(envelopes_out, completes, level, size))
    return batches


def split_batch(batch: HecBatch) -> tuple[HecBatch, HecBatch]:
    """Halves a batch (HEC 413); only the second half completes the original seq."""
    envelopes = batch.envelopes()
    middle = max(1, len(envelopes) // 2)
    return (seal(envelopes[:middle], None, batch.level),
            seal(envelopes[middle:], batch.completes_seq, batch.level))


def without(batch: HecBatch, index: int) -> HecBatch:
    """The batch minus the envelope at `index` (a poison event HEC named)."""
    envelopes = batch.envelopes()
    del envelopes[index]
    return seal(envelopes, batch.completes_seq, batch.level)
