"""Spool directory layout, role locks, the files a role holds, and the writer's wake-up byte.

Used by both roles. Segment files are ``seg-<20-digit base seq>.log``; a segment is created under a
``.tmp`` name and renamed once its header is written, so a visible segment always has a full header.
"""

from __future__ import annotations

import errno
import fcntl
import os
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

    # A spool directory as callers give it; the roles keep it as a str (os.path, not pathlib,
    # which the extension's processes would import for this alone: ~0.2 MiB, docs/memory.md).
    StrPath: TypeAlias = str | os.PathLike[str]

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


def segment_path(directory: str, base_seq: int) -> str:
    return os.path.join(directory, segment_name(base_seq))


def list_segments(directory: str) -> list[int]:
    """Base seqs of the segments present, ascending."""
    bases: list[int] = []
    for name in os.listdir(directory):
        if name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX):
            digits = name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
            if digits.isdigit():
                bases.append(int(digits))
    bases.sort()
    return bases


def take_role_lock(directory: str, name: str) -> int:
    """Open and flock the role's lock file for the life of the returned fd; raises SpoolLocked.

    The kernel drops the lock when the holder dies, so a replacement process can take over at once.
    """
    path = os.path.join(directory, name)
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


class RoleFiles(ABC):
    """The files a role (SpoolWriter, SpoolReader) holds open; ``close()`` or a with block
    releases them."""

    @abstractmethod
    def close(self) -> None:
        """Release the role's files, its role lock last."""

    def _close_fds(self, *names: str) -> None:
        """Close the fds held in the attributes ``names``, in order; -1 marks one closed (or never
        opened)."""
        for name in names:
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def unlink_quietly(path: str) -> bool:
    """Remove ``path``; False when the other role removed it first."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# The writer's wake-up byte: there are records to read (SpoolWriter.append says when).
WAKE_NOW = b"\x01"


def notify(fd: int | None) -> None:
    """Write one wake-up byte; a full pipe already means "wake up", a closed one "nobody waits"."""
    if fd is None:
        return
    try:
        os.write(fd, WAKE_NOW)
    except BlockingIOError:
        pass
    except OSError as err:
        if err.errno not in (errno.EPIPE, errno.EBADF):
            raise
