"""Wire vocabulary of the emulated Lambda APIs: paths, headers, error types, JSON and time formats.

Pure helpers shared by the emulator's modules (emulator process only). Facts are from the shared
notes' lambda-protocol.md sections 1, 2 and 4; this module must not import ext core code.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

RUNTIME_PREFIX = "/2018-06-01/runtime"
EXTENSION_PREFIX = "/2020-01-01/extension"
TELEMETRY_PATH = "/2022-07-01/telemetry"
LOGS_PATH = "/2020-08-15/logs"

# Extensions API headers (lambda-protocol 1.1-1.3).
H_EXT_NAME = "lambda-extension-name"
H_EXT_ID = "lambda-extension-identifier"
H_EXT_EVENT_ID = "lambda-extension-event-identifier"
H_EXT_FEATURES = "lambda-extension-accept-feature"
H_EXT_ERROR_TYPE = "lambda-extension-function-error-type"
# Runtime API headers (lambda-protocol 4.1).
H_RT_REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
H_RT_DEADLINE = "Lambda-Runtime-Deadline-Ms"
H_RT_ARN = "Lambda-Runtime-Invoked-Function-Arn"
H_RT_TRACE = "Lambda-Runtime-Trace-Id"
H_RT_ERROR_TYPE = "lambda-runtime-function-error-type"

# Error types rendered by the control APIs (RIE rapi/handler, fatalerror).
E_MISSING_ID = "Extension.MissingExtensionIdentifier"
E_INVALID_ID = "Extension.InvalidExtensionIdentifier"
E_UNKNOWN_ID = "Extension.UnknownExtensionIdentifier"
E_INVALID_EVENT = "Extension.InvalidEventType"
E_TOO_MANY = "Extension.TooManyExtensions"
E_REG_CLOSED = "Extension.RegistrationClosed"
E_BAD_FORMAT = "InvalidRequestFormat"
E_BAD_STATE = "Extension.InvalidExtensionState"
E_MISSING_HEADER = "Extension.MissingHeader"
E_SUB_CLOSED = "Telemetry.SubscriptionClosed"
E_VALIDATION = "ValidationError"
E_BAD_REQUEST_ID = "InvalidRequestID"
E_BAD_TRANSITION = "InvalidStateTransition"
E_NOT_FOUND = "NotFound"
E_LOGS_UNSUPPORTED = "Logs.NotSupported"
# Fatal error types used in platform.* records.
F_EXT_INIT = "Extension.InitError"
F_EXT_EXIT = "Extension.ExitError"
F_EXT_CRASH = "Extension.Crash"
F_RT_EXIT = "Runtime.ExitError"
F_RT_UNKNOWN = "Runtime.Unknown"
F_SANDBOX_TIMEOUT = "Sandbox.Timeout"

MAX_EXTENSIONS = 10
ALLOWED_EVENTS = frozenset({"INVOKE", "SHUTDOWN"})
TELEMETRY_TYPES = frozenset({"platform", "function", "extension"})
SCHEMA_VERSIONS = frozenset({"2022-07-01", "2022-12-13", "2025-01-29"})
# Lambda Managed Instances (RIE internal/lambda-managed-instances; AWS telemetry-api-reference).
LMI_INIT_TYPE = "lambda-managed-instances"
LMI_SCHEMA_VERSIONS = frozenset({"2025-01-29"})
LMI_EXTERNAL_EVENTS = frozenset({"SHUTDOWN"})  # RIE-LMI core.ValidateExternalAgentEvent
# SnapStart (lambda-protocol 2.5, 4.1): RIE registers the restore routes for a snap-start
# ("InitCaching") init only, so any other environment answers them as an unknown path.
SNAP_START_INIT_TYPE = "snap-start"
RESTORE_NEXT_PATH = RUNTIME_PREFIX + "/restore/next"
RESTORE_ERROR_PATH = RUNTIME_PREFIX + "/restore/error"
SANDBOX_HOSTS = frozenset({"sandbox.localdomain", "sandbox"})

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode(obj: Any) -> bytes:
    """JSON-encode `obj` (dicts, lists, strings, numbers) to compact UTF-8 bytes."""
    return _encoder.encode(obj)


def decode(data: bytes) -> Any:
    """Decode JSON bytes; raises msgspec.DecodeError on malformed input."""
    return _decoder.decode(data)


def error_body(error_type: str, message: str) -> bytes:
    """Error body of every control API: JSON object, newline-terminated (RIE render_error.go)."""
    return encode({"errorMessage": message, "errorType": error_type}) + b"\n"


class IsoClock:
    """Formats epoch seconds as ISO-8601 with milliseconds and `Z`, caching the seconds part.

    Telemetry stamps every log line, so strftime per event would dominate the hot path.
    """

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        # One tuple, replaced atomically, so concurrent reader threads never mix two seconds.
        self._cached: tuple[int, str] = (-1, "")

    def format(self, epoch_s: float) -> str:
        """Return e.g. `2026-10-08T07:30:27.768Z` for `epoch_s`."""
        second = int(epoch_s)
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, prefix)
        millis = int((epoch_s - second) * 1000)
        return f"{prefix}.{millis:03d}Z"

    def now(self) -> str:
        """Return the current wall-clock time formatted."""
        return self.format(time.time())


def iso_ms(epoch_s: float) -> str:
    """Format one timestamp (not cached; for rare events)."""
    second = int(epoch_s)
    millis = int((epoch_s - second) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{millis:03d}Z"


def payload_bytes(payload: bytes | dict[str, Any] | list[Any] | str | None) -> bytes:
    """An invoke payload as the bytes the runtime receives (`None` is an empty object)."""
    if payload is None:
        return b"{}"
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return encode(payload)
