"""A platform.runtimeDone Lambda dropped, end to end: a sync flush is answered at the drop
notice instead of holding the invocation to its deadline (ext/sender/invocations.py)."""

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
    self_metrics,
)

# timing: the bound on the post-runtime duration of the invocation whose end was lost.
pytestmark = [pytest.mark.integration, pytest.mark.timing]

# Long enough that waiting for the lost end (the broken behaviour: until the deadline) cannot
# pass for an early answer; the bound is generous against a loaded machine all the same.
TIMEOUT_S = 30.0
POST_RUNTIME_BOUND_MS = 5000.0
LINES = 5
LOST = 1  # the invocation whose runtimeDone the emulator drops


def test_a_dropped_runtime_done_does_not_hold_a_sync_flush_to_the_deadline(
        hec: HecReceiver, local_opt: Path) -> None:
    env = extension_env(hec, SPLUNK_FLUSH="sync", SPLUNK_SELF_METRICS_INTERVAL_MS="0")
    with sandbox(local_opt, env, timeout_s=TIMEOUT_S) as sb:
        results = []
        for n in range(3):
            if n == LOST:
                sb.faults.drop_runtime_done(1)
            results.append(sb.invoke({"lines": LINES, "tag": f"d{n}"}))
            # sync: in HEC before the freeze, the invocation whose end was lost included (what
            # did arrive preceded the notice that stood for its end).
            assert lines_of(hec, f"d{n}") == expected_lines(f"d{n}", LINES)
        delivery = sb.inspect()["delivery"]["splunk-hec-extension"]
        sb.shutdown()
    assert [r.status for r in results] == ["success"] * 3
    lost = results[LOST]
    assert lost.post_runtime_ms is not None
    assert lost.post_runtime_ms < POST_RUNTIME_BOUND_MS, "the sync flush waited for the lost end"
    assert delivery["dropped_records"] == 1

    for n in range(3):
        assert lines_of(hec, f"d{n}") == expected_lines(f"d{n}", LINES)
    events = platform_events(hec)
    [notice] = [e["record"] for e in events if e["type"] == "platform.logsDropped"]
    assert notice["droppedRecords"] == 1
    ends = [e["record"]["requestId"] for e in events if e["type"] == "platform.runtimeDone"]
    assert ends == [r.request_id for n, r in enumerate(results) if n != LOST]
    metrics = [body["metrics"] for body in self_metrics(hec)]
    assert metrics, "no self-metrics event reached HEC"
    assert metrics[-1]["splunk.extension.invocations.ends_lost"] >= 1
    assert metrics[-1]["splunk.extension.telemetry.dropped_records"] >= 1
