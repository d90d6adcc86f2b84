"""Recovery of a real spool directory from truncation and byte damage, at any point (properties)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ext.spool import SpoolReader, SpoolRecord, SpoolWriter
from ext.spool.frame import FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, scan_segment
from ext.spool.layout import list_segments
from tests.unit.spool_helpers import drain, segment_path

SEGMENT_BYTES = 1200
PAYLOADS = st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=12)
PROPERTY = settings(max_examples=120, deadline=None)


@contextmanager
def spool_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spool-recovery-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def fill(directory: Path, payloads: list[bytes], start: int = 0) -> None:
    """Append with one writer; a second call's writer starts a new segment (restart seals)."""
    with SpoolWriter(directory, max_bytes=1 << 20, segment_bytes=SEGMENT_BYTES) as writer:
        for seq, payload in enumerate(payloads, start):
            assert writer.append(payload, seq % 3) == seq


def check_delivery(records: list[SpoolRecord], payloads: list[bytes]) -> set[int]:
    """Payloads intact, order kept; returns the seqs that were not delivered."""
    seqs = [r.seq for r in records]
    assert seqs == sorted(set(seqs))
    for record in records:
        assert record.payload == payloads[record.seq]
        assert record.event_count == record.seq % 3
    return set(range(len(payloads))) - set(seqs)


def flip(victim: Path, at: int, mask: int) -> None:
    """XORs the byte at `at` of `victim` with `mask`."""
    with open(victim, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ mask]))


def flip_then_append(directory: Path, victim: Path, at: int, mask: int, written: int) -> int:
    """XORs the byte at `at` of `victim` with `mask`, then reopens the spool: the writer must
    resume right after the `written` records (no seq skipped or reused past the damage) and
    append b"after"; returns that record's seq."""
    flip(victim, at, mask)
    with SpoolWriter(directory, segment_bytes=SEGMENT_BYTES) as writer:
        assert writer.next_seq == written, "seqs skipped or reused past the damage"
        return writer.append(b"after", 0)


@contextmanager
def drained_after(
    directory: Path, tail_seq: int,
) -> Iterator[tuple[list[SpoolRecord], SpoolReader]]:
    """Reads the whole spool; the record the writer appended after the damage (`tail_seq`,
    b"after") comes last. Yields the records before it, and the open reader."""
    records, reader = drain(directory)
    with reader:
        assert records[-1].seq == tail_seq
        assert records[-1].payload == b"after"
        yield records[:-1], reader


@PROPERTY
@given(PAYLOADS, PAYLOADS, st.data())
def test_truncated_sealed_segment_loses_only_its_cut_records_and_counts_them(
    first: list[bytes], second: list[bytes], data: st.DataObject
) -> None:
    payloads = first + second
    with spool_dir() as directory:
        fill(directory, first)
        fill(directory, second, len(first))
        bases = list_segments(str(directory))
        victim = segment_path(directory, bases[data.draw(st.integers(0, len(bases) - 2))])
        size = os.stat(victim).st_size
        os.truncate(victim, data.draw(st.integers(SEGMENT_HEADER_BYTES, size)))
        records, reader = drain(directory)
        with reader:
            missing = check_delivery(records, payloads)
            stats = reader.stats
            assert stats.dropped_records + stats.corrupt_records == len(missing)
            assert stats.dropped_events + stats.corrupt_events == sum(s % 3 for s in missing)


@PROPERTY
@given(PAYLOADS, st.data())
def test_truncated_newest_segment_recovers_the_longest_valid_prefix(
    payloads: list[bytes], data: st.DataObject
) -> None:
    with spool_dir() as directory:
        fill(directory, payloads)
        newest = segment_path(directory, list_segments(str(directory))[-1])
        os.truncate(newest, data.draw(st.integers(0, os.stat(newest).st_size)))
        with SpoolWriter(directory, segment_bytes=SEGMENT_BYTES) as writer:
            survivors = writer.next_seq
            assert writer.append(b"after", 0) == survivors
        records, reader = drain(directory)
        with reader:
            assert [r.seq for r in records] == list(range(survivors + 1))
            check_delivery(records[:-1], payloads)
            assert records[-1].payload == b"after"


