"""The spool's bound: a full spool refuses new records and never deletes acknowledged ones, exact
fits, delivered data reclaimed at once, a bound that follows the filesystem's free space, and
refused appends counted exactly."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from ext.spool import LossReport, RecordTooLargeError, SpoolReader, SpoolWriter
from ext.spool.frame import FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES
from ext.spool.layout import REFUSED_STATE, list_segments
from ext.spool.refusals import Refusals
from ext.spool.writer import DEFAULT_RECLAIM_BYTES, DEFAULT_SEGMENT_BYTES, MIN_SEGMENT_BYTES
from tests.unit.spool_helpers import drain, on_disk


def payload_for(seq: int, size: int) -> bytes:
    return seq.to_bytes(4, "little") * (size // 4)


def append_or_refuse(writer: SpoolWriter, payload: bytes, events: int) -> bool:
    """True if the record was taken; False if refused (the listener would answer 503)."""
    try:
        writer.append(payload, events)
    except OSError as err:
        refused: OSError = err
    else:
        return True
    assert refused.errno == errno.ENOSPC
    return False


def test_a_full_spool_refuses_new_records_and_keeps_every_acknowledged_one(
    tmp_path: Path,
) -> None:
    taken: list[int] = []
    refused_events = 0
    with SpoolWriter(tmp_path, max_bytes=2000, segment_bytes=500) as w:
        for n in range(30):
            if append_or_refuse(w, payload_for(n, 152), n % 3):
                taken.append(n)
            else:
                refused_events += n % 3
            assert on_disk(tmp_path) <= 2000
        assert 0 < len(taken) < 30
        assert w.refusals == Refusals(30 - len(taken), refused_events)
        records, reader = drain(tmp_path)
        with reader:
            # Every record answered 2xx is there, in order and intact; none was dropped.
            assert [r.payload for r in records] == [payload_for(n, 152) for n in taken]
            assert (reader.stats.dropped_records, reader.stats.dropped_events) == (0, 0)
            report = reader.take_loss_report() or LossReport()
            assert (report.refused_batches, report.refused_events) == (30 - len(taken),
                                                                        refused_events)
            # Delivered: its room is reclaimed, and the next record is taken at once.
            assert append_or_refuse(w, payload_for(99, 152), 1)


def test_a_record_that_fits_the_bound_exactly_is_taken_and_one_more_byte_is_not(
    tmp_path: Path,
) -> None:
    frame = 488  # two frames and a segment header make exactly one 1000-byte segment
    payload = frame - FRAME_HEADER_BYTES
    assert SEGMENT_HEADER_BYTES + 2 * frame == 1000
    with SpoolWriter(tmp_path, max_bytes=3000, segment_bytes=1000) as w:
        for seq in range(6):  # segments 0-1, 2-3, 4-5: exactly 3000 bytes
            w.append(payload_for(seq, payload), 1)
        assert on_disk(tmp_path) == 3000
        assert list_segments(str(tmp_path)) == [0, 2, 4]
        assert not append_or_refuse(w, b"x", 1)  # nothing delivered: refused, nothing deleted
        assert list_segments(str(tmp_path)) == [0, 2, 4]
        with SpoolReader(tmp_path) as r:  # segment 0 delivered: exactly its room comes back
            r.commit(r.read(2, 1 << 20)[-1].seq)
            w.append(payload_for(6, 976 - FRAME_HEADER_BYTES), 1)
            assert list_segments(str(tmp_path)) == [2, 4, 6]
            assert on_disk(tmp_path) == 3000
        assert w.refusals == Refusals(1, 1)
    records, reader = drain(tmp_path)
    with reader:
        assert [r.seq for r in records] == [2, 3, 4, 5, 6]
        assert reader.stats.dropped_records == 0


class FakeDisk:
    """statvfs of a filesystem of ``size`` bytes that holds only the spool directory."""

    def __init__(self, directory: Path, size: int) -> None:
        self.directory = directory
        self.size = size
        self.block = 4096

    def statvfs(self, path: str | Path) -> SimpleNamespace:
        used = 0
        for entry in os.scandir(self.directory):
            used += -(-entry.stat().st_size // self.block) * self.block
        return SimpleNamespace(f_bavail=max(0, self.size - used) // self.block, f_frsize=self.block)


def most_on_disk_with_a_reader_keeping_up(directory: Path, payload: bytes) -> tuple[int, int]:
    """Peak segment bytes while 300 records go through, each committed at once; reclaims."""
    most = 0
    with SpoolWriter(directory) as w, SpoolReader(directory) as r:
        for _ in range(300):
            w.append(payload, 1)
            most = max(most, on_disk(directory))
            batch = r.read(10, 1 << 20)
            r.commit(batch[-1].seq)
        assert r.stats.delivered_records == 300
        return most, w.reclaimed_segments


def test_delivered_data_stays_below_one_segment_while_the_reader_keeps_up(tmp_path: Path) -> None:
    payload = b"d" * 10_000
    most, _ = most_on_disk_with_a_reader_keeping_up(tmp_path, payload)  # 3 MB, 1 MiB segments
    assert most <= DEFAULT_SEGMENT_BYTES + FRAME_HEADER_BYTES + len(payload)


def test_delivered_data_is_reclaimed_at_once_on_a_small_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "statvfs", FakeDisk(tmp_path, 8 * 2**20).statvfs)
    payload = b"d" * 10_000
    most, reclaimed = most_on_disk_with_a_reader_keeping_up(tmp_path, payload)
    assert reclaimed > 0
    # The writer deletes a delivered active segment once it reaches the reclaim size (looking
    # again after a quarter of it), plus the record just appended.
    frame = FRAME_HEADER_BYTES + len(payload)
    assert most <= DEFAULT_RECLAIM_BYTES * 5 // 4 + 2 * frame + SEGMENT_HEADER_BYTES


def test_a_batch_refused_again_is_counted_once(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w:
        big = b"x" * 5000
        for _ in range(5):  # the platform retries the same body
            with pytest.raises(RecordTooLargeError):
                w.append(big, 7)
        assert w.refusals == Refusals(1, 7)
        with pytest.raises(RecordTooLargeError):
            w.append(b"y" * 5000, 2)  # another batch
        assert w.refusals == Refusals(2, 9)


def test_the_bound_follows_the_free_space_of_the_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FakeDisk(tmp_path, 2**20)
    monkeypatch.setattr(os, "statvfs", disk.statvfs)
    with SpoolWriter(tmp_path) as w:  # max_bytes 64 MiB: far above what the disk holds
        assert w.capacity_bytes < 2**20
        taken = []
        for seq in range(2000):  # 4 MB into a 1 MiB filesystem, no reader
            if append_or_refuse(w, payload_for(seq, 2000), 1):
                taken.append(seq)
            assert disk.statvfs(tmp_path).f_bavail > 0
        assert 0 < len(taken) < 2000
        assert w.refusals == Refusals(2000 - len(taken), 2000 - len(taken))
        segments = list_segments(str(tmp_path))
        assert len(segments) >= 4, "segments are sized from the room the disk leaves"
    records, reader = drain(tmp_path)
    with reader:
        assert [r.payload for r in records] == [payload_for(s, 2000) for s in taken]
        assert reader.stats.dropped_records == 0


def test_a_disk_filled_by_another_tenant_refuses_and_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FakeDisk(tmp_path, 2**20)
    monkeypatch.setattr(os, "statvfs", disk.statvfs)
    with SpoolWriter(tmp_path) as w:
        for seq in range(100):
            w.append(payload_for(seq, 2000), 1)
        before = on_disk(tmp_path)
        disk.size = before  # the function filled every free byte of /tmp
        monkeypatch.setattr(os, "writev", failing_writev(10))
        assert not append_or_refuse(w, payload_for(100, 2000), 1)
        assert on_disk(tmp_path) == before
        monkeypatch.setattr(os, "writev", failing_writev(0))
        w.close()
        with SpoolWriter(tmp_path) as w2:  # a restart under the smaller bound deletes nothing
            assert on_disk(tmp_path) >= before
            assert not append_or_refuse(w2, payload_for(101, 2000), 1)
    records, reader = drain(tmp_path)
    with reader:
        assert [r.seq for r in records] == list(range(100))
        assert reader.stats.dropped_records == 0


@pytest.mark.parametrize("active_delivered", [False, True])
def test_a_record_that_must_start_a_segment_once_room_is_made_gets_room_for_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, active_delivered: bool
) -> None:
    """Making room looks at the filesystem again, and the segment size follows the bound: a
    smaller one can make the record start a new segment after all. Its header must fit too."""
    disk = FakeDisk(tmp_path, 2**30)
    disk.block = 1
    monkeypatch.setattr(os, "statvfs", disk.statvfs)
    frame = 12_000
    payload = b"s" * (frame - FRAME_HEADER_BYTES)
    with SpoolWriter(tmp_path, max_bytes=2**20, segment_bytes=2**17, reserve_bytes=0) as w, (
        SpoolReader(tmp_path)
    ) as r:
        while w.total_bytes + frame <= 2**20:
            w.append(payload, 1)
        active = list_segments(str(tmp_path))[-1]
        # The reader delivers (and deletes) the sealed segments behind the writer's back, so the
        # writer's stale total says the next record does not fit: it makes room.
        read = r.read(10_000, 2**30)
        r.commit(read[-1].seq if active_delivered else active - 1)
        assert list_segments(str(tmp_path)) == [active]
        held = on_disk(tmp_path)
        # Another tenant leaves room for the record in the active segment, not for a new header;
        # the bound that leaves makes segments too small to take the record in the active one.
        disk.size -= disk.statvfs(tmp_path).f_bavail - (frame + 10)
        assert max(MIN_SEGMENT_BYTES, (held + frame + 10) // 8) < held + frame <= 2**17
        taken = append_or_refuse(w, payload, 1)
        assert on_disk(tmp_path) <= w.capacity_bytes == held + frame + 10
        # Delivered in full, the active segment makes way for the new one; else it is refused.
        assert taken == active_delivered
        assert list_segments(str(tmp_path)) == ([w.next_seq - 1] if taken else [active])


def failing_writev(times: int) -> Callable[[int, list[bytes]], int]:
    """os.writev that writes a prefix and fails with ENOSPC ``times`` times, then works."""
    real = os.writev
    left = [times]

    def writev(fd: int, buffers: list[bytes]) -> int:
        if left[0] == 0:
            return real(fd, buffers)
        left[0] -= 1
        os.write(fd, bytes(buffers[0])[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    return writev


def test_a_transient_enospc_is_retried_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SpoolWriter(tmp_path) as w:
        monkeypatch.setattr(os, "writev", failing_writev(1))
        assert w.append(b"one", 1) == 0
        assert w.refusals == Refusals()
    records, reader = drain(tmp_path)
    with reader:
        assert [r.payload for r in records] == [b"one"]


def test_refusals_are_counted_persisted_and_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w:
        w.append(b"a", 1)
        with pytest.raises(RecordTooLargeError):
            w.append(b"x" * 5000, 7)
        monkeypatch.setattr(os, "writev", failing_writev(2))
        with pytest.raises(OSError, match="No space"):
            w.append(b"y", 3)
        monkeypatch.undo()
        assert w.refusals == Refusals(2, 10)
    with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w:
        assert w.refusals == Refusals(2, 10)  # survives the listener's restart
        w.append(b"b", 1)
    with SpoolReader(tmp_path) as r:
        batch = r.read(10, 1000)
        assert [x.payload for x in batch] == [b"a", b"b"]
        expected = LossReport(refused_batches=2, refused_events=10)
        assert r.take_loss_report() == expected
    # The sender died before HEC accepted: its successor sends the report again with the data.
    with SpoolReader(tmp_path) as r:
        batch = r.read(10, 1000)
        assert r.take_loss_report() == expected
        r.commit(batch[-1].seq)
        assert (r.stats.refused_batches, r.stats.refused_events) == (2, 10)
    (tmp_path / REFUSED_STATE).unlink()  # lost: ack.state still holds what was reported
    with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w:
        with pytest.raises(RecordTooLargeError):
            w.append(b"x" * 5000, 5)
        assert w.refusals == Refusals(3, 15)
        w.append(b"c", 1)
    with SpoolReader(tmp_path) as r:
        r.read(10, 1000)
        assert r.take_loss_report() == LossReport(refused_batches=1, refused_events=5)


def test_a_record_the_filesystem_cannot_hold_drops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FakeDisk(tmp_path, 600 * 2**10)
    monkeypatch.setattr(os, "statvfs", disk.statvfs)
    with SpoolWriter(tmp_path) as w:
        for seq in range(40):
            w.append(payload_for(seq, 5000), 1)
        with pytest.raises(OSError, match="no room"):
            w.append(b"z" * 600 * 2**10, 9)  # under max_bytes, over what the disk leaves
        assert w.refusals == Refusals(1, 9)
    records, reader = drain(tmp_path)
    with reader:
        assert [r.seq for r in records] == list(range(40))


def test_refusals_that_could_not_be_saved_are_saved_by_the_next_append(tmp_path: Path) -> None:
    (tmp_path / REFUSED_STATE).mkdir()  # the file cannot be created (as on a full disk)
    with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w:
        with pytest.raises(RecordTooLargeError):
            w.append(b"x" * 5000, 4)
        assert w.refusals == Refusals(1, 4)
        (tmp_path / REFUSED_STATE).rmdir()
        w.append(b"a", 1)
    with SpoolReader(tmp_path) as r:
        r.read(10, 1000)
        assert r.take_loss_report() == LossReport(refused_batches=1, refused_events=4)


def test_the_reader_follows_a_refusal_file_made_anew(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w, SpoolReader(tmp_path) as r:
        with pytest.raises(RecordTooLargeError):
            w.append(b"x" * 5000, 2)
        w.append(b"a", 1)
        batch = r.read(10, 1000)
        assert r.take_loss_report() == LossReport(refused_batches=1, refused_events=2)
        r.commit(batch[-1].seq)
        w.close()
        (tmp_path / REFUSED_STATE).unlink()
        with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w2:
            with pytest.raises(RecordTooLargeError):
                w2.append(b"x" * 5000, 3)
            w2.append(b"b", 1)
        r.read(10, 1000)
        assert r.take_loss_report() == LossReport(refused_batches=1, refused_events=3)
