"""Platform records to Splunk HEC multi-metric events, in the sender process.

`platform.report`, `platform.runtimeDone`, `platform.initReport` and `platform.restoreReport`
carry the figures Lambda teams chart (duration, billed duration, memory, init time). Each becomes
one metric event (`"event":"metric"`, `"fields":{"metric_name:aws.lambda.duration_ms":41.7,...}`
plus its dimensions as plain fields, hec.md 1.5) into SPLUNK_METRICS_INDEX. Only platform
records come here (a few per invocation): the per-line path of the envelope builder never does.
The metric names and dimensions are documented in docs/metrics.md; changing one breaks dashboards.
"""

from __future__ import annotations

import math

from ext import schema

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ext.config import Config

METRICS_SOURCETYPE = "aws:lambda:metrics"
METRIC_PREFIX = "metric_name:"
# Telemetry kind -> (its metrics field -> metric name). Units are in the names (ms, mb, bytes).
REPORT_METRICS = {
    "durationMs": "aws.lambda.duration_ms",
    "billedDurationMs": "aws.lambda.billed_duration_ms",
    "memorySizeMB": "aws.lambda.memory_size_mb",
    "maxMemoryUsedMB": "aws.lambda.max_memory_used_mb",
    "initDurationMs": "aws.lambda.init_duration_ms",
    "restoreDurationMs": "aws.lambda.restore_duration_ms",
}
RUNTIME_DONE_METRICS = {
    "durationMs": "aws.lambda.runtime_duration_ms",
    "producedBytes": "aws.lambda.produced_bytes",
}
INIT_REPORT_METRICS = {"durationMs": "aws.lambda.init_report_duration_ms"}
RESTORE_REPORT_METRICS = {"durationMs": "aws.lambda.restore_report_duration_ms"}
FIGURES = {
    "platform.report": REPORT_METRICS,
    "platform.runtimeDone": RUNTIME_DONE_METRICS,
    "platform.initReport": INIT_REPORT_METRICS,
    "platform.restoreReport": RESTORE_REPORT_METRICS,
}
# Span name (runtimeDone, report) -> metric name.
SPAN_METRICS = {
    "responseLatency": "aws.lambda.response_latency_ms",
    "responseDuration": "aws.lambda.response_duration_ms",
    # After the response, until the runtime asks for the next event: billed, and the function's
    # own (Lambda's runtimeDone records carry it, e.g. 15 ms for a Node.js function).
    "runtimeOverhead": "aws.lambda.runtime_overhead_ms",
    "extensionOverhead": "aws.lambda.extension_overhead_ms",
}
# Counters of platform.report: one per invocation, so `sum` counts them per function.
INVOCATIONS = "aws.lambda.invocations"
ERRORS = "aws.lambda.errors"
COLD_STARTS = "aws.lambda.cold_starts"
MEMORY_USED_PCT = "aws.lambda.memory_used_pct"
ALERTS = "aws.lambda.alerts"


def encode(value: object) -> bytes:
    """`value` as JSON bytes."""
    return schema.encoder.encode(value)


def number(value: object) -> float | int | None:
    """A finite number (not a bool), or None: HEC rejects a metric with anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        # Splunk holds a metric as a double: an int beyond its range (a JSON number of 309
        # digits or more) is refused like infinity, and would fail any arithmetic on it.
        finite = math.isfinite(value)
    except OverflowError:
        return None
    return value if finite else None


def inner_fields(fields_prefix: bytes) -> bytes:
    """The members of the `fields` object an envelope prefix opens (the common indexed fields:
    function name, telemetry type and whatever the envelope builder adds), without the brace."""
    return fields_prefix.partition(b',"fields":{')[2]


class MetricMapper:
    """Builds metric events for one function; None from `metric_event` when nothing is set."""

    def __init__(self, config: Config, host: str, source: str) -> None:
        self.index: str | None = config.metrics_index
        index = b',"index":' + encode(self.index) if self.index else b""
        self._head = (b',"event":"metric","host":' + encode(host) + b',"source":' + encode(source)
                      + b',"sourcetype":' + encode(METRICS_SOURCETYPE) + index + b',"fields":{')

    @property
    def enabled(self) -> bool:
        return self.index is not None

    def metric_event(self, time: bytes, common: bytes,
                     dimensions: dict[str, str], values: dict[str, float | int]) -> bytes | None:
        """One multi-metric event: `common` fields, then dimensions, then `metric_name:` values."""
        if self.index is None or not values:
            return None
        # A dimension the common fields already carry (e.g. an enrichment field) is left to them:
        # a name twice in `fields` would be ambiguous to Splunk.
        members: dict[str, object] = {k: v for k, v in dimensions.items()
                                      if b'"' + k.encode() + b'":' not in common}
        for name, value in values.items():
            members[METRIC_PREFIX + name] = value
        encoded = encode(members)[1:]  # one encoder call; the object's members and its "}"
        return b"".join((b'{"time":', time, self._head, common, b"," if common else b"",
                         encoded, b"}"))

    def platform_metrics(self, kind: str, time: bytes, common: bytes,
                         figures: schema.PlatformFigures) -> bytes | None:
        """The metric event of one platform record, or None (no metrics index, no figures)."""
        if self.index is None:
            return None
        values = platform_values(kind, figures)
        return self.metric_event(time, common, platform_dimensions(kind, figures), values)


def platform_values(kind: str, figures: schema.PlatformFigures) -> dict[str, float | int]:
    """Metric name -> value for one platform record (documented in docs/metrics.md)."""
    values: dict[str, float | int] = {}
    given = figures.metrics or {}
    for field, name in FIGURES[kind].items():
        value = number(given.get(field))
        if value is not None:
            values[name] = value
    for name, value in _span_values(figures.spans):
        values[name] = value
    if kind == "platform.report" and values:
        values[INVOCATIONS] = 1
        values[ERRORS] = 0 if figures.status in (None, "success") else 1
        values[COLD_STARTS] = 1 if "initDurationMs" in given else 0
        size, used = values.get(REPORT_METRICS["memorySizeMB"]), values.get(
            REPORT_METRICS["maxMemoryUsedMB"])
        if size and used is not None:
            pct = 100.0 * used / size
            if math.isfinite(pct):  # absurd figures (not Lambda's) overflow: no ratio then
                values[MEMORY_USED_PCT] = round(pct, 2)
    return values


def platform_dimensions(kind: str, figures: schema.PlatformFigures) -> dict[str, str]:
    """The dimensions of a platform record's metrics: status, error type, init phase and type."""
    dims: dict[str, str] = {}
    if figures.status:
        dims["status"] = figures.status
    if figures.errorType:
        dims["error_type"] = figures.errorType
    if kind in ("platform.initReport", "platform.restoreReport"):
        if figures.phase:
            dims["phase"] = figures.phase
        if figures.initializationType:
            dims["init_type"] = figures.initializationType
    return dims


def _span_values(spans: Iterable[object] | None) -> list[tuple[str, float | int]]:
    found = []
    for span in spans or ():
        if isinstance(span, dict):
            name = SPAN_METRICS.get(str(span.get("name")))
            value = number(span.get("durationMs"))
            if name is not None and value is not None:
                found.append((name, value))
    return found
