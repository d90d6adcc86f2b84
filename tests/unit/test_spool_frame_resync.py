"""Resync after damage, at its exact bounds: which intact frame may follow a gap, which frames
a search skips, and what a scan counts when only a payload is damaged."""

from __future__ import annotations

import struct
import zlib

from ext.spool import frame


def record(payload: bytes, seq: int, events_before: int = 0, count: int = 1) -> bytes:
    return frame.encode_frame_header(payload, seq, events_before, count, 123) + payload


def test_the_next_frame_may_have_exactly_the_minimum_seq_and_event_index() -> None:
    data = b"junk" + record(b"x", 10, 50)
    assert frame.find_next_frame(data, 0, 10, 50) == (4, frame.decode_frame_header(data, 4))
    assert frame.find_next_frame(data, 0, 11, 50) is None  # an older seq cannot follow
    assert frame.find_next_frame(data, 0, 10, 51) is None  # nor an older event index
    assert frame.find_next_frame(data, 5, 0, 0) is None  # the search starts at `start`
    assert frame.find_next_frame(data, 4, 0, 0) is not None


def test_the_next_frame_skips_older_frames_and_stray_magic_bytes() -> None:
    stray = frame.FRAME_MAGIC.to_bytes(2, "little") + b"not a header"
    older, newer = record(b"a", 3, 10), record(b"b", 9, 30)
    data = stray + older + newer
    found = frame.find_next_frame(data, 0, 5, 20)
    assert found is not None and found[0] == len(stray + older) and found[1].seq == 9


def test_resync_counts_a_frame_whose_payload_is_damaged_or_cut() -> None:
    # Its header passed its CRC, so its seq may have been handed out (and read past): it is taken.
    good, bad = record(b"good", 4), bytearray(record(b"badly", 7, 1, 2))
    bad[-1] ^= 0xFF
    found = frame.resync_last_frame(good + bytes(bad), 0)
    assert found is not None and (found.seq, found.events_before + found.event_count) == (7, 3)
    found = frame.resync_last_frame(good + record(b"cut short", 8)[:-1], 0)
    assert found is not None and found.seq == 8
    bad[5] ^= 0xFF  # a damaged header is no evidence of its seq
    found = frame.resync_last_frame(good + bytes(bad), 0)
    assert found is not None and found.seq == 4


def test_a_damaged_payload_is_stepped_over_and_counted() -> None:
    head = frame.encode_segment_header(5, 100)
    one, two, three = record(b"a", 5, 100, 2), bytearray(record(b"bb", 6, 102, 3)), record(
        b"c", 7, 105, 1)
    two[-1] ^= 0xFF
    scan = frame.scan_segment(head + one + bytes(two) + three)
    assert scan.stop is frame.FrameStatus.OK
    assert scan.damaged_payloads == 1
    assert [h.seq for _, h in scan.frames] == [5, 7]
    assert (scan.next_seq, scan.next_events, scan.valid_end) == (
        8, 106, len(head + one + two + three))
    torn = frame.scan_segment(head + one + bytes(two)[:-1])
    assert (torn.stop, torn.valid_end, torn.damaged_payloads, torn.next_seq) == (
        frame.FrameStatus.INCOMPLETE, len(head + one), 0, 6)


def test_a_frame_repeating_an_older_seq_ends_the_scan() -> None:
    head = frame.encode_segment_header(5, 0)
    one, two = record(b"a", 5), record(b"b", 6)
    scan = frame.scan_segment(head + one + two + record(b"again", 6))
    assert (scan.stop, scan.valid_end, scan.next_seq) == (
        frame.FrameStatus.CORRUPT_HEADER, len(head + one + two), 7)
    assert [h.seq for _, h in scan.frames] == [5, 6]


def test_a_header_with_any_other_magic_is_corrupt() -> None:
    for magic in (frame.FRAME_MAGIC - 1, frame.FRAME_MAGIC + 1, 0):
        body = struct.pack("<HBBIQQQII", magic, 1, frame.KIND_DATA, 0, 1, 0, 0, 1, 0)
        forged = body + struct.pack("<I", zlib.crc32(body))
        assert frame.decode_frame_header(forged, 0) is frame.FrameStatus.CORRUPT_HEADER


def test_a_header_of_a_kind_below_data_is_corrupt() -> None:
    body = struct.pack("<HBBIQQQII", frame.FRAME_MAGIC, 1, 0, 0, 1, 0, 0, 1, zlib.crc32(b""))
    forged = body + struct.pack("<I", zlib.crc32(body))
    assert frame.decode_frame_header(forged, 0) is frame.FrameStatus.CORRUPT_HEADER


def test_a_segment_magic_sorting_below_ours_is_foreign() -> None:
    header = frame.SEGMENT_HEADER.pack(b"TSPK", 1, 1, 5, 9)
    assert frame.decode_segment_header(header) is None


def test_a_scan_follows_seqs_of_any_size() -> None:
    base = 2**40 + 7
    head = frame.encode_segment_header(base, 10**12)
    frames = record(b"a", base, 10**12, 3) + record(b"b", base + 1, 10**12 + 3, 2)
    scan = frame.scan_segment(head + frames)
    assert scan.stop is frame.FrameStatus.OK
    assert [h.seq for _, h in scan.frames] == [base, base + 1]
    assert (scan.next_seq, scan.next_events) == (base + 2, 10**12 + 5)
