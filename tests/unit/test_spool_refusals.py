"""refused.state: the writer's count of refused appends, kept across restarts and full disks."""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

import pytest

from ext.spool.layout import REFUSED_STATE
from ext.spool.refusals import STATE_FILE_BYTES, RefusalLog, RefusalReader, Refusals


def state(directory: Path) -> bytes:
    return (directory / REFUSED_STATE).read_bytes()


def saved(log: RefusalLog) -> bool:
    """Whether the log's counts are on disk (a function: mypy would narrow the attribute)."""
    return not log.unsaved


def test_counts_persist_across_writers_and_reach_the_reader(tmp_path: Path) -> None:
    log = RefusalLog(str(tmp_path), Refusals())
    assert saved(log)
    assert log.add(3) == Refusals(1, 3)
    assert log.add(4) == Refusals(2, 7)
    assert saved(log)
    log.close()
    reader = RefusalReader(str(tmp_path))
    assert reader.current() == Refusals(2, 7)
    again = RefusalLog(str(tmp_path), Refusals())
    assert again.counts == Refusals(2, 7)
    assert again.add(1) == Refusals(3, 8)
    assert reader.current() == Refusals(3, 8)  # the same file, read again
    again.close()
    reader.close()


def test_the_file_is_created_whole_and_private(tmp_path: Path) -> None:
    RefusalLog(str(tmp_path), Refusals()).close()
    path = tmp_path / REFUSED_STATE
    # Real blocks, so that an update on a full disk overwrites bytes it already owns.
    assert path.stat().st_size == STATE_FILE_BYTES
    assert path.stat().st_blocks * 512 >= STATE_FILE_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == [REFUSED_STATE]


def test_a_floor_from_ack_state_is_never_counted_below(tmp_path: Path) -> None:
    # ack.state says 5 batches were reported already; refused.state was lost.
    log = RefusalLog(str(tmp_path), Refusals(5, 50))
    assert RefusalReader(str(tmp_path)).current() == Refusals(5, 50)
    log.close()
    # A floor below what the file holds changes nothing; above it, each count takes the higher.
    log = RefusalLog(str(tmp_path), Refusals(1, 60))
    assert log.counts == Refusals(5, 60)
    assert RefusalReader(str(tmp_path)).current() == Refusals(5, 60)
    log.close()


def test_a_writer_with_nothing_refused_leaves_the_file_alone(tmp_path: Path) -> None:
    first = RefusalLog(str(tmp_path), Refusals())
    first.add(2)
    first.close()
    before = state(tmp_path)
    log = RefusalLog(str(tmp_path), Refusals(1, 2))  # as the file says: nothing to write
    assert saved(log)  # so appends do not save either
    log.close()
    assert state(tmp_path) == before


def test_a_damaged_slot_leaves_the_other(tmp_path: Path) -> None:
    log = RefusalLog(str(tmp_path), Refusals())
    log.add(1)  # generation 2, in the first slot
    log.add(1)  # generation 3, in the second slot
    log.close()
    path = tmp_path / REFUSED_STATE
    good = path.read_bytes()
    for offset, expected in ((0, Refusals(2, 2)), (512, Refusals(1, 1))):
        for at in range(0, 36, 3):  # anywhere in the slot, its CRC included
            data = bytearray(good)
            data[offset + at] ^= 0x41
            path.write_bytes(bytes(data))
            assert RefusalReader(str(tmp_path)).current() == expected
    path.write_bytes(good)
    assert RefusalReader(str(tmp_path)).current() == Refusals(2, 2)


def slot(magic: bytes, version: int, generation: int, batches: int, events: int) -> bytes:
    body = struct.pack("<4sHHQQQ", magic, version, 0, generation, batches, events)
    return body + struct.pack("<I", zlib.crc32(body))


def test_a_slot_of_another_format_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / REFUSED_STATE
    data = bytearray(STATE_FILE_BYTES)
    data[0:36] = slot(b"SPRF", 1, 1, 4, 40)
    path.write_bytes(bytes(data))
    assert RefusalReader(str(tmp_path)).current() == Refusals(4, 40)  # the helper itself is right
    others = ((b"SPRF", 0), (b"SPRF", 2), (b"SPAK", 1), (bytes(4), 1), (b"\xff" * 4, 1))
    for magic, version in others:
        data[512:548] = slot(magic, version, 9, 7, 70)
        path.write_bytes(bytes(data))
        assert RefusalReader(str(tmp_path)).current() == Refusals(4, 40)


