"""The listener as its own process on an inherited socket: SIGKILL and restart without
duplicates, and accept() errors at a low fd limit survived."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.bench_listener import read_status
from ext.spool import SpoolReader

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "benchmarks" / "bench_listener.py"


def batch(tag: str) -> bytes:
    return json.dumps([{"time": "2026-10-08T07:30:28.235Z", "type": "function",
                        "record": tag}]).encode()


def post(payload: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload


class Runner:
    """Starts listener processes on one socket bound here, as the main process does."""

    def __init__(self, spool: Path, backlog: int = 16) -> None:  # 16: LISTEN_BACKLOG
        self.spool = spool
        self.server = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.port = self.server.getsockname()[1]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, nofile: int = 1024) -> subprocess.Popen[bytes]:
        fd = self.server.fileno()
        proc = subprocess.Popen(
            [sys.executable, str(RUNNER), "serve", "--tree", str(REPO), "--fd", str(fd),
             "--spool", str(self.spool), "--nofile", str(nofile)], pass_fds=(fd,))
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.server.close()

    def records(self) -> list[str]:
        out: list[str] = []
        with SpoolReader(self.spool) as reader:
            for record in reader.read(1_000, 2**30):
                out.extend(e["record"] for e in json.loads(record.payload))
        return out


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    r = Runner(tmp_path / "spool")
    yield r
    r.close()


def exchange(port: int, payload: bytes, timeout: float = 10.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(post(payload))
        return read_status(sock)


def wait_answering(port: int) -> None:
    deadline = time.monotonic() + 15
    while exchange(port, b"[]") != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_killed_listener_is_replaced_without_duplicating_abandoned_requests(
        runner: Runner) -> None:
    first = runner.start()
    wait_answering(runner.port)
    assert exchange(runner.port, batch("before")) == 200
    first.send_signal(signal.SIGKILL)
    first.wait()
    # While no listener runs, the kernel completes connections into the backlog. The sender
    # times out on the first attempt, closes it, and retries on a new connection.
    with socket.create_connection(("127.0.0.1", runner.port), timeout=5) as given_up:
        given_up.sendall(post(batch("lost-then-retried")))
        given_up.settimeout(0.3)
        with pytest.raises(TimeoutError):
            given_up.recv(1)
    retry = socket.create_connection(("127.0.0.1", runner.port), timeout=15)
    retry.sendall(post(batch("lost-then-retried")))
    runner.start()
    assert read_status(retry) == 200
    retry.close()
    assert runner.records() == ["before", "lost-then-retried"]


FLOOD = 120
NOFILE = 24  # the limit is hit well before the connection cap (64)


def test_accept_errors_at_the_fd_limit_are_survived(tmp_path: Path) -> None:
    # A backlog with room for the whole flood: the kernel completes every handshake at once,
    # so none of them comes later. With the default 16 most of the flood's SYNs were dropped
    # and retransmitted 1 s later, right when the request below connected: each of those
    # accepts (at the fd limit) evicted the least recently active connection, and a request
    # connection whose bytes a busy machine had not sent yet was one (CI: EOF, status 0).
    runner = Runner(tmp_path / "spool", backlog=FLOOD + 8)
    idle: list[socket.socket] = []
    try:
        proc = runner.start(nofile=NOFILE)
        wait_answering(runner.port)
        for _ in range(FLOOD):
            s = socket.socket()
            idle.append(s)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", runner.port))
        wait_connected(idle)
        # The listener can hold fewer than NOFILE of them: it must have taken all the others
        # and closed them (EMFILE on accept evicts the least recently active connection).
        wait_closed_by_peer(idle, at_least=FLOOD - NOFILE)
        # Every flood connection is ahead of this one in the accept queue, so no accept after
        # it can evict it before its request is read.
        assert exchange(runner.port, batch("after the flood"), timeout=10) == 200
        assert proc.poll() is None
    finally:
        for s in idle:
            s.close()
        runner.close()
    assert runner.records() == ["after the flood"]


def wait_connected(socks: list[socket.socket]) -> None:
    """Until the kernel has completed every handshake (each socket writable, no error)."""
    pending = {s.fileno(): s for s in socks}
    poller = select.poll()  # not select(): a busy test process may hold fds past 1023
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + 10
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} connects still pending"
        for fd, _ in poller.poll(500):
            assert pending.pop(fd).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            poller.unregister(fd)


def wait_closed_by_peer(socks: list[socket.socket], at_least: int) -> None:
    """Until at least `at_least` of the sockets read end-of-stream (or a reset)."""
    deadline = time.monotonic() + 10
    while (closed := sum(map(closed_by_peer, socks))) < at_least:
        assert time.monotonic() < deadline, f"the listener closed {closed} of {len(socks)}"
        time.sleep(0.02)


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
