"""SnapStart mode end to end: real awslambdaric (its restore/next and after-restore hooks), the
sample function, the third-party extension: init, the snapshot (frozen), restore, invokes."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from ext.local.sandbox import InvokeResult, Sandbox, SandboxConfig
from tests.integration.sandbox_helpers import (
    environ,
    process_state,
    read_notes,
    received_events,
    tp_config,
)

pytestmark = pytest.mark.integration

SNAP = "snap-start"
RESTORE_NEXT = "/2018-06-01/runtime/restore/next"
RESTORE_ERROR = "/2018-06-01/runtime/restore/error"
INIT_RECORDS = ["platform.initStart", "platform.initRuntimeDone", "platform.extension",
                "platform.initReport"]
RESTORE_RECORDS = ["platform.restoreStart", "platform.restoreRuntimeDone",
                   "platform.restoreReport"]


@dataclass
class Run:
    """What one SnapStart sandbox run left behind, for the tests below to read."""

    states_at_snapshot: dict[str, str]  # process -> /proc state letter
    env: dict[str, dict[str, str]]  # "runtime" / "extension": their environment
    snapshot: dict[str, Any]  # inspect() while the snapshot stands
    exchanges_at_snapshot: list[dict[str, Any]]
    notes_at_snapshot: list[dict[str, Any]]
    restore: dict[str, Any]
    second_restore: str  # what a second restore() raised
    results: list[InvokeResult]
    platform: list[tuple[str, dict[str, Any]]]  # what the emulator emitted, in order
    exchanges: list[dict[str, Any]]
    notes: list[dict[str, Any]]




def snap_config(tmp_path: Path, after_restore: str) -> tuple[SandboxConfig, Path]:
    """The sample function (its after-restore hook `after_restore`) and tp-ext, SnapStart."""
    cfg, out = tp_config(tmp_path, snap_start=True)
    return replace(cfg, env={**cfg.env, "SAMPLE_AFTER_RESTORE": after_restore}), out


def paths(exchanges: list[dict[str, Any]]) -> list[str]:
    return [e["path"] for e in exchanges]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp_path = tmp_path_factory.mktemp("snap")
    cfg, out = snap_config(tmp_path, "log")
    platform: list[tuple[str, dict[str, Any]]] = []
    with Sandbox(cfg) as sb:
        sb.on_platform_event(lambda kind, record: platform.append((kind, record)))
        # Nothing reaches the listener before the snapshot: what init emitted is left
        # undelivered at it, for the restore to hand on.
        sb.faults.hold_telemetry()
        sb.init()
        pids = {"runtime": sb.runtime_pid or 0, "extension": sb.extension_pids()["tp-ext"]}
        states = {name: process_state(pid) for name, pid in pids.items()}
        env = {name: environ(pid) for name, pid in pids.items()}
        snapshot = sb.inspect() | {"snapshot_taken": sb.snapshot_taken}
        exchanges_at_snapshot = list(sb.exchanges)
        notes_at_snapshot = read_notes(out)
        sb.faults.release_telemetry()  # still frozen: nothing is sent before the restore
        restore = sb.restore()
        with pytest.raises(RuntimeError) as second:
            sb.restore()
        results = [sb.invoke({"lines": 2, "tag": "one"}), sb.invoke({"lines": 1, "tag": "two"})]
        sb.shutdown()
        exchanges = list(sb.exchanges)
    return Run(
        states_at_snapshot=states,
        env=env,
        snapshot=snapshot,
        exchanges_at_snapshot=exchanges_at_snapshot,
        notes_at_snapshot=notes_at_snapshot,
        restore=restore,
        second_restore=str(second.value),
        results=results,
        platform=platform,
        exchanges=exchanges,
        notes=read_notes(out),
    )


def kinds(platform: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [kind for kind, _ in platform if kind.startswith("platform.")]


def test_init_ends_in_a_frozen_snapshot(run: Run) -> None:
    assert run.states_at_snapshot == {"runtime": "T", "extension": "T"}  # SIGSTOPped
    assert run.snapshot["snapshot_taken"] and run.snapshot["snapshot"] and run.snapshot["frozen"]
    assert run.snapshot["restores"] == [] and run.snapshot["invocations"] == []
    assert [i["status"] for i in run.snapshot["inits"]] == ["success"]


def test_runtime_and_extensions_are_told_snap_start(run: Run) -> None:
    assert run.env["runtime"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == SNAP
    assert run.env["extension"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == SNAP


def test_restore_next_is_held_until_the_restore(run: Run) -> None:
    # An exchange is logged once answered: at the snapshot, restore/next had not been.
    assert RESTORE_NEXT not in paths(run.exchanges_at_snapshot)
    answered = [e for e in run.exchanges if e["path"] == RESTORE_NEXT]
    assert [(e["who"], e["status"], e["response"]) for e in answered] == [("runtime", 200, None)]
    # Answered after everything logged before the snapshot, and before the runtime's next.
    assert answered[0]["seq"] >= len(run.exchanges_at_snapshot)
    runtime = [e["path"] for e in run.exchanges if e["who"] == "runtime"]
    assert runtime[0] == RESTORE_NEXT and runtime[1].endswith("/invocation/next")
    assert RESTORE_ERROR not in paths(run.exchanges)


def test_restore_then_invocations_succeed(run: Run) -> None:
    assert run.restore["status"] == "success" and run.restore["error_type"] is None
    assert [r.status for r in run.results] == ["success", "success"]
    first, second = run.results
    assert first.init_duration_ms is None and first.restore_duration_ms is not None
    assert first.restore_duration_ms == run.restore["duration_ms"]
    assert second.init_duration_ms is None and second.restore_duration_ms is None


def test_records_in_order(run: Run) -> None:
    first, second = (r.request_id for r in run.results)
    invoke = ["platform.start", "platform.runtimeDone", "platform.report"]
    assert kinds(run.platform) == [
        "platform.initStart",
        "platform.telemetrySubscription",
        *INIT_RECORDS[1:],
        *RESTORE_RECORDS,
        *invoke,
        *invoke,
    ]
    by_kind = {kind: [rec for k, rec in run.platform if k == kind] for kind in kinds(run.platform)}
    for kind in ("platform.initStart", "platform.initRuntimeDone", "platform.initReport"):
        assert by_kind[kind][0]["initializationType"] == SNAP
        assert by_kind[kind][0]["phase"] == "init"
    reports = {rec["requestId"]: rec["metrics"] for rec in by_kind["platform.report"]}
    assert "initDurationMs" not in reports[first]
    assert reports[first]["restoreDurationMs"] == run.restore["duration_ms"]
    assert "initDurationMs" not in reports[second] and "restoreDurationMs" not in reports[second]


def test_restore_records_name_a_new_environment(run: Run) -> None:
    init_start = next(rec for kind, rec in run.platform if kind == "platform.initStart")
    restore_start = next(rec for kind, rec in run.platform if kind == "platform.restoreStart")
    assert set(restore_start) == {"runtimeVersion", "runtimeVersionArn", "functionName",
                                  "functionVersion", "instanceId", "instanceMaxMemory"}
    assert restore_start["instanceId"] != init_start["instanceId"]
    assert restore_start["instanceId"] == run.restore["instance_id"]
    assert init_start["instanceId"] == run.restore["snapshot_instance_id"]
    done = next(rec for kind, rec in run.platform if kind == "platform.restoreRuntimeDone")
    report = next(rec for kind, rec in run.platform if kind == "platform.restoreReport")
    assert done == {"status": "success"}
    assert report == {"status": "success", "metrics": {"durationMs": run.restore["duration_ms"]}}


def test_the_after_restore_hook_runs_before_restore_runtime_done(run: Run) -> None:
    stream = [(ev["type"], ev["record"]) for _, ev in received_events(run.notes)]
    lines = [i for i, (k, rec) in enumerate(stream) if k == "function" and "after restore" in rec]
    order = [k for k, _ in stream]
    assert len(lines) == 1
    assert order.index("platform.restoreStart") < lines[0] < order.index(
        "platform.restoreRuntimeDone"
    )


def test_one_restore_per_snapshot(run: Run) -> None:
    assert "no snapshot" in run.second_restore


def test_extension_gets_the_first_invoke_and_the_held_telemetry_after_the_restore(run: Run) -> None:
    assert [n for n in run.notes_at_snapshot if n["kind"] == "telemetry"] == []
    events = [n["event"] for n in run.notes if n["kind"] == "event"]
    assert [e["eventType"] for e in events] == ["INVOKE", "INVOKE", "SHUTDOWN"]
    assert events[0]["requestId"] == run.results[0].request_id  # no event of its own for a restore
    received = [ev["type"] for _, ev in received_events(run.notes)]
    platform = [t for t in received if t.startswith("platform.")]
    # The subscription made during init stands after the restore; init's records come first.
    assert platform[: len(INIT_RECORDS) + 1 + len(RESTORE_RECORDS)] == [
        "platform.initStart",
        "platform.telemetrySubscription",
        *INIT_RECORDS[1:],
        *RESTORE_RECORDS,
    ]
    assert platform.count("platform.report") == 2


def test_a_failing_after_restore_hook_fails_the_restore_and_the_invoke(tmp_path: Path) -> None:
    cfg, out = snap_config(tmp_path, "fail")
    platform: list[tuple[str, dict[str, Any]]] = []
    with Sandbox(cfg) as sb:
        sb.on_platform_event(lambda kind, record: platform.append((kind, record)))
        result = sb.invoke({"lines": 1})  # init, snapshot, restore, all for this invoke
        report = sb.inspect()
    error_type = "Runtime.AfterRestoreError"
    assert (result.status, result.error_type, result.reset_reason) == (
        "failure", error_type, "failure"
    )
    assert result.restore_duration_ms is not None and result.init_duration_ms is None
    assert [(r["status"], r["error_type"]) for r in report["restores"]] == [("error", error_type)]
    assert report["invocations"] == [] and not report["snapshot"]
    assert [s["reason"] for s in report["shutdowns"]] == ["failure"]
    errors = [e for e in sb.exchanges if e["path"] == RESTORE_ERROR]
    assert [(e["who"], e["status"]) for e in errors] == [("runtime", 202)]
    assert kinds(platform)[-3:] == RESTORE_RECORDS
    done, restore_report = (rec for _, rec in platform[-2:])
    assert done == {"status": "error", "errorType": error_type}
    assert restore_report["status"] == "error" and restore_report["errorType"] == error_type
    assert "platform.start" not in kinds(platform)  # no invocation ran
    events = [n["event"] for n in read_notes(out) if n["kind"] == "event"]
    assert [(e["eventType"], e.get("shutdownReason")) for e in events] == [("SHUTDOWN", "failure")]


def test_a_sandbox_without_snap_start_has_no_restore_routes(tmp_path: Path) -> None:
    cfg, _ = tp_config(tmp_path)
    with Sandbox(cfg) as sb:
        host, port = sb.api_address.split(":")
        answers = []
        for method, path in (("GET", RESTORE_NEXT), ("POST", RESTORE_ERROR)):
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            try:
                conn.request(method, path, body=b"{}" if method == "POST" else None)
                resp = conn.getresponse()
                answers.append((resp.status, json.loads(resp.read())["errorType"]))
            finally:
                conn.close()
    assert answers == [(404, "NotFound"), (404, "NotFound")]


def test_restore_is_snap_start_only(tmp_path: Path) -> None:
    cfg, _ = tp_config(tmp_path)
    with Sandbox(cfg) as sb, pytest.raises(RuntimeError, match="snap_start"):
        sb.restore()
