"""Shared run-time state of one embedded HEC receiver: tokens, limits, faults, acks, store.

Built by HecReceiver and read by every handler thread; token changes swap whole dicts under a
lock so readers never see a half-updated table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ext.local.hec.acks import AckLedger
from ext.local.hec.connections import ConnectionBoard
from ext.local.hec.faults import FaultBoard

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ext.local.hec.model import HecLimits, HecToken
    from ext.local.hec.store import EventStore


@dataclass
class ReceiverState:
    """Everything a request handler needs, shared across threads."""

    store: EventStore
    limits: HecLimits
    partial_prefix: bool = False  # keep the events before a bad one (vectorized parser, Vector)
    metrics_indexes: frozenset[str] = frozenset()  # metrics indexes, besides tokens' metric_indexes
    faults: FaultBoard = field(default_factory=FaultBoard)
    acks: AckLedger | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    connections: ConnectionBoard = field(default_factory=ConnectionBoard)
    _tokens: dict[str, HecToken] = field(default_factory=dict)
    _token_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.acks is None:
            self.acks = AckLedger(self.limits.max_pending_acks_per_channel)

    @property
    def ack_ledger(self) -> AckLedger:
        """The ack ledger (always set after construction)."""
        assert self.acks is not None
        return self.acks

    def token_by_value(self, value: str) -> HecToken | None:
        """The token whose secret is `value`, if any."""
        return self._tokens.get(value)

    def tokens(self) -> list[HecToken]:
        """All configured tokens."""
        return list(self._tokens.values())

    def put_tokens(self, tokens: Iterable[HecToken]) -> None:
        """Add or replace tokens (matched by name; a new value replaces the old one)."""
        with self._token_lock:
            table = dict(self._tokens)
            for token in tokens:
                table = {v: t for v, t in table.items() if t.name != token.name}
                table[token.value] = token
            self._tokens = table
