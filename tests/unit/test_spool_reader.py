"""SpoolReader: read batches, commits, the committed position on disk, segment deletion, resuming
after a restart, and losses counted exactly."""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
import zlib
from pathlib import Path

import pytest

from ext.spool import LossReport, SpoolReader, SpoolWriter, reader
from ext.spool.ackstate import STATE_FILE_BYTES, decode_slot, load_committed
from ext.spool.frame import FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, encode_frame_header
from ext.spool.layout import ACK_STATE, list_segments
from ext.spool.refusals import RefusalLog, Refusals
from tests.unit.spool_helpers import segment_path


def flip(path: Path, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0xFF]))


def reader_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ext.spool.reader" and r.levelno >= logging.WARNING]


def frame_at(index: int, payload_len: int) -> int:
    """Offset of the index-th frame of a segment of equal payloads."""
    return SEGMENT_HEADER_BYTES + index * (FRAME_HEADER_BYTES + payload_len)


def fill(directory: Path, records: int, per_segment: int) -> None:
    """`records` records of 10 bytes and 1 event each, `per_segment` of them to a segment."""
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(directory, segment_bytes=SEGMENT_HEADER_BYTES + per_segment * frame,
                     max_bytes=1 << 20) as w:
        for _ in range(records):
            w.append(b"x" * 10, 1)


def test_unread_bytes_is_what_is_left_to_read(tmp_path: Path) -> None:
    frame = FRAME_HEADER_BYTES + 100
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 3 * frame,
                     max_bytes=1 << 20) as w, SpoolReader(tmp_path) as r:
        assert r.unread_bytes() == 0
        for _ in range(7):  # segments of 3, 3 and 1 records
            w.append(b"u" * 100, 1)
        assert len(list_segments(str(tmp_path))) == 3
        assert r.unread_bytes() == 7 * frame
        r.read(2, 1 << 20)
        assert r.unread_bytes() == 5 * frame
        r.read(2, 1 << 20)  # into the second segment
        assert r.unread_bytes() == 3 * frame
        r.read(100, 1 << 20)
        assert r.unread_bytes() == 0


def test_a_batch_stops_at_its_record_and_byte_limits(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        for i in range(6):
            w.append(bytes([i]) * 10, i)
        assert [x.seq for x in r.read(2, 1 << 20)] == [0, 1]
        assert [x.seq for x in r.read(100, 20)] == [2, 3]  # 20 bytes: two whole records
        assert [x.seq for x in r.read(100, 21)] == [4, 5]  # 21: a third one would start
        assert [(x.payload, x.event_count) for x in r.read(1, 1)] == []


def test_a_read_with_nothing_there_returns_nothing_and_the_next_read_finds_a_new_record(
    tmp_path: Path,
) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        assert r.read(10, 100) == []
        w.append(b"a", 1)  # the wake-up byte goes to the sender's pipe, not to the reader
        assert [x.payload for x in r.read(10, 100)] == [b"a"]
        assert r.read(10, 100) == []


def test_commits_are_durable_and_only_move_forward(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        for _ in range(5):
            w.append(b"c", 2)
        assert r.committed_seq == -1
        r.read(5, 1 << 20)
        r.commit(2)  # the middle of what was read
        assert r.committed_seq == 2
        assert (r.stats.delivered_records, r.stats.delivered_events) == (3, 6)
        committed = load_committed(tmp_path)
        assert committed is not None
        assert (committed.next_seq, committed.next_events) == (3, 6)
        r.commit(1)  # already committed: nothing happens
        r.commit(2)
        assert r.committed_seq == 2
        with pytest.raises(ValueError, match="not been read"):
            r.commit(5)
        r.commit(4)
        assert (r.stats.delivered_records, r.stats.delivered_events) == (5, 10)
    with SpoolReader(tmp_path) as r:
        assert r.committed_seq == 4
        assert r.read(10, 1 << 20) == []


def test_commit_before_any_read_is_refused(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        w.append(b"a", 1)
        with pytest.raises(ValueError, match="not been read"):
            r.commit(0)


def test_a_new_ack_state_is_made_whole(tmp_path: Path) -> None:
    with SpoolReader(tmp_path):
        pass
    assert (tmp_path / ACK_STATE).stat().st_size == STATE_FILE_BYTES
    assert load_committed(tmp_path) is not None  # a valid slot from the start
    (tmp_path / ACK_STATE).write_bytes(b"")
    with SpoolReader(tmp_path):
        pass
    assert load_committed(tmp_path) is not None


@pytest.mark.parametrize("before", [None, b"\xff" * 100], ids=["new", "short"])
def test_a_new_ack_state_owns_its_blocks(tmp_path: Path, before: bytes | None) -> None:
    # Both slots on real blocks, as refused.state: a commit then overwrites bytes the file
    # owns and still succeeds once the function filled /tmp. A hole (ftruncate) under the
    # second slot made the first commit to it fail with ENOSPC on a full filesystem, and the
    # sender die and resend the same batch at every restart without ever committing it.
    if before is not None:
        (tmp_path / ACK_STATE).write_bytes(before)
    with SpoolReader(tmp_path):
        pass
    assert (tmp_path / ACK_STATE).stat().st_size == STATE_FILE_BYTES
    assert (tmp_path / ACK_STATE).stat().st_blocks * 512 >= STATE_FILE_BYTES


def test_a_short_write_creating_ack_state_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full /tmp can cut the write that gives ack.state its blocks short: the reader must not
    # start on a file whose second slot would lie on a hole again (its first commit there would
    # fail), but refuse as the full disk it is, and leave no descriptor behind.
    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: real_pwrite(fd, data[:100], offset))
    before = {int(name) for name in os.listdir("/proc/self/fd")}
    with pytest.raises(OSError, match="short write") as caught:
        SpoolReader(tmp_path)
    assert caught.value.errno == errno.ENOSPC
    assert {int(name) for name in os.listdir("/proc/self/fd")} == before
    assert (tmp_path / ACK_STATE).stat().st_size == 0  # as found: new, not damaged
    monkeypatch.undo()
    with SpoolReader(tmp_path):
        pass
    assert (tmp_path / ACK_STATE).stat().st_size == STATE_FILE_BYTES


def _first_segment_delivered_and_deleted(directory: Path) -> None:
    """Six records, two per segment; the first two delivered, so their segment is gone."""
    fill(directory, records=6, per_segment=2)
    with SpoolReader(directory) as r:
        r.read(2, 1 << 20)
        r.commit(1)
    assert list_segments(str(directory)) == [2, 4]


def test_a_short_write_completing_a_part_written_ack_state_leaves_it_as_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cut back to its old size, not emptied: an empty file would pass for a new one at the next
    # start, which counts the records before the oldest segment left as lost.
    _first_segment_delivered_and_deleted(tmp_path)
    (tmp_path / ACK_STATE).write_bytes(b"\xff" * 100)  # part-written: no valid slot
    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: real_pwrite(fd, data[:100], offset))
    with pytest.raises(OSError, match="short write"):
        SpoolReader(tmp_path)
    assert (tmp_path / ACK_STATE).read_bytes() == b"\xff" * 100
    monkeypatch.undo()
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [2, 3, 4, 5]
        assert r.take_loss_report() is None


def test_a_short_unreadable_ack_state_resends_everything(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        for _ in range(3):
            w.append(b"a", 1)
    (tmp_path / ACK_STATE).write_bytes(b"\xff" * 100)  # neither empty nor valid
    with SpoolReader(tmp_path) as r:
        assert (tmp_path / ACK_STATE).stat().st_size == STATE_FILE_BYTES
        assert [x.seq for x in r.read(10, 1000)] == [0, 1, 2]
        assert r.take_loss_report() is None


def test_a_segment_is_deleted_once_every_record_in_it_is_committed(tmp_path: Path) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 3 * frame,
                     max_bytes=1 << 20) as w, SpoolReader(tmp_path) as r:
        for _ in range(7):
            w.append(b"d" * 10, 1)
        assert list_segments(str(tmp_path)) == [0, 3, 6]
        r.read(100, 1 << 20)
        r.commit(1)
        assert list_segments(str(tmp_path)) == [0, 3, 6]
        r.commit(2)  # the last record of segment 0
        assert list_segments(str(tmp_path)) == [3, 6]
        r.commit(6)
        assert list_segments(str(tmp_path)) == [6]  # the newest stays: the writer appends there


@pytest.mark.parametrize("base", [0, 300], ids=["first-segment", "segment-past-seq-256"])
def test_a_restart_resumes_at_the_committed_offset_past_damage_already_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, base: int,
) -> None:
    # Past seq 256 too: seqs and offsets there are ints that only compare equal by value.
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 300 * frame,
                     max_bytes=1 << 22) as w:
        for _ in range(base + 4):  # segment 0 holds up to 300 records, segment 300 the rest
            w.append(b"x" * 10, 1)
    with SpoolReader(tmp_path) as r:
        r.read(base + 2, 1 << 22)
        r.commit(base + 1)
    assert list_segments(str(tmp_path)) == [base]
    flip(segment_path(tmp_path, base), frame_at(0, 10) + 9)  # record base's header, delivered
    caplog.clear()
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [base + 2, base + 3]
        assert r.take_loss_report() is None
        assert reader_warnings(caplog) == []  # delivered data is not read again


