"""SpoolWriter: its limits, the append path's fault handling, segment files and start-up state."""

from __future__ import annotations

import _thread
import errno
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ext.spool import RecordTooLargeError, SpoolReader, SpoolRecord, SpoolWriter
from ext.spool import writer as writer_module
from ext.spool.ackstate import Checkpoint, LossReport, SpoolStats, store_state
from ext.spool.frame import (
    FRAME_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    decode_segment_header,
    encode_frame_header,
    encode_segment_header,
    scan_segment,
)
from ext.spool.layout import ACK_STATE, REFUSED_STATE, WAKE_NOW, list_segments
from ext.spool.refusals import Refusals
from ext.spool.writer import DEFAULT_RESERVE_BYTES, _SpareFile
from tests.unit.spool_helpers import on_disk, segment_path


def on_a_1_mib_filesystem(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """statvfs as on a 1 MiB filesystem holding only the spool: the bound is under max_bytes."""

    def statvfs(path: str | Path) -> SimpleNamespace:
        free = 2**20 - on_disk(directory)
        return SimpleNamespace(f_bavail=free // 512, f_frsize=512)

    monkeypatch.setattr(os, "statvfs", statvfs)


def read_all(directory: Path) -> list[SpoolRecord]:
    with SpoolReader(directory) as reader:
        return reader.read(10_000, 1 << 30)


def temporary_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


def wait_for_a_spare(directory: Path) -> None:
    """Until the writer's helper thread has its spare file ready (its fd open)."""
    deadline = time.monotonic() + 5
    while not temporary_files(directory) and time.monotonic() < deadline:
        time.sleep(0.001)


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def append_until_refused(writer: SpoolWriter, payload: bytes) -> OSError:
    for _ in range(10_000):
        try:
            writer.append(payload, 1)
        except OSError as err:
            return err
    raise AssertionError("never refused")


@pytest.fixture
def no_statvfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem that cannot say how much room it has: max_bytes alone is the bound."""

    def statvfs(path: str | Path) -> SimpleNamespace:
        raise OSError(errno.ENOSYS, "statvfs not supported")

    monkeypatch.setattr(os, "statvfs", statvfs)


def test_segment_and_spool_sizes_are_checked(tmp_path: Path) -> None:
    smallest = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES
    SpoolWriter(tmp_path / "a", segment_bytes=smallest, max_bytes=smallest).close()
    with pytest.raises(ValueError, match="segment_bytes too small"):
        SpoolWriter(tmp_path / "b", segment_bytes=smallest - 1, max_bytes=smallest)
    with pytest.raises(ValueError, match="must be >= segment_bytes"):
        SpoolWriter(tmp_path / "c", segment_bytes=smallest, max_bytes=smallest - 1)


def test_a_record_as_large_as_the_spool_bound_fits(tmp_path: Path, no_statvfs: None) -> None:
    bound = 4096
    largest = bound - SEGMENT_HEADER_BYTES - FRAME_HEADER_BYTES
    with SpoolWriter(tmp_path, max_bytes=bound, segment_bytes=1024) as w:
        with pytest.raises(RecordTooLargeError):
            w.append(b"x" * (largest + 1), 1)
        assert w.refusals == Refusals(1, 1)
        assert w.append(b"x" * largest, 1) == 0  # alone in a segment of exactly the bound
        assert on_disk(tmp_path) == bound
    assert [len(r.payload) for r in read_all(tmp_path)] == [largest]


def test_a_short_write_is_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writev = os.writev

    def writes_a_few_bytes(fd: int, buffers: list[bytes]) -> int:
        return real_writev(fd, [bytes(buffers[0])[:10]])

    with SpoolWriter(tmp_path) as w:
        w.append(b"one", 1)
        monkeypatch.setattr(os, "writev", writes_a_few_bytes)
        assert w.append(b"two" * 100, 2) == 1
        monkeypatch.undo()
        assert w.append(b"three", 3) == 2
        assert w.total_bytes == on_disk(tmp_path)
    assert [(r.payload, r.event_count) for r in read_all(tmp_path)] == [
        (b"one", 1), (b"two" * 100, 2), (b"three", 3),
    ]


def test_an_error_other_than_a_full_disk_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fails(fd: int, buffers: list[bytes]) -> int:
        calls.append(fd)
        os.write(fd, bytes(buffers[0])[:10])
        raise OSError(errno.EIO, "I/O error")

    with SpoolWriter(tmp_path) as w:
        w.append(b"one", 1)
        monkeypatch.setattr(os, "writev", fails)
        with pytest.raises(OSError, match="I/O error"):
            w.append(b"two", 4)
        assert len(calls) == 1
        assert w.refusals == Refusals(1, 4)
        monkeypatch.undo()
        assert w.append(b"three", 1) == 1
        assert w.total_bytes == on_disk(tmp_path)
    assert [r.payload for r in read_all(tmp_path)] == [b"one", b"three"]


def test_each_append_wakes_the_reader(tmp_path: Path) -> None:
    r, w = os.pipe2(os.O_NONBLOCK)
    try:
        with SpoolWriter(tmp_path, wake_fd=w, max_bytes=4096, segment_bytes=1024) as writer:
            writer.append(b"a", 1)
            writer.append(b"b", 1)
            assert os.read(r, 10) == b"\x01\x01"
            writer.append(b"c", 1, read_now=False)  # no wake-up is held without defer_wake_s
            assert os.read(r, 10) == WAKE_NOW
            with pytest.raises(RecordTooLargeError):
                writer.append(b"x" * 5000, 1)
            with pytest.raises(BlockingIOError):
                os.read(r, 10)  # a refused record wakes nobody
    finally:
        os.close(r)
        os.close(w)


def wake_due(writer: SpoolWriter) -> float | None:
    """The writer's held wake-up time (a function: mypy would narrow the attribute)."""
    return writer.wake_due


def test_a_wake_up_for_a_read_that_may_wait_is_held_until_a_read_now_or_its_due_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(writer_module, "time", SimpleNamespace(monotonic=lambda: now[0],
                                                               time_ns=time.time_ns))
    r, w = os.pipe2(os.O_NONBLOCK)
    try:
        with SpoolWriter(tmp_path, wake_fd=w, max_bytes=4096, segment_bytes=1024,
                         defer_wake_s=0.25) as writer:
            writer.append(b"a", 1, read_now=False)
            assert wake_due(writer) == 100.25
            now[0] = 100.125
            writer.append(b"b", 1, read_now=False)
            assert wake_due(writer) == 100.25  # from the first held, not the last
            writer.wake_if_due(100.2499)
            with pytest.raises(BlockingIOError):
                os.read(r, 10)
            writer.wake_if_due(100.25)
            assert os.read(r, 10) == WAKE_NOW and wake_due(writer) is None
            writer.wake_if_due(101.0)
            with pytest.raises(BlockingIOError):
                os.read(r, 10)  # written once
            writer.append(b"c", 1, read_now=False)
            writer.append(b"d", 1)  # a read now takes the held one with it
            assert os.read(r, 10) == WAKE_NOW and wake_due(writer) is None
            with pytest.raises(RecordTooLargeError):
                writer.append(b"x" * 5000, 1, read_now=False)
            assert wake_due(writer) is None  # a refused record holds nothing
            writer.append(b"e", 1, read_now=False)
            with pytest.raises(BlockingIOError):
                os.read(r, 10)
        assert os.read(r, 10) == WAKE_NOW  # closing writes the one held: nothing else will
    finally:
        os.close(r)
        os.close(w)


def test_the_bound_is_the_room_the_filesystem_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = [3 * 2**20]  # a filesystem holding the spool's segments only

    def statvfs(path: str | Path) -> SimpleNamespace:
        return SimpleNamespace(f_bavail=(size[0] - on_disk(tmp_path)) // 512, f_frsize=512)

    monkeypatch.setattr(os, "statvfs", statvfs)
    with SpoolWriter(tmp_path, reserve_bytes=DEFAULT_RESERVE_BYTES) as w:
        # The bound is what the spool holds plus the free room, less the reserve.
        assert w.capacity_bytes == 3 * 2**20 - DEFAULT_RESERVE_BYTES
        payload = b"p" * 1000
        while on_disk(tmp_path) < 2**20:
            w.append(payload, 1)
        # Segments are an eighth of the bound (not the default 1 MiB) when the disk is short.
        sizes = [os.stat(segment_path(tmp_path, b)).st_size for b in list_segments(str(tmp_path))]
        limit = w.capacity_bytes // 8
        assert all(limit - FRAME_HEADER_BYTES - 1000 < s <= limit for s in sizes[:-1])
        size[0] = on_disk(tmp_path)  # another tenant took the rest
        assert "spool full" in str(append_until_refused(w, payload))
        assert w.capacity_bytes <= on_disk(tmp_path) - DEFAULT_RESERVE_BYTES


def test_segments_never_shrink_below_their_minimum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def statvfs(path: str | Path) -> SimpleNamespace:
        return SimpleNamespace(f_bavail=(300 * 2**10 + DEFAULT_RESERVE_BYTES) // 4096,
                               f_frsize=4096)

    monkeypatch.setattr(os, "statvfs", statvfs)
    smallest = 64 * 2**10  # docs/spool.md: segments are at least 64 KiB
    with SpoolWriter(tmp_path) as w:
        assert w.capacity_bytes // 8 < smallest
        for _ in range(200):
            w.append(b"q" * 1000, 1)
        sizes = [os.stat(segment_path(tmp_path, b)).st_size for b in list_segments(str(tmp_path))]
        assert len(sizes) > 1
        assert all(smallest - 1100 < s <= smallest for s in sizes[:-1])


def test_no_temporary_file_outlives_the_writer(tmp_path: Path) -> None:
    # A crash's leftovers, under names this writer does not reuse (it would replace those).
    (tmp_path / "seg-00000000000000000500.log.tmp").write_bytes(b"half")
    (tmp_path / "spare-99.tmp").write_bytes(b"")
    before = open_fds()
    with SpoolWriter(tmp_path, segment_bytes=200, max_bytes=10_000) as w:
        for _ in range(10):
            w.append(b"r" * 100, 1)  # a roll on every other append
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert open_fds() == before
    assert len(read_all(tmp_path)) == 10


def test_a_spare_file_that_cannot_be_made_is_made_by_the_roll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def no_spares(path: str | Path, flags: int, mode: int = 0o777) -> int:
        if Path(path).name.startswith("spare-"):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_spares)
    with SpoolWriter(tmp_path, segment_bytes=200, max_bytes=10_000) as w:
        for _ in range(6):
            w.append(b"r" * 100, 1)
    monkeypatch.undo()
    assert len(list_segments(str(tmp_path))) == 6
    assert [r.seq for r in read_all(tmp_path)] == list(range(6))


def take_a_spare(spares: _SpareFile) -> tuple[int, str] | None:
    """The helper's next spare file, asked for until it comes (at most 5 s)."""
    deadline = time.monotonic() + 5
    while (spare := spares.take()) is None and time.monotonic() < deadline:
        time.sleep(0.001)
    return spare


def test_a_spare_that_could_not_be_made_is_made_when_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A passing failure (EMFILE, a full disk) must not leave every later roll making its own file.
    real_open = os.open
    failed = threading.Event()

    def first_spare_fails(path: str | Path, flags: int, mode: int = 0o777) -> int:
        if Path(path).name.startswith("spare-") and not failed.is_set():
            failed.set()
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", first_spare_fails)
    spares = _SpareFile(str(tmp_path))
    try:
        assert failed.wait(5)
        spare = take_a_spare(spares)
        assert spare is not None
        os.close(spare[0])
        assert os.path.basename(spare[1]) == "spare-1.tmp"
    finally:
        spares.close()
    # Said in a warning, with the reason, not as a helper thread's traceback.
    assert "cannot prepare a spare segment: [Errno 24] Too many open files" in caplog.text


def test_a_spare_asked_for_while_it_is_being_made_does_not_stop_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A roll that finds no spare ready asks for one while the helper is still making it: the
    # helper then wakes with a spare in hand, and must go on making the next ones.
    real_open = os.open
    making, made = threading.Event(), threading.Event()

    def slow_first_spare(path: str | Path, flags: int, mode: int = 0o777) -> int:
        if Path(path).name == "spare-0.tmp":
            making.set()
            assert made.wait(5)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", slow_first_spare)
    spares = _SpareFile(str(tmp_path))
    try:
        assert making.wait(5)
        assert spares.take() is None  # not ready yet: asked for
        made.set()
        names = []
        for _ in range(3):
            spare = take_a_spare(spares)
            assert spare is not None
            os.close(spare[0])
            names.append(os.path.basename(spare[1]))
        assert names == ["spare-0.tmp", "spare-1.tmp", "spare-2.tmp"]
    finally:
        made.set()
        spares.close()


def threads_of_this_process() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def test_no_helper_thread_outlives_the_making_of_a_spare(tmp_path: Path) -> None:
    # An idle thread is woken at every freeze and thaw of the environment: it costs CPU per
    # invocation. The helper exists only while it makes a file, one per roll.
    before = threads_of_this_process()  # other tests' threads may end meanwhile: only new ones
    with SpoolWriter(tmp_path, segment_bytes=200, max_bytes=10_000) as w:
        for _ in range(4):
            w.append(b"r" * 100, 1)  # a roll on every other append: a new spare each time
            wait_for_a_spare(tmp_path)
            deadline = time.monotonic() + 5
            while threads_of_this_process() - before and time.monotonic() < deadline:
                time.sleep(0.001)
            assert not threads_of_this_process() - before
    assert [r.seq for r in read_all(tmp_path)] == list(range(4))


def test_a_writer_whose_helper_cannot_start_makes_its_segments_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_thread(*args: object) -> int:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_thread, "start_new_thread", no_thread)  # the module the writer uses
    with SpoolWriter(tmp_path, segment_bytes=200, max_bytes=10_000) as w:
        for _ in range(6):
            w.append(b"r" * 100, 1)  # a roll on every other append, each asking for a spare
    assert not temporary_files(tmp_path)  # and closing did not wait for a helper
    assert [r.seq for r in read_all(tmp_path)] == list(range(6))


def test_closing_spares_twice_is_harmless(tmp_path: Path) -> None:
    spares = _SpareFile(str(tmp_path))
    wait_for_a_spare(tmp_path)
    spares.close()
    spares.close()
    assert not temporary_files(tmp_path)


def test_a_writer_opened_and_closed_twice_reuses_its_empty_segment(tmp_path: Path) -> None:
    SpoolWriter(tmp_path).close()
    with SpoolWriter(tmp_path) as w:
        assert list_segments(str(tmp_path)) == [0]
        assert w.total_bytes == SEGMENT_HEADER_BYTES
        w.append(b"a", 1)
        w.close()
        w.close()  # twice is harmless
    assert list_segments(str(tmp_path)) == [0]
    with SpoolWriter(tmp_path) as w:  # a segment with records is never appended to again
        w.append(b"b", 1)
        assert list_segments(str(tmp_path)) == [0, 1]
        assert w.next_seq == 2
    assert w.refusals == Refusals()  # closed: nothing counted


def test_a_restart_past_seq_256_reuses_its_empty_segment(tmp_path: Path) -> None:
    # Seqs past the small ints CPython caches: the reuse test compares values, not objects.
    with SpoolWriter(tmp_path) as w:
        for _ in range(300):
            w.append(b"r", 1)
    SpoolWriter(tmp_path).close()  # seals segment 0, leaves segment 300 empty
    empty = os.stat(segment_path(tmp_path, 300))
    with SpoolWriter(tmp_path) as w:
        assert list_segments(str(tmp_path)) == [0, 300]
        assert os.stat(segment_path(tmp_path, 300)).st_ino == empty.st_ino  # the same file
        assert w.total_bytes == on_disk(tmp_path)
        assert w.append(b"s", 1) == 300
    assert [r.seq for r in read_all(tmp_path)][-2:] == [299, 300]


def test_a_restart_counts_every_segment_left_on_disk(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, segment_bytes=200, max_bytes=10_000) as w:
        for _ in range(6):
            w.append(b"r" * 100, 1)  # a segment per record
    with SpoolWriter(tmp_path, segment_bytes=200, max_bytes=10_000) as w:
        assert list_segments(str(tmp_path)) == [0, 1, 2, 3, 4, 5, 6]
        assert w.total_bytes == on_disk(tmp_path)


def test_a_writer_never_closed_does_not_keep_its_process_alive(tmp_path: Path) -> None:
    # The listener may leave without closing its writer (an exception, a signal handler calling
    # sys.exit): the helper thread that makes spare files must not hold the interpreter's exit.
    code = "import sys; from ext.spool import SpoolWriter; w = SpoolWriter(sys.argv[1])"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=root,
                          timeout=10, check=False)
    assert done.returncode == 0


