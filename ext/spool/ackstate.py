"""The reader's committed position and cumulative counters: ``ack.state``, two in-place slots.

Written only by the reader (sender process); read lock-free by the writer (listener process), which
deletes only segments committed in full. A commit is one pwrite of the slot that is not current, so
a torn or killed write leaves the other slot, which the CRC then selects.
"""

from __future__ import annotations

import operator
import os
import struct
import zlib
from operator import attrgetter

import msgspec

from ext.spool.layout import ACK_STATE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.spool.layout import StrPath

SLOT_MAGIC = b"SPAK"
SLOT_VERSION = 2  # 2: refusal counters added
# Slots sit in separate pages: a pwrite inside one page is copied in one step;
# the CRC covers everything else (torn reads, damage).
SLOT_STRIDE = 4096
STATE_FILE_BYTES = 2 * SLOT_STRIDE
# magic, version, flags, generation, seg_base, offset, next_seq, next_events, 8 stats, 6 reported
_SLOT = struct.Struct("<4sHHQ" + "Q" * 4 + "Q" * 8 + "Q" * 6)
_CRC = struct.Struct("<I")
SLOT_BYTES = _SLOT.size + _CRC.size


class SpoolStats(msgspec.Struct, frozen=True, gc=False):
    """Cumulative counters, committed atomically with the position they describe."""

    delivered_records: int = 0
    delivered_events: int = 0
    dropped_records: int = 0  # missing before delivery (segment deleted by something else)
    dropped_events: int = 0
    corrupt_records: int = 0  # lost to damaged bytes (events exact if the header survived)
    corrupt_events: int = 0
    refused_batches: int = 0  # appends the writer failed (the listener answered an error)
    refused_events: int = 0

    def delivered(self, records: int, events: int) -> SpoolStats:
        """These counters with the delivered ones replaced."""
        return SpoolStats(records, events, *_FIELDS[SpoolStats](self)[2:])


class LossReport(msgspec.Struct, frozen=True, gc=False):
    """Records and events lost before delivery, and batches the writer refused at intake.

    A take_loss_report delta, or a running total.
    """

    dropped_records: int = 0
    dropped_events: int = 0
    corrupt_records: int = 0
    corrupt_events: int = 0
    refused_batches: int = 0
    refused_events: int = 0

    @classmethod
    def of(cls, stats: SpoolStats) -> LossReport:
        return cls(
            stats.dropped_records,
            stats.dropped_events,
            stats.corrupt_records,
            stats.corrupt_events,
            stats.refused_batches,
            stats.refused_events,
        )

    def minus(self, other: LossReport) -> LossReport:
        return LossReport(*map(operator.sub, _values(self), _values(other)))

    def at_most(self, other: LossReport) -> LossReport:
        return LossReport(*map(min, _values(self), _values(other)))

    def __bool__(self) -> bool:
        return any(_values(self))


class Checkpoint(msgspec.Struct, frozen=True, gc=False):
    """A read position (segment, byte offset, next seq and its event index) plus counters."""

    seg_base: int = 0
    offset: int = 0
    next_seq: int = 0
    next_events: int = 0
    stats: SpoolStats = SpoolStats()
    reported: LossReport = LossReport()  # losses already handed out by take_loss_report


def _values(counters: SpoolStats | LossReport) -> tuple[int, ...]:
    """The counters in field order. dataclasses.astuple deep-copied every field: it was a
    quarter of the sender's CPU per commit; attrgetter reads them all in one C call."""
    fields: tuple[int, ...] = _FIELDS[type(counters)](counters)
    return fields


_FIELDS = {kind: attrgetter(*kind.__struct_fields__) for kind in (SpoolStats, LossReport)}


def encode_slot(generation: int, cp: Checkpoint) -> bytes:
    body = _SLOT.pack(
        SLOT_MAGIC,
        SLOT_VERSION,
        0,
        generation,
        cp.seg_base,
        cp.offset,
        cp.next_seq,
        cp.next_events,
        *_values(cp.stats),
        *_values(cp.reported),
    )
    return body + _CRC.pack(zlib.crc32(body))


def decode_slot(data: bytes) -> tuple[int, Checkpoint] | None:
    if len(data) < SLOT_BYTES:
        return None
    (crc,) = _CRC.unpack_from(data, _SLOT.size)
    if zlib.crc32(data[: _SLOT.size]) != crc:
        return None
    fields = _SLOT.unpack_from(data, 0)
    if fields[0] != SLOT_MAGIC or fields[1] != SLOT_VERSION:
        return None
    generation = fields[3]
    seg_base, offset, next_seq, next_events = fields[4:8]
    stats = SpoolStats(*fields[8:16])
    reported = LossReport(*fields[16:22])
    return generation, Checkpoint(seg_base, offset, next_seq, next_events, stats, reported)


def slot_offset(generation: int) -> int:
    return SLOT_STRIDE * (generation % 2)


def load_state(fd: int) -> tuple[int, Checkpoint] | None:
    """The valid slot with the highest generation, or None when neither slot is valid."""
    best: tuple[int, Checkpoint] | None = None
    for index in range(2):
        slot = decode_slot(os.pread(fd, SLOT_BYTES, index * SLOT_STRIDE))
        if slot is not None and (best is None or slot[0] > best[0]):
            best = slot
    return best


def store_state(fd: int, generation: int, cp: Checkpoint) -> None:
    """Write ``cp`` as ``generation`` into its slot; no fsync (the threat is process death)."""
    data = encode_slot(generation, cp)
    written = os.pwrite(fd, data, slot_offset(generation))
    if written != len(data):
        raise OSError(f"short write to {ACK_STATE}: {written} of {len(data)} bytes")


def load_committed(directory: StrPath) -> Checkpoint | None:
    """The committed checkpoint, or None when there is no valid ``ack.state`` yet."""
    try:
        fd = os.open(os.path.join(directory, ACK_STATE), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        slot = load_state(fd)
    finally:
        os.close(fd)
    return None if slot is None else slot[1]


def read_committed(directory: StrPath) -> int:
    """Highest committed seq (-1 when nothing is committed); cheap and lock-free."""
    cp = load_committed(directory)
    return -1 if cp is None else cp.next_seq - 1

