"""The extension on Lambda Managed Instances, end to end in the emulator's mode for them: it
registers (SHUTDOWN only: INVOKE there fails the environment's init), subscribes with the schema
they accept, and delivers each invocation's lines while the environment runs on, unfrozen and
with no event to flush at, each line with the request id it carries or none."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver
from tests.integration.extension_harness import (
    children_of,
    expected_lines,
    extension_env,
    lines_of,
    sandbox,
)

pytestmark = pytest.mark.integration

LINES = 5
# The sender sends what it holds once the oldest line waited this long (no INVOKE, no freeze:
# nothing else ends a batch); generous against a loaded machine.
MAX_WAIT_MS = 200
DELIVERED_WITHIN_S = 20.0


def _await_lines(hec: HecReceiver, tag: str, count: int) -> list[str]:
    end = time.monotonic() + DELIVERED_WITHIN_S
    while (found := lines_of(hec, tag)) != expected_lines(tag, count):
        if time.monotonic() > end:
            return found
        time.sleep(0.05)
    return found


def _request_ids(hec: HecReceiver, tag: str) -> set[str | None]:
    ids = set()
    for event in hec.events(sourcetype="aws:lambda:function", limit=10**6):
        text = json.loads(event.event)
        if isinstance(text, str) and f"{tag}:" in text:
            ids.add(event.fields.get("request_id"))
    return ids


def test_on_managed_instances_lines_reach_hec_while_the_environment_runs_on(
        hec: HecReceiver, local_opt: Path) -> None:
    env = extension_env(hec, SPLUNK_DISPATCH_MAX_WAIT_MS=str(MAX_WAIT_MS),
                        SPLUNK_FLUSH="sync")  # asked, and not possible there: background
    with sandbox(local_opt, env, managed_instances=True) as sb:
        logged = sb.invoke({"lines": LINES, "tag": "m0", "mode": "logging"})
        printed = sb.invoke({"lines": LINES, "tag": "m1"})
        # No further invocation, no shutdown: delivered as the environment runs on.
        assert _await_lines(hec, "m0", LINES) == expected_lines("m0", LINES)
        assert _await_lines(hec, "m1", LINES) == expected_lines("m1", LINES)
        done = sb.shutdown()
    assert [r.status for r in (logged, printed)] == ["success", "success"]
    assert printed.post_runtime_ms == 0.0  # nothing waits for the extension there
    extension = done.extensions["splunk-hec-extension"]
    assert extension.exited and not extension.killed and extension.exit_code == 0
    # A logging-module line names its invocation; a print() line names none, where another
    # invocation may have started since (the emulator runs them one at a time all the same).
    assert _request_ids(hec, "m0") == {logged.request_id}
    assert _request_ids(hec, "m1") == {None}
    warnings = [json.loads(e.event) for e in hec.events(sourcetype="aws:lambda:extension",
                                                          limit=10**6)]
    assert any("SPLUNK_FLUSH=sync does not apply on Lambda Managed Instances" in str(w)
               for w in warnings)


def test_on_managed_instances_killed_children_are_replaced_before_the_next_event(
        hec: HecReceiver, local_opt: Path) -> None:
    # The next event there is the SHUTDOWN: children replaced only then (as at the next INVOKE
    # elsewhere) left nothing delivered for the environment's life.
    env = extension_env(hec, SPLUNK_DISPATCH_MAX_WAIT_MS=str(MAX_WAIT_MS))
    with sandbox(local_opt, env, managed_instances=True) as sb:
        sb.invoke({"lines": LINES, "tag": "k0"})
        assert _await_lines(hec, "k0", LINES) == expected_lines("k0", LINES)
        main = sb.extension_pids()["splunk-hec-extension"]
        killed = set(children_of(main))
        assert len(killed) == 2  # the listener and the sender
        for child in killed:
            os.kill(child, signal.SIGKILL)
        end = time.monotonic() + DELIVERED_WITHIN_S
        while (len(set(children_of(main)) - killed) < 2) and time.monotonic() < end:
            time.sleep(0.05)
        replaced = set(children_of(main)) - killed
        assert len(replaced) == 2, "not replaced while main waits for the SHUTDOWN"
        sb.invoke({"lines": LINES, "tag": "k1"})
        assert _await_lines(hec, "k1", LINES) == expected_lines("k1", LINES)
        sb.shutdown()