def test_a_restart_continues_after_the_committed_position(tmp_path: Path) -> None:
    # The reader committed seq 0-4 (11 events) and deleted every segment.
    with SpoolReader(tmp_path):
        pass
    fd = os.open(tmp_path / ACK_STATE, os.O_RDWR)
    store_state(fd, 1, Checkpoint(seg_base=0, offset=0, next_seq=5, next_events=11))
    os.close(fd)
    with SpoolWriter(tmp_path) as w:
        assert w.next_seq == 5
        assert w.append(b"a", 2) == 5
    (base,) = list_segments(str(tmp_path))
    header = decode_segment_header(segment_path(tmp_path, base).read_bytes())
    assert header is not None
    assert (base, header.base_seq, header.base_events) == (5, 5, 11)
    scan = scan_segment(segment_path(tmp_path, base).read_bytes())
    assert [(h.seq, h.events_before) for _, h in scan.frames] == [(5, 11)]


def test_a_stale_empty_segment_below_the_committed_position_is_not_reused(
    tmp_path: Path,
) -> None:
    segment_path(tmp_path, 2).write_bytes(encode_segment_header(2, 3))
    with SpoolReader(tmp_path):
        pass
    fd = os.open(tmp_path / ACK_STATE, os.O_RDWR)
    store_state(fd, 1, Checkpoint(next_seq=5, next_events=11))
    os.close(fd)
    with SpoolWriter(tmp_path) as w:
        assert w.append(b"a", 2) == 5
    assert list_segments(str(tmp_path))[-1] == 5