def test_a_restart_at_the_end_of_a_segment_reads_what_comes_next(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        w.append(b"a", 1)
        r.commit(r.read(1, 100)[-1].seq)
    with SpoolWriter(tmp_path) as w:  # a new segment: the first one had a record
        w.append(b"b", 1)
    with SpoolReader(tmp_path) as r:
        assert [x.payload for x in r.read(10, 100)] == [b"b"]
        assert r.take_loss_report() is None


def test_deleted_segments_are_counted_as_dropped(tmp_path: Path) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 2 * frame,
                     max_bytes=1 << 20) as w:
        for i in range(6):
            w.append(b"x" * 10, i)
    segment_path(tmp_path, 2).unlink()  # records 2 and 3: 2 + 3 events
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(100, 1 << 20)] == [0, 1, 4, 5]
        assert r.take_loss_report() == LossReport(dropped_records=2, dropped_events=5)


def test_a_segment_with_a_damaged_header_is_read_from_its_first_intact_frame(
    tmp_path: Path,
) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 3 * frame,
                     max_bytes=1 << 20) as w:
        for i in range(6):
            w.append(b"x" * 10, i + 1)
    path = segment_path(tmp_path, 3)
    flip(path, 0)  # the segment's magic
    flip(path, frame_at(0, 10) + 9)  # and its first record's header: 4 events
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(100, 1 << 20)] == [0, 1, 2, 4, 5]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=4)


def test_a_segment_with_nothing_intact_is_counted_as_corrupt(tmp_path: Path) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 2 * frame,
                     max_bytes=1 << 20) as w:
        for i in range(6):
            w.append(b"x" * 10, i)
    path = segment_path(tmp_path, 2)
    path.write_bytes(b"\x00" * path.stat().st_size)
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(100, 1 << 20)] == [0, 1, 4, 5]
        assert r.take_loss_report() == LossReport(corrupt_records=2, corrupt_events=5)


@pytest.mark.parametrize("below", [True, False], ids=["crc-below-the-stored-one", "crc-above"])
def test_a_damaged_payload_costs_its_record_only(tmp_path: Path, below: bool) -> None:
    # Whichever way the damaged payload's CRC-32 is off: only an equal one is intact.
    stored = zlib.crc32(b"\x01" * 10)
    damaged = next(p for p in (b"\x01" * 3 + bytes([v]) + b"\x01" * 6 for v in range(2, 256))
                   if (zlib.crc32(p) < stored) == below)
    with SpoolWriter(tmp_path) as w:
        for i in range(3):
            w.append(bytes([i]) * 10, i + 2)
    with open(segment_path(tmp_path, 0), "r+b") as f:
        f.seek(frame_at(1, 10) + FRAME_HEADER_BYTES)
        f.write(damaged)
    with SpoolReader(tmp_path) as r:
        got = r.read(100, 1 << 20)
        assert [(x.seq, x.payload) for x in got] == [(0, bytes(10)), (2, b"\x02" * 10)]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=3)
        r.commit(2)
        assert (r.stats.delivered_records, r.stats.delivered_events) == (2, 6)


