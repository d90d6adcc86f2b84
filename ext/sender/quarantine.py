"""Dead-letter file for what cannot be delivered as is, so poison is kept, not dropped: events
HEC refuses as invalid, and spool records the sender cannot map at all (e.g. nested too deep).
Before an event goes there, `repaired_utf8` gives the courier the one repair worth a second
request: invalid UTF-8 replaced by U+FFFD.

Runs in the sender. The file (`deadletter.jsonl` beside the spool) is bounded; once full, the
count still grows and the operator sees both in the extension's stderr (CloudWatch).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os

import msgspec

log = logging.getLogger(__name__)

FILE_NAME = "deadletter.jsonl"
MAX_BYTES = 4 * 2**20


class Quarantine:
    def __init__(self, directory: str, max_bytes: int = MAX_BYTES) -> None:
        self.path = os.path.join(directory, FILE_NAME)
        self.max_bytes = max_bytes
        self.count = 0  # events HEC refused
        self.records = 0  # spool records that could not be mapped
        self.kept = 0  # lines written to the file

    def keep(self, envelope: bytes, status: int, code: int | None, text: str) -> bool:
        """Records one refused envelope with HEC's reason; never raises. True if the file kept
        it (False: full or unwritable, the event is lost but counted)."""
        self.count += 1
        kept = self._write(json.dumps(
            {"status": status, "code": code, "text": text,
             "envelope": envelope.decode("utf-8", "replace")}
        ).encode() + b"\n")
        if self.count & (self.count - 1) == 0:  # 1, 2, 4, 8...: visible but never a flood
            log.error(
                "HEC refused %d event(s) as invalid (last: status %s, code %s: %s); kept %d in %s",
                self.count, status, code, text, self.kept, self.path,
            )
        return kept

    def keep_record(self, seq: int, payload: bytes, error: BaseException) -> None:
        """Records one spool record (a Telemetry API batch) that could not be mapped, with the
        error; never raises. A record too large for the file's bound is counted, not kept."""
        self.records += 1
        self._write(json.dumps(
            {"spool_seq": seq, "error": f"{type(error).__name__}: {error}"[:300],
             "payload": payload.decode("utf-8", "replace")}
        ).encode() + b"\n")
        if self.records & (self.records - 1) == 0:
            log.error("could not map %d spool record(s) (last: seq %d, %s); kept in %s",
                      self.records, seq, type(error).__name__, self.path)

    def _write(self, line: bytes) -> bool:
        try:
            size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
            if size + len(line) <= self.max_bytes:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    _append(fd, line)
                finally:
                    os.close(fd)
                self.kept += 1
                return True
        except OSError as err:
            log.error("cannot write the dead-letter file %s: %s", self.path, err)
        return False


def repaired_utf8(envelope: bytes) -> bytes | None:
    """`envelope` with every invalid UTF-8 sequence replaced by U+FFFD, for HEC to take after
    refusing it; None when it is valid UTF-8 (refused for something else) or, repaired, would
    not be one JSON object (a guard: the sender builds none such).

    Records stay msgspec.Raw from the listener on, checked for JSON but not for UTF-8 (that
    check would cost every event 15-30% on non-ASCII text), so a function's invalid bytes reach
    HEC as they were written, and its /event parser refuses them (code 6). They can only be
    inside strings: msgspec refuses a byte >= 0x80 anywhere else in a record, and the envelope
    around it is ASCII, text msgspec encoded, or bytes from inside one of the record's strings
    (a text line's `[LEVEL]`) quoted as a string again. CPython replaces each maximal invalid
    subpart and never takes an ASCII byte into one, so a quote or backslash after an invalid
    byte stays what it was: every string ends where it did. Only on the poison path: nothing on
    the usual one.
    """
    try:
        envelope.decode()
    except UnicodeDecodeError:
        repaired = envelope.decode("utf-8", "replace").encode()
    else:
        return None
    try:  # decoding in full checks what HEC will: the structure, escapes, UTF-8 of each string
        value = msgspec.json.decode(repaired)
    except (msgspec.DecodeError, RecursionError):
        return None
    return repaired if isinstance(value, dict) else None


def _append(fd: int, line: bytes) -> None:
    """Writes all of `line` at the file's end, or nothing: a write cut short (a full disk takes
    what fits, then fails) is undone, so no half line runs into the next one kept."""
    done = 0
    try:
        while done < len(line):
            written = os.write(fd, line[done:])
            if not written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += written
    except OSError:
        if done:  # O_APPEND: this write's bytes end at the file offset
            with contextlib.suppress(OSError):
                os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR) - done)
        raise
