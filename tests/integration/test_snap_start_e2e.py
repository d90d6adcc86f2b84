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

TIMEOUT_S = 30.0  # far longer than a restore and a flush take; a dead connection outlasts it
LINES = 4


def test_lines_after_a_restore_reach_hec_past_abandoned_connections(
    hec: HecReceiver, local_opt: Path
) -> None:
    env = extension_env(hec, SPLUNK_FLUSH="sync", SPLUNK_SELF_METRICS_INTERVAL_MS="0")
    with sandbox(local_opt, env, timeout_s=TIMEOUT_S, snap_start=True) as sb:
        init = sb.init()
        # The courier's connection made ahead during init, if any, now leads nowhere.
        hec.abandon_open_connections()
        restore = sb.restore()
        results = [sb.invoke({"lines": LINES, "tag": f"r{n}"}) for n in range(2)]
        # sync: in HEC before the invocation ended
        after_first = lines_of(hec, "r0")
        sb.shutdown()
    assert init["status"] == "success" and restore["status"] == "success"
    assert [r.status for r in results] == ["success", "success"]
    assert after_first == expected_lines("r0", LINES)
    assert lines_of(hec, "r1") == expected_lines("r1", LINES)
    types = [e["type"] for e in platform_events(hec)]
    for kind in ("platform.initStart", "platform.restoreStart", "platform.restoreReport"):
        assert kind in types
