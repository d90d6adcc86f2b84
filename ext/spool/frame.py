"""On-disk format of spool segments: the segment header, the record frame, and scanning a buffer.

Pure functions over bytes, shared by the writer (listener process) and the reader (sender process).
No I/O here. Every field is little-endian; checksums are zlib.crc32 (CRC-32/IEEE).
"""

from __future__ import annotations

import struct
import zlib
from enum import Enum
from typing import NamedTuple

import msgspec

SEGMENT_MAGIC = b"TSPL"
FORMAT_VERSION = 1
CHECKSUM_ZLIB_CRC32 = 1

# magic, version, flags (checksum algorithm), base_seq, base_events (events before base_seq).
SEGMENT_HEADER = struct.Struct("<4sHHQQ")
SEGMENT_HEADER_BYTES = SEGMENT_HEADER.size  # 24

FRAME_MAGIC = 0x5053
KIND_DATA = 1
# magic, version, kind, payload_len, seq, events_before, append_time_ns, event_count, payload_crc
_FRAME_BODY = struct.Struct("<HBBIQQQII")
_HEADER_CRC = struct.Struct("<I")
FRAME_HEADER_BYTES = _FRAME_BODY.size + _HEADER_CRC.size  # 44

# A sanity bound checked before trusting a length; the header CRC already covers the field.
MAX_PAYLOAD_BYTES = 1 << 30


class FrameStatus(Enum):
    OK = "ok"
    INCOMPLETE = "incomplete"  # bytes end inside the frame: torn tail or write in progress
    CORRUPT_HEADER = "corrupt_header"  # header fails its CRC: its length cannot be trusted
    CORRUPT_PAYLOAD = "corrupt_payload"  # header valid, payload fails its CRC: skippable exactly


class FrameHeader(NamedTuple):
    """A decoded record header (a tuple: one is built per record read, on the drain path)."""

    seq: int
    events_before: int
    append_time_ns: int
    event_count: int
    payload_len: int
    payload_crc: int

    @property
    def frame_len(self) -> int:
        return FRAME_HEADER_BYTES + self.payload_len


class SegmentHeader(msgspec.Struct, frozen=True, gc=False):
    base_seq: int
    base_events: int


def encode_segment_header(base_seq: int, base_events: int) -> bytes:
    return SEGMENT_HEADER.pack(
        SEGMENT_MAGIC, FORMAT_VERSION, CHECKSUM_ZLIB_CRC32, base_seq, base_events
    )


def decode_segment_header(data: bytes | memoryview) -> SegmentHeader | None:
    """The header at the start of ``data``, or None when it is short or not ours."""
    if len(data) < SEGMENT_HEADER_BYTES:
        return None
    magic, version, flags, base_seq, base_events = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC or version != FORMAT_VERSION or flags != CHECKSUM_ZLIB_CRC32:
        return None
    return SegmentHeader(base_seq, base_events)


def encode_frame_header(
    payload: bytes | memoryview, seq: int, events_before: int, event_count: int, time_ns: int
) -> bytes:
    """The 44-byte header for ``payload``; the caller writes header and payload back to back."""
    body = _FRAME_BODY.pack(
        FRAME_MAGIC,
        FORMAT_VERSION,
        KIND_DATA,
        len(payload),
        seq,
        events_before,
        time_ns,
        event_count,
        zlib.crc32(payload),
    )
    return body + _HEADER_CRC.pack(zlib.crc32(body))


def decode_frame_header(buf: bytes | memoryview, pos: int) -> FrameStatus | FrameHeader:
    """Parse the header at ``pos``: a FrameHeader, INCOMPLETE or CORRUPT_HEADER."""
    if len(buf) - pos < FRAME_HEADER_BYTES:
        return FrameStatus.INCOMPLETE
    end = pos + _FRAME_BODY.size
    (stored,) = _HEADER_CRC.unpack_from(buf, end)
    if zlib.crc32(buf[pos:end]) != stored:
        return FrameStatus.CORRUPT_HEADER
    magic, version, kind, plen, seq, events_before, time_ns, count, pcrc = _FRAME_BODY.unpack_from(
        buf, pos
    )
    if magic != FRAME_MAGIC or version != FORMAT_VERSION or kind != KIND_DATA:
        return FrameStatus.CORRUPT_HEADER
    if plen > MAX_PAYLOAD_BYTES:
        return FrameStatus.CORRUPT_HEADER
    return FrameHeader(seq, events_before, time_ns, count, plen, pcrc)


