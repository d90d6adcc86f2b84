"""SnapStart end to end with this checkout's extension behind the real launcher: init, the
snapshot, HEC abandoning every connection open at it (as a restored environment finds them),
restore, invocations. The lines of the first invocation after the restore reach HEC on a new
connection, within the invocation (sync flush), instead of waiting out a dead one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ext.local.hec import HecReceiver
from tests.integration.extension_harness import (
    expected_lines,
    extension_env,
    lines_of,
    platform_events,
    sandbox,
)

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0  # far longer than a restore and a flush take
LINES = 4
BUDGET_MS = 5_000  # a flush may wait this long; a dead connection would hold it that long


@pytest.mark.timing  # the first flush after the restore within a fifth of its budget
def test_lines_after_a_restore_reach_hec_past_abandoned_connections(
    hec: HecReceiver, local_opt: Path
) -> None:
    env = extension_env(hec, SPLUNK_FLUSH="sync", SPLUNK_SELF_METRICS_INTERVAL_MS="0",
                        SPLUNK_FLUSH_BUDGET_MS=str(BUDGET_MS), SPLUNK_REQUEST_TIMEOUT_MS="20000",
                        SAMPLE_INIT_LINES="2", SAMPLE_INIT_MS="300")
    with sandbox(local_opt, env, timeout_s=TIMEOUT_S, snap_start=True) as sb:
        init = sb.init()
        # The connection made during the init (its lines sent before the snapshot) now leads
        # nowhere, as a restored environment finds it.
        severed = hec.abandon_open_connections()
        restore = sb.restore()
        first = sb.invoke({"lines": LINES, "tag": "r0"})
        after_first = lines_of(hec, "r0")  # sync: in HEC before the invocation ended
        second = sb.invoke({"lines": LINES, "tag": "r1"})
        sb.shutdown()
    assert init["status"] == "success" and restore["status"] == "success"
    assert severed >= 1
    assert [r.status for r in (first, second)] == ["success", "success"]
    assert after_first == expected_lines("r0", LINES)
    # Unfixed, the flush sent on the dead connection and waited out its whole budget.
    assert first.post_runtime_ms is not None and first.post_runtime_ms < BUDGET_MS / 5
    assert lines_of(hec, "r1") == expected_lines("r1", LINES)
    # The init's lines, logged as the function loaded, once each.
    assert [line[:7] for line in lines_of(hec, "init")] == ["init:0:", "init:1:"]
    types = [e["type"] for e in platform_events(hec)]
    for kind in ("platform.initStart", "platform.restoreStart", "platform.restoreReport"):
        assert kind in types
