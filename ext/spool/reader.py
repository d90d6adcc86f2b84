"""SpoolReader: the only consumer of the spool, run by the sender process.

Reads records in seq order from the committed position, counts every seq gap as a loss (exact, from
the seqs and event indexes in frames and segment headers), commits delivered positions to
``ack.state`` and deletes fully delivered segments. It never writes to a segment.
"""

from __future__ import annotations

import errno
import logging
import os
import time
import zlib
from collections import deque
from enum import Enum
from functools import partial
from typing import NamedTuple

from msgspec.structs import replace

from ext.spool import frame
from ext.spool.ackstate import (
    STATE_FILE_BYTES,
    Checkpoint,
    LossReport,
    SpoolStats,
    load_state,
    store_state,
)
from ext.spool.layout import (
    ACK_STATE,
    READER_LOCK,
    RoleFiles,
    list_segments,
    segment_path,
    take_role_lock,
    unlink_quietly,
)
from ext.spool.refusals import RefusalReader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.spool.layout import StrPath

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 256 * 1024
LISTING_SETTLE_NS = 2_000_000_000  # over a tick, and over a second (the coarsest mtimes)
LISTING_TTL_S = 2.0


class SpoolRecord(NamedTuple):
    """One record as read: its seq, the payload bytes, and the counts written with it."""

    seq: int
    payload: bytes
    event_count: int
    append_time_ns: int


class _Unsettled(NamedTuple):
    """A record read and not committed yet: what commit() stores once it is delivered.

    A tuple, not a Checkpoint: one is built per record read, and building frozen dataclasses per
    record halved the drain rate of small records. ``stats`` is current but for its delivered
    counters, which the two fields before it hold."""

    seq: int
    seg_base: int
    end_offset: int  # where the record ends in its segment: the position after it
    next_events: int  # event index of the record after it
    delivered_records: int
    delivered_events: int
    stats: SpoolStats


# _Unsettled(...) costs a Python-level __new__ per record; this builds the same tuple in C.
_new_unsettled = partial(tuple.__new__, _Unsettled)


class _Stop(Enum):
    """Why one pass over a read's bytes stopped."""

    READ_AGAIN = "the batch is full, or the bytes read end where more may follow"
    AT_END = "the segment's bytes end here, inside or after the last frame"
    DAMAGED = "the frame header at the read offset fails its CRC"


class _Pass(NamedTuple):
    """What one pass over a read's bytes leaves: why it stopped, and the byte budget left."""

    stop: _Stop
    bytes_left: int


