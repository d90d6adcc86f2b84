"""The writer's refusal counters: ``refused.state``, two in-place slots like ``ack.state``.

A refusal is an append that failed (a full filesystem, a spool full of data not delivered yet, a
record over the bound): the listener answers 503, and the batch is lost unless Lambda sends it
again (its documented retry schedule is not; the design assumes the worst). Each refused append
counts, a retried batch refused again too. Written only by the writer (listener process), before
the listener answers; read lock-free by the reader, which reports the counts to Splunk.
The file is filled with real bytes when created, so an update overwrites blocks it already owns
and still succeeds when the filesystem is full (which is when refusals happen).
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import zlib

import msgspec

from ext.spool.layout import REFUSED_STATE, TMP_SUFFIX, unlink_quietly

log = logging.getLogger(__name__)

_MAGIC = b"SPRF"
_VERSION = 1
_STRIDE = 512  # each slot in its own sector: a torn write touches one slot only
STATE_FILE_BYTES = 2 * _STRIDE
# magic, version, flags, generation, batches, events
_SLOT = struct.Struct("<4sHHQQQ")
_CRC = struct.Struct("<I")
_SLOT_BYTES = _SLOT.size + _CRC.size


class Refusals(msgspec.Struct, frozen=True, gc=False):
    """Cumulative count of refused batches and of the events they held."""

    batches: int = 0
    events: int = 0


def _encode(generation: int, counts: Refusals) -> bytes:
    body = _SLOT.pack(_MAGIC, _VERSION, 0, generation, counts.batches, counts.events)
    return body + _CRC.pack(zlib.crc32(body))


def _load(fd: int) -> tuple[int, Refusals] | None:
    """The valid slot with the highest generation, or None."""
    best: tuple[int, Refusals] | None = None
    both = os.pread(fd, _STRIDE + _SLOT_BYTES, 0)  # one syscall: the reader loads at every read
    for index in range(2):
        data = both[index * _STRIDE:index * _STRIDE + _SLOT_BYTES]
        if len(data) < _SLOT_BYTES:
            continue
        (crc,) = _CRC.unpack_from(data, _SLOT.size)
        if zlib.crc32(data[: _SLOT.size]) != crc:
            continue
        magic, version, _, generation, batches, events = _SLOT.unpack_from(data, 0)
        if magic == _MAGIC and version == _VERSION and (best is None or generation > best[0]):
            best = (generation, Refusals(batches, events))
    return best


class RefusalReader:
    """The reader's view of ``refused.state``: an fd kept open, one load per call."""

    def __init__(self, directory: str) -> None:
        self._path = os.path.join(directory, REFUSED_STATE)
        self._fd = -1

    def current(self) -> Refusals | None:
        """The counts last persisted by the writer, or None when there is no valid file yet."""
        if self._fd >= 0 and os.fstat(self._fd).st_nlink == 0:
            self.close()  # deleted, and a restarted writer made a new one: follow it
        if self._fd < 0:
            try:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
        loaded = _load(self._fd)
        return None if loaded is None else loaded[1]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class RefusalLog:
    """The writer's side: counts a refusal and persists the running total before returning."""

    def __init__(self, directory: str, floor: Refusals) -> None:
        self._path = os.path.join(directory, REFUSED_STATE)
        self._fd = -1
        self._generation = 0
        self.counts = floor
        self.unsaved = False  # counts not persisted yet (the file could not be written)
        try:
            self._open()
        except OSError as err:  # a full filesystem: keep counting in memory, save them later
            log.error("spool: cannot open %s: %s", os.path.basename(self._path), err)
            self.unsaved = True

    def add(self, events: int) -> Refusals:
        self.counts = Refusals(self.counts.batches + 1, self.counts.events + events)
        self.unsaved = True
        self.save()
        return self.counts

    def save(self) -> None:
        """Persist the counts; on failure they stay unsaved (in memory) for the next try."""
        try:
            if self._fd < 0:
                self._open()
            self._store()
        except OSError as err:
            log.error("spool: cannot persist the refusal count: %s", err)
            return
        self.unsaved = False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = self._create()
        loaded = _load(fd)
        if loaded is not None:
            self._generation = loaded[0]
            persisted = loaded[1]
            self.counts = Refusals(
                max(self.counts.batches, persisted.batches),
                max(self.counts.events, persisted.events),
            )
        self._fd = fd
        if loaded is None or loaded[1] != self.counts:
            self._store()

    def _create(self) -> int:
        """Publish a fully written (not sparse) file by rename, so a visible one is never short."""
        tmp = self._path + TMP_SUFFIX
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            data = bytes(STATE_FILE_BYTES)
            if os.pwrite(fd, data, 0) != len(data):
                raise OSError(errno.ENOSPC, "short write creating the refusal counters")
            os.rename(tmp, self._path)
        except BaseException:
            os.close(fd)
            unlink_quietly(tmp)
            raise
        return fd

    def _store(self) -> None:
        self._generation += 1
        data = _encode(self._generation, self.counts)
        offset = _STRIDE * (self._generation % 2)
        if os.pwrite(self._fd, data, offset) != len(data):
            raise OSError(errno.EIO, f"short write to {REFUSED_STATE}")
