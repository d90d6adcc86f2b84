"""Frame codec edges the properties leave open: resync's choice among intact frames, the exact
bounds of a header, and the reasons a scan stops."""

from __future__ import annotations

import struct
import zlib

from ext.spool import frame


def record(payload: bytes, seq: int, events_before: int = 0, count: int = 1) -> bytes:
    return frame.encode_frame_header(payload, seq, events_before, count, 123) + payload


def test_resync_keeps_the_highest_seq_not_the_last_found() -> None:
    # A rewritten region can leave an older frame after a newer one.
    data = b"junk" + record(b"new", 12) + record(b"old", 4) + b"tail"
    found = frame.resync_last_frame(data, 0)
    assert found is not None and found.seq == 12
    assert frame.resync_last_frame(b"no frame here", 0) is None
    assert frame.resync_last_frame(data, 5) is not None  # the search starts at `start`
    assert frame.resync_last_frame(data, len(data) - 10) is None


def test_a_header_decodes_its_fields() -> None:
    header = frame.decode_frame_header(b"xx" + record(b"payload", 9, 40, 3), 2)
    assert header == frame.FrameHeader(
        seq=9, events_before=40, append_time_ns=123, event_count=3, payload_len=7,
        payload_crc=zlib.crc32(b"payload"),
    )
    assert isinstance(header, frame.FrameHeader) and header.frame_len == 44 + 7
    assert frame.FRAME_HEADER_BYTES == 44 and frame.SEGMENT_HEADER_BYTES == 24


def test_a_header_one_byte_short_is_incomplete() -> None:
    full = record(b"", 1)
    assert frame.decode_frame_header(full, 0) != frame.FrameStatus.INCOMPLETE
    assert frame.decode_frame_header(full[:-1], 0) is frame.FrameStatus.INCOMPLETE
    assert frame.check_frame(record(b"abc", 1)[:-1], 0)[0] is frame.FrameStatus.INCOMPLETE
    assert frame.check_frame(record(b"abc", 1), 0)[0] is frame.FrameStatus.OK


def test_a_scan_reports_where_and_why_it_stopped() -> None:
    head = frame.encode_segment_header(5, 100)
    one, two = record(b"a", 5, 100, 2), record(b"bb", 6, 102, 3)
    scan = frame.scan_segment(head + one + two)
    assert (scan.stop, scan.valid_end, scan.next_seq, scan.next_events) == (
        frame.FrameStatus.OK, len(head + one + two), 7, 105,
    )
    assert [offset for offset, _ in scan.frames] == [24, 24 + len(one)]
    gap = frame.scan_segment(head + one + record(b"c", 8, 102))  # seq 7 is missing
    assert (gap.stop, gap.valid_end, gap.next_seq) == (
        frame.FrameStatus.CORRUPT_HEADER, len(head + one), 6,
    )
    empty = frame.scan_segment(head)
    assert (empty.stop, empty.next_seq, empty.next_events, empty.frames) == (
        frame.FrameStatus.OK, 5, 100, [],
    )
    foreign = frame.scan_segment(b"not a segment header...." + one)
    assert foreign == frame.SegmentScan(None, [], 0, frame.FrameStatus.CORRUPT_HEADER, 0, 0, 0)


def forged_header(magic: int = frame.FRAME_MAGIC, version: int = frame.FORMAT_VERSION,
                  kind: int = frame.KIND_DATA, plen: int = 0) -> bytes:
    """A header with a valid CRC over fields the writer never produces."""
    body = struct.pack("<HBBIQQQII", magic, version, kind, plen, 1, 0, 0, 1, zlib.crc32(b""))
    return body + struct.pack("<I", zlib.crc32(body)) + bytes(64)


def test_a_header_with_a_valid_crc_but_foreign_fields_is_corrupt() -> None:
    assert isinstance(frame.decode_frame_header(forged_header(), 0), frame.FrameHeader)
    for forged in (
        forged_header(magic=0x5054), forged_header(version=0), forged_header(version=2),
        forged_header(kind=2), forged_header(plen=frame.MAX_PAYLOAD_BYTES + 1),
    ):
        assert frame.decode_frame_header(forged, 0) is frame.FrameStatus.CORRUPT_HEADER
    at_bound = frame.decode_frame_header(forged_header(plen=frame.MAX_PAYLOAD_BYTES), 0)
    assert isinstance(at_bound, frame.FrameHeader)


def test_a_segment_header_must_match_in_every_field() -> None:
    def header(magic: bytes = b"TSPL", version: int = 1, flags: int = 1) -> bytes:
        return frame.SEGMENT_HEADER.pack(magic, version, flags, 5, 9)

    assert frame.decode_segment_header(header()) == frame.SegmentHeader(5, 9)
    for other in (header(magic=b"TSPM"), header(version=2), header(flags=2), header(flags=0),
                  header(version=0)):
        assert frame.decode_segment_header(other) is None
