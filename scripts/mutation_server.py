"""A fork server for mutation runs: pytest, hypothesis and the third-party libraries are imported
once, and every mutant's test run is a fork of that warm process.

    python -m scripts.mutation_server SOCKET      # run from the work copy; stopped by SIGTERM
    python -S -I scripts/mutation_client.py SOCKET pytest-args...   # cosmic-ray's test command

Starting `python -m pytest` with hypothesis costs ~1 s of imports per mutant on this machine,
most of a fast module's test run. The server never imports `ext` or `tests`: each forked child
imports them from disk, so it sees the mutant cosmic-ray has just written. One run at a time
(cosmic-ray's local distributor is sequential). A child is killed when its client goes away
(cosmic-ray's timeout kills the client, not the fork).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys

# Not the pytest plugins: pytest wants to import those itself (to rewrite their asserts).
WARM = ("pytest", "hypothesis", "hypothesis.strategies", "msgspec", "urllib3")


def _child(args: list[str]) -> None:
    """Runs in the fork: the tests, with output discarded; exits with pytest's status."""
    status = 3
    try:
        import pytest

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        status = int(pytest.main(args))
    finally:
        os._exit(status)


def _serve_one(conn: socket.socket) -> None:
    request = b""
    while not request.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            return
        request += chunk
    args: list[str] = json.loads(request)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _child(args)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                conn.sendall(f"{code}\n".encode())
            return
        readable, _, _ = select.select([conn], [], [], 0.02)
        if readable and not conn.recv(1):  # the client was killed: a timeout
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return


def main(path: str) -> int:
    for name in WARM:
        __import__(name)
    sys.path.insert(0, os.getcwd())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    print("ready", flush=True)
    try:
        while True:
            conn, _ = server.accept()
            with conn:
                _serve_one(conn)
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
