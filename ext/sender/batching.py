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
    parts = _compressed(compressor, lines, first=True)
    parts.append(compressor.flush())
    return b"".join(parts)


def _compressed(compressor: zlib._Compress, lines: list[bytes], first: bool) -> list[bytes]:
    """What `compressor` gives for `lines`, newline-separated, after the lines it was given
    before (`first`: none). zlib's output does not depend on how its input is cut."""
    parts = []
    for start in range(0, len(lines), COMPRESS_SLICE_LINES):
        if start or not first:
            parts.append(compressor.compress(b"\n"))
        parts.append(compressor.compress(b"\n".join(lines[start:start + COMPRESS_SLICE_LINES])))
    return parts


class Planner:
    """Cuts (seq, envelopes) records, in order, into batches of at most `max_bytes`, each sealed
    (gzipped at `level`) as it is cut.

    With `stream`, the batch being cut is compressed as its envelopes come (a full-size window,
    the one a request this large gets anyway): what waits for the next request holds its
    envelopes gzipped rather than as objects (Gathering)."""

    __slots__ = ("batches", "completes", "compressor", "count", "envelopes", "lengths", "level",
                 "max_bytes", "parts", "size", "stream")

    def __init__(self, max_bytes: int, level: int = 1, stream: bool = False) -> None:
        self.max_bytes = max_bytes
        self.level = level
        self.stream = stream and level > 0
        self.batches: list[HecBatch] = []
        self._open()

    def _open(self) -> None:
        self.envelopes: list[bytes] = []  # of the batch being cut, not compressed yet
        self.count = 0  # envelopes in the batch being cut, compressed or not
        self.size = 0  # its newline-joined bytes
        self.completes: int | None = None
        self.compressor: zlib._Compress | None = None
        self.parts: list[bytes] = []  # what the compressor gave so far
        self.lengths = array("I")  # of the envelopes compressed so far

    def add(self, seq: int | None, envelopes: list[bytes]) -> None:
        """One record's envelopes; `seq` None for envelopes that complete no record (the
        extension's own)."""
        # A record that fits whole is taken at once: sizes only grow, so no envelope of it
        # would have started a new batch.
        whole = sum(map(len, envelopes)) + len(envelopes) - (0 if self.count else 1)
        if envelopes and self.size + whole <= self.max_bytes:
            self.envelopes.extend(envelopes)
            self.count += len(envelopes)
            self.size += whole
        else:
            for envelope in envelopes:
                length = len(envelope)
                if self.count and self.size + 1 + length > self.max_bytes:
                    self._seal()
                self.size += length + 1 if self.count else length
                self.count += 1
                self.envelopes.append(envelope)
        if seq is not None:  # a record of the extension's own (self-metrics) completes nothing
            self.completes = seq
        if self.stream and self.envelopes:
            self._compress_open()

    def _compress_open(self) -> None:
        """Moves the envelopes not compressed yet into the batch's compressor."""
        if self.compressor is None:
            self.compressor = gzip_compressor(self.level, self.max_bytes)
            first = True
        else:
            first = False
        self.parts += _compressed(self.compressor, self.envelopes, first)
        self.lengths.extend(map(len, self.envelopes))
        self.envelopes = []

    def _seal(self) -> None:
        if self.compressor is None:
            batch = seal(self.envelopes, self.completes, self.level, self.size)
        else:
            if self.envelopes:
                self._compress_open()
            self.parts.append(self.compressor.flush())
            batch = HecBatch(b"".join(self.parts), self.lengths, self.size, self.completes,
                             self.level)
        self.batches.append(batch)
        self._open()

    def take(self) -> list[HecBatch]:
        """The batches cut so far and the one being cut, sealed; the planner starts anew."""
        if self.count or self.completes is not None:
            self._seal()
        batches, self.batches = self.batches, []
        return batches


def plan_batches(
    records: list[tuple[int | None, list[bytes]]], max_bytes: int, level: int = 1
) -> list[HecBatch]:
    """Splits (seq, envelopes) records, in order, into batches of at most `max_bytes`, each
    sealed (gzipped at `level`) as it is cut."""
    planner = Planner(max_bytes, level)
    for seq, envelopes in records:
        planner.add(seq, envelopes)
    return planner.take()


# Past this many bytes of envelopes waiting for the next request, they are compressed as they
# come: with adaptive flushing a request's worth (SPLUNK_MAX_REQUEST_BYTES) may wait across
# freezes, ~1 MiB of ~700-byte objects on the C heap, against ~0.1 MiB gzipped and zlib's state
# (~0.3 MiB) streamed (docs/memory.md). Below it the envelopes are kept as they are: most
# invocations' few KB get a compressor sized to them when their request is cut.
STREAM_AFTER_BYTES = 64 * 1024


class Gathering:
    """The envelopes read and not yet cut into requests: `records` as read, until they reach
    `stream_after` bytes; from then on in a streaming Planner (the same cuts as plan_batches).
    `size` (each envelope and a separator) and `events` count all of them."""

    __slots__ = ("events", "level", "max_bytes", "planner", "records", "size", "stream_after")

    def __init__(self, max_bytes: int, level: int,
                 stream_after: int = STREAM_AFTER_BYTES) -> None:
        self.max_bytes = max_bytes
        self.level = level
        self.stream_after = stream_after
        self.records: list[tuple[int | None, list[bytes]]] = []
        self.planner: Planner | None = None
        self.size = 0
        self.events = 0

    def add(self, seq: int | None, envelopes: list[bytes]) -> None:
        self.size += sum(map(len, envelopes)) + len(envelopes)
        self.events += len(envelopes)
        if self.planner is not None:
            self.planner.add(seq, envelopes)
            return
        self.records.append((seq, envelopes))
        if self.size >= self.stream_after and self.level:
            self.planner = Planner(self.max_bytes, self.level, stream=True)
            for record in self.records:
                self.planner.add(*record)
            self.records = []

    def __bool__(self) -> bool:
        return bool(self.records) or self.planner is not None

    def take(self) -> list[HecBatch]:
        """Every batch of what was gathered; the gathering starts anew."""
        if self.planner is not None:
            batches = self.planner.take()
        else:
            batches = plan_batches(self.records, self.max_bytes, self.level)
        self.records, self.planner, self.size, self.events = [], None, 0, 0
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
