"""Shutdown: Lambda delivers the last telemetry late in the 2 s window (issue 12, item 7); the
runtime logs as it shuts down, before the extensions hear of it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver
from ext.local.sandbox import Sandbox
from tests.integration.extension_harness import extension_env, lines_of, platform_events, sandbox
from tests.integration.sandbox_helpers import read_notes, tp_config

pytestmark = pytest.mark.integration

LATE_S = 1.2
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="the runtime needs curl")

# A custom runtime (sh and curl) with a SIGTERM handler, as functions that close connections or
# flush buffers at shutdown have: it logs, cleans up for 100 ms of its 300 ms share, logs again.
GRACEFUL_RUNTIME = """#!/bin/sh
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
d=$(mktemp -d)
trap 'echo "bye:0:shutting down"; sleep 0.1; echo "bye:1:cleaned up"; exit 0' TERM
while :; do
  curl -sS -D "$d/head" -o "$d/body" "$api/invocation/next" &
  wait $!
  id=$(grep -i '^lambda-runtime-aws-request-id' "$d/head" | cut -d' ' -f2 | tr -d '\\r')
  echo "work:0:$id"
  curl -sS -X POST "$api/invocation/$id/response" -d '{}' >/dev/null
done
"""


def graceful_function(tmp_path: Path) -> Path:
    function = tmp_path / "graceful"
    function.mkdir()
    (function / "bootstrap").write_text(GRACEFUL_RUNTIME)
    (function / "bootstrap").chmod(0o755)
    return function


def test_emulator_holds_shutdown_delivery_for_the_fault_delay(tmp_path: Path) -> None:
    cfg, out = tp_config(tmp_path, mode="linger", timeout_s=2.0)
    with Sandbox(cfg) as sb:
        sb.invoke({"lines": 1, "tag": "late"})
        sb.faults.shutdown_delivery_delay_s = LATE_S
        started = time.monotonic()
        sb.shutdown()
    reports = [
        n["t"]
        for n in read_notes(out)
        if n["kind"] == "telemetry"
        for ev in n["events"]
        if ev["type"] == "platform.report"
    ]
    assert reports, "the last report is still delivered in the window"
    assert min(reports) - started >= LATE_S


@pytest.mark.timing  # the extension exits within the 2 s shutdown window
def test_late_last_report_reaches_hec_and_extension_exits_before_deadline(
    hec: HecReceiver, local_opt: Path
) -> None:
    with sandbox(local_opt, extension_env(hec)) as sb:
        ids = [sb.invoke({"lines": 3, "tag": f"s{n}"}).request_id for n in range(3)]
        sb.faults.shutdown_delivery_delay_s = LATE_S
        shutdown = sb.shutdown()
    ext = shutdown.extensions["splunk-hec-extension"]
    assert ext.exited and not ext.killed
    assert ext.exit_ms is not None and ext.exit_ms < 2000
    reports = [e["record"]["requestId"] for e in platform_events(hec)
               if e["type"] == "platform.report"]
    assert reports == ids, "the last platform.report, delivered 1.2 s late, reached HEC"


@needs_curl
def test_emulator_tells_extensions_of_the_shutdown_once_the_runtime_exited(
    tmp_path: Path,
) -> None:
    # RIE (rapid/shutdown.go) SIGTERMs the runtime and waits for its exit (SIGKILL when its share
    # ends) before the SHUTDOWN event: what the runtime logs then precedes it.
    cfg, out = tp_config(tmp_path, function_dir=graceful_function(tmp_path), handler="unused",
                         runtime="provided.al2023")
    with Sandbox(cfg) as sb:
        assert sb.invoke({}).status == "success"
        started = time.monotonic()
        result = sb.shutdown()
    runtime = next(p for p in result.processes if p.kind == "runtime")
    assert runtime.exited and not runtime.killed and runtime.exit_ms is not None
    told = [n["t"] for n in read_notes(out)
            if n["kind"] == "event" and n["event"].get("eventType") == "SHUTDOWN"]
    assert len(told) == 1
    assert told[0] - started >= runtime.exit_ms / 1000 >= 0.1


@needs_curl
@pytest.mark.parametrize(("late_s", "buffered"), [(0.0, False), (0.0, True), (0.5, False)])
def test_what_the_runtime_logs_as_it_shuts_down_reaches_hec(
    hec: HecReceiver, local_opt: Path, tmp_path: Path, late_s: float, buffered: bool,
) -> None:
    # Buffered: "bye:1" comes timeoutMs (25 ms) after it was written, the extension having had
    # SHUTDOWN since the runtime's exit right after it, the last report long since in.
    with sandbox(local_opt, extension_env(hec), function_dir=graceful_function(tmp_path),
                 runtime="provided.al2023") as sb:
        ids = [sb.invoke({}).request_id for _ in range(2)]
        sb.faults.shutdown_delivery_delay_s = late_s
        sb.faults.shutdown_buffered = buffered
        shutdown = sb.shutdown()
    ext = shutdown.extensions["splunk-hec-extension"]
    assert ext.exited and not ext.killed
    assert lines_of(hec, "work") == [f"work:0:{i}" for i in ids]
    assert lines_of(hec, "bye") == ["bye:0:shutting down", "bye:1:cleaned up"]
