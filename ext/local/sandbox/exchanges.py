"""Machine-readable log of every API exchange of one sandbox (emulator process only).

Each entry: seq, t_ms (request arrival, ms since sandbox start), dur_ms, who (runtime / extension
name / "?"), method, path, status, request and response bodies (decoded JSON when small, else size).
Optionally mirrored as JSON Lines to a file.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import IO, Any

import msgspec

from ext.local.sandbox import wire

INLINE_BODY_BYTES = 2048


def describe_body(body: bytes) -> Any:
    """Small JSON bodies inline (decoded), anything else as its size."""
    if not body:
        return None
    if len(body) <= INLINE_BODY_BYTES:
        try:
            return wire.decode(body)
        except msgspec.DecodeError:
            return {"bytes": len(body), "text": body.decode("utf-8", "replace")}
    return {"bytes": len(body)}


class ExchangeLog:
    """Append-only, thread-safe list of exchanges."""

    def __init__(self, path: Path | None = None) -> None:
        self.entries: list[dict[str, Any]] = []
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = open(path, "ab") if path is not None else None  # noqa: SIM115

    def ms_since_start(self, t: float) -> float:
        """Monotonic `t` as ms since the log was created."""
        return round((t - self._t0) * 1000, 3)

    def record(
        self,
        *,
        who: str,
        method: str,
        path: str,
        status: int,
        request: bytes,
        response: bytes,
        started: float,
    ) -> None:
        """Append one exchange."""
        now = time.monotonic()
        entry = {
            "t_ms": self.ms_since_start(started),
            "dur_ms": round((now - started) * 1000, 3),
            "who": who,
            "method": method,
            "path": path,
            "status": status,
            "request": describe_body(request),
            "response": describe_body(response),
        }
        with self._lock:
            entry["seq"] = len(self.entries)
            self.entries.append(entry)
            if self._file is not None:
                self._file.write(wire.encode(entry) + b"\n")
                self._file.flush()

    def close(self) -> None:
        """Close the JSONL mirror, if any."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
