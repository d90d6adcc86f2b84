"""Crash soak with real processes: a writer and a reader process share a spool while the test
SIGKILLs and SIGSTOPs them at random moments; afterwards nothing the writer acked may be missing.

Also the actors' entry point: ``python -m tests.integration.test_spool_crash writer|reader ...``.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from ext.spool import SpoolLocked, SpoolReader, SpoolWriter, wait_committed
from ext.spool.ackstate import load_committed

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
    reader = take_role(lambda: SpoolReader(directory, wake_fd=wake_fd))
    log_fd = os.open(delivered_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    while True:
        batch = reader.read(40, 256 * 1024, 0.2)
        if not batch:
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
        chaos_end = time.monotonic() + CHAOS_S
        while time.monotonic() < chaos_end:
            time.sleep(rng.uniform(0.01, 0.12))  # random moments, by design
            actor = rng.choice((writer, reader))
            actor.check_alive()
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
        assert wait_committed(directory, last, timeout_s=60), "reader did not catch up"
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


if __name__ == "__main__":
    role, spool_dir, log_path, fd = sys.argv[1:5]
    if role == "writer":
        run_writer(spool_dir, log_path, int(fd))
    else:
        run_reader(spool_dir, log_path, int(fd))
