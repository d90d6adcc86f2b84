"""Indexer-acknowledgement ledger of the embedded HEC receiver: ackIds per channel.

Ids are issued per channel from 0 after the request's events are committed, so `true` means
"stored". Like Splunk, an id answers true once and is then forgotten (hec.md 1.7). Fault modes
can hold ids false for some polls or lose them. Thread-safe; used by handler threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

_LOST = -1


@dataclass
class _Channel:
    next_id: int = 0
    pending: dict[int, int] = field(default_factory=dict)  # id -> false polls left (or _LOST)


class AckLedger:
    """ackId issue and query, bounded per channel."""

    def __init__(self, max_pending_per_channel: int) -> None:
        self._max_pending = max_pending_per_channel
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}

    def has_capacity(self, channel: str) -> bool:
        """False when the channel already holds the maximum of unqueried ids (503 code 9)."""
        with self._lock:
            state = self._channels.get(channel)
            return state is None or len(state.pending) < self._max_pending

    def issue(self, channel: str, *, false_polls: int = 0, lost: bool = False) -> int:
        """Allocate the next ackId of `channel` for a committed request."""
        with self._lock:
            state = self._channels.setdefault(channel, _Channel())
            ack_id = state.next_id
            state.next_id += 1
            state.pending[ack_id] = _LOST if lost else max(0, false_polls)
            return ack_id

    def query(self, channel: str, ack_ids: list[int]) -> dict[str, bool]:
        """Status of each id; a true id is forgotten, unknown ids are false."""
        answer: dict[str, bool] = {}
        with self._lock:
            state = self._channels.get(channel)
            for ack_id in ack_ids:
                left = state.pending.get(ack_id) if state else None
                if state is None or left is None or left == _LOST:
                    answer[str(ack_id)] = False
                elif left > 0:
                    state.pending[ack_id] = left - 1
                    answer[str(ack_id)] = False
                else:
                    del state.pending[ack_id]
                    answer[str(ack_id)] = True
        return answer