class SpoolReader(RoleFiles):
    """Reads ahead of the committed position; commit() settles what was delivered."""

    def __init__(self, directory: StrPath) -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._lock_fd = take_role_lock(self.directory, READER_LOCK)
        self._refusals = RefusalReader(self.directory)
        self._state_fd = -1
        self._seg_fd = -1
        self._dir_fd = -1
        self._generation = 0
        self._committed = Checkpoint()
        self._adopt = False
        try:
            self._open_state()
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise
        self._pending: deque[_Unsettled] = deque()
        cp = self._committed
        self._taken = cp.reported  # losses handed out by take_loss_report (a running total)
        # Reports handed out whose record is not committed yet: (the seq of the record last read
        # when taken, the running total then). The caller sends a report with that record, so
        # only its commit, not an earlier record's, marks the report reported...
        self._handed: deque[tuple[int, LossReport]] = deque()
        self._settled = cp.reported  # ...and makes it the running total that commits mark
        self._expected_seq = cp.next_seq
        self._expected_events = cp.next_events
        self._stats = cp.stats
        self._loss_checked: SpoolStats | None = None  # the counters take_loss_report last saw
        self._delivered_records = cp.stats.delivered_records
        self._delivered_events = cp.stats.delivered_events
        self._resume: Checkpoint | None = cp  # where the first segment entered is read from
        self._offset = 0  # read offset in the open segment (set when one is entered)
        self._need = 0  # bytes the next pread must cover to hold a whole large frame
        self._seg_base = -1
        self._damaged = False
        self._sealed = False  # the writer has moved on from the open segment
        self._unchanged_since: int | None = None  # directory mtime of a settled listing
        self._listing_expires = 0.0  # monotonic
        self._kept: int | None = None  # the oldest segment the last deletion pass left
        self._kept_next: int | None = None  # the one after it then, if any
        self._delete_delivered()

    @property
    def committed_seq(self) -> int:
        return self._committed.next_seq - 1

    def unread_bytes(self) -> int:
        """Bytes appended but not read yet (frame headers included): what a drain still has to
        send. Lists the directory: for the shutdown estimate, not for every read."""
        total = 0
        self._unchanged_since = None  # the next end of the open segment lists again too
        for base in list_segments(self.directory):
            if base < self._seg_base:
                continue
            try:
                size = os.stat(segment_path(self.directory, base)).st_size
            except FileNotFoundError:
                continue
            read = self._offset if base == self._seg_base else frame.SEGMENT_HEADER_BYTES
            total += max(0, size - read)
        return max(0, total)

    @property
    def stats(self) -> SpoolStats:
        """Counters as of the committed position (what is durable)."""
        return self._committed.stats

    def read(self, max_records: int, max_bytes: int) -> list[SpoolRecord]:
        """Up to ``max_records`` records after the last one read; [] when none is there yet.

        Stops adding records once ``max_bytes`` of payload is reached (a lone larger record is still
        returned). Never waits: the sender waits on the writer's wake-up pipe itself.
        """
        self._observe_refusals()
        batch: list[SpoolRecord] = []
        bytes_left = max_bytes
        while len(batch) < max_records and (not batch or bytes_left > 0):
            if self._seg_fd < 0 and not self._open_next():
                break
            want = max(READ_CHUNK_BYTES, bytes_left + frame.FRAME_HEADER_BYTES, self._need)
            stop, bytes_left = self._read_frames(want, batch, max_records, bytes_left)
            if stop is _Stop.READ_AGAIN or (stop is _Stop.DAMAGED and self._resync()):
                continue
            if not self._at_sealed_end():
                break
        return batch

    def commit(self, through_seq: int) -> None:
        """Durably record every seq <= ``through_seq`` as delivered; ValueError if not read yet."""
        if through_seq <= self.committed_seq:
            return
        if not self._pending or through_seq > self._pending[-1].seq:
            raise ValueError(f"seq {through_seq} has not been read")
        entry = self._pending.popleft()
        while self._pending and self._pending[0].seq <= through_seq:
            entry = self._pending.popleft()
        while self._handed and self._handed[0][0] <= entry.seq:
            self._settled = self._handed.popleft()[1]
        cp = self._checkpoint(entry)
        store_state(self._state_fd, self._generation + 1, cp)
        self._generation += 1
        self._committed = cp
        self._delete_delivered()

    def _checkpoint(self, entry: _Unsettled) -> Checkpoint:
        """The position and counters to commit once ``entry`` is delivered."""
        stats = entry.stats.delivered(entry.delivered_records, entry.delivered_events)
        taken = self._settled
        # Counts never go below zero: nothing taken yet stays nothing (the common case).
        reported = taken.at_most(LossReport.of(stats)) if taken else taken
        return Checkpoint(entry.seg_base, entry.end_offset, entry.seq + 1, entry.next_events,
                          stats, reported)

    def take_loss_report(self) -> LossReport | None:
        """Losses found up to the read position and not yet reported, or None.

        Marked as reported by the commit() of the record last read now, which the caller sends it
        with (in the same slot write as the position), not by an earlier record's; handed out
        again by the next reader after a crash before that commit: at least once, never double
        counted.
        """
        if self._stats is self._loss_checked:
            return None  # no count changed since the last call (the counters are replaced)
        self._loss_checked = self._stats
        current = LossReport.of(self._stats)
        delta = current.minus(self._taken)
        if not delta:
            return None
        self._taken = current
        last_read = self._pending[-1].seq if self._pending else self.committed_seq
        self._handed.append((last_read, current))
        return delta

    def close(self) -> None:
        self._refusals.close()
        self._close_fds("_seg_fd", "_state_fd", "_dir_fd", "_lock_fd")

    # -- committed state -------------------------------------------------------------------------

    def _open_state(self) -> None:
        path = os.path.join(self.directory, ACK_STATE)
        self._state_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        size = os.fstat(self._state_fd).st_size
        if size < STATE_FILE_BYTES:
            # Real bytes, not a hole (ftruncate): a commit then overwrites blocks the file owns,
            # and still succeeds once the function filled /tmp (as refused.state does).
            missing = STATE_FILE_BYTES - size
            if os.pwrite(self._state_fd, bytes(missing), size) != missing:
                # Left as found: a part-written file has no valid slot, and the next start would
                # take it for a damaged one (no gap counted before the oldest segment).
                os.ftruncate(self._state_fd, size)
                raise OSError(errno.ENOSPC, f"short write creating {ACK_STATE}")
        loaded = load_state(self._state_fd)
        self._adopt = False
        if loaded is not None:
            self._generation, self._committed = loaded
        elif size == 0:
            self._generation, self._committed = 0, Checkpoint()
            store_state(self._state_fd, 0, self._committed)
        else:
            # Both slots unreadable (out of the threat model): resend from the oldest segment,
            # duplicates rather than loss, and count no gap since the true position is unknown.
            log.error("spool %s has no valid slot; restarting from the oldest segment", path)
            self._generation, self._committed = 0, Checkpoint()
            self._adopt = True

    def _delete_delivered(self, bases: list[int] | None = None) -> None:
        """Deletes the segments delivered in full: those whose successor starts at or below the
        committed next seq. Lists the directory (unless given a listing just made) only when
        one may be, as far as the last listing tells (see _may_delete)."""
        next_seq = self._committed.next_seq
        if bases is None:
            if not self._may_delete(next_seq):
                return
            bases = list_segments(self.directory)
        kept = 0
        while kept + 1 < len(bases) and bases[kept + 1] <= next_seq:
            unlink_quietly(segment_path(self.directory, bases[kept]))
            kept += 1
        self._kept = bases[kept] if bases else None
        self._kept_next = bases[kept + 1] if kept + 1 < len(bases) else None

    def _may_delete(self, next_seq: int) -> bool:
        """Whether a segment may now be delivered in full, from what the last deletion pass left:
        the oldest segment kept (``_kept``) and the one after it (``_kept_next``, None when it
        was the newest then). A segment made since then is seen by the reader's next listing
        (moving on to it passes that listing here), so no commit lists to look for one: the
        kept segment, if delivered in full, is deleted then."""
        kept = self._kept
        if kept is None or self._committed.seg_base != kept:
            return True  # unknown, or committed into a later segment: the kept one is done
        return self._kept_next is not None and self._kept_next <= next_seq

    # -- read position ---------------------------------------------------------------------------

    def _close_segment(self) -> None:
        """Close the open segment (there is one: both callers have just read or opened it)."""
        os.close(self._seg_fd)
        self._seg_fd = -1

    def _open_next(self) -> bool:
        """Open the segment holding the next record; False when there is none yet."""
        while True:
            bases = list_segments(self.directory)
            if self._seg_base < 0:
                below = [b for b in bases if b <= self._expected_seq]
                base = below[-1] if below and not self._adopt else min(bases, default=-1)
            else:
                base = min((b for b in bases if b > self._seg_base), default=-1)
            if base < 0:
                return False
            try:
                fd = os.open(segment_path(self.directory, base), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # dropped by the writer between the listing and the open
            self._seg_fd, self._seg_base, self._sealed = fd, base, False
            self._unchanged_since = None
            header = frame.decode_segment_header(os.pread(fd, frame.SEGMENT_HEADER_BYTES, 0))
            first = frame.SEGMENT_HEADER_BYTES
            if header is None or header.base_seq != base:
                found = self._first_intact_frame(base)
                if found is None:
                    log.error("spool segment %d has no valid header or frame; skipping it", base)
                    self._close_segment()
                    self._damaged = True
                    continue
                # The frames say where the segment starts: its first intact one stands in for
                # the header (a gap before it is counted as corrupt, exactly).
                log.error("spool segment %d has a damaged header; reading its frames", base)
                first, head = found
                header = frame.SegmentHeader(head.seq, head.events_before)
                self._damaged = True
            self._enter_segment(header)
            self._offset = max(self._offset, first)
            self._delete_delivered(bases)  # also finishes deletions a crash interrupted
            return True

    def _first_intact_frame(self, base: int) -> tuple[int, frame.FrameHeader] | None:
        size = os.fstat(self._seg_fd).st_size
        return frame.find_next_frame(
            os.pread(self._seg_fd, size, 0), frame.SEGMENT_HEADER_BYTES, base, 0
        )

    def _enter_segment(self, header: frame.SegmentHeader) -> None:
        if self._adopt:
            self._adopt = False
            self._expected_seq, self._expected_events = header.base_seq, header.base_events
        elif header.base_seq > self._expected_seq:
            self._count_gap(header.base_seq, header.base_events)
        self._damaged = False
        self._offset = frame.SEGMENT_HEADER_BYTES
        resume, self._resume = self._resume, None
        if resume is not None and resume.seg_base == header.base_seq and (
            resume.offset > self._offset
        ):
            probe = frame.decode_frame_header(
                os.pread(self._seg_fd, frame.FRAME_HEADER_BYTES, resume.offset), 0
            )
            at_end = os.fstat(self._seg_fd).st_size == resume.offset
            if at_end or (isinstance(probe, frame.FrameHeader) and probe.seq == self._expected_seq):
                self._offset = resume.offset

    def _count_gap(self, seq: int, events: int) -> None:
        """Seqs [expected, seq) are missing: damaged bytes if we just skipped some, else dropped."""
        records = seq - self._expected_seq
        lost_events = max(0, events - self._expected_events)
        s = self._stats
        if self._damaged:
            self._stats = replace(
                s,
                corrupt_records=s.corrupt_records + records,
                corrupt_events=s.corrupt_events + lost_events,
            )
        else:
            self._stats = replace(
                s,
                dropped_records=s.dropped_records + records,
                dropped_events=s.dropped_events + lost_events,
            )
        log.warning("spool: %d records (%d events) lost before seq %d", records, lost_events, seq)
        self._expected_seq, self._expected_events = seq, events

    # -- reading frames --------------------------------------------------------------------------

    def _observe_refusals(self) -> None:
        """Take in the writer's refusal counters; reported with the records read after this."""
        seen = self._refusals.current()
        s = self._stats
        if seen is not None and (seen.batches, seen.events) > (s.refused_batches, s.refused_events):
            self._stats = replace(
                s,
                refused_batches=max(seen.batches, s.refused_batches),
                refused_events=max(seen.events, s.refused_events),
            )

    def _resync(self) -> bool:
        """Step over a damaged frame header at the read offset to the next intact frame.

        The damaged length cannot be trusted, so this searches the rest of the segment for the
        first header that passes its CRC with the expected seq or a later one; the records in
        between are counted as corrupt, exactly (seq and event index come from that header).
        The expected seq itself can follow: a restart that could not resume at its committed
        offset reads the segment from its start, where the damaged header is a delivered one.
        False when there is none yet: the rest of a sealed segment is then skipped, an active
        one is searched again later.
        The search starts at the damaged header itself: one that failed its CRC only because the
        read raced a write passes now and is read, not counted as corrupt. One really damaged
        fails again and is passed over, so no read stops at it twice.
        """
        rest = os.fstat(self._seg_fd).st_size - self._offset
        data = os.pread(self._seg_fd, rest, self._offset)
        found = frame.find_next_frame(data, 0, self._expected_seq, self._expected_events)
        if found is None:
            return False
        skip, header = found
        log.warning("spool: skipped %d damaged bytes in segment %d", skip, self._seg_base)
        if header.seq > self._expected_seq:
            self._damaged = True
            self._count_gap(header.seq, header.events_before)
        self._damaged = False
        self._offset += skip
        self._need = 0
        return True

    def _at_sealed_end(self) -> bool:
        """At the end of the readable bytes: True after moving on to the next segment."""
        if not self._sealed:
            # The writer creates the next segment only after its last write here returned, so
            # once a newer segment is visible, one more read sees this segment's final bytes.
            # A segment the writer deleted (delivered in full) is final too.
            self._sealed = self._writer_moved_on()
            return self._sealed
        remaining = os.fstat(self._seg_fd).st_size - self._offset
        if remaining > 0:
            log.warning("spool: skipping %d bad bytes in segment %d", remaining, self._seg_base)
            self._damaged = True
        self._close_segment()
        return True

    def _writer_moved_on(self) -> bool:
        """A newer segment is visible, or the open one is gone.

        Lists the directory only when it may have changed since a listing that said no: every
        segment created, renamed or deleted sets the directory's mtime, one fstat away. The kernel
        stamps it from a clock that may lag by a tick (or round to a second on some file
        systems), so a listing is trusted only if the mtime it saw was LISTING_SETTLE_NS old
        (read before the fstat: a pause in between cannot make it look older); and for at
        most LISTING_TTL_S, a bound should a file system leave the mtime alone.
        """
        now_ns = time.time_ns()
        mtime = os.fstat(self._dir_fd).st_mtime_ns
        if mtime == self._unchanged_since and time.monotonic() < self._listing_expires:
            return False
        bases = list_segments(self.directory)
        moved_on = self._seg_base not in bases or any(b > self._seg_base for b in bases)
        settled = not moved_on and now_ns - mtime > LISTING_SETTLE_NS
        self._unchanged_since = mtime if settled else None
        self._listing_expires = time.monotonic() + LISTING_TTL_S
        return moved_on

    def _read_frames(
        self, want: int, batch: list[SpoolRecord], max_records: int, bytes_left: int
    ) -> _Pass:
        """Parse frames from one pread of ``want`` bytes at the read offset into ``batch``, until
        it holds ``max_records`` or ``bytes_left`` of payload is spent; the read offset moves past
        the frames parsed (at DAMAGED it is the damaged header's)."""
        # No more than the segment holds: a pread allocates its whole length first, and 256 KiB
        # costs an mmap, an mremap and a munmap per read where a few KiB were appended.
        there = os.fstat(self._seg_fd).st_size - self._offset
        buf = os.pread(self._seg_fd, min(want, max(there, 0)), self._offset)
        view = memoryview(buf)
        pos = 0
        # Locals for the per-record loop: it runs once per record of every drain.
        decode, crc32, size = frame.decode_frame_header, zlib.crc32, len(buf)
        incomplete = frame.FrameStatus.INCOMPLETE
        header_bytes, append, accept = frame.FRAME_HEADER_BYTES, batch.append, self._accept
        try:
            while len(batch) < max_records and (not batch or bytes_left > 0):
                head = decode(view, pos)
                if isinstance(head, frame.FrameHeader) and head.seq == self._expected_seq:
                    start = pos + header_bytes
                    end = start + head.payload_len
                    if end <= size and crc32(view[start:end]) == head.payload_crc:
                        pos = end  # the common case: the next record, whole and intact
                        append(SpoolRecord(head.seq, bytes(view[start:end]),
                                           head.event_count, head.append_time_ns))
                        bytes_left -= head.payload_len
                        accept(head, self._offset + pos)
                        continue
                status, fh = frame.check_frame(view, pos)
                if status is incomplete:
                    if len(buf) < want:
                        return _Pass(_Stop.AT_END, bytes_left)  # the file ends inside this frame
                    self._need = fh.frame_len if fh is not None else 0
                    return _Pass(_Stop.READ_AGAIN, bytes_left)
                if status is frame.FrameStatus.CORRUPT_HEADER or fh is None:
                    return _Pass(_Stop.DAMAGED, bytes_left)
                pos += fh.frame_len
                if fh.seq < self._expected_seq:
                    continue
                if fh.seq > self._expected_seq:
                    self._damaged = True
                    self._count_gap(fh.seq, fh.events_before)
                if status is frame.FrameStatus.CORRUPT_PAYLOAD:
                    self._skip_damaged(fh)
                    continue
                start = pos - fh.payload_len
                append(
                    SpoolRecord(fh.seq, bytes(view[start:pos]), fh.event_count, fh.append_time_ns)
                )
                bytes_left -= fh.payload_len
                accept(fh, self._offset + pos)
            return _Pass(_Stop.READ_AGAIN, bytes_left)
        finally:
            self._offset += pos
            view.release()

    def _accept(self, fh: frame.FrameHeader, end_offset: int) -> None:
        records = self._delivered_records = self._delivered_records + 1
        events = self._delivered_events = self._delivered_events + fh.event_count
        self._expected_seq = fh.seq + 1
        next_events = self._expected_events = fh.events_before + fh.event_count
        self._pending.append(_new_unsettled((fh.seq, self._seg_base, end_offset, next_events,
                                             records, events, self._stats)))

    def _skip_damaged(self, fh: frame.FrameHeader) -> None:
        log.warning("spool: record %d failed its checksum; skipping it", fh.seq)
        s = self._stats
        self._stats = replace(
            s,
            corrupt_records=s.corrupt_records + 1,
            corrupt_events=s.corrupt_events + fh.event_count,
        )
        self._expected_seq = fh.seq + 1
        self._expected_events = fh.events_before + fh.event_count
        self._damaged = False