def check_frame(buf: bytes | memoryview, pos: int) -> tuple[FrameStatus, FrameHeader | None]:
    """Classify the frame at ``pos``; the header is returned whenever it is trustworthy."""
    header = decode_frame_header(buf, pos)
    if isinstance(header, FrameStatus):
        return header, None
    start = pos + FRAME_HEADER_BYTES
    if len(buf) - start < header.payload_len:
        return FrameStatus.INCOMPLETE, header
    if zlib.crc32(buf[start : start + header.payload_len]) != header.payload_crc:
        return FrameStatus.CORRUPT_PAYLOAD, header
    return FrameStatus.OK, header


class SegmentScan(msgspec.Struct, frozen=True):
    """What a full scan of one segment's bytes found (writer recovery, tests, tooling)."""

    header: SegmentHeader | None
    frames: list[tuple[int, FrameHeader]]  # (offset, header) of each valid frame, in order
    valid_end: int  # offset just past the longest valid prefix of frames
    stop: FrameStatus  # why the prefix ended: OK means it ran to the end of the bytes
    damaged_payloads: int  # frames skipped exactly because only their payload was bad
    next_seq: int  # seq after the last trusted frame (the segment base when there is none)
    next_events: int  # event index after the last trusted frame


def scan_segment(buf: bytes | memoryview) -> SegmentScan:
    """Walk frames from the segment header until the bytes end or a frame cannot be trusted.

    Frames with a valid header but a bad payload are stepped over (their length is trusted) and
    counted; a bad header or a seq that does not follow its predecessor stops the scan.
    """
    header = decode_segment_header(buf)
    if header is None:
        return SegmentScan(None, [], 0, FrameStatus.CORRUPT_HEADER, 0, 0, 0)
    frames: list[tuple[int, FrameHeader]] = []
    pos, damaged, expected = SEGMENT_HEADER_BYTES, 0, header.base_seq
    events = header.base_events
    stop = FrameStatus.OK
    while pos < len(buf):
        status, fh = check_frame(buf, pos)
        if status is FrameStatus.INCOMPLETE or status is FrameStatus.CORRUPT_HEADER:
            stop = status
            break
        assert fh is not None
        if fh.seq != expected:
            stop = FrameStatus.CORRUPT_HEADER
            break
        if status is FrameStatus.OK:
            frames.append((pos, fh))
        else:
            damaged += 1
        pos += fh.frame_len
        expected += 1
        events = fh.events_before + fh.event_count
    return SegmentScan(header, frames, pos, stop, damaged, expected, events)


def resync_last_frame(buf: bytes | memoryview, start: int) -> FrameHeader | None:
    """The frame header with the highest seq that passes its CRC, searching byte by byte from
    ``start``.

    Only used by recovery after a corrupt header, so that seqs already handed out are never reused.
    A damaged or cut payload counts too: its header was written, so its seq may have been handed
    out, and a reader that stepped over it would skip a new record given that seq.
    """
    best: FrameHeader | None = None
    needle = FRAME_MAGIC.to_bytes(2, "little")
    data = bytes(buf)
    pos = data.find(needle, start)
    while pos != -1:
        fh = decode_frame_header(data, pos)
        if isinstance(fh, FrameHeader) and (best is None or fh.seq > best.seq):
            best = fh
        pos = data.find(needle, pos + 1)
    return best


def find_next_frame(
    buf: bytes | memoryview, start: int, min_seq: int, min_events: int
) -> tuple[int, FrameHeader] | None:
    """The first frame header at or after ``start`` that passes its CRC and can follow a gap.

    Used to resync after a damaged header, whose length cannot be trusted: the next record is the
    first intact header with seq >= ``min_seq`` and an event index >= ``min_events``. Its payload
    is checked later, as for any frame. A header CRC matches random bytes once in 2**32 tries,
    and the seq and event checks cut that further.
    """
    needle = FRAME_MAGIC.to_bytes(2, "little")
    data = bytes(buf)
    pos = data.find(needle, start)
    while pos != -1:
        head = decode_frame_header(data, pos)
        if isinstance(head, FrameHeader) and head.seq >= min_seq and (
            head.events_before >= min_events
        ):
            return pos, head
        pos = data.find(needle, pos + 1)
    return None
