"""Properties of the spool's on-disk codecs: frames, segment scans and the ack.state slots."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ext.spool import frame
from ext.spool.ackstate import (
    SLOT_BYTES,
    STATE_FILE_BYTES,
    Checkpoint,
    LossReport,
    SpoolStats,
    encode_slot,
    load_state,
    slot_offset,
    store_state,
)

PAYLOADS = st.lists(st.tuples(st.binary(max_size=200), st.integers(0, 1000)), max_size=8)
FAST = settings(max_examples=200, deadline=None)


def build_segment(records: list[tuple[bytes, int]], base: int = 7) -> tuple[bytes, list[int]]:
    """Encoded segment bytes and the end offset of each frame."""
    out = bytearray(frame.encode_segment_header(base, 100))
    ends = []
    events = 100
    for i, (payload, count) in enumerate(records):
        out += frame.encode_frame_header(payload, base + i, events, count, 1_000 + i)
        out += payload
        events += count
        ends.append(len(out))
    return bytes(out), ends


@FAST
@given(PAYLOADS)
def test_scan_round_trips_every_record(records: list[tuple[bytes, int]]) -> None:
    data, _ = build_segment(records)
    scan = frame.scan_segment(data)
    assert scan.stop is frame.FrameStatus.OK
    assert scan.valid_end == len(data)
    got = [
        (data[o + frame.FRAME_HEADER_BYTES : o + h.frame_len], h.event_count)
        for o, h in scan.frames
    ]
    assert got == records
    assert scan.next_seq == 7 + len(records)
    assert scan.next_events == 100 + sum(c for _, c in records)


@FAST
@given(PAYLOADS, st.data())
def test_any_truncation_keeps_exactly_the_whole_frames(
    records: list[tuple[bytes, int]], data: st.DataObject
) -> None:
    encoded, ends = build_segment(records)
    cut = data.draw(st.integers(frame.SEGMENT_HEADER_BYTES, len(encoded)))
    scan = frame.scan_segment(encoded[:cut])
    whole = [e for e in ends if e <= cut]
    assert len(scan.frames) == len(whole)
    assert scan.valid_end == (whole[-1] if whole else frame.SEGMENT_HEADER_BYTES)
    torn = cut != scan.valid_end
    assert (scan.stop is frame.FrameStatus.INCOMPLETE) == torn
    assert scan.stop in (frame.FrameStatus.OK, frame.FrameStatus.INCOMPLETE)


@FAST
@given(PAYLOADS.filter(bool), st.data())
def test_any_single_byte_flip_is_detected_never_delivered(
    records: list[tuple[bytes, int]], data: st.DataObject
) -> None:
    encoded, ends = build_segment(records)
    at = data.draw(st.integers(frame.SEGMENT_HEADER_BYTES, len(encoded) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = bytearray(encoded)
    damaged[at] ^= flip
    scan = frame.scan_segment(bytes(damaged))
    hit = next(i for i, end in enumerate(ends) if at < end)
    starts = [frame.SEGMENT_HEADER_BYTES, *ends[:-1]]
    found = [offset for offset, _ in scan.frames]
    # Frames before the damaged one survive intact; the damaged one is never returned.
    assert found[:hit] == starts[:hit]
    assert starts[hit] not in found
    for offset, header in scan.frames:
        payload = bytes(damaged[offset + frame.FRAME_HEADER_BYTES : offset + header.frame_len])
        assert payload == records[header.seq - 7][0]
    assert scan.stop is frame.FrameStatus.CORRUPT_HEADER or scan.damaged_payloads == 1


def test_segment_header_rejects_other_bytes() -> None:
    header = frame.encode_segment_header(5, 9)
    assert frame.decode_segment_header(header) == frame.SegmentHeader(5, 9)
    assert frame.decode_segment_header(header[:-1]) is None
    assert frame.decode_segment_header(b"XXXX" + header[4:]) is None


def test_resync_finds_the_last_intact_frame_after_damage() -> None:
    encoded, _ = build_segment([(b"a" * 50, 1), (b"b" * 50, 2), (b"c" * 50, 3)])
    damaged = bytearray(encoded)
    damaged[frame.SEGMENT_HEADER_BYTES + 5] ^= 0xFF  # header of the first frame
    found = frame.resync_last_frame(bytes(damaged), frame.SEGMENT_HEADER_BYTES + 1)
    assert found is not None
    assert found.seq == 9


CHECKPOINTS = st.builds(
    Checkpoint,
    seg_base=st.integers(0, 2**40),
    offset=st.integers(0, 2**30),
    next_seq=st.integers(0, 2**40),
    next_events=st.integers(0, 2**40),
    stats=st.builds(SpoolStats, *[st.integers(0, 2**40)] * 8),
    reported=st.builds(LossReport, *[st.integers(0, 2**40)] * 6),
)


@FAST
@given(st.lists(CHECKPOINTS, min_size=1, max_size=5), CHECKPOINTS, st.integers(0, SLOT_BYTES - 1))
def test_torn_slot_write_loads_the_previous_commit(
    commits: list[Checkpoint], torn: Checkpoint, tear: int
) -> None:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ackstate-{os.getpid()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, STATE_FILE_BYTES)
        for generation, cp in enumerate(commits):
            store_state(fd, generation, cp)
            assert load_state(fd) == (generation, cp)
        generation = len(commits)
        new = encode_slot(generation, torn)
        os.pwrite(fd, new[:tear], slot_offset(generation))
        landed = os.pread(fd, SLOT_BYTES, slot_offset(generation)) == new
        # The old bytes past the tear can happen to equal the new ones: then the write is whole.
        expected = (generation, torn) if landed else (generation - 1, commits[-1])
        assert load_state(fd) == expected
    finally:
        os.close(fd)
        path.unlink()


@FAST
@given(PAYLOADS.filter(lambda r: len(r) >= 2), st.data())
def test_after_a_damaged_header_the_next_intact_frame_is_found(
    records: list[tuple[bytes, int]], data: st.DataObject
) -> None:
    encoded, ends = build_segment(records)
    starts = [frame.SEGMENT_HEADER_BYTES, *ends[:-1]]
    hit = data.draw(st.integers(0, len(records) - 2))
    damaged = bytearray(encoded)
    at = starts[hit] + data.draw(st.integers(0, frame.FRAME_HEADER_BYTES - 1))
    damaged[at] ^= data.draw(st.integers(1, 255))
    status = frame.decode_frame_header(bytes(damaged), starts[hit])
    assert status is frame.FrameStatus.CORRUPT_HEADER
    events_before = 100 + sum(count for _, count in records[:hit])
    found = frame.find_next_frame(bytes(damaged), starts[hit] + 1, 7 + hit + 1, events_before)
    assert found is not None
    offset, header = found
    assert (offset, header.seq) == (starts[hit + 1], 7 + hit + 1)
    assert header.events_before == events_before + records[hit][1]
