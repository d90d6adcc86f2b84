"""Value types of the embedded HEC receiver: tokens, limits, parsed and stored events.

Frozen dataclasses shared by the parser, the store, the handler and the CLI; no behaviour
beyond small derived properties. Defaults follow Splunk's shipped defaults (hec.md 1.9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

DEFAULT_TOKEN_VALUE = "00000000-0000-0000-0000-000000000000"  # noqa: S105 - public test token


@dataclass(frozen=True)
class HecToken:
    """One HEC token (inputs.conf [http://name]): allowed indexes, defaults, ack, enabled."""

    name: str
    value: str
    indexes: tuple[str, ...] = ()  # empty: any index allowed
    default_index: str = "main"
    ack: bool = False
    enabled: bool = True
    metric_indexes: tuple[str, ...] = ()
    sourcetype: str | None = None  # default sourcetype; Splunk shows "httpevent"
    source: str | None = None  # default source; Splunk uses "http:<name>"
    allow_query_auth: bool = False  # allowQueryStringAuth, default false

    def allows_index(self, index: str) -> bool:
        """True when events may go to `index` under this token."""
        if index in self.metric_indexes:
            return True
        return not self.indexes or index in self.indexes or index == self.default_index

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the admin endpoint and config files."""
        return {
            "name": self.name,
            "value": self.value,
            "indexes": list(self.indexes),
            "default_index": self.default_index,
            "ack": self.ack,
            "enabled": self.enabled,
            "metric_indexes": list(self.metric_indexes),
            "sourcetype": self.sourcetype,
            "source": self.source,
            "allow_query_auth": self.allow_query_auth,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HecToken:
        """Inverse of to_json; unknown keys raise TypeError."""
        args = dict(data)
        for key in ("indexes", "metric_indexes"):
            if key in args:
                args[key] = tuple(args[key])
        return cls(**args)


DEFAULT_TOKENS = (HecToken(name="default", value=DEFAULT_TOKEN_VALUE),)


@dataclass(frozen=True)
class HecLimits:
    """Configurable limits (limits.conf [http_input], inputs.conf [http])."""

    max_content_length: int = 838_860_800  # 413 HTML above this (compressed size on the wire)
    max_event_size: int = 5 * 1024 * 1024  # 400 code 6 + invalid-event-number above this
    max_decompressed: int = 838_860_800  # gzip-bomb guard: 413 above this once inflated
    max_pending_acks_per_channel: int = 1_000_000  # 503 code 9 when exhausted (Vector)
    keepalive_idle_s: float = 7200.0  # keepAliveIdleTimeout
    index_quirk: bool = True  # code 7 reports index + 1 (Splunk 10.4.2, mockdr)


class ParsedEvent(NamedTuple):
    """One accepted event before storage, with effective metadata (a tuple: cheap per event)."""

    time: float | None
    host: str
    source: str
    sourcetype: str
    index_name: str  # "index" would shadow tuple.index
    fields: str | None  # raw JSON text of "fields", byte-equal to the request
    event: str  # raw JSON text of "event" (or the raw line for /raw)
    kind: str  # "event", "metric" or "raw"


@dataclass(frozen=True)
class StoredEvent:
    """One row of the event store, as returned by HecReceiver.events()."""

    id: int
    request_id: int
    seq: int
    time: float | None
    host: str
    source: str
    sourcetype: str
    index: str
    fields: dict[str, Any] = field(hash=False)
    event: str
    token_name: str
    channel: str | None
    received_at: float
    kind: str

    def to_json(self) -> dict[str, Any]:
        """Plain dict (admin endpoint, CLI --json)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