def test_garbage_after_the_last_record_of_a_sealed_segment_is_skipped(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append(b"a", 1)
    with open(segment_path(tmp_path, 0), "ab") as f:
        f.write(b"\x00" * 30)  # not even a frame header's worth
    with SpoolWriter(tmp_path) as w:
        w.append(b"b", 1)
    with SpoolReader(tmp_path) as r:
        assert [x.payload for x in r.read(10, 100)] == [b"a", b"b"]


def refuse(directory: Path, counts: Refusals) -> None:
    """Set refused.state's counts as a writer would (none runs)."""
    log = RefusalLog(str(directory), Refusals())
    log.counts = counts
    log.save()
    log.close()


def append(directory: Path, payload: bytes) -> None:
    with SpoolWriter(directory) as w:
        w.append(payload, 1)


def test_refusals_are_reported_with_the_records_read_after_them(tmp_path: Path) -> None:
    append(tmp_path, b"a")
    refuse(tmp_path, Refusals(1, 3))
    with SpoolReader(tmp_path) as r:
        batch = r.read(10, 100)
        assert r.take_loss_report() == LossReport(refused_batches=1, refused_events=3)
        r.commit(batch[-1].seq)
        assert (r.stats.refused_batches, r.stats.refused_events) == (1, 3)
        refuse(tmp_path, Refusals(1, 5))  # a floor from ack.state raised the events only
        append(tmp_path, b"b")
        r.read(10, 100)
        assert r.take_loss_report() == LossReport(refused_events=2)
        refuse(tmp_path, Refusals(1, 4))  # never counted down
        append(tmp_path, b"c")
        batch = r.read(10, 100)
        assert r.take_loss_report() is None
        r.commit(batch[-1].seq)
        assert (r.stats.refused_batches, r.stats.refused_events) == (1, 5)


def test_a_reader_of_an_empty_spool_reads_nothing(tmp_path: Path) -> None:
    with SpoolReader(tmp_path) as r:
        assert r.read(10, 100) == []
        assert r.unread_bytes() == 0


def test_a_reader_that_cannot_start_releases_its_lock(tmp_path: Path) -> None:
    (tmp_path / ACK_STATE).mkdir()  # cannot be opened as a file
    before = {int(name) for name in os.listdir("/proc/self/fd")}
    with pytest.raises(IsADirectoryError):
        SpoolReader(tmp_path)
    assert {int(name) for name in os.listdir("/proc/self/fd")} == before
    (tmp_path / ACK_STATE).rmdir()
    SpoolReader(tmp_path).close()  # the lock was released


def test_a_record_larger_than_a_read_is_read_whole_within_a_small_budget(
    tmp_path: Path,
) -> None:
    big = os.urandom(600 * 1024)  # over two read chunks
    with SpoolWriter(tmp_path, max_bytes=8 * 2**20) as w:
        w.append(b"small", 1)
        w.append(big, 2)
        w.append(b"tail", 3)
    with SpoolReader(tmp_path) as r:
        assert [x.payload for x in r.read(10, 5)] == [b"small"]
        assert [x.payload for x in r.read(10, 5)] == [big]  # alone, over the budget
        assert [x.payload for x in r.read(10, 5)] == [b"tail"]


def test_records_before_the_committed_position_are_skipped_when_it_is_damaged(
    tmp_path: Path,
) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(4):
            w.append(bytes([i]) * 10, i + 1)
    with SpoolReader(tmp_path) as r:
        r.read(2, 1 << 20)
        r.commit(1)
    flip(segment_path(tmp_path, 0), frame_at(2, 10) + 9)  # record 2's header, not delivered
    with SpoolReader(tmp_path) as r:  # reads the segment from its start: 0 and 1 are skipped
        assert [x.seq for x in r.read(10, 1 << 20)] == [3]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=3)


def spool_missing_record_1(directory: Path) -> None:
    """Records 0-3 (i + 1 events each) in one segment, then record 1's bytes gone, as if a
    block of the file had been lost."""
    with SpoolWriter(directory) as w:
        for i in range(4):
            w.append(bytes([i]) * 10, i + 1)
    path = segment_path(directory, 0)
    data = path.read_bytes()
    path.write_bytes(data[: frame_at(1, 10)] + data[frame_at(2, 10):])


def test_a_record_missing_from_the_middle_of_a_segment_is_counted_as_corrupt(
    tmp_path: Path,
) -> None:
    spool_missing_record_1(tmp_path)
    with SpoolReader(tmp_path) as r:
        got = r.read(10, 1 << 20)
        assert [(x.seq, x.payload, x.event_count) for x in got] == [
            (0, bytes(10), 1), (2, b"\x02" * 10, 3), (3, b"\x03" * 10, 4),
        ]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=2)
        r.commit(3)
        assert (r.stats.delivered_records, r.stats.delivered_events) == (3, 8)


def test_a_loss_taken_but_committed_only_before_it_is_reported_again_after_a_crash(
    tmp_path: Path,
) -> None:
    # The loss of record 1 is found past record 0 and taken, but only record 0 is committed:
    # its checkpoint must not mark the loss reported, or the reader after a crash, which finds
    # it again, would never report it (at least once).
    spool_missing_record_1(tmp_path)
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 2, 3]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=2)
        r.commit(0)
    with SpoolReader(tmp_path) as again:
        assert [x.seq for x in again.read(10, 1 << 20)] == [2, 3]
        assert again.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=2)


