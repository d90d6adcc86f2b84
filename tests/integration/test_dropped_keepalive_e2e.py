"""End to end: HEC resets the kept-alive connection the sender reuses (as a load balancer that
dropped it while the environment was frozen answers). A sync flush still ends with the
invocation's lines in HEC: the request goes again at once on a new connection, and the first
attempt is not taken for a HEC failure (which answered the flush Failing, unwaited)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ext.local.hec import HecReceiver
from tests.integration.extension_harness import (
    expected_lines,
    extension_env,
    lines_of,
    sandbox,
)

pytestmark = pytest.mark.integration
LINES = 3
ROUNDS = 3  # unfixed, 2 rounds in 3 failed


def test_a_reset_kept_alive_connection_does_not_leave_a_sync_flush_undelivered(
    hec: HecReceiver, local_opt: Path,
) -> None:
    env = extension_env(hec, SPLUNK_FLUSH="sync", SPLUNK_FLUSH_BUDGET_MS="3000",
                        SPLUNK_SELF_METRICS_INTERVAL_MS="0")
    delivered: list[list[str]] = []
    with sandbox(local_opt, env, timeout_s=30) as sb:
        sb.invoke({"lines": LINES, "tag": "warm"})
        for n in range(ROUNDS):
            hec.set_fault("stale_keepalive", count=1)
            sb.invoke({"lines": LINES, "tag": f"m{n}"})  # answered; its connection is marked
            sb.invoke({"lines": LINES, "tag": f"r{n}"})  # reset on that connection
            delivered.append(lines_of(hec, f"r{n}"))  # sync: in HEC when it ended
        sb.shutdown()
    assert delivered == [expected_lines(f"r{n}", LINES) for n in range(ROUNDS)]
