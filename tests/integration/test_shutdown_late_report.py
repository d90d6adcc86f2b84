"""Shutdown when Lambda delivers the last telemetry late in the 2 s window (issue 12, item 7)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver
from ext.local.sandbox import Sandbox
from tests.integration.extension_harness import extension_env, platform_events, sandbox
from tests.integration.sandbox_helpers import read_notes, tp_config

pytestmark = pytest.mark.integration

LATE_S = 1.2


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
