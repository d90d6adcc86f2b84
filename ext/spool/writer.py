"""SpoolWriter: the only appender of the spool, run by the listener process.

Owns segment creation, the append hot path (one raw writev, no fsync, no user-space buffer),
start-up recovery of the newest segment, and the bound: when a record does not fit, delivered
data is reclaimed and, if that is not enough, the record is refused (the listener answers 503
and the refusal is counted in refused.state). A record answered 2xx is never deleted to make room
for a newer one: the writer deletes only segments the reader has committed in full, and never
rewrites a byte after a successful append.
"""

from __future__ import annotations

import _thread
import errno
import logging
import os
import threading
import time
import zlib
from collections import deque

from ext.spool import frame
from ext.spool.ackstate import LossReport, load_committed, load_state
from ext.spool.layout import (
    ACK_STATE,
    TMP_SUFFIX,
    WRITER_LOCK,
    RoleFiles,
    list_segments,
    notify,
    segment_name,
    segment_path,
    take_role_lock,
    unlink_quietly,
)
from ext.spool.refusals import RefusalLog, Refusals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.spool.layout import StrPath

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_SEGMENT_BYTES = 2**20
MIN_SEGMENT_BYTES = 64 * 2**10
# While the filesystem, not max_bytes, sets the bound, an active segment this large is deleted
# at the next append once the reader has committed all of it: the spool then sits on little
# delivered data. ack.state is looked at again only after a quarter of that more was appended
# (reading it on every append cost small appends half their speed). With room to spare this is
# not done: a new segment per append cost 0.1-3 ms on a busy machine, and delivered data stays
# below one segment anyway.
DEFAULT_RECLAIM_BYTES = 64 * 2**10
# Segments are at most 1/8 of the bound in force, so delivered data the spool still holds (at most
# the segment the reader is in) stays small next to it, however little room the filesystem leaves.
SEGMENTS_PER_BOUND = 8
# Room kept free below the bound that adapts to the filesystem: block rounding of segment files,
# ack.state and refused.state.
DEFAULT_RESERVE_BYTES = 128 * 2**10
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# Refused records remembered (length and CRC) so that a batch the platform sends again and that is
# refused again is counted once: Lambda retries a refused POST with the same body.
RECENT_REFUSALS = 64


class RecordTooLargeError(ValueError):
    """The record cannot fit in the spool even when it is empty."""