def test_a_loss_taken_with_the_last_record_read_stays_unreported_until_that_one_is_committed(
    tmp_path: Path,
) -> None:
    # The sender sends the report with the last record of the read, and a read may fill two
    # HEC requests: the first one's commit covers records read after the refusal was seen,
    # but not the report. After a crash before the second, the next reader reports it again.
    append(tmp_path, b"a")
    append(tmp_path, b"b")
    refuse(tmp_path, Refusals(1, 3))
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 100)] == [0, 1]
        assert r.take_loss_report() == LossReport(refused_batches=1, refused_events=3)
        r.commit(0)
    with SpoolReader(tmp_path) as again:
        assert [x.seq for x in again.read(10, 100)] == [1]
        assert again.take_loss_report() == LossReport(refused_batches=1, refused_events=3)
        again.commit(1)
    with SpoolReader(tmp_path) as last:
        append(tmp_path, b"c")
        assert [x.seq for x in last.read(10, 100)] == [2]
        assert last.take_loss_report() is None  # committed with the record it went out with


def test_each_loss_report_is_marked_reported_by_the_commit_of_its_own_record(
    tmp_path: Path,
) -> None:
    # Two reports out at once, each taken with a different last record: a commit that covers
    # the first report's record but not the second's marks the first only, and a commit past a
    # report's record (not just at it) marks that report too.
    for payload in (b"a", b"b", b"c"):
        append(tmp_path, payload)
    refuse(tmp_path, Refusals(1, 3))
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(1, 100)] == [0]
        assert r.take_loss_report() == LossReport(refused_batches=1, refused_events=3)
        refuse(tmp_path, Refusals(2, 5))
        assert [x.seq for x in r.read(1, 100)] == [1]
        assert r.take_loss_report() == LossReport(refused_batches=1, refused_events=2)
        r.commit(0)
    with SpoolReader(tmp_path) as again:
        assert [x.seq for x in again.read(1, 100)] == [1]
        assert again.take_loss_report() == LossReport(refused_batches=1, refused_events=2)
        assert [x.seq for x in again.read(1, 100)] == [2]
        again.commit(2)
    append(tmp_path, b"d")
    with SpoolReader(tmp_path) as last:
        assert [x.seq for x in last.read(10, 100)] == [3]
        assert last.take_loss_report() is None


def test_a_loss_found_after_the_records_of_its_report_is_marked_reported_by_a_later_commit(
    tmp_path: Path,
) -> None:
    # Records 2 and 3 are lost with their segment; the read of 0 and 1 finds the gap at the
    # (empty) segment after it and hands it out with record 1, whose commit does not cover it.
    # Once that report is committed, the next commit marks the gap reported: a reader after a
    # crash must not report it a second time.
    fill(tmp_path, records=4, per_segment=2)
    with SpoolWriter(tmp_path):
        pass  # starts segment 4
    segment_path(tmp_path, 2).unlink()
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 1]
        assert r.take_loss_report() == LossReport(dropped_records=2, dropped_events=2)
        r.commit(1)
        append(tmp_path, b"c")
        assert [x.seq for x in r.read(10, 1 << 20)] == [4]
        assert r.take_loss_report() is None
        r.commit(4)
    append(tmp_path, b"d")
    with SpoolReader(tmp_path) as again:
        assert [x.seq for x in again.read(10, 1 << 20)] == [5]
        assert again.take_loss_report() is None


def test_a_committed_report_counts_no_more_than_its_record_s_counters(tmp_path: Path) -> None:
    # A report goes out with record 1 and holds the gap found after it (segment 2 unreadable:
    # corrupt). Record 1's commit marks reported only what its own counters hold: the next
    # reader finds the gap again, and may class it otherwise (the segment since dropped: no
    # longer damaged bytes). Marked in full, the corrupt count would have gone negative.
    fill(tmp_path, records=4, per_segment=2)
    with SpoolWriter(tmp_path):
        pass  # starts segment 4
    damaged = segment_path(tmp_path, 2)
    damaged.write_bytes(b"\xee" * damaged.stat().st_size)
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 1]
        assert r.take_loss_report() == LossReport(corrupt_records=2, corrupt_events=2)
        r.commit(1)
    damaged.unlink()
    with SpoolReader(tmp_path) as again:
        assert again.read(10, 1 << 20) == []
        assert again.take_loss_report() == LossReport(dropped_records=2, dropped_events=2)


def test_a_segment_deleted_between_listing_and_opening_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = FRAME_HEADER_BYTES + 10
    fill(tmp_path, records=4, per_segment=2)
    assert list_segments(str(tmp_path)) == [0, 2]
    real_open = os.open

    def listing_with_one_deleted_since(directory: str) -> list[int]:
        return sorted([*list_segments(directory), 1])

    failed: list[str | Path] = []

    def open_after_deletion(path: str | Path, flags: int, mode: int = 0o777) -> int:
        if Path(path).name.startswith("seg-00000000000000000002") and not failed:
            failed.append(path)  # segment 2 as a listing saw it, gone when opened
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        return real_open(path, flags, mode)

    with SpoolReader(tmp_path) as r:
        monkeypatch.setattr("ext.spool.reader.list_segments", listing_with_one_deleted_since)
        assert r.unread_bytes() == 4 * frame  # segment 1 is gone: it counts for nothing
        monkeypatch.setattr("ext.spool.reader.list_segments", list_segments)
        assert [x.seq for x in r.read(2, 1 << 20)] == [0, 1]
        monkeypatch.setattr(os, "open", open_after_deletion)
        assert [x.seq for x in r.read(10, 1 << 20)] == [2, 3]  # listed again, found
        assert failed


def test_each_commit_leaves_the_one_before_it_intact(tmp_path: Path) -> None:
    """The two-slot scheme: a commit writes the slot the last commit did not, so a torn write
    falls back to the commit before it."""
    def slots() -> list[tuple[int, int] | None]:
        data = (tmp_path / ACK_STATE).read_bytes()
        out: list[tuple[int, int] | None] = []
        for offset in (0, 4096):
            slot = decode_slot(data[offset:])
            out.append(None if slot is None else (slot[0], slot[1].next_seq))
        return out

    with SpoolWriter(tmp_path) as w:
        for _ in range(4):
            w.append(b"t", 1)
    with SpoolReader(tmp_path) as r:
        assert slots() == [(0, 0), None]
        r.read(10, 100)
        r.commit(0)
        assert slots() == [(0, 0), (1, 1)]
        r.commit(2)
        assert slots() == [(2, 3), (1, 1)]
    with SpoolReader(tmp_path) as r:
        r.read(10, 100)
        r.commit(3)
        assert slots() == [(2, 3), (3, 4)]


