"""Dead-letter file for events HEC refuses as invalid, so a poison event is kept, not dropped.

Runs in the sender. The file (`deadletter.jsonl` beside the spool) is bounded; once full, the
count still grows and the operator sees both in the extension's stderr (CloudWatch).
"""

from __future__ import annotations

import json
import logging
import os

log = logging.getLogger(__name__)

FILE_NAME = "deadletter.jsonl"
MAX_BYTES = 4 * 2**20


class Quarantine:
    def __init__(self, directory: str, max_bytes: int = MAX_BYTES) -> None:
        self.path = os.path.join(directory, FILE_NAME)
        self.max_bytes = max_bytes
        self.count = 0
        self.kept = 0

    def keep(self, envelope: bytes, status: int, code: int | None, text: str) -> None:
        """Records one refused envelope with HEC's reason; never raises."""
        self.count += 1
        line = json.dumps(
            {"status": status, "code": code, "text": text,
             "envelope": envelope.decode("utf-8", "replace")}
        ).encode() + b"\n"
        try:
            size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
            if size + len(line) <= self.max_bytes:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
                self.kept += 1
        except OSError as err:
            log.error("cannot write the dead-letter file %s: %s", self.path, err)
        if self.count & (self.count - 1) == 0:  # 1, 2, 4, 8...: visible but never a flood
            log.error(
                "HEC refused %d event(s) as invalid (last: status %s, code %s: %s); kept %d in %s",
                self.count, status, code, text, self.kept, self.path,
            )
