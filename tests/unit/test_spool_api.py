"""Example tests of the spool API: batching, commits, locks, loss reports, faults."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.spool import (
    LossReport,
    RecordTooLargeError,
    SpoolLocked,
    SpoolReader,
    SpoolWriter,
    read_committed,
)
from ext.spool.ackstate import STATE_FILE_BYTES
from ext.spool.frame import FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES
from ext.spool.layout import list_segments
from tests.unit.spool_helpers import segment_path


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    yield r, w
    os.close(r)
    os.close(w)


def test_batches_respect_record_and_byte_limits(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        for i in range(10):
            w.append(bytes([i]) * 100, 1)
        assert [x.seq for x in r.read(3, 1 << 20)] == [0, 1, 2]
        assert [x.seq for x in r.read(100, 250)] == [3, 4, 5]
        assert [x.seq for x in r.read(100, 1)] == [6]  # a lone record over the budget
        assert [x.seq for x in r.read(100, 1 << 20)] == [7, 8, 9]
    with SpoolReader(tmp_path) as r:  # nothing was committed: a new reader starts over
        assert [x.seq for x in r.read(100, 1 << 20)] == list(range(10))


def test_records_larger_than_a_read_chunk_round_trip(tmp_path: Path) -> None:
    big = os.urandom(3 * 2**20)
    with SpoolWriter(tmp_path, segment_bytes=2**20, max_bytes=8 * 2**20) as w:
        w.append(b"small", 1)
        w.append(big, 1000)
        w.append(b"tail", 1)
    with SpoolReader(tmp_path) as r:
        got = r.read(10, 1 << 30)
        assert [x.payload for x in got] == [b"small", big, b"tail"]
        assert got[1].event_count == 1000


def test_commit_persists_and_deletes_delivered_segments(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, segment_bytes=300, max_bytes=10_000) as w:
        for _ in range(20):
            w.append(b"x" * 100, 2)
        with SpoolReader(tmp_path) as r:
            assert read_committed(tmp_path) == -1
            batch = r.read(15, 1 << 20)
            r.commit(batch[-1].seq)
            assert r.committed_seq == read_committed(tmp_path) == 14
            assert r.stats.delivered_records == 15
            assert r.stats.delivered_events == 30
            assert min(list_segments(str(tmp_path))) <= 15
            with pytest.raises(ValueError, match="not been read"):
                r.commit(19)
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(100, 1 << 20)] == list(range(15, 20))


def test_roles_are_exclusive(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path), SpoolReader(tmp_path):
        with pytest.raises(SpoolLocked):
            SpoolWriter(tmp_path)
        with pytest.raises(SpoolLocked):
            SpoolReader(tmp_path)
    SpoolWriter(tmp_path).close()  # released on close (and by the kernel on death)


def test_record_that_can_never_fit_is_refused(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w:
        with pytest.raises(RecordTooLargeError):
            w.append(b"x" * 4096, 1)
        assert w.append(b"x" * 2000, 1) == 0  # larger than a segment: goes alone in its own


def test_loss_report_is_at_least_once_and_never_double_counted(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, max_bytes=20_000, segment_bytes=500) as w:
        for _ in range(30):
            w.append(b"x" * 200, 2)
        # The spool never deletes a record not delivered; something else may (the function
        # cleaning /tmp): the gap is counted as dropped.
        for base in list_segments(str(tmp_path))[:2]:
            segment_path(tmp_path, base).unlink()
        with SpoolReader(tmp_path) as r:
            r.read(100, 1 << 20)
            report = r.take_loss_report()
            assert report is not None
            assert report.dropped_records > 0
            assert report.dropped_events == 2 * report.dropped_records
            assert r.take_loss_report() is None
        # The sender died before HEC accepted: the next one sends the report with the data again.
        with SpoolReader(tmp_path) as r:
            batch = r.read(100, 1 << 20)
            assert r.take_loss_report() == report
            r.commit(batch[-1].seq)
            lost = r.stats.dropped_records
            assert lost == report.dropped_records
            assert lost + r.stats.delivered_records == 30
    with SpoolReader(tmp_path) as r:
        assert r.take_loss_report() is None
        assert LossReport.of(r.stats).dropped_records == lost


def test_unreadable_ack_state_resends_from_the_oldest_segment(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        for _ in range(5):
            w.append(b"x", 1)
        r.commit(r.read(3, 1000)[-1].seq)
    (tmp_path / "ack.state").write_bytes(b"\xff" * STATE_FILE_BYTES)
    assert read_committed(tmp_path) == -1
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(100, 1000)] == [0, 1, 2, 3, 4]
        assert r.take_loss_report() is None


def test_failed_write_leaves_the_segment_on_a_record_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev

    def enospc_after_a_prefix(fd: int, buffers: list[bytes]) -> int:
        os.write(fd, bytes(buffers[0])[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    with SpoolWriter(tmp_path) as w:
        w.append(b"one", 1)
        monkeypatch.setattr(os, "writev", enospc_after_a_prefix)
        with pytest.raises(OSError, match="No space"):
            w.append(b"two", 1)
        monkeypatch.setattr(os, "writev", real_writev)
        assert w.append(b"three", 1) == 1
    with SpoolReader(tmp_path) as r:
        assert [x.payload for x in r.read(10, 1000)] == [b"one", b"three"]
        # The listener answered an error for "two": Lambda dropped it, and Splunk is told.
        assert r.take_loss_report() == LossReport(refused_batches=1, refused_events=1)


def test_reader_resyncs_after_a_damaged_header_in_the_live_active_segment(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        for i in range(3):
            w.append(bytes([i]) * 100, i + 1)
        active = segment_path(tmp_path, list_segments(str(tmp_path))[-1])
        seq_field = SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + 100) + 8  # record 2's seq
        with open(active, "r+b") as f:
            f.seek(seq_field)
            f.write(b"\xff")
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 1]
        assert r.read(10, 1 << 20) == []  # nothing intact after it yet: wait, do not skip
        w.append(b"next", 4)
        assert [x.payload for x in r.read(10, 1 << 20)] == [b"next"]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=3)