def test_a_lost_segment_of_records_without_events_counts_no_events(tmp_path: Path) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 2 * frame,
                     max_bytes=1 << 20) as w:
        for events in (1, 1, 0, 0, 1, 1):
            w.append(b"x" * 10, events)
    segment_path(tmp_path, 2).unlink()
    with SpoolReader(tmp_path) as r:
        r.read(100, 1 << 20)
        assert r.take_loss_report() == LossReport(dropped_records=2)


def test_after_a_damaged_record_a_lost_segment_is_dropped_not_corrupt(tmp_path: Path) -> None:
    fill(tmp_path, records=6, per_segment=2)
    flip(segment_path(tmp_path, 0), frame_at(1, 10) + FRAME_HEADER_BYTES + 2)  # record 1's payload
    segment_path(tmp_path, 2).unlink()
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(100, 1 << 20)] == [0, 4, 5]
        assert r.take_loss_report() == LossReport(
            dropped_records=2, dropped_events=2, corrupt_records=1, corrupt_events=1
        )


def test_a_reader_makes_its_directory(tmp_path: Path) -> None:
    with SpoolReader(tmp_path / "deep" / "spool") as r:
        assert r.read(10, 100) == []
    assert (tmp_path / "deep" / "spool" / ACK_STATE).exists()


def test_a_delivered_segment_the_writer_deleted_is_passed_over(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        w.append(b"a", 1)
        r.commit(r.read(10, 100)[-1].seq)
    # What a writer on a short disk does with its active segment once all of it is delivered.
    segment_path(tmp_path, 0).unlink()
    with SpoolReader(tmp_path) as r:
        assert r.read(10, 100) == []
        with SpoolWriter(tmp_path) as w:
            w.append(b"b", 1)
        assert [x.payload for x in r.read(10, 100)] == [b"b"]
        assert r.take_loss_report() is None


def test_a_reader_passes_over_its_own_segment_deleted_under_it(tmp_path: Path) -> None:
    with SpoolReader(tmp_path) as r:
        with SpoolWriter(tmp_path) as w:
            w.append(b"a", 1)
        r.commit(r.read(10, 100)[-1].seq)
        # A writer on a short disk deletes its active segment once all of it is delivered,
        # while the reader still has it open.
        segment_path(tmp_path, 0).unlink()
        assert r.read(10, 100) == []
        with SpoolWriter(tmp_path) as w:
            w.append(b"b", 1)  # into a new segment
        assert [x.payload for x in r.read(10, 100)] == [b"b"]
        assert r.take_loss_report() is None


def test_a_record_lost_down_to_one_byte_is_counted_and_the_next_one_read(
    tmp_path: Path,
) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(3):
            w.append(bytes([i]) * 10, i + 1)
    path = segment_path(tmp_path, 0)
    data = path.read_bytes()
    # Record 1 is gone but for one byte: the next header starts one byte past the read offset.
    path.write_bytes(data[: frame_at(1, 10)] + b"\x00" + data[frame_at(2, 10):])
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 2]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=2)


def test_a_header_that_failed_its_crc_only_in_a_torn_read_is_read_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(3):
            w.append(bytes([i]) * 10, 1)
    real, torn = os.pread, list[int]()

    def pread(fd: int, length: int, offset: int) -> bytes:
        data = real(fd, length, offset)
        if offset != frame_at(1, 10) or torn:
            return data
        torn.append(offset)
        return bytes([data[0] ^ 0x01]) + data[1:]  # record 1's header as a racing read saw it

    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(1, 1 << 20)] == [0]
        monkeypatch.setattr(os, "pread", pread)
        # The resync reads the header again, intact now: the record is read, nothing is lost.
        assert [x.seq for x in r.read(10, 1 << 20)] == [1, 2]
        assert torn and r.take_loss_report() is None


def test_a_restart_after_a_missing_record_resumes_at_the_committed_offset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(5):
            w.append(bytes([i]) * 10, 1)
    path = segment_path(tmp_path, 0)
    data = path.read_bytes()
    path.write_bytes(data[: frame_at(1, 10)] + data[frame_at(2, 10):])  # record 1 is lost
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(2, 1 << 20)] == [0, 2]  # 2 comes after the gap
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=1)
        r.commit(2)
    flip(path, frame_at(0, 10) + 9)  # delivered, so the restart must not read past it again
    caplog.clear()
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [3, 4]
        assert r.take_loss_report() is None
        assert reader_warnings(caplog) == []  # delivered data is not read again


def test_a_closed_reader_holds_no_fd(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append(b"a", 1)
    before = set(os.listdir("/proc/self/fd"))
    r = SpoolReader(tmp_path)
    assert [x.payload for x in r.read(10, 100)] == [b"a"]  # a segment is open now
    assert set(os.listdir("/proc/self/fd")) > before
    r.close()
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_restart_at_the_end_of_the_active_segment_reads_what_the_writer_adds_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(2):
            w.append(bytes([i]) * 200, 1)  # a segment past 256 bytes
        with SpoolReader(tmp_path) as r:
            r.commit(r.read(10, 1 << 20)[-1].seq)  # everything, to the end of the segment
        flip(segment_path(tmp_path, 0), frame_at(0, 200) + 9)  # delivered: never read again
        caplog.clear()
        with SpoolReader(tmp_path) as r:
            assert r.read(10, 1 << 20) == []
            for i in range(2, 4):
                w.append(bytes([i]) * 200, 1)  # the same segment, still active
            assert [x.seq for x in r.read(10, 1 << 20)] == [2, 3]
            assert r.take_loss_report() is None
            assert reader_warnings(caplog) == []  # delivered data is not read again


def test_a_sealed_segment_whose_last_record_is_lost_down_to_one_byte_counts_it_corrupt(
    tmp_path: Path,
) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 2 * frame,
                     max_bytes=1 << 20) as w:
        for i in range(4):
            w.append(b"x" * 10, i + 1)
    path = segment_path(tmp_path, 0)
    path.write_bytes(path.read_bytes()[: frame_at(1, 10) + 1])  # record 1: one byte left
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 2, 3]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=2)


