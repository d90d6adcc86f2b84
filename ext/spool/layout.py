"""Spool directory layout, role locks and the one-byte wake-up pipes.

Used by both roles. Segment files are ``seg-<20-digit base seq>.log``; a segment is created under a
``.tmp`` name and renamed once its header is written, so a visible segment always has a full header.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
from pathlib import Path

SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".log"
TMP_SUFFIX = ".tmp"
WRITER_LOCK = "writer.lock"
READER_LOCK = "reader.lock"
ACK_STATE = "ack.state"
REFUSED_STATE = "refused.state"


class SpoolLocked(RuntimeError):  # noqa: N818 -- name fixed by the spool API
    """Another live process already holds this role's lock on the spool directory."""

    def __init__(self, path: str) -> None:
        super().__init__(f"spool role lock is held by another process: {path}")
        self.path = path

    def __reduce__(self) -> tuple[type[SpoolLocked], tuple[str]]:
        return (SpoolLocked, (self.path,))


def segment_name(base_seq: int) -> str:
    return f"{SEGMENT_PREFIX}{base_seq:020d}{SEGMENT_SUFFIX}"


def segment_path(directory: Path, base_seq: int) -> Path:
    return directory / segment_name(base_seq)


def list_segments(directory: Path) -> list[int]:
    """Base seqs of the segments present, ascending."""
    bases: list[int] = []
    for name in os.listdir(directory):
        if name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX):
            digits = name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
            if digits.isdigit():
                bases.append(int(digits))
    bases.sort()
    return bases


def take_role_lock(directory: Path, name: str) -> int:
    """Open and flock the role's lock file for the life of the returned fd; raises SpoolLocked.

    The kernel drops the lock when the holder dies, so a replacement process can take over at once.
    """
    path = directory / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolLocked(str(path)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlink_quietly(path: Path) -> bool:
    """Remove ``path``; False when the other role removed it first."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def notify(fd: int | None) -> None:
    """Write one wake-up byte; a full pipe already means "wake up", a closed one "nobody waits"."""
    if fd is None:
        return
    try:
        os.write(fd, b"\x01")
    except BlockingIOError:
        pass
    except OSError as err:
        if err.errno not in (errno.EPIPE, errno.EBADF):
            raise


def wait_readable(fd: int | None, timeout_s: float) -> bool:
    """Block until ``fd`` has a byte or the timeout passes, then drain it (sleep when fd is None).

    Returns False once the pipe's write end is closed for good: the caller should stop selecting on
    it, or every later wait would return at once.
    """
    timeout_s = max(0.0, timeout_s)
    if fd is None:
        select.select([], [], [], timeout_s)
        return True
    ready, _, _ = select.select([fd], [], [], timeout_s)
    return drain(fd) if ready else True


def drain(fd: int) -> bool:
    """Empty a non-blocking pipe's read end; False at end of file."""
    try:
        while True:
            if not os.read(fd, 4096):
                return False
    except BlockingIOError:
        return True
