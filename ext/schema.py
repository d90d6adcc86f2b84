"""Wire formats: msgspec Structs for the Extensions API, the Telemetry API and control messages.

Only the fields the extension uses are declared ("view" Structs); telemetry records stay
`msgspec.Raw` so their bytes go to Splunk untouched. No I/O here.
"""

from __future__ import annotations

import msgspec


class RegisterResponse(msgspec.Struct, frozen=True):
    functionName: str = ""  # noqa: N815 - wire name
    functionVersion: str = ""  # noqa: N815


class LifecycleEvent(msgspec.Struct, frozen=True):
    """An INVOKE or SHUTDOWN event from /extension/event/next (lambda-protocol.md §1.2)."""

    eventType: str  # noqa: N815
    deadlineMs: int = 0  # noqa: N815
    requestId: str | None = None  # noqa: N815
    shutdownReason: str | None = None  # noqa: N815


class EventHead(msgspec.Struct, frozen=True):
    """What the listener needs of a telemetry event: its type; the record is skipped."""

    type: str = ""


class TelemetryEvent(msgspec.Struct, frozen=True):
    """One Telemetry API event; `record` is a string or an object, kept as raw JSON."""

    time: str = ""
    type: str = ""
    record: msgspec.Raw = msgspec.Raw(b"null")


class RequestRef(msgspec.Struct, frozen=True):
    """The requestId of a platform record (start, runtimeDone, report)."""

    requestId: str | None = None  # noqa: N815


class LogView(msgspec.Struct, frozen=True):
    """Fields of a JSON-format log record that become indexed fields."""

    level: str | None = None
    requestId: str | None = None  # noqa: N815


class BufferingConfig(msgspec.Struct, frozen=True):
    maxItems: int  # noqa: N815
    maxBytes: int  # noqa: N815
    timeoutMs: int  # noqa: N815


class Destination(msgspec.Struct, frozen=True):
    URI: str
    protocol: str = "HTTP"


class Subscription(msgspec.Struct, frozen=True):
    """Body of PUT /2022-07-01/telemetry (lambda-protocol.md §2.1)."""

    types: list[str]
    buffering: BufferingConfig
    destination: Destination
    schemaVersion: str = "2022-12-13"  # noqa: N815


telemetry_batch_heads = msgspec.json.Decoder(list[EventHead])
raw_array = msgspec.json.Decoder(list[msgspec.Raw])
telemetry_event = msgspec.json.Decoder(TelemetryEvent)
telemetry_batch = msgspec.json.Decoder(list[TelemetryEvent])
request_ref = msgspec.json.Decoder(RequestRef)
log_view = msgspec.json.Decoder(LogView)
lifecycle_event = msgspec.json.Decoder(LifecycleEvent)
register_response = msgspec.json.Decoder(RegisterResponse)
encoder = msgspec.json.Encoder()