def test_a_short_file_has_no_counts(tmp_path: Path) -> None:
    (tmp_path / REFUSED_STATE).write_bytes(slot(b"SPRF", 1, 1, 4, 40)[:-1])
    assert RefusalReader(str(tmp_path)).current() is None
    log = RefusalLog(str(tmp_path), Refusals())
    log.add(2)
    log.close()
    assert RefusalReader(str(tmp_path)).current() == Refusals(1, 2)


def test_the_reader_has_nothing_before_the_writer_made_the_file(tmp_path: Path) -> None:
    reader = RefusalReader(str(tmp_path))
    assert reader.current() is None
    RefusalLog(str(tmp_path), Refusals()).add(6)
    assert reader.current() == Refusals(1, 6)
    reader.close()
    reader.close()  # twice is harmless


def test_counts_kept_in_memory_are_saved_once_the_disk_has_room(tmp_path: Path) -> None:
    (tmp_path / REFUSED_STATE).mkdir()  # cannot be opened as a file, as on a full disk
    log = RefusalLog(str(tmp_path), Refusals(2, 20))
    assert not saved(log)
    (tmp_path / REFUSED_STATE).rmdir()
    log.save()  # the next successful append does this
    assert saved(log)
    assert RefusalReader(str(tmp_path)).current() == Refusals(2, 20)
    log.close()


def test_a_failed_save_keeps_the_counts_for_the_next_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = RefusalLog(str(tmp_path), Refusals())
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: len(data) - 1)  # short write
    assert log.add(5) == Refusals(1, 5)
    assert not saved(log)
    monkeypatch.undo()
    log.save()
    assert saved(log)
    assert RefusalReader(str(tmp_path)).current() == Refusals(1, 5)
    log.close()


def test_a_short_write_while_creating_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: len(data) // 2)
    before = {int(name) for name in os.listdir("/proc/self/fd")}
    log = RefusalLog(str(tmp_path), Refusals())
    assert not saved(log)
    assert os.listdir(tmp_path) == []  # neither a short file nor its temporary name
    assert {int(name) for name in os.listdir("/proc/self/fd")} == before
    monkeypatch.undo()
    log.add(1)
    assert RefusalReader(str(tmp_path)).current() == Refusals(1, 1)
    log.close()


def test_refused_state_has_the_documented_layout(tmp_path: Path) -> None:
    # docs/spool.md: 1 KiB, two slots at 0 and 512; each starts "SPRF", u16 version 1,
    # u16 flags (none defined: 0), u64 generation, then batches and events.
    log = RefusalLog(str(tmp_path), Refusals())
    log.add(7)
    log.close()
    data = state(tmp_path)
    assert len(data) == 1024
    assert struct.unpack_from("<4sHHQQQ", data, 0) == (b"SPRF", 1, 0, 2, 1, 7)
    assert struct.unpack_from("<4sHHQQQ", data, 512) == (b"SPRF", 1, 0, 1, 0, 0)


def test_closing_twice_closes_nothing_else(tmp_path: Path) -> None:
    log = RefusalLog(str(tmp_path), Refusals())
    log.close()
    probe = os.open(tmp_path / REFUSED_STATE, os.O_RDONLY)  # takes the number log had
    try:
        log.close()
        for fd in (probe, 0, 1, 2):  # nor a standard stream
            os.fstat(fd)
    finally:
        os.close(probe)


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def test_the_files_are_held_open_once_and_closed_on_close(tmp_path: Path) -> None:
    before = open_fds()
    log = RefusalLog(str(tmp_path), Refusals())
    reader = RefusalReader(str(tmp_path))
    for n in range(1, 4):
        log.add(1)
        assert reader.current() == Refusals(n, n)
    assert len(open_fds()) == len(before) + 2  # one each, not one per look
    log.close()
    reader.close()
    assert open_fds() == before


def test_the_reader_loads_both_slots_in_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = RefusalLog(str(tmp_path), Refusals())
    log.add(2)
    log.add(5)  # the second slot now, the first one holds the older count
    reads: list[tuple[int, int]] = []
    pread = os.pread

    def recording(fd: int, length: int, offset: int) -> bytes:
        reads.append((length, offset))
        return pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", recording)
    reader = RefusalReader(str(tmp_path))
    try:
        assert reader.current() == Refusals(2, 7)
        assert len(reads) == 1  # the reader loads at every spool read: one syscall, not two
    finally:
        reader.close()
        log.close()