def test_refusals_counted_before_a_restart_carry_on_from_ack_state(tmp_path: Path) -> None:
    with SpoolReader(tmp_path):
        pass
    fd = os.open(tmp_path / ACK_STATE, os.O_RDWR)
    stats = SpoolStats(refused_batches=3, refused_events=30)
    store_state(fd, 1, Checkpoint(stats=stats, reported=LossReport(refused_batches=3)))
    os.close(fd)
    with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w:
        assert w.refusals == Refusals(3, 30)
        with pytest.raises(RecordTooLargeError):
            w.append(b"x" * 5000, 2)
        assert w.refusals == Refusals(4, 32)


def test_a_torn_tail_is_cut_and_counted(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append(b"a" * 10, 1)
        w.append(b"b" * 500, 1)
    path = segment_path(tmp_path, 0)
    size = path.stat().st_size
    os.truncate(path, size - 7)  # the second frame's last 7 bytes never reached the file
    with SpoolWriter(tmp_path) as w:
        assert w.truncated_bytes == FRAME_HEADER_BYTES + 500 - 7
        assert path.stat().st_size == SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 10
        assert w.next_seq == 1
        assert w.append(b"c", 1) == 1
    assert [r.payload for r in read_all(tmp_path)] == [b"a" * 10, b"c"]


def test_a_damaged_frame_header_never_has_its_seq_reused(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(4):
            w.append(bytes([i]) * 20, 1)
    path = segment_path(tmp_path, 0)
    data = bytearray(path.read_bytes())
    data[SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 20 + 9] ^= 0xFF  # record 1's header
    path.write_bytes(bytes(data))
    with SpoolWriter(tmp_path) as w:
        assert w.next_seq == 4  # records 2 and 3 are intact after the damage
        assert w.append(b"next", 1) == 4
    header = decode_segment_header(segment_path(tmp_path, 4).read_bytes())
    assert header is not None
    assert header.base_events == 4  # from record 3's header: the event index goes on
    with SpoolReader(tmp_path) as r:
        assert [x.seq for x in r.read(100, 1 << 20)] == [0, 2, 3, 4]


def test_a_damaged_last_frame_header_still_takes_its_seq(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(3):
            w.append(bytes([i]) * 20, 1)
    path = segment_path(tmp_path, 0)
    data = bytearray(path.read_bytes())
    data[SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + 20) + 9] ^= 0xFF  # record 2's header
    path.write_bytes(bytes(data))
    with SpoolWriter(tmp_path) as w:
        assert w.next_seq == 3  # the damaged record may have been delivered: 2 is taken
        assert list_segments(str(tmp_path)) == [0, 3]


def test_a_segment_with_a_damaged_header_is_kept_for_its_frames(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(3):
            w.append(bytes([i]) * 20, i + 1)
    path = segment_path(tmp_path, 0)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF  # the segment magic
    path.write_bytes(bytes(data))
    with SpoolWriter(tmp_path) as w:
        assert w.next_seq == 3
        w.append(b"next", 4)
    (_, base) = list_segments(str(tmp_path))
    header = decode_segment_header(segment_path(tmp_path, base).read_bytes())
    assert header is not None
    assert (header.base_seq, header.base_events) == (3, 6)


def test_a_segment_with_nothing_readable_is_removed(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append(b"a", 1)
    segment_path(tmp_path, 1).write_bytes(b"\x00" * 100)  # a newer file with no header or frame
    with SpoolWriter(tmp_path) as w:
        assert w.next_seq == 1
    assert list_segments(str(tmp_path)) == [0, 1]
    header = decode_segment_header(segment_path(tmp_path, 1).read_bytes())
    assert header is not None and header.base_seq == 1


def test_a_frame_older_than_its_segment_does_not_rewind_the_seqs(tmp_path: Path) -> None:
    # A newest segment whose header is damaged and whose only frame carries a seq below its
    # name: it is no evidence of where the seqs are, so the segment goes.
    with SpoolWriter(tmp_path) as w:
        for _ in range(3):
            w.append(b"a", 1)
    stray = bytearray(b"\x00" * SEGMENT_HEADER_BYTES)
    stray += encode_frame_header(b"z", 1, 0, 1, 0) + b"z"
    segment_path(tmp_path, 7).write_bytes(bytes(stray))
    with SpoolWriter(tmp_path) as w:
        assert w.next_seq == 3
    assert segment_path(tmp_path, 7).exists() is False


def test_a_segment_whose_header_names_an_older_base_does_not_rewind_the_seqs(
    tmp_path: Path,
) -> None:
    # An intact header that disagrees with the file's name (a stray or misplaced file) is no
    # evidence of where the seqs are: the file is taken as damaged, not as segment 1.
    with SpoolWriter(tmp_path) as w:
        for _ in range(3):
            w.append(b"a", 1)
    segment_path(tmp_path, 7).write_bytes(encode_segment_header(1, 1))
    with SpoolWriter(tmp_path) as w:
        assert w.next_seq == 3
    assert segment_path(tmp_path, 7).exists() is False


def commit_without_deleting(directory: Path, next_seq: int, next_events: int) -> None:
    """ack.state as a reader leaves it when it dies between its commit and its deletions."""
    fd = os.open(directory / ACK_STATE, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 8192)
    store_state(fd, 1, Checkpoint(next_seq=next_seq, next_events=next_events))
    os.close(fd)


@pytest.mark.parametrize("start", [0, 300])  # seqs past the small ints CPython caches
def test_segments_delivered_in_full_are_reclaimed_when_room_is_needed(
    tmp_path: Path, no_statvfs: None, start: int
) -> None:
    frame = 488  # two frames and a segment header: exactly one 1000-byte segment
    payload = b"r" * (frame - FRAME_HEADER_BYTES)
    commit_without_deleting(tmp_path, start, start)  # everything before `start` delivered
    with SpoolWriter(tmp_path, max_bytes=3000, segment_bytes=1000) as w:
        for _ in range(6):
            w.append(payload, 1)
        assert list_segments(str(tmp_path)) == [start, start + 2, start + 4]
        commit_without_deleting(tmp_path, start + 1, start + 1)  # half of the first segment
        with pytest.raises(OSError, match="spool full"):
            w.append(payload, 1)
        commit_without_deleting(tmp_path, start + 2, start + 2)  # the first segment in full
        assert w.append(payload, 1) == start + 6
        assert list_segments(str(tmp_path)) == [start + 2, start + 4, start + 6]
        assert w.reclaimed_segments == 1
        assert w.total_bytes == on_disk(tmp_path) == 2000 + SEGMENT_HEADER_BYTES + frame
    assert [r.seq for r in read_all(tmp_path)] == list(range(start + 2, start + 7))


@pytest.mark.parametrize("start", [0, 300])  # seqs past the small ints CPython caches
def test_the_active_segment_is_reclaimed_once_delivered(
    tmp_path: Path, no_statvfs: None, start: int
) -> None:
    frame = 488
    payload = b"r" * (frame - FRAME_HEADER_BYTES)
    commit_without_deleting(tmp_path, start, start)  # everything before `start` delivered
    with SpoolWriter(tmp_path, max_bytes=3000, segment_bytes=1000) as w:
        for _ in range(6):
            w.append(payload, 1)
        # everything, the active segment included
        commit_without_deleting(tmp_path, start + 6, start + 6)
        assert w.append(payload, 1) == start + 6
        assert list_segments(str(tmp_path)) == [start + 6]
        assert w.reclaimed_segments == 3
        assert w.total_bytes == on_disk(tmp_path) == SEGMENT_HEADER_BYTES + frame
    assert [r.seq for r in read_all(tmp_path)] == [start + 6]


def test_a_writer_that_cannot_start_releases_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def segment_files_fail(path: str | Path, flags: int, mode: int = 0o777) -> int:
        if Path(path).name.startswith("seg-"):
            raise OSError(errno.EIO, "I/O error")
        return real_open(path, flags, mode)

    before = open_fds()
    monkeypatch.setattr(os, "open", segment_files_fail)
    with pytest.raises(OSError, match="I/O error"):  # not a full disk: start-up fails
        SpoolWriter(tmp_path)
    monkeypatch.undo()
    assert open_fds() == before
    with SpoolWriter(tmp_path) as w:  # the lock was released
        assert w.append(b"a", 1) == 0


def test_a_writer_starts_on_a_full_disk_and_appends_once_there_is_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open
    full = [True]

    def no_space(path: str | Path, flags: int, mode: int = 0o777) -> int:
        if full[0] and Path(path).name.startswith(("seg-", "spare-")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_space)
    with SpoolWriter(tmp_path) as w:
        assert list_segments(str(tmp_path)) == []
        with pytest.raises(OSError, match="No space"):
            w.append(b"a", 1)
        full[0] = False
        assert w.append(b"b", 1) == 0
    assert [r.payload for r in read_all(tmp_path)] == [b"b"]


def test_a_segment_that_cannot_be_published_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rename = os.rename

    def rename_fails(src: str | Path, dst: str | Path) -> None:
        raise OSError(errno.EIO, "I/O error")

    with SpoolWriter(tmp_path, segment_bytes=200, max_bytes=10_000) as w:
        w.append(b"r" * 100, 1)
        wait_for_a_spare(tmp_path)
        before = open_fds()
        monkeypatch.setattr(os, "rename", rename_fails)
        with pytest.raises(OSError, match="I/O error"):
            w.append(b"s" * 100, 1)  # needs a new segment
        monkeypatch.setattr(os, "rename", real_rename)
        # The file it was to become is gone, its fd closed; the spare thread makes the next.
        wait_for_a_spare(tmp_path)
        assert len(temporary_files(tmp_path)) == 1
        assert len(open_fds()) == len(before)
        assert w.append(b"t" * 100, 1) == 1
    assert temporary_files(tmp_path) == []
    assert [r.payload for r in read_all(tmp_path)] == [b"r" * 100, b"t" * 100]


def test_a_segment_deleted_while_the_writer_counts_is_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_statvfs: None
) -> None:
    with SpoolWriter(tmp_path, max_bytes=3000, segment_bytes=1000) as w:
        for _ in range(4):
            w.append(b"r" * 444, 1)
        # The reader deleted segment 1 between the writer's listing and its stat.
        monkeypatch.setattr("ext.spool.writer.list_segments",
                            lambda d: [0, 1, *list_segments(d)[1:]])
        w.append(b"r" * 444, 1)  # a roll: the writer recounts
        assert w.total_bytes == on_disk(tmp_path)


def test_with_room_to_spare_a_delivered_active_segment_is_kept(tmp_path: Path) -> None:
    # Deleting it would cost a new segment per append; delivered data stays under one segment.
    with SpoolWriter(tmp_path, max_bytes=2**20, reclaim_bytes=2048) as w, SpoolReader(
        tmp_path
    ) as r:
        assert w.capacity_bytes == 2**20  # the filesystem has more room than that
        for _ in range(20):
            w.append(b"k" * 1000, 1)
            r.commit(r.read(10, 1 << 20)[-1].seq)
        assert w.reclaimed_segments == 0
        assert list_segments(str(tmp_path)) == [0]


def test_on_a_short_disk_a_delivered_active_segment_is_deleted_at_the_reclaim_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_a_1_mib_filesystem(tmp_path, monkeypatch)
    frame = FRAME_HEADER_BYTES + 1000
    with SpoolWriter(tmp_path, reclaim_bytes=8 * frame) as w, SpoolReader(tmp_path) as r:
        fds = 0
        held = []  # records on disk after each append
        for n in range(1, 41):
            w.append(b"k" * 1000, 1)
            if n % 3 == 0:  # the sender commits every third record
                r.commit(r.read(10, 1 << 20)[-1].seq)
            held.append((on_disk(tmp_path) - SEGMENT_HEADER_BYTES) // frame)
            if n == 13:  # every file is open by now: ack.state, the segments, the spare
                fds = len(open_fds())
        # At 8 records (the reclaim size) not all are delivered: looked at again after a
        # quarter more (2 records), twice, and deleted at 12 once the reader has them all.
        assert held == [*range(1, 13)] * 3 + [1, 2, 3, 4]
        assert w.reclaimed_segments == 3
        assert len(open_fds()) <= fds + 1  # ack.state is opened once, however often it is read


def test_a_delivered_active_segment_deleted_on_a_short_disk_leaves_the_count_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sealed segments before it are still on disk (the reader has not deleted them yet):
    # only the active segment's bytes leave the count, not those of an older segment.
    on_a_1_mib_filesystem(tmp_path, monkeypatch)
    with SpoolWriter(tmp_path, segment_bytes=4096, reclaim_bytes=3000) as w:
        for size in (2000, 1000, 1000, 1000, 1000, 1000, 1000, 1000):
            w.append(b"k" * size, 1)
        assert list_segments(str(tmp_path)) == [0, 2, 5]  # 3112, 3156 and 3156 bytes
        commit_without_deleting(tmp_path, 8, 8)
        assert w.append(b"k" * 1000, 1) == 8
        assert list_segments(str(tmp_path)) == [0, 2, 8]
        assert w.reclaimed_segments == 1
        assert w.total_bytes == on_disk(tmp_path)


def test_the_default_sizes_are_the_documented_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/spool.md: segments of 1 MiB; the bound in force keeps 128 KiB free.
    size = [64 * 2**20]

    def statvfs(path: str | Path) -> SimpleNamespace:
        return SimpleNamespace(f_bavail=(size[0] - on_disk(tmp_path)) // 512, f_frsize=512)

    monkeypatch.setattr(os, "statvfs", statvfs)
    frame = FRAME_HEADER_BYTES + 10_000
    with SpoolWriter(tmp_path / "deep" / "spool") as w:  # parents made as needed
        assert w.capacity_bytes == 64 * 2**20 - 128 * 2**10
        for _ in range(110):  # a little over 1 MiB
            w.append(b"d" * 10_000, 1)
        assert list_segments(str(tmp_path / "deep" / "spool"))[0] == 0
        second = list_segments(str(tmp_path / "deep" / "spool"))[1]
        assert second == 2**20 // frame  # as many frames as fit in 1 MiB
        assert w.truncated_bytes == 0
        assert w.reclaimed_segments == 0


def test_without_a_figure_from_the_filesystem_the_default_bound_is_64_mib(
    tmp_path: Path, no_statvfs: None
) -> None:
    # The same default as SPLUNK_SPOOL_MAX_MB (README.md, Configuration).
    with SpoolWriter(tmp_path) as w:
        assert w.capacity_bytes == 64 * 2**20


def test_appends_well_within_the_bound_do_not_look_at_the_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The append path is one writev: a statvfs, a listing and a stat per segment on every append
    # would cost more than the write. The writer looks again only near the bound or at a roll.
    looks = [0]

    def statvfs(path: str | Path) -> SimpleNamespace:
        looks[0] += 1
        return SimpleNamespace(f_bavail=2**30 // 512, f_frsize=512)

    monkeypatch.setattr(os, "statvfs", statvfs)
    with SpoolWriter(tmp_path, max_bytes=2**20, segment_bytes=2**17) as w:
        at_start = looks[0]
        for _ in range(100):  # 100 KiB in all, within one segment of 128 KiB
            w.append(b"a" * 1000, 1)
        assert looks[0] == at_start
        assert list_segments(str(tmp_path)) == [0]


def test_segments_are_private_files(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, segment_bytes=200, max_bytes=10_000) as w:
        for _ in range(4):  # the first segment made at start, the others by rolls from spares
            wait_for_a_spare(tmp_path)
            w.append(b"p" * 100, 1)
    modes = {stat.S_IMODE(os.stat(segment_path(tmp_path, b)).st_mode)
             for b in list_segments(str(tmp_path))}
    assert modes == {0o600}


def test_a_record_larger_than_a_segment_goes_in_the_empty_one(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, segment_bytes=1024, max_bytes=8192) as w:
        assert w.append(b"x" * 2000, 1) == 0
        assert list_segments(str(tmp_path)) == [0]  # no empty segment left behind
        assert w.append(b"y", 1) == 1
        assert list_segments(str(tmp_path)) == [0, 1]


def test_the_last_64_refused_records_are_remembered(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, max_bytes=4096, segment_bytes=1024) as w:
        def refuse(n: int) -> None:
            with pytest.raises(RecordTooLargeError):
                w.append(n.to_bytes(4, "little") * 1500, 1)

        for n in range(64):
            refuse(n)
        refuse(0)  # the platform's retry of the oldest: still remembered
        assert w.refusals == Refusals(64, 64)
        refuse(64)  # one more: the oldest is forgotten
        refuse(1)
        assert w.refusals == Refusals(65, 65)
        refuse(0)
        assert w.refusals == Refusals(66, 66)


def test_a_lone_record_under_a_damaged_segment_header_is_kept(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append(b"only", 5)
    flip_first_byte = bytearray(segment_path(tmp_path, 0).read_bytes())
    flip_first_byte[0] ^= 0xFF
    segment_path(tmp_path, 0).write_bytes(bytes(flip_first_byte))
    with SpoolWriter(tmp_path) as w:
        assert w.next_seq == 1
        assert 0 in list_segments(str(tmp_path))
    with SpoolReader(tmp_path) as r:
        assert [x.payload for x in r.read(10, 100)] == [b"only"]


def test_by_default_the_reclaim_size_is_64_kib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_a_1_mib_filesystem(tmp_path, monkeypatch)
    frame = FRAME_HEADER_BYTES + 1000
    with SpoolWriter(tmp_path) as w, SpoolReader(tmp_path) as r:
        held = []
        for _ in range(130):
            w.append(b"k" * 1000, 1)
            r.commit(r.read(10, 1 << 20)[-1].seq)
            held.append((on_disk(tmp_path) - SEGMENT_HEADER_BYTES) // frame)
        assert max(held) == -(-(64 * 2**10 - SEGMENT_HEADER_BYTES) // frame)  # 63 records
        assert w.reclaimed_segments == 2


def test_a_record_that_fills_the_bound_exactly_is_taken_once_delivered_data_is_reclaimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def statvfs(path: str | Path) -> SimpleNamespace:
        # A filesystem of 4096 bytes counted to the byte, holding only the segments.
        return SimpleNamespace(f_bavail=4096 - on_disk(tmp_path), f_frsize=1)

    monkeypatch.setattr(os, "statvfs", statvfs)
    with SpoolWriter(tmp_path, reserve_bytes=0) as w:
        assert w.capacity_bytes == 4096
        w.append(b"a" * 956, 1)  # 1000-byte frame
        with pytest.raises(OSError, match="spool full"):  # one byte over, in the same segment
            w.append(b"c" * (4096 - SEGMENT_HEADER_BYTES - 1000 - FRAME_HEADER_BYTES + 1), 1)
        largest = 4096 - SEGMENT_HEADER_BYTES - FRAME_HEADER_BYTES
        with pytest.raises(OSError, match="spool full"):
            w.append(b"b" * largest, 1)  # record 0 is not delivered yet
        commit_without_deleting(tmp_path, 1, 1)
        with pytest.raises(OSError, match="no room"):
            w.append(b"b" * (largest + 1), 1)  # never fits, even alone
        assert w.append(b"b" * largest, 1) == 1
        assert on_disk(tmp_path) == 4096
    assert [len(r.payload) for r in read_all(tmp_path)] == [largest]


def test_appends_that_are_taken_leave_refused_state_alone(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as w:
        w.append(b"a", 1)
        before = (tmp_path / REFUSED_STATE).read_bytes()
        for _ in range(3):
            w.append(b"b", 1)
        assert (tmp_path / REFUSED_STATE).read_bytes() == before


def test_a_damaged_header_just_before_the_last_record_never_has_a_seq_reused(
    tmp_path: Path,
) -> None:
    with SpoolWriter(tmp_path) as w:
        for i in range(4):
            w.append(bytes([i]) * 20, 1)
    path = segment_path(tmp_path, 0)
    data = bytearray(path.read_bytes())
    data[SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + 20) + 9] ^= 0xFF  # record 2's header
    path.write_bytes(bytes(data))
    with SpoolWriter(tmp_path) as w:
        assert w.next_seq == 4  # record 3, right after the damage, is intact


def test_a_torn_tail_is_cut_in_a_segment_past_seq_256(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, segment_bytes=2000, max_bytes=1 << 20) as w:
        for _ in range(300):
            w.append(b"t" * 10, 1)
    newest = list_segments(str(tmp_path))[-1]
    assert newest > 256
    path = segment_path(tmp_path, newest)
    os.truncate(path, path.stat().st_size - 5)
    with SpoolWriter(tmp_path, segment_bytes=2000, max_bytes=1 << 20) as w:
        assert w.truncated_bytes == FRAME_HEADER_BYTES + 10 - 5
        assert w.next_seq == 299


def test_every_sealed_segment_delivered_in_full_is_reclaimed(
    tmp_path: Path, no_statvfs: None
) -> None:
    frame = 488
    payload = b"r" * (frame - FRAME_HEADER_BYTES)
    with SpoolWriter(tmp_path, max_bytes=3000, segment_bytes=1000) as w:
        for _ in range(6):
            w.append(payload, 1)
        commit_without_deleting(tmp_path, 4, 4)  # segments 0 and 2; the active one holds 4-5
        assert w.append(payload, 1) == 6
        assert list_segments(str(tmp_path)) == [4, 6]
        assert w.reclaimed_segments == 2


def test_a_restart_with_the_spool_full_adds_no_segment(tmp_path: Path, no_statvfs: None) -> None:
    frame = 488
    payload = b"r" * (frame - FRAME_HEADER_BYTES)
    with SpoolWriter(tmp_path, max_bytes=3000, segment_bytes=1000) as w:
        for _ in range(6):
            w.append(payload, 1)
    assert on_disk(tmp_path) == 3000
    for bound in (3000, 3000 + SEGMENT_HEADER_BYTES - 1):
        with SpoolWriter(tmp_path, max_bytes=bound, segment_bytes=1000) as w:
            # Nothing delivered: not even an empty segment's header fits.
            assert list_segments(str(tmp_path)) == [0, 2, 4]
            with pytest.raises(OSError, match="spool full"):
                w.append(payload, 1)
        assert on_disk(tmp_path) == 3000


def exact_disk(monkeypatch: pytest.MonkeyPatch, directory: Path, size: int) -> None:
    """A filesystem of ``size`` bytes counted to the byte, holding only the segments."""

    def statvfs(path: str | Path) -> SimpleNamespace:
        return SimpleNamespace(f_bavail=size - on_disk(directory), f_frsize=1)

    monkeypatch.setattr(os, "statvfs", statvfs)


def test_a_record_that_fits_the_active_segment_exactly_after_a_reclaim_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exact_disk(monkeypatch, tmp_path, 4096)
    with SpoolWriter(tmp_path, reserve_bytes=0) as w:
        w.append(b"d" * 956, 1)  # segment 0: 1024 bytes, sealed by the restart
    with SpoolWriter(tmp_path, reserve_bytes=0) as w:
        w.append(b"b" * 956, 1)  # segment 1, active: 1024 bytes
        commit_without_deleting(tmp_path, 1, 1)  # segment 0 delivered
        # 2048 + 3072 is over 4096; without segment 0 it is exactly 4096, in segment 1.
        assert w.append(b"c" * (3072 - FRAME_HEADER_BYTES), 1) == 2
        assert list_segments(str(tmp_path)) == [1]
        assert on_disk(tmp_path) == 4096


def test_an_unreadable_ack_state_deletes_nothing(tmp_path: Path, no_statvfs: None) -> None:
    frame = 488
    payload = b"r" * (frame - FRAME_HEADER_BYTES)
    (tmp_path / ACK_STATE).write_bytes(b"\xff" * 8192)  # both slots damaged
    with SpoolWriter(tmp_path, max_bytes=3000, segment_bytes=1000) as w:
        w.append(payload, 1)
        w.close()
    with SpoolWriter(tmp_path, max_bytes=3000, segment_bytes=1000) as w:  # seq 0 alone, sealed
        for _ in range(4):
            w.append(payload, 1)
        with pytest.raises(OSError, match="spool full"):
            w.append(payload, 1)  # nothing is known to be delivered
        assert list_segments(str(tmp_path))[0] == 0


@pytest.mark.parametrize("start", [0, 1])
def test_a_delivered_segment_left_behind_counts_after_the_active_one_is_reclaimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: int
) -> None:
    exact_disk(monkeypatch, tmp_path, 4096)
    commit_without_deleting(tmp_path, start, start)
    with SpoolWriter(tmp_path, reserve_bytes=0, reclaim_bytes=1000) as w:
        w.append(b"a" * 956, 1)  # a 1024-byte segment, sealed by the restart
    with SpoolWriter(tmp_path, reserve_bytes=0, reclaim_bytes=1000) as w:
        w.append(b"b" * 956, 1)
        # Both delivered; the reader died before deleting the older segment.
        commit_without_deleting(tmp_path, start + 2, start + 2)
        # The active segment is reclaimed first (it holds the reclaim size); the record and
        # a new segment header are then one byte over unless the older segment goes too.
        assert w.append(b"c" * (3049 - FRAME_HEADER_BYTES), 1) == start + 2
        assert list_segments(str(tmp_path)) == [start + 2]
        assert on_disk(tmp_path) == SEGMENT_HEADER_BYTES + 3049


def test_a_record_that_fits_but_needs_a_new_segment_header_that_does_not_is_refused(
    tmp_path: Path, no_statvfs: None
) -> None:
    frame = 488
    with SpoolWriter(tmp_path, max_bytes=3050, segment_bytes=1000) as w:
        for _ in range(6):
            w.append(b"r" * (frame - FRAME_HEADER_BYTES), 1)  # 3000 bytes, segments full
        # 45 bytes fit in the 50 left, but the segment they must start takes 24 more.
        with pytest.raises(OSError, match="spool full"):
            w.append(b"x", 1)
        assert on_disk(tmp_path) == 3000
