"""Wire formats of the listener and sender: msgspec Structs for Telemetry API events.

Only the fields the extension uses are declared ("view" Structs); telemetry records stay
`msgspec.Raw` so their bytes go to Splunk untouched. The event Structs hold only strings,
numbers and Raw, so they cannot be part of a reference cycle: gc=False spares the collector
the thousands of them a batch makes. No I/O here.
"""

from __future__ import annotations

import msgspec


class IntakeEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A telemetry event as the listener admits it: no field beyond these three, so that no
    value the listener has not looked at (e.g. nested too deep) travels to the sender."""

    time: str | int | float = ""
    type: str | int | float = ""
    record: msgspec.Raw = msgspec.Raw(b"null")


class TelemetryEvent(msgspec.Struct, frozen=True, gc=False):
    """One Telemetry API event; `record` is a string or an object, kept as raw JSON.

    `time` and `type` may be numbers (not from Lambda, but admitted): the envelope maps them."""

    time: str | int | float = ""
    type: str | int | float = ""
    record: msgspec.Raw = msgspec.Raw(b"null")


class RequestRef(msgspec.Struct, frozen=True):
    """The requestId of a platform record (start, runtimeDone, report)."""

    requestId: str | None = None  # noqa: N815


class DropNotice(msgspec.Struct, frozen=True):
    """The count of a platform.logsDropped record (what Lambda dropped before delivery)."""

    droppedRecords: int = 0  # noqa: N815


class LogView(msgspec.Struct, frozen=True):
    """Fields of a JSON-format log record that become indexed fields."""

    level: str | None = None
    requestId: str | None = None  # noqa: N815


intake_batch = msgspec.json.Decoder(list[IntakeEvent])
intake_event = msgspec.json.Decoder(IntakeEvent)
raw_array = msgspec.json.Decoder(list[msgspec.Raw])
telemetry_event = msgspec.json.Decoder(TelemetryEvent)
telemetry_batch = msgspec.json.Decoder(list[TelemetryEvent])
request_ref = msgspec.json.Decoder(RequestRef)
drop_notice = msgspec.json.Decoder(DropNotice)
log_view = msgspec.json.Decoder(LogView)
encoder = msgspec.json.Encoder()


class PlatformFigures(msgspec.Struct, frozen=True):
    """The parts of a platform.report/runtimeDone/initReport/restoreReport record that become
    metrics and alerts (ext/sender/metrics.py, ext/sender/alerts.py); values are checked there."""

    requestId: str | None = None  # noqa: N815
    status: str | None = None
    errorType: str | None = None  # noqa: N815
    phase: str | None = None
    initializationType: str | None = None  # noqa: N815
    metrics: dict[str, object] | None = None
    spans: list[object] | None = None


platform_figures = msgspec.json.Decoder(PlatformFigures)
