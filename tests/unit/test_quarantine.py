"""The dead-letter file: every refused event is kept (up to the bound) and counted, never raised."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from ext.sender.quarantine import FILE_NAME, MAX_BYTES, Quarantine


def lines(path: str) -> list[dict[str, object]]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def test_a_refused_event_is_kept_with_hecs_reason(tmp_path: Path) -> None:
    q = Quarantine(str(tmp_path))
    q.keep(b'{"event":"bad"}', 400, 6, "Invalid data format")
    q.keep(b'{"event":"\xff"}', 400, None, "<html>")
    assert q.path == str(tmp_path / FILE_NAME) and q.max_bytes == MAX_BYTES == 4 * 2**20
    assert lines(q.path) == [
        {"status": 400, "code": 6, "text": "Invalid data format", "envelope": '{"event":"bad"}'},
        {"status": 400, "code": None, "text": "<html>", "envelope": '{"event":"\ufffd"}'},
    ]
    assert (q.count, q.kept) == (2, 2)
    assert stat.S_IMODE(os.stat(q.path).st_mode) == 0o600


def test_the_file_is_appended_across_instances(tmp_path: Path) -> None:
    Quarantine(str(tmp_path)).keep(b"1", 400, 6, "a")
    again = Quarantine(str(tmp_path))
    again.keep(b"2", 400, 6, "b")
    assert [line["envelope"] for line in lines(again.path)] == ["1", "2"]
    assert (again.count, again.kept) == (1, 1)  # counts are per process


def test_the_file_is_bounded_and_the_count_goes_on(tmp_path: Path) -> None:
    line = len(json.dumps({"status": 400, "code": 6, "text": "t", "envelope": "x"})) + 1
    q = Quarantine(str(tmp_path), max_bytes=2 * line)  # room for exactly two lines
    assert [q.keep(b"x", 400, 6, "t") for _ in range(3)] == [True, True, False]  # kept or not
    assert os.path.getsize(q.path) == 2 * line
    assert (q.count, q.kept) == (3, 2)


def test_a_line_that_fits_exactly_is_kept(tmp_path: Path) -> None:
    line = len(json.dumps({"status": 400, "code": 6, "text": "t", "envelope": "x"})) + 1
    q = Quarantine(str(tmp_path), max_bytes=line)
    q.keep(b"x", 400, 6, "t")
    assert os.path.getsize(q.path) == line and q.kept == 1


def test_a_line_that_would_overflow_is_not_written_at_all(tmp_path: Path) -> None:
    line = len(json.dumps({"status": 400, "code": 6, "text": "t", "envelope": "x"})) + 1
    q = Quarantine(str(tmp_path), max_bytes=line - 1)
    q.keep(b"x", 400, 6, "t")
    assert not os.path.exists(q.path)
    assert (q.count, q.kept) == (1, 0)


def test_an_unwritable_file_is_logged_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    q = Quarantine(str(tmp_path / "missing"))
    with caplog.at_level(logging.ERROR, logger="ext.sender.quarantine"):
        assert not q.keep(b"x", 400, 6, "t")
    assert (q.count, q.kept) == (1, 0)
    assert any("cannot write the dead-letter file" in r.getMessage() for r in caplog.records)


def test_the_operator_is_told_at_powers_of_two_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    q = Quarantine(str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="ext.sender.quarantine"):
        for n in range(1, 10):
            q.keep(b"x", 400, 13, f"blank {n}")
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(" event(s)")[0] for m in messages] == [
        "HEC refused 1", "HEC refused 2", "HEC refused 4", "HEC refused 8",
    ]
    assert messages[-1] == (
        f"HEC refused 8 event(s) as invalid (last: status 400, code 13: blank 8); "
        f"kept 8 in {q.path}"
    )


def test_an_unmappable_spool_record_is_kept_with_its_seq_and_error(tmp_path: Path) -> None:
    q = Quarantine(str(tmp_path))
    q.keep_record(41, b'[{"record":"\xff"}]', RecursionError("maximum recursion depth exceeded"))
    q.keep_record(42, b"[]", ValueError("x" * 400))
    first, second = lines(q.path)
    assert first == {
        "spool_seq": 41, "error": "RecursionError: maximum recursion depth exceeded",
        "payload": '[{"record":"\ufffd"}]',
    }
    assert second["spool_seq"] == 42 and second["error"] == ("ValueError: " + "x" * 400)[:300]
    assert (q.records, q.kept, q.count) == (2, 2, 0)  # records, not refused events


def test_a_record_too_large_for_the_file_is_counted_not_kept(tmp_path: Path) -> None:
    q = Quarantine(str(tmp_path), max_bytes=1000)
    q.keep_record(1, b"x" * 1000, ValueError("too deep"))
    q.keep_record(2, b"small", ValueError("too deep"))
    assert [line["spool_seq"] for line in lines(q.path)] == [2]
    assert (q.records, q.kept) == (2, 1)


def test_unmappable_records_are_told_at_powers_of_two_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    q = Quarantine(str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="ext.sender.quarantine"):
        for seq in range(1, 6):
            q.keep_record(seq, b"[]", RecursionError("deep"))
    assert [r.getMessage() for r in caplog.records] == [
        f"could not map {n} spool record(s) (last: seq {n}, RecursionError); kept in {q.path}"
        for n in (1, 2, 4)
    ]


def test_a_line_cut_short_by_a_full_disk_is_not_left_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a nearly full /tmp, write(2) to a regular file writes what fits and returns that count;
    # the next write fails with ENOSPC. A half line left in the file would run into the next
    # line kept once space is free again, and a JSONL reader would lose both.
    q = Quarantine(str(tmp_path))
    q.keep(b"first", 400, 6, "t")
    real_write = os.write
    room = [10]  # bytes the disk still takes

    def full_disk_write(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") != q.path:
            return real_write(fd, data)
        if not room[0]:
            raise OSError(28, "No space left on device")
        written = real_write(fd, bytes(data)[:room[0]])
        room[0] -= written
        return written

    monkeypatch.setattr(os, "write", full_disk_write)
    assert not q.keep(b"second", 400, 6, "t")
    monkeypatch.setattr(os, "write", real_write)  # space freed again
    q.keep(b"third", 400, 6, "t")
    assert [line["envelope"] for line in lines(q.path)] == ["first", "third"]
    assert (q.count, q.kept) == (3, 2)
