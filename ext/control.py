"""Control messages between the extension's processes, over plain pipes (no /dev/shm in Lambda).

A message is one ASCII line: a one-letter kind, then space-separated words. Writers never block
(a full pipe would mean the reader is gone or frozen; the spool, not this channel, carries data).
"""

from __future__ import annotations

import os

# listener -> main
RUNTIME_DONE = b"D"  # D <request id> <seq>: platform.runtimeDone for the request is spooled at seq
REPORT = b"R"  # R <request id> <seq>: platform.report for the request is spooled at seq
# main -> sender
FLUSH = b"F"  # F <seq>: send everything up to seq now, whatever DISPATCH_MIN_BATCH_SIZE says
DRAIN = b"S"  # S <deadline epoch ms>: shutting down: send everything, then exit
# sender -> main
COMMITTED = b"C"  # C <seq>: every record up to seq is accepted by HEC
FAILING = b"E"  # E: HEC is failing (retrying or holding); do not wait for commits
HEALTHY = b"O"  # O: HEC accepts again


def send(fd: int, kind: bytes, *words: object) -> bool:
    """Writes one message; False if the pipe is full or closed (the message is dropped)."""
    line = kind + b"".join(b" " + str(word).encode() for word in words) + b"\n"
    try:
        return os.write(fd, line) == len(line)
    except (BlockingIOError, BrokenPipeError):
        return False


class MessageReader:
    """Splits a non-blocking pipe into messages; tolerates partial lines across reads."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = b""
        self.closed = False

    def read(self) -> list[tuple[bytes, list[str]]]:
        """Every complete message available now, without blocking."""
        chunks = [self._pending]
        while True:
            try:
                chunk = os.read(self.fd, 65_536)
            except BlockingIOError:
                break
            if not chunk:
                self.closed = True
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        lines = data.split(b"\n")
        self._pending = lines.pop()
        messages = []
        for line in lines:
            if line:
                messages.append((line[:1], line[2:].decode(errors="replace").split()))
        return messages


def drain_pipe(fd: int) -> None:
    """Empties a non-blocking wake-up pipe (its bytes only mean "look again")."""
    try:
        while os.read(fd, 65_536):
            pass
    except BlockingIOError:
        return


def make_pipe() -> tuple[int, int]:
    """A non-blocking, close-on-exec pipe: (read end, write end)."""
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return read_fd, write_fd
