"""Server side of the Runtime, Extensions and Telemetry APIs: request handling and shared state.

Runs on the API server's connection threads in the emulator process. All state lives under one
Condition (`cv`); the orchestrator (sandbox.py) waits on the same Condition for lifecycle steps.
Status codes and error types follow lambda-protocol 1.1-1.4, 2.1 and 4.1.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ext.local.sandbox import wire
from ext.local.sandbox.exchanges import ExchangeLog
from ext.local.sandbox.httpd import Request, Response
from ext.local.sandbox.model import SandboxConfig
from ext.local.sandbox.subscription import SubscriptionError, parse_subscription
from ext.local.sandbox.telemetry import TelemetryBus

MAX_RESPONSE_BYTES = 6 * 1024 * 1024
_ERROR_TYPE_RE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
_RESULT_RE = re.compile(r"^/2018-06-01/runtime/invocation/([^/]+)/(response|error)$")


@dataclass(eq=False)
class ExtensionState:
    """One registration (a new one after every reset)."""

    ext_id: str
    name: str
    external: bool
    events: list[str]
    register_t: float
    first_next_t: float | None = None
    last_next_t: float | None = None
    waiting: bool = False
    pending: bytes | None = None
    finished: bool = False  # called init/error or exit/error: no further calls succeed
    error_type: str | None = None
    error_detail: Any = None
    retired: bool = False

    @property
    def idle(self) -> bool:
        """Blocked in next with nothing to hand out: done with its current event."""
        return self.waiting and self.pending is None

    def timings(self, process_start_t: float | None) -> dict[str, Any]:
        """Its inspect() record: ms from process start to register and to its first next."""
        base = self.register_t if process_start_t is None else process_start_t
        return {
            "external": self.external,
            "events": self.events,
            "register_ms": round((self.register_t - base) * 1000, 3),
            "first_next_ms": None
            if self.first_next_t is None
            else round((self.first_next_t - base) * 1000, 3),
        }


@dataclass(eq=False)
class Invocation:
    """One invoke as seen by the Runtime API."""

    request_id: str
    payload: bytes
    deadline_ms: int
    trace_value: str
    span_id: str
    start_t: float
    handed_t: float | None = None
    handed_epoch: float = 0.0
    response_t: float | None = None
    response_epoch: float = 0.0
    response: bytes = b""
    result_status: str | None = None  # "success" | "error" once the runtime posted
    error: dict[str, Any] | None = None
    error_type: str | None = None
    runtime_next_t: float | None = None


def _error(status: int, error_type: str, message: str) -> Response:
    return Response(status, wire.error_body(error_type, message))


ACCEPTED = Response(202, b'{"status":"OK"}\n')
INTERNAL = Response(500, wire.error_body("InternalServerError", "Internal Server Error"))


class ControlPlane:
    """Endpoint handlers plus the state they share with the orchestrator."""

    def __init__(self, cfg: SandboxConfig, bus: TelemetryBus, log: ExchangeLog) -> None:
        self.cfg = cfg
        self.bus = bus
        self.log = log
        self.cv = threading.Condition()
        self.generation = 0
        self.closing = False
        self.launched: set[str] = set()
        self.extensions: dict[str, ExtensionState] = {}
        self.registration_open = False
        self.subscription_open = False
        self.runtime_first_next_t: float | None = None
        self.runtime_waiting = False
        self.runtime_pending: Invocation | None = None
        self.runtime_init_error: tuple[str, Any] | None = None
        # SnapStart: the runtime's restore/next (it is ready for the snapshot), the sandbox's
        # restore (restore/next answers), and a restore/error from the after-restore hooks.
        self.restore_next_t: float | None = None
        self.restore_released = False
        self.runtime_restore_error: tuple[str, Any] | None = None
        self.invocation: Invocation | None = None
        self.on_runtime_done: Callable[[Invocation], None] = lambda inv: None

    # -- lifecycle helpers used by the orchestrator (caller holds cv) --------------------------

    def retire_all(self) -> None:
        """Forget registrations and the runtime; wake every blocked API call (reset/shutdown)."""
        self.generation += 1
        for ext in self.extensions.values():
            ext.retired = True
        self.extensions = {}
        self.launched = set()
        self.runtime_first_next_t = None
        self.runtime_waiting = False
        self.runtime_pending = None
        self.runtime_init_error = None
        self.restore_next_t = None
        self.restore_released = False
        self.runtime_restore_error = None
        self.invocation = None
        self.registration_open = False
        self.subscription_open = False
        self.cv.notify_all()

    @property
    def runtime_ready_t(self) -> float | None:
        """When the runtime finished its init: its first invocation/next, or its restore/next."""
        return self.runtime_first_next_t if self.restore_next_t is None else self.restore_next_t

    def release_restore(self) -> None:
        """SnapStart: the snapshot is restored, so restore/next answers (caller holds cv)."""
        self.restore_released = True
        self.cv.notify_all()

    def by_name(self, name: str) -> ExtensionState | None:
        """The live registration called `name`."""
        for ext in self.extensions.values():
            if ext.name == name:
                return ext
        return None

    # -- HTTP entry ------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        """Route one request; every exchange is logged."""
        started = time.monotonic()
        who = "runtime" if req.path.startswith(wire.RUNTIME_PREFIX) else "?"
        ext_id = req.headers.get(wire.H_EXT_ID)
        if ext_id:
            ext = self.extensions.get(ext_id)
            who = ext.name if ext is not None else f"?{ext_id}"
        elif req.path.endswith("/register"):
            who = req.headers.get(wire.H_EXT_NAME, "?")
        resp = self._route(req)
        self.log.record(
            who=who,
            method=req.method,
            path=req.path,
            status=resp.status,
            request=req.body,
            response=resp.body,
            started=started,
        )
        return resp

    def _route(self, req: Request) -> Response:
        key = (req.method, req.path)
        if key == ("GET", wire.RUNTIME_PREFIX + "/invocation/next"):
            return self.runtime_next()
        match = _RESULT_RE.match(req.path)
        if match and req.method == "POST":
            return self.runtime_result(req, match.group(1), match.group(2))
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("POST", wire.RUNTIME_PREFIX + "/init/error"): self.runtime_init_failed,
            ("POST", wire.EXTENSION_PREFIX + "/register"): self.register,
            ("GET", wire.EXTENSION_PREFIX + "/event/next"): self.extension_next,
            ("POST", wire.EXTENSION_PREFIX + "/init/error"): self.extension_init_error,
            ("POST", wire.EXTENSION_PREFIX + "/exit/error"): self.extension_exit_error,
            ("PUT", wire.TELEMETRY_PATH): self.subscribe,
            ("PUT", wire.LOGS_PATH): _logs_not_supported,
        }
        if self.cfg.snap_start:
            # Only then, as in RIE: elsewhere they are unknown paths (404 below).
            routes[("GET", wire.RESTORE_NEXT_PATH)] = self.restore_next
            routes[("POST", wire.RESTORE_ERROR_PATH)] = self.restore_error
        handler = routes.get(key)
        if handler is None:
            return _error(404, wire.E_NOT_FOUND, f"no route for {req.method} {req.path}")
        return handler(req)

    # -- Runtime API -----------------------------------------------------------------------------

    def runtime_next(self) -> Response:
        """GET invocation/next: ends the current invoke for the runtime, blocks for the next one."""
        with self.cv:
            gen = self.generation
            now = time.monotonic()
            inv = self.invocation
            if inv is not None and inv.result_status is not None and inv.runtime_next_t is None:
                inv.runtime_next_t = now
                # Emitted here, inside cv, so it always precedes the orchestrator's platform.report.
                self.on_runtime_done(inv)
            if self.runtime_first_next_t is None:
                self.runtime_first_next_t = now
            self.runtime_waiting = True
            self.cv.notify_all()
            while self.runtime_pending is None and gen == self.generation and not self.closing:
                self.cv.wait()
            if gen != self.generation or self.closing or self.runtime_pending is None:
                return INTERNAL
            inv = self.runtime_pending
            self.runtime_pending = None
            self.runtime_waiting = False
            inv.handed_t = time.monotonic()
            inv.handed_epoch = time.time()
        headers = [
            (wire.H_RT_REQUEST_ID, inv.request_id),
            (wire.H_RT_DEADLINE, str(inv.deadline_ms)),
            (wire.H_RT_ARN, self.cfg.arn),
            (wire.H_RT_TRACE, inv.trace_value),
        ]
        return Response(200, inv.payload, headers)

    def runtime_result(self, req: Request, request_id: str, kind: str) -> Response:
        """POST invocation/{id}/response|error."""
        if kind == "response" and len(req.body) > MAX_RESPONSE_BYTES:
            return _error(413, "RequestEntityTooLarge", "response payload too large")
        with self.cv:
            inv = self.invocation
            if inv is None or inv.request_id != request_id or inv.handed_t is None:
                return _error(400, wire.E_BAD_REQUEST_ID, f"Invalid request ID: {request_id}")
            if inv.result_status is not None:
                return _error(403, wire.E_BAD_TRANSITION, "response already posted")
            inv.response_t = time.monotonic()
            inv.response_epoch = time.time()
            inv.response = req.body
            if kind == "response":
                inv.result_status = "success"
            else:
                inv.result_status = "error"
                inv.error = _decode_object(req.body)
                inv.error_type = _error_type(req)
            self.cv.notify_all()
        return ACCEPTED

    def runtime_init_failed(self, req: Request) -> Response:
        """POST runtime/init/error."""
        with self.cv:
            error_type = req.headers.get(wire.H_RT_ERROR_TYPE) or wire.F_RT_UNKNOWN
            self.runtime_init_error = (error_type, _decode_object(req.body))
            self.cv.notify_all()
        return ACCEPTED

    def restore_next(self, _req: Request) -> Response:
        """GET restore/next (SnapStart): init is done; held while the snapshot is, 200 after."""
        with self.cv:
            if self.restore_next_t is not None or self.runtime_first_next_t is not None:
                # RIE: RestoreReady is valid once, from the state before the first next.
                msg = "State transition to RestoreReady failed for runtime"
                return _error(403, wire.E_BAD_TRANSITION, msg)
            gen = self.generation
            self.restore_next_t = time.monotonic()
            self.cv.notify_all()
            while not self.restore_released and gen == self.generation and not self.closing:
                self.cv.wait()
            if gen != self.generation or self.closing:
                return INTERNAL
        return Response(200, b"", content_type="")

    def restore_error(self, req: Request) -> Response:
        """POST restore/error (SnapStart): the after-restore hooks failed; the restore fails."""
        with self.cv:
            restoring = self.restore_released and self.restore_next_t is not None
            done = self.runtime_first_next_t is not None or self.runtime_restore_error is not None
            if not restoring or done:
                msg = "State transition to RestoreError failed for runtime"
                return _error(403, wire.E_BAD_TRANSITION, msg)
            self.runtime_restore_error = (_error_type(req), _decode_object(req.body))
            self.cv.notify_all()
        return ACCEPTED

    # -- Extensions API --------------------------------------------------------------------------

    def register(self, req: Request) -> Response:  # noqa: PLR0911 - one return per 403, RIE's order
        """POST extension/register."""
        name = req.headers.get(wire.H_EXT_NAME, "")
        body = _decode_object(req.body) if req.body else {}
        refused = _register_refusal(name, body)
        if refused is not None or body is None:
            return refused or INTERNAL
        events = list(body.get("events") or [])
        with self.cv:
            if self.cfg.managed_instances:
                refused = _lmi_register_refusal(name in self.launched, events)
                if refused is not None:
                    return refused
            if not self.registration_open:
                return _error(403, wire.E_REG_CLOSED, "Extension registration closed already")
            external = name in self.launched
            if not external and "SHUTDOWN" in events:
                # A name unlike its file name registers an internal extension (RIE internalagent).
                msg = f"internal extension {name} cannot register for SHUTDOWN"
                return _error(403, wire.E_INVALID_EVENT, msg)
            if self.by_name(name) is not None:
                msg = f"State transition from Registered to Registered failed for extension {name}"
                return _error(403, wire.E_BAD_STATE, msg)
            if len(self.extensions) >= wire.MAX_EXTENSIONS:
                msg = f"Extension limit ({wire.MAX_EXTENSIONS}) reached"
                return _error(403, wire.E_TOO_MANY, msg)
            ext = ExtensionState(str(uuid.uuid4()), name, external, list(events), time.monotonic())
            self.extensions[ext.ext_id] = ext
            self.cv.notify_all()
        reply: dict[str, str] = {
            "functionName": self.cfg.function_name,
            "functionVersion": "$LATEST",
            "handler": self.cfg.handler,
        }
        if "accountId" in req.headers.get(wire.H_EXT_FEATURES, ""):
            reply["accountId"] = self.cfg.account_id
        return Response(200, wire.encode(reply), [("Lambda-Extension-Identifier", ext.ext_id)])

    def _identify(self, req: Request) -> ExtensionState | Response:
        raw = req.headers.get(wire.H_EXT_ID)
        if not raw:
            return _error(403, wire.E_MISSING_ID, "Missing Lambda-Extension-Identifier header")
        try:
            uuid.UUID(raw)
        except ValueError:
            return _error(403, wire.E_INVALID_ID, f"Invalid Lambda-Extension-Identifier {raw}")
        ext = self.extensions.get(raw)
        if ext is None:
            return _error(403, wire.E_UNKNOWN_ID, f"Unknown extension {raw}")
        return ext

    def extension_next(self, req: Request) -> Response:
        """GET extension/event/next: done with the current event, block for the next one."""
        ext = self._identify(req)
        if isinstance(ext, Response):
            return ext
        with self.cv:
            if ext.finished:
                return _error(403, wire.E_BAD_STATE, f"extension {ext.name} reported an error")
            ext.last_next_t = time.monotonic()
            if ext.first_next_t is None:
                ext.first_next_t = ext.last_next_t
            ext.waiting = True
            self.cv.notify_all()
            while ext.pending is None and not ext.retired and not self.closing:
                self.cv.wait()
            body = ext.pending
            ext.pending = None
            ext.waiting = False
            if body is None:
                return INTERNAL
        headers = [
            ("Lambda-Extension-Event-Identifier", str(uuid.uuid4())),
            ("Lambda-Extension-Identifier", ext.ext_id),
        ]
        return Response(200, body, headers)

    def extension_init_error(self, req: Request) -> Response:
        """POST extension/init/error: the whole init fails (Extension.InitError)."""
        return self.extension_error(req, wire.F_EXT_INIT)

    def extension_exit_error(self, req: Request) -> Response:
        """POST extension/exit/error: recorded as Extension.ExitError, the sandbox resets."""
        return self.extension_error(req, wire.F_EXT_EXIT)

    def extension_error(self, req: Request, fatal_type: str) -> Response:
        """POST extension/init/error or extension/exit/error."""
        ext = self._identify(req)
        if isinstance(ext, Response):
            return ext
        reported = req.headers.get(wire.H_EXT_ERROR_TYPE)
        if not reported:
            msg = "Lambda-Extension-Function-Error-Type not found"
            return _error(403, wire.E_MISSING_HEADER, msg)
        with self.cv:
            if ext.finished:
                return _error(403, wire.E_BAD_STATE, f"extension {ext.name} reported an error")
            ext.finished = True
            ext.error_type = fatal_type
            ext.error_detail = {"reported": reported, "body": _decode_object(req.body)}
            self.cv.notify_all()
        return ACCEPTED

    # -- Telemetry API ---------------------------------------------------------------------------

    def subscribe(self, req: Request) -> Response:
        """PUT /2022-07-01/telemetry."""
        ext = self._identify(req)
        if isinstance(ext, Response):
            return ext
        with self.cv:
            if not self.subscription_open:
                return _error(403, wire.E_SUB_CLOSED, "Telemetry API subscription is closed")
        versions = wire.LMI_SCHEMA_VERSIONS if self.cfg.managed_instances else wire.SCHEMA_VERSIONS
        try:
            sub = parse_subscription(req.body, versions)
        except SubscriptionError as err:
            return _error(400, wire.E_VALIDATION, str(err))
        self.bus.subscribe(ext.name, sub)
        return Response(200, b'"OK"')


def _logs_not_supported(_req: Request) -> Response:
    # The Logs API is superseded; answer like RIE's stub so callers fall back (lambda-protocol 2.1).
    return Response(202, wire.error_body(wire.E_LOGS_UNSUPPORTED, "Logs API is not supported"))


def _register_refusal(name: str, body: dict[str, Any] | None) -> Response | None:
    """The 403 for a malformed register request, or None (lambda-protocol 1.1)."""
    if not name:
        return _error(403, wire.E_BAD_FORMAT, "Empty extension name")
    if body is None:
        return _error(403, wire.E_BAD_FORMAT, "register body is not a JSON object")
    if "configurationKeys" in body:
        msg = "configurationKeys are deprecated; use environment variables instead"
        return _error(403, wire.E_BAD_FORMAT, msg)
    events = body.get("events") or []
    if not isinstance(events, list) or any(e not in wire.ALLOWED_EVENTS for e in events):
        return _error(403, wire.E_INVALID_EVENT, f"invalid event types {events!r}")
    return None


def _lmi_register_refusal(external: bool, events: list[str]) -> Response | None:
    """The 403 Lambda Managed Instances give a register for events they do not deliver, or None.

    RIE-LMI: an external extension may subscribe to SHUTDOWN only (there is no INVOKE event, the
    environment is never frozen), an internal one to nothing; checked before whether registration
    is still open, in RIE-LMI's order.
    """
    if external:
        refused = [e for e in events if e not in wire.LMI_EXTERNAL_EVENTS]
        if refused:
            msg = f"{refused[0]}: only SHUTDOWN may be registered on Lambda Managed Instances"
            return _error(403, wire.E_INVALID_EVENT, msg)
    elif events:
        return _error(403, wire.E_INVALID_EVENT, "No events allowed for internal extensions")
    return None


def _error_type(req: Request) -> str:
    """The runtime's Lambda-Runtime-Function-Error-Type header, as RIE records it."""
    header = req.headers.get(wire.H_RT_ERROR_TYPE, "")
    # RIE normalises error types outside Runtime.*/Function.* to Runtime.Unknown.
    return header if _ERROR_TYPE_RE.fullmatch(header) else wire.F_RT_UNKNOWN


def _decode_object(body: bytes) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        obj = wire.decode(body)
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) else None