def test_a_segment_past_seq_256_made_empty_at_start_up_is_read_as_records_come(
    tmp_path: Path,
) -> None:
    """Seqs past 256 are ints Python does not cache: segment bases compare by value."""
    frame = FRAME_HEADER_BYTES + 10
    size = SEGMENT_HEADER_BYTES + 300 * frame
    with SpoolWriter(tmp_path, segment_bytes=size, max_bytes=1 << 22) as w:
        for _ in range(300):
            w.append(b"x" * 10, 1)
    with SpoolReader(tmp_path) as r:
        assert len(r.read(299, 1 << 22)) == 299  # a record limit past 256 too
        r.commit(r.read(1_000, 1 << 22)[-1].seq)
        with SpoolWriter(tmp_path, segment_bytes=size, max_bytes=1 << 22) as w:
            assert list_segments(str(tmp_path)) == [0, 300]  # a new writer starts a segment, empty
            assert r.read(10, 1 << 20) == []
            w.append(b"y" * 10, 1)
            w.append(b"z" * 10, 1)
            assert [x.seq for x in r.read(1, 1 << 20)] == [300]
            assert r.unread_bytes() == frame
            assert [x.payload for x in r.read(10, 1 << 20)] == [b"z" * 10]
            assert r.take_loss_report() is None


def test_an_unreadable_ack_state_resends_from_the_oldest_segment_left_and_counts_no_loss(
    tmp_path: Path,
) -> None:
    _first_segment_delivered_and_deleted(tmp_path)
    (tmp_path / ACK_STATE).write_bytes(b"\xff" * STATE_FILE_BYTES)  # both slots unreadable
    with SpoolReader(tmp_path) as r:
        # Where delivery stood is unknown: duplicates rather than loss, and no gap counted.
        assert [x.seq for x in r.read(10, 1 << 20)] == [2, 3, 4, 5]
        assert r.take_loss_report() is None


def test_after_an_unreadable_ack_state_a_later_lost_segment_is_still_counted(
    tmp_path: Path,
) -> None:
    fill(tmp_path, records=6, per_segment=2)
    (tmp_path / ACK_STATE).write_bytes(b"\xff" * STATE_FILE_BYTES)  # both slots unreadable
    segment_path(tmp_path, 2).unlink()
    with SpoolReader(tmp_path) as r:
        # Only the first segment entered is taken as the start, without a gap: a seq gap
        # after it is a loss like any other.
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 1, 4, 5]
        assert r.take_loss_report() == LossReport(dropped_records=2, dropped_events=2)


def test_an_empty_record_is_read_like_any_other(tmp_path: Path) -> None:
    payloads = [b"a", b"", *(bytes([i]) * 10 for i in range(60)), b""]
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        for payload in payloads:
            w.append(payload, len(payload))
        got = r.read(100, 1 << 20)
        assert [(x.seq, x.payload, x.event_count) for x in got] == [
            (seq, payload, len(payload)) for seq, payload in enumerate(payloads)]
        assert r.take_loss_report() is None
        assert r.unread_bytes() == 0


def test_a_lost_segment_after_a_damaged_header_is_dropped_not_corrupt(tmp_path: Path) -> None:
    fill(tmp_path, records=6, per_segment=2)
    flip(segment_path(tmp_path, 0), frame_at(0, 10) + 9)  # record 0's header
    segment_path(tmp_path, 2).unlink()
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(100, 1 << 20)] == [1, 4, 5]
        assert r.take_loss_report() == LossReport(
            dropped_records=2, dropped_events=2, corrupt_records=1, corrupt_events=1
        )


def test_a_segment_cut_below_its_header_adds_nothing_to_the_unread_bytes(tmp_path: Path) -> None:
    frame = FRAME_HEADER_BYTES + 10
    fill(tmp_path, records=4, per_segment=2)
    os.truncate(segment_path(tmp_path, 2), 10)
    with SpoolReader(tmp_path) as r:
        assert r.unread_bytes() == 2 * frame


def test_a_sealed_segment_cut_inside_its_last_record_counts_it_corrupt(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 2 * FRAME_HEADER_BYTES + 110,
                     max_bytes=1 << 20) as w:
        for payload in (b"a" * 10, b"b" * 100, b"c" * 10, b"d" * 10):
            w.append(payload, 1)
    assert list_segments(str(tmp_path)) == [0, 2]
    # Record 1 is cut after as many bytes as the segment held before it.
    os.truncate(segment_path(tmp_path, 0), 2 * frame_at(1, 10))
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 2, 3]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=1)


def test_a_sealed_segment_cut_below_the_committed_position_counts_what_it_lost_corrupt(
    tmp_path: Path,
) -> None:
    fill(tmp_path, records=6, per_segment=4)
    with SpoolReader(tmp_path) as r:
        r.read(3, 1 << 20)
        r.commit(2)
    os.truncate(segment_path(tmp_path, 0), frame_at(1, 10) + 5)  # inside delivered record 1
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(10, 1 << 20)] == [4, 5]
        assert r.take_loss_report() == LossReport(corrupt_records=1, corrupt_events=1)


