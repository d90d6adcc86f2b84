"""Crash soak with real processes: a writer and a reader process share a spool while the test
SIGKILLs and SIGSTOPs them at random moments; afterwards nothing the writer acked may be missing.

Also the actors' entry point: ``python -m tests.integration.test_spool_crash writer|reader ...``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from msgspec.structs import astuple

from ext.control import drain_pipe
from ext.spool import LossReport, SpoolLocked, SpoolReader, SpoolWriter, read_committed
from ext.spool.ackstate import load_committed
from ext.spool.refusals import Refusals
from ext.spool.writer import RECENT_REFUSALS

pytestmark = pytest.mark.integration
T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
CHAOS_S = 4.0
STOP_FILE = "stop"
ACTOR_MODULE = "tests.integration.test_spool_crash"


def payload_for(seq: int) -> bytes:
    """Deterministic, seq-specific payload: mostly small, one in four up to ~1 MiB (a full POST)."""
    digest = hashlib.sha256(seq.to_bytes(8, "little")).digest()
    repeats = 3 + digest[0] * 3 if digest[1] < 192 else 4096 + digest[0] * 128
    return digest * repeats


def take_role(open_role: Callable[[], T]) -> T:
    # The predecessor's lock goes with its death, which the parent reaps before restarting us.
    deadline = time.monotonic() + 10
    while True:
        try:
            return open_role()
        except SpoolLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def run_writer(directory: str, acked_log: str, wake_fd: int) -> None:
    writer = take_role(
        lambda: SpoolWriter(directory, max_bytes=2**30, segment_bytes=4 * 2**20, wake_fd=wake_fd)
    )
    log_fd = os.open(acked_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    stop = Path(directory) / STOP_FILE
    while not stop.exists():
        seq = writer.next_seq
        assert writer.append(payload_for(seq), seq % 7) == seq
        os.write(log_fd, b"%d\n" % seq)  # "200 OK" to the Telemetry API
        time.sleep(0.002)


def run_reader(directory: str, delivered_log: str, wake_fd: int) -> None:
    reader = take_role(lambda: SpoolReader(directory))
    log_fd = os.open(delivered_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    while True:
        batch = reader.read(40, 256 * 1024)
        if not batch:
            # As the sender: sleep until the writer's wake-up byte, or a timeout (a byte the
            # kills lost), then read again.
            select.select([wake_fd], [], [], 0.2)
            drain_pipe(wake_fd)
            continue
        lines = [
            b"%d %s\n" % (r.seq, b"ok" if r.payload == payload_for(r.seq) else b"BAD")
            for r in batch
        ]
        os.write(log_fd, b"".join(lines))  # "HEC 200": one small append, not torn by a kill
        reader.commit(batch[-1].seq)


class Actor:
    """One role's process, restarted after every kill."""

    def __init__(self, role: str, directory: Path, log: Path, wake_fd: int) -> None:
        self.argv = [sys.executable, "-m", ACTOR_MODULE, role, str(directory), str(log)]
        self.argv.append(str(wake_fd))
        self.wake_fd = wake_fd
        self.stderr = directory.parent / f"{role}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = self.stops = 0

    def start(self) -> None:
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(
                self.argv, cwd=REPO, pass_fds=(self.wake_fd,), stderr=err, stdout=err
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()
        self.kills += 1

    def freeze(self, seconds: float) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        time.sleep(seconds)  # the freeze itself is the behaviour under test
        self.proc.send_signal(signal.SIGCONT)
        self.stops += 1

    def check_alive(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        assert code is None, f"{self.argv[3]} exited with {code}: {self.stderr.read_text()[-2000:]}"


def committed_through(directory: Path, seq: int, timeout_s: float) -> bool:
    """Waits until every record <= ``seq`` is committed; False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while read_committed(directory) < seq:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_seqs(log: Path) -> list[tuple[int, str]]:
    out = []
    for line in log.read_bytes().splitlines():
        seq, _, status = line.decode().partition(" ")
        out.append((int(seq), status or "ok"))
    return out


def test_kills_and_freezes_lose_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    acked_log, delivered_log = tmp_path / "acked", tmp_path / "delivered"
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    writer = Actor("writer", directory, acked_log, wake_w)
    reader = Actor("reader", directory, delivered_log, wake_r)
    rng = random.Random(4)
    try:
        writer.start()
        reader.start()
        writer_started_at = 0
        chaos_end = time.monotonic() + CHAOS_S
        while time.monotonic() < chaos_end:
            time.sleep(rng.uniform(0.01, 0.12))  # random moments, by design
            actor = rng.choice((writer, reader))
            actor.check_alive()
            if actor is writer and size_of(acked_log) == writer_started_at:
                continue  # still starting (slow on a busy machine): a kill now tests nothing
            if actor is writer:
                writer_started_at = size_of(acked_log)
            if rng.random() < 0.6:
                actor.kill()
                actor.start()
            else:
                actor.freeze(rng.uniform(0.005, 0.1))
        (directory / STOP_FILE).touch()
        assert writer.proc is not None
        assert writer.proc.wait(timeout=30) == 0, writer.stderr.read_text()[-2000:]
        acked = read_seqs(acked_log)
        assert acked, "the writer never acked anything"
        last = max(seq for seq, _ in acked)
        assert committed_through(directory, last, timeout_s=60), "reader did not catch up"
        reader.check_alive()
    finally:
        for actor in (writer, reader):
            if actor.proc is not None and actor.proc.poll() is None:
                actor.kill()
        os.close(wake_r)
        os.close(wake_w)

    delivered = read_seqs(delivered_log)
    assert all(status == "ok" for _, status in delivered), "a payload came back altered"
    firsts: list[int] = []
    seen: set[int] = set()
    for seq, _ in delivered:
        if seq not in seen:
            seen.add(seq)
            firsts.append(seq)
    assert firsts == sorted(firsts), "delivery order broken"
    missing = {seq for seq, _ in acked} - seen
    assert not missing, f"{len(missing)} acked records lost, e.g. {sorted(missing)[:5]}"
    committed = load_committed(directory)
    assert committed is not None
    assert committed.stats.dropped_records == committed.stats.corrupt_records == 0
    assert writer.kills + reader.kills >= 10
    assert writer.stops + reader.stops >= 5


TMPFS_BYTES = 4 * 2**20


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of our own: a /tmp that is nearly full from the spool's point of view."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: run as root to test the spool on a small disk")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "spooltest", str(mount_point)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def sized_payload(seq: int, size: int) -> bytes:
    return seq.to_bytes(8, "little") * (size // 8)


class SlowSender(threading.Thread):
    """The sender's side with a slow HEC: reads small batches, waits, then commits."""

    def __init__(self, directory: Path) -> None:
        super().__init__(name="slow-sender", daemon=True)
        self.reader = SpoolReader(directory)
        self.delivered: list[tuple[int, bool]] = []
        self.reported = LossReport()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                batch = self.reader.read(20, 256 * 1024)
                if not batch:
                    time.sleep(0.005)  # no wake-up pipe here: look again soon
                    continue
                report = self.reader.take_loss_report()  # goes out with the data, as in the sender
                time.sleep(0.002)  # the HEC round trip
                self.delivered += [(r.seq, r.payload == sized_payload(r.seq, len(r.payload)))
                                   for r in batch]
                if report is not None:
                    self.reported = LossReport(*(a + b for a, b in zip(
                        astuple(self.reported), astuple(report), strict=True)))
                self.reader.commit(batch[-1].seq)
        except BaseException as err:  # surfaced by the test
            self.error = err
        finally:
            self.reader.close()

    def wait_for(self, directory: Path, seq: int) -> None:
        assert committed_through(directory, seq, 60), f"the sender never reached {seq}"


def fill_disk(mount_point: Path) -> Path:
    """Another tenant of /tmp takes every free byte (again: it grows its file)."""
    ballast = mount_point / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        chunk = bytes(64 * 1024)
        while True:
            try:
                os.write(fd, chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return ballast
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)


def test_a_small_tmpfs_loses_nothing_acked_counts_refusals_and_never_wedges(
    small_tmpfs: Path,
) -> None:
    directory = small_tmpfs / "spool"
    rng = random.Random(16)
    acked: dict[int, int] = {}
    refused: list[int] = []  # events of each refused batch
    directory.mkdir()
    sender = SlowSender(directory)
    writer = SpoolWriter(directory)  # default bound, 64 MiB: 16 times the filesystem

    recent: deque[tuple[int, int]] = deque(maxlen=RECENT_REFUSALS)
    refusals = [0]  # appends refused, retries of the same bytes included

    def append(size: int) -> bool:
        events = rng.randint(1, 50)
        seq = writer.next_seq
        payload = sized_payload(seq, size)
        try:
            writer.append(payload, events)
        except OSError:
            refusals[0] += 1
            # The same bytes refused again are a retry of the same batch: counted once.
            key = (len(payload), zlib.crc32(payload))
            if key not in recent:
                recent.append(key)
                refused.append(events)
            return False
        acked[seq] = events
        return True

    sender.start()
    try:
        # 1. About 50 MB through a 4 MiB disk with a sender that keeps up: delivered data must
        # not pile up (it used to fill the disk: every later batch refused).
        for _ in range(3000):
            while writer.next_seq - 1 - read_committed(directory) > 64:
                time.sleep(0.001)  # the data rate stays under the drain rate
            assert append(rng.randint(1, 32) * 1024), "refused with a sender keeping up"
        sender.wait_for(directory, writer.next_seq - 1)
        # 2. Another tenant takes every byte the spool frees: batches are refused (a few still fit
        # in the last page of a segment), each one counted.
        for _ in range(200):
            sender.wait_for(directory, writer.next_seq - 1)
            ballast = fill_disk(small_tmpfs)
            append(rng.randint(1, 32) * 1024)
        assert refusals[0] >= 100, "a full disk should refuse most batches"
        # 3. Space comes back: the spool takes batches again at once (it never wedges).
        ballast.unlink()
        for _ in range(300):
            # At the rate of step 1: undelivered data filling the disk is refused by design.
            while writer.next_seq - 1 - read_committed(directory) > 64:
                time.sleep(0.001)
            assert append(rng.randint(1, 32) * 1024), "still refusing after space came back"
        sender.wait_for(directory, writer.next_seq - 1)
    finally:
        sender.stopping.set()
        sender.join(timeout=30)
        writer_refusals = writer.refusals
        writer.close()
    assert sender.error is None, repr(sender.error)

    seqs = [seq for seq, _ in sender.delivered]
    assert seqs == sorted(acked), "an acked batch was lost, duplicated or reordered"
    assert all(intact for _, intact in sender.delivered), "a payload came back altered"
    expected = LossReport(refused_batches=len(refused), refused_events=sum(refused))
    assert writer_refusals == Refusals(len(refused), sum(refused))
    assert sender.reported == expected, "refusals not reported to Splunk exactly once"



def test_a_disk_filled_before_the_first_commits_lets_the_sender_commit(small_tmpfs: Path) -> None:
    # The function fills /tmp while the sender has not committed yet: a commit overwrites
    # ack.state bytes it owns. A hole under the second slot failed it with ENOSPC, and the
    # sender died and resent the batch at every restart without ever committing it.
    directory = small_tmpfs / "spool"
    with SpoolWriter(directory) as writer, SpoolReader(directory) as reader:
        writer.append(b"acked before the disk filled", 1)
        fill_disk(small_tmpfs)
        [record] = reader.read(10, 1 << 20)
        reader.commit(record.seq)  # generation 1: the second slot
        writer.append(b"x", 1)  # in the segment's block already allocated
        [record] = reader.read(10, 1 << 20)
        reader.commit(record.seq)  # generation 2: the first slot again
    assert read_committed(directory) == 1

if __name__ == "__main__":
    role, spool_dir, log_path, fd = sys.argv[1:5]
    if role == "writer":
        run_writer(spool_dir, log_path, int(fd))
    else:
        run_reader(spool_dir, log_path, int(fd))
