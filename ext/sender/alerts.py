"""Alerts: timeouts, out-of-memory, init failures and environment resets, in the sender process.

Read from the platform records Lambda sends anyway (platform.report once per invocation,
platform.initReport once per init), so each cause yields exactly one `aws:lambda:alert` event
with the request id and the figures, plus one `aws.lambda.alerts` counter metric when
SPLUNK_METRICS_INDEX is set. Facts used (lambda-protocol.md 2.5, 2.7, 3.5): a timeout reports
status `timeout`; an out-of-memory kill reports `Runtime.OutOfMemory` (and max memory used at
the memory size); a reset after a runtime crash reports status `error`/`failure` with a fatal
error type.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext import schema

ALERT_SOURCETYPE = "aws:lambda:alert"
TIMEOUT = "timeout"
OUT_OF_MEMORY = "out-of-memory"
INIT_FAILURE = "init-failure"
ENVIRONMENT_RESET = "environment-reset"
OOM_ERROR_TYPE = "Runtime.OutOfMemory"
# Error types after which Lambda resets the environment (RIE fatalerror.go, lambda-protocol 1.5);
# a handler that raised reports its own type and the environment lives on.
RESET_ERROR_TYPES = frozenset({
    "Runtime.ExitError", "Runtime.OutOfMemory", "Extension.Crash", "Extension.ExitError",
    "Extension.InitError", "Sandbox.Failure", "Sandbox.Timeout",
})
_FIGURE_NAMES = {
    "durationMs": "duration_ms", "billedDurationMs": "billed_duration_ms",
    "memorySizeMB": "memory_size_mb", "maxMemoryUsedMB": "max_memory_used_mb",
    "initDurationMs": "init_duration_ms",
}


def classify(kind: str, figures: schema.PlatformFigures) -> str | None:
    """The alert a platform record raises, at most one: OOM before timeout before reset."""
    status = figures.status
    if kind == "platform.initReport":
        return INIT_FAILURE if status not in (None, "success") else None
    if kind != "platform.report":
        return None
    metrics = figures.metrics or {}
    size, used = metrics.get("memorySizeMB"), metrics.get("maxMemoryUsedMB")
    oom_reported = figures.errorType == OOM_ERROR_TYPE and status in ("error", "timeout", "failure")
    if oom_reported or (_is_number(size) and _is_number(used)
                        and used >= size > 0):  # type: ignore[operator]
        return OUT_OF_MEMORY
    if status == "timeout":
        return TIMEOUT
    if status == "failure" or (status == "error" and figures.errorType in RESET_ERROR_TYPES):
        return ENVIRONMENT_RESET
    return None


def alert_body(alert: str, kind: str, figures: schema.PlatformFigures) -> dict[str, object]:
    """The alert event's JSON body: what happened, to which request, with the figures."""
    body: dict[str, object] = {"alert": alert, "source_type": kind}
    if figures.requestId:
        body["request_id"] = figures.requestId
    if figures.status:
        body["status"] = figures.status
    if figures.errorType:
        body["error_type"] = figures.errorType
    if figures.phase:
        body["phase"] = figures.phase
    for field, value in (figures.metrics or {}).items():
        if _is_number(value):
            body[_FIGURE_NAMES.get(field, field)] = value
    body["message"] = _message(alert, body)
    return body


def _message(alert: str, body: dict[str, object]) -> str:
    request = body.get("request_id", "?")
    if alert == OUT_OF_MEMORY:
        return (f"invocation {request} ran out of memory: {body.get('max_memory_used_mb', '?')} "
                f"of {body.get('memory_size_mb', '?')} MB")
    if alert == TIMEOUT:
        return f"invocation {request} timed out after {body.get('duration_ms', '?')} ms"
    if alert == INIT_FAILURE:
        return (f"init ({body.get('phase', '?')}) failed with status {body.get('status')}: "
                f"{body.get('error_type', 'no error type')}")
    return f"invocation {request} ended with {body.get('error_type')}: the environment is reset"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
