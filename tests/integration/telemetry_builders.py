"""Builders of Telemetry API batches for tests (shape of lambda-protocol.md §2.4-2.5)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def stamp(ms: int) -> str:
    t = EPOCH + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def invocation(n: int, lines: int, ms: int = 0) -> tuple[str, list[dict[str, object]]]:
    """An invocation's events: start, `lines` function lines tagged inv<n>-<i>, runtimeDone."""
    rid = str(uuid.UUID(int=n + 1))
    events: list[dict[str, object]] = [
        {"time": stamp(ms), "type": "platform.start", "record": {"requestId": rid}}
    ]
    events += [
        {"time": stamp(ms + 1), "type": "function", "record": f"inv{n}-{i} hello\n"}
        for i in range(lines)
    ]
    events.append(
        {
            "time": stamp(ms + 2),
            "type": "platform.runtimeDone",
            "record": {"requestId": rid, "status": "success"},
        }
    )
    return rid, events


def body(events: list[dict[str, object]]) -> bytes:
    return json.dumps(events).encode()
