"""SnapStart mode of the emulator, the parts without processes: the configuration, the restore
records, and the Runtime API's restore routes (RIE rapi/router.go, handler/restorenext.go and
restoreerror.go; lambda-protocol 2.5, 4.1)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from ext.local.sandbox import InvokeResult, SandboxConfig
from ext.local.sandbox import platform_records as records
from ext.local.sandbox.control_plane import ControlPlane
from ext.local.sandbox.exchanges import ExchangeLog
from ext.local.sandbox.httpd import Request, Response
from ext.local.sandbox.telemetry import TelemetryBus
from ext.local.sandbox.waiting import failure_locked

RESTORE_NEXT = "/2018-06-01/runtime/restore/next"
RESTORE_ERROR = "/2018-06-01/runtime/restore/error"
NEXT = "/2018-06-01/runtime/invocation/next"
ERROR_TYPE = "lambda-runtime-function-error-type"
WAIT_S = 5.0
IDENT = records.FunctionIdentity("f", "$LATEST", "arn", "restored-id", 128, "python:emulated")


def config(*, snap_start: bool = False, managed_instances: bool = False) -> SandboxConfig:
    return SandboxConfig(
        function_dir=Path("."),
        handler="h.h",
        limits=False,
        snap_start=snap_start,
        managed_instances=managed_instances,
    )


def control_plane(snap_start: bool) -> ControlPlane:
    return ControlPlane(config(snap_start=snap_start), TelemetryBus(), ExchangeLog())


class NoFleet:
    """failure_locked's view of the processes: none died."""

    def dead(self) -> None:
        return None


class HeldCall:
    """A Runtime API call on a thread of its own, as the API server makes it."""

    def __init__(self, cp: ControlPlane, req: Request) -> None:
        self.response: Response | None = None
        self._thread = threading.Thread(target=self._run, args=(cp, req), daemon=True)
        self._thread.start()

    def _run(self, cp: ControlPlane, req: Request) -> None:
        self.response = cp.handle(req)

    def join(self) -> Response:
        self._thread.join(WAIT_S)
        assert self.response is not None, "the call never returned"
        return self.response


def hold_restore_next(cp: ControlPlane) -> HeldCall:
    """The runtime's restore/next, once the control plane has it (init is done)."""
    call = HeldCall(cp, Request("GET", RESTORE_NEXT, {}, b""))
    with cp.cv:
        assert cp.cv.wait_for(lambda: cp.restore_next_t is not None, WAIT_S)
    return call


def restore_error(cp: ControlPlane, error_type: str | None) -> Response:
    headers = {} if error_type is None else {ERROR_TYPE: error_type}
    body = json.dumps({"errorMessage": "boom", "errorType": "RuntimeError"}).encode()
    return cp.handle(Request("POST", RESTORE_ERROR, headers, body))


# -- configuration --------------------------------------------------------------------------------


def test_snap_start_names_its_initialization_type() -> None:
    assert config(snap_start=True).initialization_type == "snap-start"
    assert config().initialization_type == "on-demand"
    assert config(managed_instances=True).initialization_type == "lambda-managed-instances"


def test_snap_start_and_managed_instances_are_mutually_exclusive() -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        config(snap_start=True, managed_instances=True)


# -- records --------------------------------------------------------------------------------------


def test_restore_start_names_the_restored_environment() -> None:
    assert records.restore_start(IDENT) == {
        "runtimeVersion": "python:emulated",
        "runtimeVersionArn": "arn:aws:lambda:local::runtime:python:emulated",
        "functionName": "f",
        "functionVersion": "$LATEST",
        "instanceId": "restored-id",
        "instanceMaxMemory": 128 * 1024 * 1024,
    }
    # initStart carries the same fields plus initializationType and phase.
    start = records.init_start(IDENT, "init", "snap-start")
    shared = records.restore_start(IDENT)
    assert start == {"initializationType": "snap-start", "phase": "init", **shared}


def test_restore_runtime_done_and_report() -> None:
    assert records.restore_runtime_done("success", None) == {"status": "success"}
    failed = records.restore_runtime_done("error", "Runtime.AfterRestoreError")
    assert failed == {"status": "error", "errorType": "Runtime.AfterRestoreError"}
    assert records.restore_report("success", 12.34567, None) == {
        "status": "success",
        "metrics": {"durationMs": 12.346},
    }
    report = records.restore_report("timeout", 10.0, "Sandbox.Timeout")
    assert report == {
        "status": "timeout",
        "errorType": "Sandbox.Timeout",
        "metrics": {"durationMs": 10.0},
    }


def report_metrics(restore_duration_ms: float | None) -> dict[str, Any]:
    trace = records.trace_context("Root=1-0-0", "span")
    report = records.report(
        "r", status="success", error_type=None, duration_ms=2.2, memory_mb=128,
        max_memory_used_mb=40, init_duration_ms=None, spans=[], trace=trace,
        restore_duration_ms=restore_duration_ms,
    )
    metrics: dict[str, Any] = report["metrics"]
    return metrics