@PROPERTY
@given(PAYLOADS, PAYLOADS, st.data())
def test_single_byte_flip_anywhere_loses_only_the_damaged_record(
    first: list[bytes], second: list[bytes], data: st.DataObject
) -> None:
    """A flipped byte in a frame, header or payload, costs that record only: the reader resyncs
    to the next intact frame and counts exactly one corrupt record (and its events)."""
    payloads = first + second
    with spool_dir() as directory:
        fill(directory, first)
        fill(directory, second, len(first))
        bases = list_segments(str(directory))
        victim_base = data.draw(st.sampled_from(bases))
        victim = segment_path(directory, victim_base)
        scan = scan_segment(victim.read_bytes())
        if not scan.frames:
            return
        at = data.draw(st.integers(SEGMENT_HEADER_BYTES, scan.valid_end - 1))
        start, header = next((o, h) for o, h in reversed(scan.frames) if o <= at)
        tail_seq = flip_then_append(directory, victim, at, data.draw(st.integers(1, 255)),
                                    len(payloads))
        with drained_after(directory, tail_seq) as (records, reader):
            missing = check_delivery(records, payloads)
            assert missing == {header.seq}, "intact records were lost, or damage delivered"
            stats = reader.stats
            assert (stats.corrupt_records, stats.dropped_records) == (1, 0)
            # The events of a record whose header is damaged are known from the next header
            # written before the damage; the newest record of the newest segment has none.
            last_written = victim_base == bases[-1] and header.seq == len(payloads) - 1
            if at - start >= FRAME_HEADER_BYTES or not last_written:
                assert stats.corrupt_events == header.seq % 3


@PROPERTY
@given(PAYLOADS.filter(lambda p: len(p) >= 2), st.data())
def test_payloads_damaged_after_a_damaged_header_never_have_their_seqs_reused(
    payloads: list[bytes], data: st.DataObject
) -> None:
    """A damaged frame header in the newest segment, then damaged payloads in any of the frames
    after it, the last one included: their headers are intact, so their seqs may have been read
    past. The restarted writer hands out none of them again, and its record is delivered."""
    with spool_dir() as directory:
        fill(directory, payloads)
        victim = segment_path(directory, list_segments(str(directory))[-1])
        frames = scan_segment(victim.read_bytes()).frames
        if len(frames) < 2:
            return
        hit = data.draw(st.integers(0, len(frames) - 2))
        picked = data.draw(st.sets(st.integers(hit + 1, len(frames) - 1), min_size=1))
        later = [frames[i] for i in sorted(picked)]
        for offset, header in later:
            at = offset + FRAME_HEADER_BYTES + data.draw(st.integers(0, header.payload_len - 1))
            flip(victim, at, data.draw(st.integers(1, 255)))
        at = frames[hit][0] + data.draw(st.integers(0, FRAME_HEADER_BYTES - 1))
        tail_seq = flip_then_append(directory, victim, at, data.draw(st.integers(1, 255)),
                                    len(payloads))
        with drained_after(directory, tail_seq) as (records, reader):
            missing = check_delivery(records, payloads)
            assert missing == {frames[hit][1].seq} | {h.seq for _, h in later}
            stats = reader.stats
            assert (stats.corrupt_records, stats.dropped_records) == (len(missing), 0)
            assert stats.corrupt_events == sum(s % 3 for s in missing)


@PROPERTY
@given(PAYLOADS, PAYLOADS, st.data())
def test_a_damaged_segment_header_loses_no_record(
    first: list[bytes], second: list[bytes], data: st.DataObject
) -> None:
    """The segment header has no CRC: a flip in it is caught by its base_seq or magic (the
    reader then starts at the first intact frame), or lands in base_events, which only a gap
    right before the segment would read. Either way every record is still delivered."""
    payloads = first + second
    with spool_dir() as directory:
        fill(directory, first)
        fill(directory, second, len(first))
        victim = segment_path(directory, data.draw(st.sampled_from(list_segments(str(directory)))))
        at = data.draw(st.integers(0, SEGMENT_HEADER_BYTES - 1))
        flip_then_append(directory, victim, at, data.draw(st.integers(1, 255)), len(payloads))
        records, reader = drain(directory)
        with reader:
            assert check_delivery(records[:-1], payloads) == set()
            assert records[-1].payload == b"after"
            stats = reader.stats
            assert (stats.corrupt_records, stats.dropped_records) == (0, 0)