class _SpareFile:
    """Keeps one empty file created ahead of time, so that a roll never waits for an inode.

    Creating a file on ext4 under write load took 0.4-1 ms here (journal), enough to break the
    1 ms p99 append budget on the appends that roll; a helper thread takes that cost instead.
    The helper lives only while it makes a file (one per roll): an idle thread would be woken,
    stopped and woken again at every freeze and thaw of the environment, and cost the listener
    ~50 us of CPU per invocation for nothing.
    """

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._spare: tuple[int, str] | None = None
        self._serial = 0
        self._closed = False
        # Held while a helper makes a file: it guards `_spare`, and close() waits on it.
        self._idle = threading.Lock()
        self._idle.acquire()
        self._make_next()

    def take(self) -> tuple[int, str] | None:
        """The ready file (fd, path), or None if it is not ready yet; a new one is then prepared
        (unless the one asked for earlier is still being made)."""
        if not self._idle.acquire(blocking=False):
            return None  # the helper is still making it
        spare, self._spare = self._spare, None
        self._make_next()
        return spare

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._idle.acquire()  # a helper still at work finishes first; none starts after
        spare, self._spare = self._spare, None
        if spare is not None:
            os.close(spare[0])
            unlink_quietly(spare[1])

    def _make_next(self) -> None:
        """With `_idle` held: hands it to a new helper that makes the next file."""
        if self._closed:
            self._idle.release()
            return
        serial = self._serial
        self._serial += 1
        try:
            # Not threading.Thread: its start() waits until the thread runs, on the roll's path.
            _thread.start_new_thread(self._make, (serial,))
        except RuntimeError as err:  # no thread now: the roll creates its file itself
            log.warning("spool: cannot start the spare segment helper: %s", err)
            self._idle.release()

    def _make(self, serial: int) -> None:
        path = os.path.join(self._directory, f"spare-{serial}{TMP_SUFFIX}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as err:  # the roll falls back to creating its file itself
            log.warning("spool: cannot prepare a spare segment: %s", err)
        else:
            self._spare = (fd, path)
        finally:
            self._idle.release()


class SpoolWriter(RoleFiles):
    """Appends records with contiguous seqs; see docs/spool.md for the format and the guarantees."""

    def __init__(
        self,
        directory: StrPath,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
        reclaim_bytes: int = DEFAULT_RECLAIM_BYTES,
        wake_fd: int | None = None,
        defer_wake_s: float = 0.0,
    ) -> None:
        if segment_bytes < frame.SEGMENT_HEADER_BYTES + frame.FRAME_HEADER_BYTES:
            raise ValueError(f"segment_bytes too small: {segment_bytes}")
        if max_bytes < segment_bytes:
            raise ValueError(f"max_bytes ({max_bytes}) must be >= segment_bytes ({segment_bytes})")
        self.directory = os.fspath(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.reserve_bytes = reserve_bytes
        self.reclaim_bytes = reclaim_bytes
        self._wake_fd = wake_fd
        self.defer_wake_s = defer_wake_s
        # Monotonic time by which a held wake-up is written (see append); None: none is held.
        self.wake_due: float | None = None
        os.makedirs(self.directory, exist_ok=True)
        self._lock_fd = take_role_lock(self.directory, WRITER_LOCK)
        self._spares: _SpareFile | None = None
        self._refusals: RefusalLog | None = None
        self._recent_refusals: deque[tuple[int, int]] = deque(maxlen=RECENT_REFUSALS)
        self._ack_fd = -1
        self._fd = -1  # the active segment; -1 while there is none (a full filesystem)
        self._active_base = -1
        self._active_size = 0
        self._sealed: list[tuple[int, int]] = []  # (base, size) of every older segment, ascending
        self._total = 0
        self._capacity = max_bytes  # the bound in force: max_bytes, or less if the disk is short
        self._segment_limit = segment_bytes
        self._reclaim_check_at = reclaim_bytes  # active size at which ack.state is read again
        self._next_seq = 0
        self._next_events = 0
        self.reclaimed_segments = 0  # delivered segments this writer deleted to free their room
        self.truncated_bytes = 0  # torn tail cut by recovery
        try:
            self._recover()
        except BaseException:
            self.close()
            raise
        self._spares = _SpareFile(self.directory)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def total_bytes(self) -> int:
        """Bytes in segment files as this writer last knew them (the reader may have freed some)."""
        return self._total

    @property
    def capacity_bytes(self) -> int:
        """The bound in force after the last look at the filesystem (at most max_bytes)."""
        return self._capacity

    @property
    def refusals(self) -> Refusals:
        """Appends that failed since the spool was created (persisted in refused.state)."""
        return self._refusals.counts if self._refusals is not None else Refusals()

    def append(self, payload: bytes | memoryview, event_count: int, *,
               read_now: bool = True) -> int:
        """Append one record and return its seq; once this returns, a SIGKILL cannot lose it.

        `read_now`: the reader is woken at once; else the wake-up is held until the next record
        to be read now, or `defer_wake_s` after the first one held (`wake_if_due`), so that one
        wake-up of the reader takes both: it would otherwise wake for each such record.

        Raises RecordTooLargeError, or OSError (ENOSPC when the record does not fit next to the
        data not delivered yet) after cutting the segment back to the previous record boundary.
        Either way the refusal is counted in refused.state before the exception leaves, once per
        record: the same bytes refused again lately (the platform's retry) are not counted again.
        """
        try:
            seq = self._append(payload, event_count)
        except (OSError, ValueError):
            if self._refusals is not None and self._first_refusal(payload):
                self._refusals.add(event_count)
            raise
        if self._refusals is not None and self._refusals.unsaved:
            self._refusals.save()  # the disk had no room for them: now it has
        if read_now or self.defer_wake_s <= 0:
            self.wake_due = None
            notify(self._wake_fd)
        elif self.wake_due is None:
            self.wake_due = time.monotonic() + self.defer_wake_s
        return seq

    def wake_if_due(self, now: float) -> None:
        """Writes the held wake-up once it is due at `now` (monotonic)."""
        if self.wake_due is not None and now >= self.wake_due:
            self.wake_due = None
            notify(self._wake_fd)

    def _first_refusal(self, payload: bytes | memoryview) -> bool:
        """False if this very record was refused lately (a retry of the same batch)."""
        key = (len(payload), zlib.crc32(payload))
        if key in self._recent_refusals:
            return False
        self._recent_refusals.append(key)
        return True

    def close(self) -> None:
        """Release the files; nothing is buffered, so a crash loses nothing close would keep.
        A held wake-up is written: nothing will write it later."""
        self.wake_if_due(float("inf"))
        if self._spares is not None:
            self._spares.close()
            self._spares = None
        if self._refusals is not None:
            self._refusals.close()
            self._refusals = None
        self._close_fds("_fd", "_ack_fd", "_lock_fd")

    # -- the append path -------------------------------------------------------------------------

    def _append(self, payload: bytes | memoryview, event_count: int) -> int:
        frame_len = frame.FRAME_HEADER_BYTES + len(payload)
        if frame.SEGMENT_HEADER_BYTES + frame_len > self.max_bytes:
            raise RecordTooLargeError(f"record of {len(payload)} bytes exceeds the spool bound")
        seq = self._next_seq
        header = frame.encode_frame_header(
            payload, seq, self._next_events, event_count, time.time_ns()
        )
        try:
            self._prepare(frame_len)
            self._write_frame(header, payload)
        except OSError as err:
            if err.errno not in _NO_SPACE:
                raise
            # The filesystem filled up behind our back (the function writes to /tmp too): look at
            # it again, make room as the bound now in force says (a roll included), and retry once.
            self._make_room(frame_len, new_segment=True)
            self._prepare(frame_len)
            self._write_frame(header, payload)
        self._active_size += frame_len
        self._total += frame_len
        self._next_seq = seq + 1
        self._next_events += event_count
        return seq

    def _prepare(self, frame_len: int) -> None:
        """Make the active segment ready to take ``frame_len`` bytes at its end, within the bound.

        Room is made before a roll, so that not even a new segment header goes over the bound.
        """
        if self._active_size >= self._reclaim_check_at and self._capacity < self.max_bytes:
            self._reclaim_check_at = self._active_size + self.reclaim_bytes // 4
            if self._delivered_through() >= self._next_seq:
                self._reclaim_active()
        rolling = self._fd < 0 or self._must_roll(frame_len)
        need = frame_len + (frame.SEGMENT_HEADER_BYTES if rolling else 0)
        if self._total + need > self._capacity:
            self._make_room(frame_len, new_segment=rolling)
            # Making room looked at the filesystem again: a smaller bound means smaller segments,
            # and the record may have to start one after all, header included.
            if not rolling and self._must_roll(frame_len) and self._over(frame_len, True):
                self._make_room(frame_len, new_segment=True)
        if self._fd < 0:
            self._open_active()
        elif self._must_roll(frame_len):
            self._roll()

    def _must_roll(self, frame_len: int) -> bool:
        # A record larger than a segment goes alone in its own.
        return self._active_size > frame.SEGMENT_HEADER_BYTES and (
            self._active_size + frame_len > self._segment_limit
        )

    def _write_frame(self, header: bytes, payload: bytes | memoryview) -> None:
        start = self._active_size
        try:
            written = os.writev(self._fd, [header, payload])
            if written < len(header) + len(payload):
                rest = (header + bytes(payload))[written:]
                while rest:
                    rest = rest[os.write(self._fd, rest) :]
        except BaseException:
            # Leave the segment ending on a record boundary, so later appends stay readable.
            os.ftruncate(self._fd, start)
            os.lseek(self._fd, start, os.SEEK_SET)
            raise

    # -- room: the bound, reclaiming delivered data, refusing new data ----------------------------

    def _make_room(self, frame_len: int, *, new_segment: bool) -> None:
        """Bring the spool to where ``frame_len`` more bytes (and a segment header if the record
        will start a new segment) fit the bound in force, or raise OSError(ENOSPC).

        Only delivered data is deleted (segments the reader has committed in full, the active one
        included; it may leave the spool with no active segment: the caller opens one). Data not
        delivered yet was answered 2xx and is never deleted for a newer record: when it fills the
        bound, the new record is refused instead, and Lambda keeps or drops it on its side
        (counted by the caller, reported to Splunk with the next record sent).
        """
        self._refresh_capacity()
        if frame.SEGMENT_HEADER_BYTES + frame_len > self._capacity:
            raise OSError(
                errno.ENOSPC,
                f"no room for a record of {frame_len} bytes: the filesystem leaves the spool "
                f"{self._capacity} bytes",
            )
        if self._over(frame_len, new_segment):
            self._reclaim_delivered()
        if self._over(frame_len, new_segment):
            raise OSError(
                errno.ENOSPC,
                f"spool full: {self._total} bytes not delivered yet, bound {self._capacity} "
                f"bytes; a record of {frame_len} bytes is refused until the sender catches up",
            )

    def _over(self, frame_len: int, new_segment: bool) -> bool:
        header = frame.SEGMENT_HEADER_BYTES if new_segment or self._fd < 0 else 0
        return self._total + header + frame_len > self._capacity

    def _refresh_capacity(self) -> None:
        """Recount our segments and look at the filesystem: the bound is what both leave us."""
        self._refresh_sizes()
        try:
            fs = os.statvfs(self.directory)
        except OSError:
            return
        room = self._total + fs.f_bavail * fs.f_frsize - self.reserve_bytes
        self._capacity = max(0, min(self.max_bytes, room))
        self._segment_limit = min(
            self.segment_bytes, max(MIN_SEGMENT_BYTES, self._capacity // SEGMENTS_PER_BOUND)
        )

    def _refresh_sizes(self) -> None:
        # The reader deletes delivered segments behind our back: recount before refusing.
        sealed: list[tuple[int, int]] = []
        for base in list_segments(self.directory):
            if base == self._active_base:
                continue
            try:
                size = os.stat(segment_path(self.directory, base)).st_size
            except FileNotFoundError:
                continue
            sealed.append((base, size))
        self._sealed = sealed
        self._total = sum(size for _, size in sealed) + self._active_size

    def _delivered_through(self) -> int:
        """The reader's committed next seq: every record below it is delivered (0 if unknown)."""
        if self._ack_fd < 0:
            try:
                self._ack_fd = os.open(os.path.join(self.directory, ACK_STATE),
                                       os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return 0
        loaded = load_state(self._ack_fd)
        return 0 if loaded is None else loaded[1].next_seq

    def _reclaim_delivered(self) -> None:
        """Delete every segment the reader has committed in full, sealed or active."""
        committed = self._delivered_through()
        if self._sealed:
            ends = [base for base, _ in self._sealed[1:]]
            ends.append(self._active_base if self._fd >= 0 else self._next_seq)
            for (base, _), end in zip(list(self._sealed), ends, strict=True):
                if end <= committed:
                    self._unlink_delivered(base)
        if self._active_size > frame.SEGMENT_HEADER_BYTES and committed >= self._next_seq:
            self._reclaim_active()

    def _reclaim_active(self) -> None:
        """Delete the active segment, delivered in full; the next append starts a new one.

        Deleted before the new one exists, so that this frees room even on a full disk.
        """
        base = self._active_base
        self._close_active()
        self._unlink_delivered(base)

    def _unlink_delivered(self, base: int) -> None:
        for index, (sealed_base, size) in enumerate(self._sealed):
            if sealed_base == base:
                del self._sealed[index]
                self._total -= size
                break
        if unlink_quietly(segment_path(self.directory, base)):
            self.reclaimed_segments += 1

    # -- segments --------------------------------------------------------------------------------

    def _roll(self) -> None:
        fd = self._create_segment(self._next_seq, self._next_events)
        self._close_active()
        self._adopt_active(fd)
        self._refresh_capacity()

    def _open_active(self) -> None:
        self._adopt_active(self._create_segment(self._next_seq, self._next_events))

    def _adopt_active(self, fd: int) -> None:
        self._reclaim_check_at = self.reclaim_bytes
        self._fd = fd
        self._active_base = self._next_seq
        self._active_size = frame.SEGMENT_HEADER_BYTES
        self._total += frame.SEGMENT_HEADER_BYTES

    def _close_active(self) -> None:
        """Seal the active segment (it joins the sealed list); none is active afterwards."""
        if self._fd < 0:
            return
        os.close(self._fd)
        self._sealed.append((self._active_base, self._active_size))
        self._fd, self._active_base, self._active_size = -1, -1, 0

    def _create_segment(self, base: int, events: int) -> int:
        """Create a segment with its header under a temporary name, then publish it by rename.

        The rename is also the seal of the previous segment: every write to it has returned.
        """
        final = segment_path(self.directory, base)
        spare = self._spares.take() if self._spares is not None else None
        if spare is not None:
            fd, tmp = spare
        else:
            tmp = final + TMP_SUFFIX
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, frame.encode_segment_header(base, events))
            os.rename(tmp, final)
        except BaseException:
            os.close(fd)
            unlink_quietly(tmp)
            raise
        return fd

    # -- start-up recovery -----------------------------------------------------------------------

    def _recover(self) -> None:
        for name in os.listdir(self.directory):
            if name.endswith(TMP_SUFFIX):
                unlink_quietly(os.path.join(self.directory, name))
        committed = load_committed(self.directory)
        floor_seq = committed.next_seq if committed else 0
        floor_events = committed.next_events if committed else 0
        bases = list_segments(self.directory)
        while bases and not self._recover_newest(bases[-1], floor_seq):
            bases.pop()
        self._next_seq = max(self._next_seq, floor_seq)
        self._next_events = max(self._next_events, floor_events)
        reported = LossReport.of(committed.stats) if committed else LossReport()
        self._refusals = RefusalLog(
            self.directory, Refusals(reported.refused_batches, reported.refused_events)
        )
        self._refresh_capacity()
        try:
            if self._fd < 0 or self._total > self._capacity:
                # Reclaims delivered segments; refuses (nothing dropped) if a fuller disk or a
                # smaller max_bytes left the data not delivered yet over the bound.
                self._make_room(0, new_segment=self._fd < 0)
            if self._fd < 0:
                self._open_active()
        except OSError as err:
            if err.errno not in _NO_SPACE:
                raise
            log.error("spool: no room for a new segment yet (%s); appends will retry", err)
        log.debug("spool writer recovered: next_seq=%d total=%d", self._next_seq, self._total)

    def _recover_newest(self, base: int, floor_seq: int) -> bool:
        """Validate the newest segment, cut its torn tail, and set next_seq; False if unusable.

        Reuses the segment when it holds no record; otherwise leaves it sealed, so a writer never
        appends after a region that a crash may have damaged.
        """
        path = segment_path(self.directory, base)
        name = segment_name(base)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
        scan = frame.scan_segment(data)
        if scan.header is None or scan.header.base_seq != base:
            os.close(fd)
            # Keep its intact frames for the reader (which resyncs on them); never reuse a seq.
            last = frame.resync_last_frame(data, frame.SEGMENT_HEADER_BYTES)
            if last is None or last.seq < base:
                log.error("spool segment %s has no valid header or frame; removing it", name)
                unlink_quietly(path)
                return False
            log.error("spool segment %s has a damaged header; sealing it", name)
            self._next_seq = last.seq + 1
            self._next_events = last.events_before + last.event_count
            return True
        next_seq, next_events = scan.next_seq, scan.next_events
        if scan.stop is frame.FrameStatus.INCOMPLETE:
            self.truncated_bytes = size - scan.valid_end
            log.warning("spool: cut torn tail of %d bytes: %s", self.truncated_bytes, name)
            os.ftruncate(fd, scan.valid_end)
            size = scan.valid_end
        elif scan.stop is frame.FrameStatus.CORRUPT_HEADER:
            # Never hand out a seq that a later intact frame, or the damaged one, already used.
            later = frame.resync_last_frame(os.pread(fd, size, 0), scan.valid_end + 1)
            next_seq += 1
            if later is not None and later.seq + 1 > next_seq:
                next_seq = later.seq + 1
                next_events = later.events_before + later.event_count
            log.error("spool: damaged frame in %s at byte %d", name, scan.valid_end)
        self._next_seq, self._next_events = next_seq, next_events
        reusable = size == frame.SEGMENT_HEADER_BYTES and next_seq == base and base >= floor_seq
        if reusable:
            os.lseek(fd, size, os.SEEK_SET)
            self._fd, self._active_base, self._active_size = fd, base, size
        else:
            os.close(fd)
        return True