def test_report_after_a_restore_has_restore_duration_and_no_init_duration() -> None:
    metrics = report_metrics(300.5)
    assert metrics["restoreDurationMs"] == 300.5 and "initDurationMs" not in metrics
    assert metrics["billedDurationMs"] == 3  # the restore is billed apart, not in this figure
    plain = report_metrics(None)
    assert "restoreDurationMs" not in plain and "initDurationMs" not in plain


def test_invoke_result_of_a_failed_restore() -> None:
    restore = {"status": "error", "error_type": "Runtime.AfterRestoreError", "duration_ms": 4.5}
    result = InvokeResult.from_failed_restore(restore)
    assert (result.status, result.error_type, result.reset_reason) == (
        "failure", "Runtime.AfterRestoreError", "failure"
    )
    assert (result.restore_duration_ms, result.init_duration_ms) == (4.5, None)
    timed_out = InvokeResult.from_failed_restore(restore | {"status": "timeout"})
    assert timed_out.status == "timeout"
    init = InvokeResult.from_failed_init(restore)
    assert (init.init_duration_ms, init.restore_duration_ms) == (4.5, None)


# -- Runtime API ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", RESTORE_NEXT), ("POST", RESTORE_ERROR)])
def test_restore_routes_do_not_exist_without_snap_start(method: str, path: str) -> None:
    # RIE registers them for a snap-start ("InitCaching") init only: an unknown path elsewhere.
    resp = control_plane(False).handle(Request(method, path, {}, b""))
    assert resp.status == 404
    assert json.loads(resp.body)["errorType"] == "NotFound"


def test_restore_next_is_held_until_the_restore() -> None:
    cp = control_plane(True)
    call = hold_restore_next(cp)
    with cp.cv:
        assert call.response is None  # held: the snapshot is not restored
        assert cp.runtime_ready_t == cp.restore_next_t  # but the runtime's init is done
        cp.release_restore()
    resp = call.join()
    assert (resp.status, resp.body, resp.content_type) == (200, b"", "")


def test_restore_next_answers_once() -> None:
    cp = control_plane(True)
    call = hold_restore_next(cp)
    with cp.cv:
        cp.release_restore()
    assert call.join().status == 200
    again = cp.handle(Request("GET", RESTORE_NEXT, {}, b""))
    assert (again.status, json.loads(again.body)["errorType"]) == (403, "InvalidStateTransition")


def test_a_reset_ends_a_held_restore_next() -> None:
    cp = control_plane(True)
    call = hold_restore_next(cp)
    with cp.cv:
        cp.retire_all()
    assert call.join().status == 500
    assert cp.restore_next_t is None and not cp.restore_released


def test_restore_error_before_the_restore_is_refused() -> None:
    cp = control_plane(True)
    resp = restore_error(cp, "Runtime.AfterRestoreError")
    assert (resp.status, json.loads(resp.body)["errorType"]) == (403, "InvalidStateTransition")
    assert cp.runtime_restore_error is None


@pytest.mark.parametrize(
    ("header", "recorded"),
    [("Runtime.AfterRestoreError", "Runtime.AfterRestoreError"), ("Oops", "Runtime.Unknown"),
     (None, "Runtime.Unknown")],
)
def test_restore_error_after_the_restore_fails_it(header: str | None, recorded: str) -> None:
    cp = control_plane(True)
    call = hold_restore_next(cp)
    with cp.cv:
        cp.release_restore()
    call.join()
    resp = restore_error(cp, header)
    assert (resp.status, json.loads(resp.body)) == (202, {"status": "OK"})
    assert cp.runtime_restore_error is not None and cp.runtime_restore_error[0] == recorded
    with cp.cv:
        assert failure_locked(cp, NoFleet()) == ("error", recorded)  # type: ignore[arg-type]
    assert restore_error(cp, header).status == 403  # once: the restore has failed already


def test_runtime_without_restore_next_is_ready_at_invocation_next() -> None:
    # A runtime that skips restore/next (not awslambdaric) ends its init with invocation/next.
    cp = control_plane(True)
    call = HeldCall(cp, Request("GET", NEXT, {}, b""))
    with cp.cv:
        assert cp.cv.wait_for(lambda: cp.runtime_ready_t is not None, WAIT_S)
        assert cp.runtime_ready_t == cp.runtime_first_next_t
    late = cp.handle(Request("GET", RESTORE_NEXT, {}, b""))
    assert (late.status, json.loads(late.body)["errorType"]) == (403, "InvalidStateTransition")
    with cp.cv:
        cp.retire_all()
    assert call.join().status == 500
