"""Emulator end to end: real awslambdaric, third-party extension, freeze, reset, shutdown."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from ext.local.sandbox import Sandbox, SandboxConfig
from ext.local.sandbox.delivery import RETRY_ATTEMPTS
from tests.integration.sandbox_helpers import (
    FUNCTION_DIR,
    read_notes,
    received_events,
    tp_config,
)

pytestmark = pytest.mark.integration

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
GAP_S = 0.3


def process_state(pid: int) -> str:
    """Single-letter state from /proc/<pid>/stat ('T' = stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def test_lifecycle_with_third_party_extension(tmp_path: Path) -> None:
    cfg, out = tp_config(tmp_path, timeout_s=1.0)
    with Sandbox(cfg) as sb:
        results = []
        for n in range(3):
            results.append(sb.invoke({"lines": 4, "tag": f"inv{n}"}))
            ext_pid = sb.extension_pids()["tp-ext"]
            assert process_state(ext_pid) == "T"  # frozen between invokes
            assert process_state(sb.runtime_pid or 0) == "T"
            time.sleep(GAP_S)
        timed_out = sb.invoke({"timeout": True, "tag": "slow"})
        after_reset = sb.invoke({"lines": 1, "tag": "again"})
        shutdown = sb.shutdown()
        report = sb.inspect()

    assert [r.status for r in results] == ["success"] * 3
    assert results[0].init_duration_ms is not None and results[1].init_duration_ms is None
    assert all(r.post_runtime_ms is not None and r.post_runtime_ms >= 0 for r in results)
    assert timed_out.status == "timeout" and timed_out.reset_reason == "timeout"
    assert after_reset.status == "success" and after_reset.init_duration_ms is not None
    assert shutdown.reason == "spindown"
    assert shutdown.extensions["tp-ext"].exited and not shutdown.extensions["tp-ext"].killed
    assert [i["phase"] for i in report["inits"]] == ["init", "invoke"]
    assert report["inits"][0]["extensions"]["tp-ext"]["register_ms"] > 0

    notes = read_notes(out)
    events = [n["event"] for n in notes if n["kind"] == "event"]
    kinds = [(e["eventType"], e.get("shutdownReason")) for e in events]
    assert kinds == [("INVOKE", None)] * 4 + [("SHUTDOWN", "timeout")] + [
        ("INVOKE", None),
        ("SHUTDOWN", "spindown"),
    ]
    assert [e["requestId"] for e in events[:3]] == [r.request_id for r in results]
    # The ticker thread saw the freeze: a clock gap of about the sleep between invokes.
    gaps = [n["max_gap"] for n in notes if n["kind"] == "event"]
    assert all(g >= GAP_S * 0.8 for g in gaps[1:4])

    received = received_events(notes)
    for _, ev in received:
        assert ISO_MS.match(ev["time"]), ev
    types = [ev["type"] for _, ev in received]
    first_init = types[: types.index("platform.start")]
    assert first_init[0] == "platform.initStart"  # replayed although emitted before subscribing
    assert first_init.index("platform.initRuntimeDone") < first_init.index("platform.extension")
    assert first_init.index("platform.extension") < first_init.index("platform.initReport")

    # Function lines arrive in order with their ids.
    lines = [ev["record"] for _, ev in received if ev["type"] == "function"]
    assert [ln for ln in lines if ln.startswith("inv1:")] == [
        f"inv1:{n}:" + "x" * (32 - len(f"inv1:{n}:")) for n in range(4)
    ]

    # platform.report of invocation N arrives only after invocation N's freeze.
    invocations = report["invocations"]
    for n, result in enumerate(results):
        arrivals = [
            t
            for t, ev in received
            if ev["type"] == "platform.report" and ev["record"]["requestId"] == result.request_id
        ]
        assert len(arrivals) == 1
        assert arrivals[0] > invocations[n]["frozen_at"]
        assert arrivals[0] > invocations[n + 1]["started_at"]


def test_platform_event_shapes(tmp_path: Path) -> None:
    cfg, out = tp_config(tmp_path, memory_mb=256)
    with Sandbox(cfg) as sb:
        ok = sb.invoke({"lines": 2, "tag": "shape"})
        err = sb.invoke({"raise": True, "tag": "bad"})
        sb.shutdown()
    received: dict[tuple[str, str | None], dict[str, Any]] = {}
    for _, ev in received_events(read_notes(out)):
        received.setdefault(
            (ev["type"], ev["record"].get("requestId") if isinstance(ev["record"], dict) else None),
            ev,
        )
    init_start = received[("platform.initStart", None)]["record"]
    assert init_start["initializationType"] == "on-demand" and init_start["phase"] == "init"
    assert init_start["instanceMaxMemory"] == 256 * 1024 * 1024
    assert init_start["functionName"] == cfg.function_name
    sub = received[("platform.telemetrySubscription", None)]["record"]
    assert sub == {
        "name": "tp-ext",
        "state": "Subscribed",
        "types": ["platform", "function", "extension"],
    }
    ext = received[("platform.extension", None)]["record"]
    assert ext == {"name": "tp-ext", "state": "Ready", "events": ["INVOKE", "SHUTDOWN"]}
    init_report = received[("platform.initReport", None)]["record"]
    assert init_report["status"] == "success" and init_report["metrics"]["durationMs"] > 0
    start = received[("platform.start", ok.request_id)]["record"]
    assert start["functionArn"] == cfg.arn and start["version"] == "$LATEST"
    done = received[("platform.runtimeDone", ok.request_id)]["record"]
    assert done["status"] == "success" and done["metrics"]["producedBytes"] == len(ok.response)
    assert [s["name"] for s in done["spans"]] == ["responseLatency", "responseDuration",
                                                  "runtimeOverhead"]
    latency, _, overhead = done["spans"]
    # The three parts make the runtime's duration (responseDuration is 0 here), each rounded
    # to the microsecond.
    assert latency["durationMs"] >= 0 and overhead["durationMs"] >= 0
    assert abs(latency["durationMs"] + overhead["durationMs"]
               - done["metrics"]["durationMs"]) <= 0.002
    report = received[("platform.report", ok.request_id)]["record"]
    metrics = report["metrics"]
    assert metrics["memorySizeMB"] == 256 and metrics["maxMemoryUsedMB"] > 0
    assert metrics["initDurationMs"] > 0
    assert metrics["billedDurationMs"] >= metrics["durationMs"] + metrics["initDurationMs"] - 1
    assert metrics["durationMs"] >= done["metrics"]["durationMs"]
    failed = received[("platform.runtimeDone", err.request_id)]["record"]
    assert failed["status"] == "error" and failed["errorType"] == "Runtime.Unknown"
    assert (
        err.status == "error" and err.error is not None and err.error["errorType"] == "ValueError"
    )


def test_runtime_crash_resets_and_keeps_tmp(tmp_path: Path) -> None:
    cfg = SandboxConfig(
        function_dir=FUNCTION_DIR, handler="handler.handler", timeout_s=2.0, limits=False
    )
    seen: list[tuple[str, dict[str, Any]]] = []
    with Sandbox(cfg) as sb:
        sb.on_platform_event(lambda t, r: seen.append((t, r)))
        marker = sb.tmp_dir / "marker"
        marker.write_text("kept")
        first = sb.invoke({"lines": 1})
        crashed = sb.invoke({"crash": True})
        again = sb.invoke({"lines": 1})
        assert marker.read_text() == "kept"
        assert again.response and b'"tmp"' in again.response
        assert str(sb.tmp_dir).encode() in again.response  # TMPDIR points at the sandbox /tmp
    assert first.status == "success"
    assert crashed.status == "failure" and crashed.error_type == "Runtime.ExitError"
    done = [
        r for t, r in seen if t == "platform.runtimeDone" and r["requestId"] == crashed.request_id
    ]
    assert done[0]["status"] == "error"
    phases = [r["phase"] for t, r in seen if t == "platform.initStart"]
    assert phases == ["init", "invoke"]


def test_fault_kill_extension_while_frozen_resets(tmp_path: Path) -> None:
    cfg, _ = tp_config(tmp_path)
    with Sandbox(cfg) as sb:
        sb.invoke({"lines": 1})
        old_pid = sb.extension_pids()["tp-ext"]
        sb.faults.kill_extension("tp-ext")
        result = sb.invoke({"lines": 1})
        assert result.status == "success"
        assert sb.extension_pids()["tp-ext"] != old_pid
        assert [i["phase"] for i in sb.inspect()["inits"]] == ["init", "invoke"]


def test_failing_listener_yields_logs_dropped(tmp_path: Path) -> None:
    cfg, out = tp_config(tmp_path)
    with Sandbox(cfg) as sb:
        sb.invoke({"lines": 1})
        sb.faults.fail_telemetry(RETRY_ATTEMPTS)  # every attempt for the next batch fails
        # Thawed long enough for all retries (with backoff) to fail and the drop to be reported.
        sb.invoke({"lines": 3, "tag": "lost", "sleep_ms": 800})
        sb.invoke({"lines": 1, "tag": "flush"})
        sb.shutdown()
        stats = sb.inspect()["delivery"]["tp-ext"]
    received = received_events(read_notes(out))
    types = [ev["type"] for _, ev in received]
    assert "platform.logsDropped" in types
    assert stats["dropped_records"] > 0 and stats["failed_attempts"] == RETRY_ATTEMPTS
    lines = [ev["record"] for _, ev in received if ev["type"] == "function"]
    assert any(line.startswith("flush:0:") for line in lines)


def test_json_log_format_gives_objects(tmp_path: Path) -> None:
    cfg, out = tp_config(tmp_path, log_format="JSON")
    with Sandbox(cfg) as sb:
        sb.invoke({"lines": 2, "mode": "logging", "tag": "lg"})
        sb.invoke({"lines": 2, "mode": "json", "tag": "js"})
        sb.invoke({"lines": 1, "mode": "print", "tag": "pr"})
        sb.shutdown()
    records = [
        ev["record"] for _, ev in received_events(read_notes(out)) if ev["type"] == "function"
    ]
    logged = [r for r in records if isinstance(r, dict) and r.get("logger") == "sample"]
    assert [r["message"][:5] for r in logged] == ["lg:0:", "lg:1:"]
    assert all(r["level"] == "INFO" and r["requestId"] for r in logged)
    assert [r["n"] for r in records if isinstance(r, dict) and r.get("tag") == "js"] == [0, 1]
    assert any(isinstance(r, str) and r.startswith("pr:0:") for r in records)


def test_extension_output_reaches_observers(tmp_path: Path) -> None:
    cfg, _ = tp_config(tmp_path, limits=False)
    seen: list[str] = []
    with Sandbox(cfg) as sb:
        sb.on_extension_output(seen.append)
        sb.invoke({"lines": 1})
        sb.sync_output()
        assert "tp-ext ready" in seen
