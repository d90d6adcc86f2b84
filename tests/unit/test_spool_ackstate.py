"""ack.state: what a slot accepts, which slot wins, and the waits on the committed position."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.spool import SpoolReader, SpoolWriter, read_committed
from ext.spool.ackstate import (
    SLOT_BYTES,
    SLOT_STRIDE,
    STATE_FILE_BYTES,
    Checkpoint,
    LossReport,
    SpoolStats,
    decode_slot,
    encode_slot,
    load_committed,
    load_state,
    store_state,
)

CP = Checkpoint(3, 4096, 17, 170, SpoolStats(*range(1, 9)), LossReport(*range(11, 17)))


@pytest.fixture
def state_fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "ack.state", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, STATE_FILE_BYTES)
    yield fd
    os.close(fd)


def slot_with_header(magic: bytes, version: int) -> bytes:
    """A slot whose CRC is right but whose magic or format version is another one."""
    body = bytearray(encode_slot(5, CP)[:-4])
    struct.pack_into("<4sH", body, 0, magic, version)
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def test_a_slot_round_trips_every_field() -> None:
    assert decode_slot(encode_slot(5, CP)) == (5, CP)
    assert len(encode_slot(5, CP)) == SLOT_BYTES


def test_a_slot_of_another_format_or_file_is_refused_even_with_a_good_crc() -> None:
    assert decode_slot(slot_with_header(b"SPAK", 2)) == (5, CP)  # the helper itself is right
    assert decode_slot(slot_with_header(b"SPAK", 1)) is None  # before the refusal counters
    assert decode_slot(slot_with_header(b"SPAK", 3)) is None
    assert decode_slot(slot_with_header(b"SPRF", 2)) is None  # refused.state's magic
    assert decode_slot(slot_with_header(bytes(4), 2)) is None


def test_a_short_or_damaged_slot_is_refused() -> None:
    data = encode_slot(5, CP)
    assert decode_slot(data[:-1]) is None
    assert decode_slot(data + b"\x00") == (5, CP)  # a page read is longer than a slot
    for at in (0, 8, len(data) - 1):
        damaged = bytearray(data)
        damaged[at] ^= 1
        assert decode_slot(bytes(damaged)) is None


def test_the_newest_valid_slot_wins(state_fd: int) -> None:
    older = Checkpoint(next_seq=1)
    store_state(state_fd, 6, older)
    store_state(state_fd, 7, CP)
    assert load_state(state_fd) == (7, CP)
    os.pwrite(state_fd, b"\xff", SLOT_STRIDE + 20)  # generation 7 lives in the second page
    assert load_state(state_fd) == (6, older)
    os.pwrite(state_fd, b"\xff", 20)
    assert load_state(state_fd) is None


def test_generations_alternate_between_the_two_pages(state_fd: int) -> None:
    for generation in range(4):
        store_state(state_fd, generation, Checkpoint(next_seq=generation))
        page = generation % 2
        assert decode_slot(os.pread(state_fd, SLOT_BYTES, page * SLOT_STRIDE)) == (
            generation, Checkpoint(next_seq=generation),
        )
    assert os.fstat(state_fd).st_size == STATE_FILE_BYTES


def test_a_short_slot_write_is_an_error(
    state_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: len(data) - 1)
    with pytest.raises(OSError, match="short write"):
        store_state(state_fd, 1, CP)


def test_committed_position_without_and_with_ack_state(tmp_path: Path, state_fd: int) -> None:
    assert load_committed(tmp_path / "nowhere") is None
    assert read_committed(tmp_path / "nowhere") == -1
    assert load_committed(tmp_path) is None  # a file with no valid slot yet
    store_state(state_fd, 1, CP)
    assert load_committed(tmp_path) == CP
    assert read_committed(tmp_path) == CP.next_seq - 1


def test_loss_reports_subtract_and_cap_field_by_field() -> None:
    a = LossReport(5, 50, 3, 30, 2, 20)
    b = LossReport(1, 60, 3, 10, 0, 25)
    assert a.minus(b) == LossReport(4, -10, 0, 20, 2, -5)
    assert a.at_most(b) == LossReport(1, 50, 3, 10, 0, 20)
    assert LossReport.of(SpoolStats(9, 99, 1, 2, 3, 4, 5, 6)) == LossReport(1, 2, 3, 4, 5, 6)
    assert not LossReport()
    assert LossReport(refused_events=1)


def test_ack_state_holds_both_slots_from_the_start(tmp_path: Path) -> None:
    with SpoolReader(tmp_path):
        pass
    fd = os.open(tmp_path / "ack.state", os.O_RDONLY)
    try:
        assert os.fstat(fd).st_size >= SLOT_STRIDE + SLOT_BYTES
        assert load_state(fd) == (0, Checkpoint())
    finally:
        os.close(fd)


def test_ack_state_has_the_documented_layout(tmp_path: Path) -> None:
    # docs/spool.md: 8 KiB, two slots at 0 and 4096; each starts "SPAK", u16 version 2,
    # u16 flags (none defined: 0), u64 generation.
    with SpoolWriter(tmp_path) as writer, SpoolReader(tmp_path) as reader:
        writer.append(b"a", 1)
        reader.commit(reader.read(1, 100)[-1].seq)
    data = (tmp_path / "ack.state").read_bytes()
    assert len(data) == 8192
    assert struct.unpack_from("<4sHHQ", data, 0) == (b"SPAK", 2, 0, 0)
    assert struct.unpack_from("<4sHHQ", data, 4096) == (b"SPAK", 2, 0, 1)


def test_delivered_replaces_only_the_delivered_counters() -> None:
    stats = SpoolStats(1, 2, 3, 4, 5, 6, 7, 8)
    assert stats.delivered(10, 20) == SpoolStats(10, 20, 3, 4, 5, 6, 7, 8)
    assert stats == SpoolStats(1, 2, 3, 4, 5, 6, 7, 8)  # frozen: a new one, this one unchanged
