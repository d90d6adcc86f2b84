"""Builders of platform.* telemetry records, schema 2022-12-13 (lambda-protocol 2.5, 2.7); pure.

Also the Extensions API event bodies (INVOKE, SHUTDOWN) and log-record shaping for function and
extension output (text vs JSON log format, framed records).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from ext.local.sandbox import wire

INIT_TYPE = "on-demand"
# awslambdaric frame types whose message is JSON (lambda-protocol 2.6).
JSON_FRAME_TYPES = frozenset(
    {0xA55A0002, 0xA55A000A, 0xA55A000E, 0xA55A0012, 0xA55A0016, 0xA55A001A}
)


@dataclass(frozen=True, slots=True)
class FunctionIdentity:
    """Names every platform record repeats."""

    function_name: str
    function_version: str
    arn: str
    instance_id: str
    memory_mb: int
    runtime_version: str


def trace_context(trace_value: str, span_id: str) -> dict[str, str]:
    """TraceContext object of platform.start/runtimeDone."""
    return {"spanId": span_id, "type": "X-Amzn-Trace-Id", "value": trace_value}


def new_trace(epoch_s: float) -> tuple[str, str]:
    """(X-Amzn-Trace-Id header value, span id) for one invocation."""
    root = f"1-{int(epoch_s):08x}-{uuid.uuid4().hex[:24]}"
    span = uuid.uuid4().hex[:16]
    return f"Root={root};Parent={span};Sampled=0", span


def _environment(ident: FunctionIdentity) -> dict[str, Any]:
    """The fields naming runtime, function and environment that initStart and restoreStart share."""
    return {
        "runtimeVersion": ident.runtime_version,
        "runtimeVersionArn": f"arn:aws:lambda:local::runtime:{ident.runtime_version}",
        "functionName": ident.function_name,
        "functionVersion": ident.function_version,
        "instanceId": ident.instance_id,
        "instanceMaxMemory": ident.memory_mb * 1024 * 1024,
    }


def init_start(ident: FunctionIdentity, phase: str, init_type: str = INIT_TYPE) -> dict[str, Any]:
    """platform.initStart record."""
    return {"initializationType": init_type, "phase": phase, **_environment(ident)}


def init_runtime_done(
    phase: str, status: str, error_type: str | None, init_type: str = INIT_TYPE
) -> dict[str, Any]:
    """platform.initRuntimeDone record."""
    record: dict[str, Any] = {"initializationType": init_type, "phase": phase, "status": status}
    if error_type:
        record["errorType"] = error_type
    return record


def init_report(
    phase: str,
    status: str,
    duration_ms: float,
    error_type: str | None,
    init_type: str = INIT_TYPE,
) -> dict[str, Any]:
    """platform.initReport record."""
    record = init_runtime_done(phase, status, error_type, init_type)
    record["metrics"] = {"durationMs": round(duration_ms, 3)}
    return record


def restore_start(ident: FunctionIdentity) -> dict[str, Any]:
    """platform.restoreStart record (SnapStart): names the restored environment, not the init's."""
    return _environment(ident)


def restore_runtime_done(status: str, error_type: str | None) -> dict[str, Any]:
    """platform.restoreRuntimeDone record: the runtime's after-restore hooks ended."""
    record: dict[str, Any] = {"status": status}
    if error_type:
        record["errorType"] = error_type
    return record


def restore_report(status: str, duration_ms: float, error_type: str | None) -> dict[str, Any]:
    """platform.restoreReport record."""
    record = restore_runtime_done(status, error_type)
    record["metrics"] = {"durationMs": round(duration_ms, 3)}
    return record


def extension(name: str, events: list[str], error_type: str | None) -> dict[str, Any]:
    """platform.extension record (one per registered extension at the end of init)."""
    record: dict[str, Any] = {"name": name, "state": "Ready", "events": events}
    if error_type:
        record["errorType"] = error_type
    return record


def start(request_id: str, ident: FunctionIdentity, trace: dict[str, str]) -> dict[str, Any]:
    """platform.start record."""
    return {
        "requestId": request_id,
        "functionArn": ident.arn,
        "version": ident.function_version,
        "tracing": trace,
    }


def runtime_done(
    request_id: str,
    *,
    status: str,
    error_type: str | None,
    duration_ms: float,
    produced_bytes: int,
    spans: list[dict[str, Any]],
    trace: dict[str, str],
) -> dict[str, Any]:
    """platform.runtimeDone record."""
    record: dict[str, Any] = {"requestId": request_id, "status": status}
    if error_type:
        record["errorType"] = error_type
    record["metrics"] = {"durationMs": round(duration_ms, 3), "producedBytes": produced_bytes}
    record["spans"] = spans
    record["tracing"] = trace
    return record


def span(name: str, start_epoch_s: float, duration_ms: float) -> dict[str, Any]:
    """Span object."""
    return {"name": name, "start": wire.iso_ms(start_epoch_s), "durationMs": round(duration_ms, 3)}


def report(
    request_id: str,
    *,
    status: str,
    error_type: str | None,
    duration_ms: float,
    memory_mb: int,
    max_memory_used_mb: int,
    init_duration_ms: float | None,
    spans: list[dict[str, Any]],
    trace: dict[str, str],
    restore_duration_ms: float | None = None,
) -> dict[str, Any]:
    """platform.report record; billing includes init on cold starts (billing change of 2025-08).

    A SnapStart restore is not added to billedDurationMs: Lambda bills it apart (REPORT's
    "Billed Restore Duration"), and the Telemetry API's report has no field for that.
    """
    billed = math.ceil(duration_ms + (init_duration_ms or 0.0))
    metrics: dict[str, Any] = {
        "durationMs": round(duration_ms, 3),
        "billedDurationMs": billed,
        "memorySizeMB": memory_mb,
        "maxMemoryUsedMB": max_memory_used_mb,
    }
    if init_duration_ms is not None:
        metrics["initDurationMs"] = round(init_duration_ms, 3)
    if restore_duration_ms is not None:
        metrics["restoreDurationMs"] = round(restore_duration_ms, 3)
    record: dict[str, Any] = {"requestId": request_id, "status": status, "metrics": metrics}
    if error_type:
        record["errorType"] = error_type
    record["spans"] = spans
    record["tracing"] = trace
    return record


def invoke_event(request_id: str, deadline_ms: int, arn: str, trace_value: str) -> bytes:
    """Body of an INVOKE event for /extension/event/next."""
    return wire.encode(
        {
            "eventType": "INVOKE",
            "deadlineMs": deadline_ms,
            "requestId": request_id,
            "invokedFunctionArn": arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": trace_value},
        }
    )


def shutdown_event(reason: str, deadline_ms: int) -> bytes:
    """Body of a SHUTDOWN event; reasons are lower-case on the wire (lambda-protocol 1.2)."""
    return wire.encode(
        {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}
    )


def log_record(line: bytes, json_format: bool) -> Any:
    """One stdout/stderr line as a record: a string, or an object for a JSON line in JSON mode."""
    if json_format and line[:1] == b"{":
        try:
            obj = wire.decode(line)
        except msgspec.DecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
    return line.decode("utf-8", "replace")


def frame_record(frame_type: int, message: bytes) -> Any:
    """A framed awslambdaric record: JSON frames become objects, text frames stay strings."""
    if frame_type in JSON_FRAME_TYPES:
        try:
            obj = wire.decode(message)
        except msgspec.DecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
    return message.decode("utf-8", "replace")