def test_closing_a_reader_twice_closes_nothing_more(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append(b"a", 1)
    r = SpoolReader(tmp_path)
    r.read(10, 100)
    r.close()
    before = set(os.listdir("/proc/self/fd"))
    r.close()
    assert set(os.listdir("/proc/self/fd")) == before


def test_the_ack_state_is_private(tmp_path: Path) -> None:
    with SpoolReader(tmp_path):
        pass
    assert stat.S_IMODE((tmp_path / ACK_STATE).stat().st_mode) == 0o600


def test_a_batch_goes_on_while_a_byte_of_its_budget_is_left(tmp_path: Path) -> None:
    big = os.urandom(300 * 1024)  # longer than a read chunk: the read ends just past it
    with SpoolWriter(tmp_path, max_bytes=8 * 2**20) as w, SpoolReader(tmp_path) as r:
        for payload in (big, b"t", b"u"):
            w.append(payload, 1)
        assert [x.payload for x in r.read(10, len(big) + 1)] == [big, b"t"]
        for payload in (b"0123456789", b"a", b"bc", b"d"):
            w.append(payload, 1)
        assert [x.payload for x in r.read(10, 12)] == [b"u", b"0123456789", b"a"]


def test_a_record_being_written_is_waited_for_even_if_its_payload_holds_a_frame_header(
    tmp_path: Path,
) -> None:
    inner = encode_frame_header(b"z", 1, 1, 1, 0) + b"z"  # what a later record would look like
    with SpoolWriter(tmp_path) as w:
        w.append(b"[" + inner + b"]" * 100, 1)
        w.append(b"next", 1)
    path = segment_path(tmp_path, 0)
    data = path.read_bytes()
    path.write_bytes(data[: frame_at(0, 0) + FRAME_HEADER_BYTES + 1 + len(inner) + 10])
    with SpoolReader(tmp_path) as r:
        assert r.read(10, 1 << 20) == []  # the writer is still writing record 0
        with open(path, "ab") as f:
            f.write(data[path.stat().st_size:])  # and now it has
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 1]
        assert r.take_loss_report() is None


def test_a_restart_while_a_record_is_written_past_damage_already_delivered_loses_nothing(
    tmp_path: Path,
) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(5):
            w.append(bytes([i]) * 10, 1)
    with SpoolReader(tmp_path) as r:
        r.read(3, 1 << 20)
        r.commit(2)
    path = segment_path(tmp_path, 0)
    flip(path, frame_at(0, 10) + 9)  # record 0's header, delivered
    data = path.read_bytes()
    # The restart finds record 3 half written: it reads the segment from its start.
    path.write_bytes(data[: frame_at(3, 10) + 20])
    with SpoolReader(tmp_path) as r:
        assert r.read(10, 1 << 20) == []
        path.write_bytes(data)  # the writer finished records 3 and 4
        assert [x.seq for x in r.read(10, 1 << 20)] == [3, 4]
        assert r.take_loss_report() is None


def count_listings(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Makes the reader record every listing of the spool directory it makes."""
    listings: list[list[int]] = []

    def counting(directory: str) -> list[int]:
        listings.append(list_segments(directory))
        return listings[-1]

    monkeypatch.setattr("ext.spool.reader.list_segments", counting)
    return listings


def test_commits_inside_the_newest_segment_do_not_list_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        for _ in range(3):
            w.append(b"c", 1)
        r.read(10, 100)
        listings = count_listings(monkeypatch)
        r.commit(0)
        r.commit(2)
        assert listings == []  # nothing can be delivered in full: the writer appends there
        assert load_committed(tmp_path).next_seq == 3  # type: ignore[union-attr]


def test_a_segment_completed_before_the_next_was_seen_is_deleted_when_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 3 * frame,
                     max_bytes=1 << 20) as w, SpoolReader(tmp_path) as r:
        for _ in range(3):
            w.append(b"d" * 10, 1)
        r.read(10, 1 << 20)  # all of segment 0, the only one then
        r.commit(1)
        w.append(b"d" * 10, 1)  # segment 3 starts: the reader has not listed since
        w.append(b"d" * 10, 1)
        listings = count_listings(monkeypatch)
        r.commit(2)  # the last record of segment 0: no listing to find out
        assert listings == [] and list_segments(str(tmp_path)) == [0, 3]
        assert [x.seq for x in r.read(10, 1 << 20)] == [3, 4]  # moving on lists: deleted then
        assert list_segments(str(tmp_path)) == [3]
        r.commit(3)
        r.commit(4)
        assert list_segments(str(tmp_path)) == [3]


def test_a_read_asks_for_no_more_bytes_than_the_segment_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pread allocates the length it is given: 256 KiB for a 2 KiB append cost three syscalls.
    asked: list[int] = []
    pread = os.pread

    def recording(fd: int, length: int, offset: int) -> bytes:
        asked.append(length)
        return pread(fd, length, offset)

    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        w.append(b"p" * 2000, 1)
        monkeypatch.setattr(os, "pread", recording)
        assert [len(x.payload) for x in r.read(10, 1 << 20)] == [2000]
        assert r.read(10, 1 << 20) == []
        w.append(b"q" * 30, 1)
        assert [x.payload for x in r.read(10, 1 << 20)] == [b"q" * 30]
    assert max(asked) <= FRAME_HEADER_BYTES + 2000


class ReaderClock:
    """The reader's `time`: the real wall clock, and a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return self.now


def settle(directory: Path) -> int:
    """Dates the directory's last change 10 s back, as if nothing had changed there since, once
    the writer's helper thread has made its spare file (a change of its own)."""
    deadline = time.monotonic() + 5.0
    while not list(directory.glob("spare-*")) and time.monotonic() < deadline:
        time.sleep(0.001)
    old = time.time_ns() - 10_000_000_000
    os.utime(directory, ns=(old, old))
    return old


@pytest.fixture
def reader_clock(monkeypatch: pytest.MonkeyPatch) -> ReaderClock:
    made = ReaderClock()
    monkeypatch.setattr("ext.spool.reader.time", made)
    return made


def test_the_end_of_a_segment_lists_the_spool_only_when_it_may_have_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader_clock: ReaderClock,
) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        w.append(b"a", 1)
        listings = count_listings(monkeypatch)
        assert len(r.read(10, 100)) == 1
        assert len(listings) == 2  # to open the segment, and at its end
        assert r.read(10, 100) == []
        assert len(listings) == 3  # the change is recent: its mtime may not show the next one
        settle(tmp_path)
        assert r.read(10, 100) == []
        assert len(listings) == 4  # a settled listing: the directory's mtime now tells
        w.append(b"b", 1)  # into the same segment: the directory does not change
        assert [x.payload for x in r.read(10, 100)] == [b"b"]
        assert r.read(10, 100) == []
        assert len(listings) == 4
        reader_clock.now += reader.LISTING_TTL_S  # and only for so long
        assert r.read(10, 100) == []
        assert len(listings) == 5
        reader_clock.now += reader.LISTING_TTL_S + 1.0  # nor any time after that
        assert r.read(10, 100) == []
        assert len(listings) == 6


