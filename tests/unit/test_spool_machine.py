"""Stateful model test of the real spool in a temp dir: appends, sends, commits, crashes, restarts.

A "kill" closes a role's fds without any other step (the spool buffers nothing in user space, so
that is exactly what SIGKILL leaves); torn writes are made by cutting the bytes a kill would cut.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import zlib
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ext.spool import SpoolReader, SpoolRecord, SpoolWriter, read_committed
from ext.spool.ackstate import SLOT_BYTES, LossReport, encode_slot, slot_offset
from ext.spool.frame import FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES
from ext.spool.layout import list_segments
from ext.spool.writer import RECENT_REFUSALS
from tests.unit.spool_helpers import segment_path

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, SupportsLenAndGetItem

OUTCOMES = ("ok", "fail_before", "fail_after", "first_of_two")
KILL_POINTS = ("before_send", "after_send_before_commit", "mid_commit", "after_commit")


def segment_bytes_on_disk(directory: Path) -> int:
    return sum(os.stat(segment_path(directory, b)).st_size for b in list_segments(str(directory)))


class SpoolModel(RuleBasedStateMachine):
    """Tight bound: the spool is often full, refuses new records then (counted exactly), and
    never loses one it took."""

    MAX_BYTES = 2000
    SEGMENT_BYTES = 500
    RECLAIM_BYTES = 300  # a delivered active segment this large is rolled away and deleted
    MAX_PAYLOAD = 400

    def __init__(self) -> None:
        super().__init__()
        if not hasattr(self, "dir"):
            self.dir = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.refused: list[int] = []  # event counts of the appends the writer refused
        self.writer = self._new_writer()
        self.reader = SpoolReader(self.dir)
        self.acked: dict[int, tuple[bytes, int]] = {}
        self.delivered: list[int] = []
        self.committed: set[int] = set()
        self.ambiguous: set[int] = set()
        self.reported = LossReport()
        # What the sender holds after a failed request, to send again: records, and the loss
        # reports taken, each with the seq of the record it rides with (the last one read then,
        # as the sender's notice goes with the last record of its read).
        self.held: list[SpoolRecord] = []
        self.held_reports: list[tuple[int, LossReport]] = []
        self.last_committed = -1
        self.last_stats = self.reader.stats

    def _new_writer(self) -> SpoolWriter:
        # A writer counts a record refused again (the platform's retry) only once: so does the
        # model, per writer (it forgets at a restart).
        self.recent_refusals: deque[tuple[int, int]] = deque(maxlen=RECENT_REFUSALS)
        return self._open_writer()

    def _open_writer(self) -> SpoolWriter:
        return SpoolWriter(
            self.dir,
            max_bytes=self.MAX_BYTES,
            segment_bytes=self.SEGMENT_BYTES,
            reclaim_bytes=self.RECLAIM_BYTES,
        )

    def may_refuse(self, payload_len: int) -> bool:
        """Whether an append of this size may have been refused (looked at right after it was):
        only when the record, with a segment header, does not fit next to what the spool still
        holds, and the spool holds no segment delivered in full (it must reclaim those first)."""
        frame = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + payload_len
        if frame > self.room():
            return True  # it would not fit even in an empty spool: nothing to reclaim helps
        if segment_bytes_on_disk(self.dir) + frame <= self.room():
            return False
        delivered_next = read_committed(self.dir) + 1
        bases = list_segments(str(self.dir))
        ends = [*bases[1:], self.writer.next_seq]
        return all(end > delivered_next or os.stat(segment_path(self.dir, base)).st_size
                   <= SEGMENT_HEADER_BYTES for base, end in zip(bases, ends, strict=True))

    # -- writer ----------------------------------------------------------------------------------

    @rule(payload=st.binary(max_size=MAX_PAYLOAD), events=st.integers(0, 5))
    def append(self, payload: bytes, events: int) -> None:
        self._append(payload, events)

    def _append(self, payload: bytes, events: int) -> bool:
        expected = self.writer.next_seq
        try:
            seq = self.writer.append(payload, events)
        except OSError:
            assert self.may_refuse(len(payload)), "refused although the record fits"
            key = (len(payload), zlib.crc32(payload))
            if key not in self.recent_refusals:
                self.recent_refusals.append(key)
                self.refused.append(events)
            assert self.writer.next_seq == expected
            return False
        assert seq == expected
        assert all(seq > s for s in self.acked), "a seq was reused"
        self.acked[seq] = (payload, events)
        assert segment_bytes_on_disk(self.dir) <= self.room(), "over the bound after an append"
        return True

    def room(self) -> int:
        """The bound an append must leave the spool within."""
        return self.MAX_BYTES

    @rule(
        payload=st.binary(min_size=MAX_PAYLOAD // 2, max_size=MAX_PAYLOAD), events=st.integers(0, 5)
    )
    def append_big(self, payload: bytes, events: int) -> None:
        """Over-fill: a few of these in a row fill the spool, which then refuses."""
        self._append(payload, events)

    @rule(payload=st.binary(max_size=MAX_PAYLOAD), events=st.integers(0, 5), cut=st.integers(0))
    def append_killed(self, payload: bytes, events: int, cut: int) -> None:
        """The listener dies inside the write(): only a prefix of the frame reaches the file."""
        if self._append(payload, events):
            del self.acked[self.writer.next_seq - 1]  # the listener never answered
            newest = segment_path(self.dir, list_segments(str(self.dir))[-1])
            frame_len = FRAME_HEADER_BYTES + len(payload)
            os.truncate(newest, os.stat(newest).st_size - frame_len + cut % frame_len)
        self.writer.close()
        self.writer = self._new_writer()

    @rule()
    def restart_writer(self) -> None:
        self.writer.close()
        self.writer = self._new_writer()

    # -- reader ----------------------------------------------------------------------------------

    def _deliver(self, batch: list[SpoolRecord]) -> None:
        seqs = [r.seq for r in batch]
        assert seqs == sorted(set(seqs)), f"batch out of order: {seqs}"
        for record in batch:
            assert record.seq in self.acked, f"seq {record.seq} was never acked"
            assert (record.payload, record.event_count) == self.acked[record.seq]
            if record.seq in self.delivered:
                assert record.seq in self.ambiguous, f"unexpected duplicate {record.seq}"
            else:
                assert all(record.seq > s for s in self.delivered), "order broken across batches"
            self.delivered.append(record.seq)

    def _read(self, max_records: int) -> list[SpoolRecord]:
        return self.reader.read(max_records, 600)

    @rule(max_records=st.integers(1, 8), outcome=st.sampled_from(OUTCOMES))
    def send(self, max_records: int, outcome: str) -> None:
        """As the sender: a request that failed keeps its records and loss report to send again
        with what is read next; nothing is committed before HEC accepted it."""
        self.held += self._read(max_records)
        report = self.reader.take_loss_report()
        if report is not None:
            rides_with = self.held[-1].seq if self.held else self.reader.committed_seq
            self.held_reports.append((rides_with, report))
        if outcome == "fail_before":
            return
        if outcome == "first_of_two" and len(self.held) > 1:
            # What is held fills two requests: HEC accepts the first, a prefix of the records
            # with the loss reports riding with them, and the second waits to be sent again.
            first, self.held = self.held[: len(self.held) // 2], self.held[len(self.held) // 2 :]
            self._deliver(first)
            self._report_through(first[-1].seq)
            self.reader.commit(first[-1].seq)
            self.committed.update(r.seq for r in first)
            return
        self._deliver(self.held)
        if outcome == "fail_after":  # HEC took it, the answer was lost: sent again later
            self.ambiguous.update(r.seq for r in self.held)
            return
        self._accepted()

    def _accepted(self) -> None:
        """HEC accepted the held records (already delivered): commit them."""
        self._report_through(None)
        if self.held:
            self.reader.commit(self.held[-1].seq)
            self.committed.update(r.seq for r in self.held)
            assert read_committed(self.dir) == self.held[-1].seq
        self.held = []

    def _restart_reader(self) -> None:
        """The sender dies (or stops) and a new one starts: what it held is gone."""
        self.reader.close()
        self.reader = SpoolReader(self.dir)
        self.held, self.held_reports = [], []

    def _report_through(self, seq: int | None) -> None:
        """The held loss reports riding with records up to `seq` (all: None) reached HEC."""
        for rides_with, report in self.held_reports:
            if seq is None or rides_with <= seq:
                self.reported = _sum(self.reported, report)
        self.held_reports = [(r, report) for r, report in self.held_reports
                             if seq is not None and r > seq]

    @rule(point=st.sampled_from(KILL_POINTS), max_records=st.integers(1, 8), tear=st.integers(0))
    def kill_reader(self, point: str, max_records: int, tear: int) -> None:
        if point != "before_send":
            self.held += self._read(max_records)
            self._deliver(self.held)
            if point == "after_commit":
                self._accepted()
            self.ambiguous.update(r.seq for r in self.held)
            if self.held and point == "mid_commit":
                self._tear_commit(tear)
        self._restart_reader()

    def _tear_commit(self, tear: int) -> None:
        """Write a prefix of the slot the next commit would write, as a kill mid-pwrite would."""
        generation = self.reader._generation + 1
        checkpoint = self.reader._checkpoint(self.reader._pending[-1])
        data = encode_slot(generation, checkpoint)
        fd = os.open(self.dir / "ack.state", os.O_RDWR)
        try:
            old = os.pread(fd, len(data), slot_offset(generation)).ljust(len(data), b"\0")
            # A prefix whose missing tail already matches the file is a complete write, not a
            # torn one: stop before the last byte that differs, so the write really is torn.
            last_diff = max(i for i in range(len(data)) if data[i] != old[i])
            os.pwrite(fd, data[: min(tear % SLOT_BYTES, last_diff)], slot_offset(generation))
        finally:
            os.close(fd)

    @rule()
    def restart_reader(self) -> None:
        self._restart_reader()

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def size_bound_holds(self) -> None:
        assert segment_bytes_on_disk(self.dir) <= self.MAX_BYTES

    @invariant()
    def committed_state_is_monotonic(self) -> None:
        committed = read_committed(self.dir)
        assert committed >= self.last_committed
        self.last_committed = committed
        stats = self.reader.stats
        assert all(a >= b for a, b in zip(_fields(stats), _fields(self.last_stats), strict=True))
        self.last_stats = stats

    @invariant()
    def nothing_dropped(self) -> None:
        assert self.reader.stats.dropped_records == 0, "a record answered 2xx was deleted"

    @invariant()
    def nothing_corrupt(self) -> None:
        assert self.reader.stats.corrupt_records == 0

    def teardown(self) -> None:
        try:
            self._drain_and_check()
        finally:
            self.reader.close()
            self.writer.close()
            shutil.rmtree(self.dir)

    def _drain_and_check(self) -> None:
        # The sender's last retry of what it holds succeeds.
        self._deliver(self.held)
        self._accepted()
        # Refusals are committed with the record that follows them: add one once the spool has
        # room again (it may be full now).
        for last in (False, True):
            if last:
                assert self._append(b"last", 1), "refused although everything was delivered"
            while batch := self.reader.read(100, 1 << 20):
                self._deliver(batch)
                self.reader.commit(batch[-1].seq)
                self.committed.update(r.seq for r in batch)
        stats = self.reader.stats
        lost = set(self.acked) - self.committed
        assert not lost, f"records answered 2xx never delivered: {sorted(lost)}"
        assert stats.delivered_records == len(self.committed)
        assert stats.delivered_events == sum(self.acked[s][1] for s in self.committed)
        assert stats.dropped_records == len(lost), "drop count is not exact"
        assert stats.dropped_events == sum(self.acked[s][1] for s in lost)
        assert (stats.refused_batches, stats.refused_events) == (
            len(self.refused),
            sum(self.refused),
        ), "refusal count is not exact"
        if self.acked:
            assert self.reader.committed_seq == max(self.acked)
        # Every loss was handed to the sender in a batch that went out with HEC "ok", at least once.
        leftover = self.reader.take_loss_report() or LossReport()
        total = LossReport.of(stats)
        for got, extra, want in zip(
            _fields(self.reported), _fields(leftover), _fields(total), strict=True
        ):
            assert got + extra >= want
        assert len(list_segments(str(self.dir))) == 1, "delivered segments were left behind"


def _fields(obj: object) -> tuple[int, ...]:
    return tuple(getattr(obj, name) for name in obj.__slots__)  # type: ignore[attr-defined]


def _sum(a: LossReport, b: LossReport) -> LossReport:
    return LossReport(*(x + y for x, y in zip(_fields(a), _fields(b), strict=True)))


class SpoolModelNoDrop(SpoolModel):
    """Bound never reached: no record may be refused at all."""

    MAX_BYTES = 1 << 20
    SEGMENT_BYTES = 900

    def may_refuse(self, payload_len: int) -> bool:
        return False


class SpoolModelSmallDisk(SpoolModel):
    """The filesystem, not max_bytes, sets the bound: another tenant takes and frees room, so the
    writer refuses what does not fit next to the data not delivered yet; it deletes nothing."""

    MAX_BYTES = 1 << 20
    SEGMENT_BYTES = 600
    DISK_BYTES = 2400

    def __init__(self) -> None:
        self.tenant = 0
        self.dir = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.real = (os.statvfs, os.write, os.writev)
        os.statvfs = self._statvfs  # type: ignore[assignment]
        os.write = self._write
        os.writev = self._writev
        super().__init__()

    def _check_room(self, fd: int, size: int) -> None:
        """Appends to segment files fail once the disk is full (other files are not ours, or
        rewritten in place, like ack.state and refused.state)."""
        if not os.readlink(f"/proc/self/fd/{fd}").startswith(f"{self.dir}/seg-"):
            return
        if segment_bytes_on_disk(self.dir) + size > self.room():
            raise OSError(errno.ENOSPC, "No space left on device (fake disk)")

    # Typed as os.write and os.writev are, so that they can stand in for them; the writer passes
    # bytes and memoryviews of bytes, whose nbytes is their len.
    def _write(self, fd: int, data: ReadableBuffer) -> int:
        self._check_room(fd, memoryview(data).nbytes)
        return self.real[1](fd, data)

    def _writev(self, fd: int, buffers: SupportsLenAndGetItem[ReadableBuffer]) -> int:
        self._check_room(fd, sum(memoryview(buffers[i]).nbytes for i in range(len(buffers))))
        return self.real[2](fd, buffers)

    def _open_writer(self) -> SpoolWriter:
        return SpoolWriter(
            self.dir,
            max_bytes=self.MAX_BYTES,
            segment_bytes=self.SEGMENT_BYTES,
            reclaim_bytes=self.RECLAIM_BYTES,
            reserve_bytes=0,
        )

    def _statvfs(self, path: object) -> SimpleNamespace:
        """A byte-granular disk that holds the spool's segments and the tenant's file."""
        free = self.DISK_BYTES - self.tenant - segment_bytes_on_disk(self.dir)
        return SimpleNamespace(f_bavail=max(0, free), f_frsize=1)

    @rule(share=st.integers(0, 100))
    def tenant_resizes(self, share: int) -> None:
        """Another process on the filesystem grows its file into the free space, or shrinks it."""
        free = self.DISK_BYTES - segment_bytes_on_disk(self.dir)
        self.tenant = min(self.DISK_BYTES * share // 100, free)

    def room(self) -> int:
        return self.DISK_BYTES - self.tenant

    def teardown(self) -> None:
        try:
            self.tenant = 0
            super().teardown()
        finally:
            os.statvfs, os.write, os.writev = self.real


_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSpoolModel = SpoolModel.TestCase
TestSpoolModel.settings = _SETTINGS
TestSpoolModelNoDrop = SpoolModelNoDrop.TestCase
TestSpoolModelNoDrop.settings = _SETTINGS
TestSpoolModelSmallDisk = SpoolModelSmallDisk.TestCase
TestSpoolModelSmallDisk.settings = settings(_SETTINGS, max_examples=80)