def test_a_segment_started_after_a_settled_listing_is_read_at_once(
    tmp_path: Path, reader_clock: ReaderClock,
) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 2 * frame,
                     max_bytes=1 << 20) as w, SpoolReader(tmp_path) as r:
        w.append(b"a" * 10, 1)
        settle(tmp_path)
        assert len(r.read(10, 100)) == 1
        assert r.read(10, 100) == []  # settled: the next read at this end does not list
        w.append(b"b" * 10, 1)
        w.append(b"c" * 10, 1)  # segment 2: created and renamed, the directory changes
        assert [x.payload for x in r.read(10, 100)] == [b"b" * 10, b"c" * 10]
        assert r.take_loss_report() is None


def test_a_backlog_estimate_lists_again_at_the_next_end_of_the_segment(
    tmp_path: Path, reader_clock: ReaderClock,
) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 2 * frame,
                     max_bytes=1 << 20) as w, SpoolReader(tmp_path) as r:
        w.append(b"a" * 10, 1)
        w.append(b"b" * 10, 1)
        old = settle(tmp_path)
        assert len(r.read(10, 100)) == 2
        w.append(b"c" * 10, 1)  # segment 2, from the spare file: the helper makes another
        settle(tmp_path)  # once the new spare file is made
        os.utime(tmp_path, ns=(old, old))  # a file system that left the mtime alone
        assert r.read(10, 100) == []  # not seen until the listing expires...
        assert r.unread_bytes() == frame  # ...or the shutdown's estimate lists the directory
        assert [x.payload for x in r.read(10, 100)] == [b"c" * 10]


def test_commits_inside_a_segment_with_a_successor_list_only_once_it_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 3 * frame,
                     max_bytes=1 << 20) as w, SpoolReader(tmp_path) as r:
        for _ in range(5):  # segments 0 (records 0-2) and 3 (records 3-4)
            w.append(b"e" * 10, 1)
        assert [x.seq for x in r.read(10, 1 << 20)] == [0, 1, 2, 3, 4]
        listings = count_listings(monkeypatch)
        r.commit(0)
        r.commit(1)
        assert listings == []  # segment 3 starts after seq 2: nothing is complete yet
        r.commit(2)
        assert len(listings) == 1 and list_segments(str(tmp_path)) == [3]


class StampedClock(ReaderClock):
    """The reader's `time`, its wall clock read `offset_ns` after the directory's last change
    (negative: the directory changed between the clock read and the reader's fstat)."""

    def __init__(self, directory: Path, offset_ns: int) -> None:
        super().__init__()
        self.directory, self.offset_ns = directory, offset_ns

    def time_ns(self) -> int:
        return os.stat(self.directory).st_mtime_ns + self.offset_ns


@pytest.mark.parametrize(("offset_ns", "trusted"), [
    (-1, False),  # changed after the clock was read: the next change may get the same stamp
    (reader.LISTING_SETTLE_NS, False),
    (reader.LISTING_SETTLE_NS + 1, True),
], ids=["changed-after-the-clock-read", "exactly-the-settle-time-old", "older-than-that"])
def test_a_listing_is_trusted_only_once_its_mtime_is_older_than_the_settle_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offset_ns: int, trusted: bool,
) -> None:
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        w.append(b"a", 1)
        settle(tmp_path)  # the writer's spare file made: nothing changes the directory now
        monkeypatch.setattr("ext.spool.reader.time", StampedClock(tmp_path, offset_ns))
        listings = count_listings(monkeypatch)
        assert len(r.read(10, 100)) == 1
        assert len(listings) == 2  # to open the segment, and at its end
        assert r.read(10, 100) == []
        assert len(listings) == (2 if trusted else 3)


def test_a_spool_directory_reached_through_a_symlink_is_read(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "spool")
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(link, segment_bytes=SEGMENT_HEADER_BYTES + frame,
                     max_bytes=1 << 20) as w, SpoolReader(link) as r:
        w.append(b"a" * 10, 1)
        assert [x.payload for x in r.read(10, 100)] == [b"a" * 10]
        w.append(b"b" * 10, 1)  # a new segment: seen through the directory's mtime
        assert [x.payload for x in r.read(10, 100)] == [b"b" * 10]


def test_commits_inside_a_segment_past_seq_256_list_only_once_it_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Segment bases past 256 are ints Python does not cache: one listing's 300 is not the
    object another listing (or the open) made, and only their values tell the same segment."""
    frame = FRAME_HEADER_BYTES + 10
    with SpoolWriter(tmp_path, segment_bytes=SEGMENT_HEADER_BYTES + 300 * frame,
                     max_bytes=1 << 22) as w, SpoolReader(tmp_path) as r:
        for _ in range(603):  # segments 0, 300 and 600
            w.append(b"x" * 10, 1)
        assert len(r.read(1000, 1 << 22)) == 603
        r.commit(299)  # segment 0 delivered: this commit lists, and deletes it
        assert list_segments(str(tmp_path)) == [300, 600]
        listings = count_listings(monkeypatch)
        r.commit(300)
        r.commit(450)
        assert listings == []  # segment 300 is not complete: nothing to look for
        r.commit(599)
        assert len(listings) == 1 and list_segments(str(tmp_path)) == [600]


@pytest.mark.parametrize("budget_mib", [16, 100])
def test_a_budget_far_past_a_segment_s_size_reads_the_whole_segment(
    tmp_path: Path, budget_mib: int,
) -> None:
    # SPLUNK_MAX_REQUEST_BYTES goes up to 100 MiB, and segments are 1 MiB by default.
    payloads = [bytes([i]) * 65_536 for i in range(15)]
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        for payload in payloads:
            w.append(payload, 1)
        assert [x.payload for x in r.read(1000, budget_mib * 2**20)] == payloads
