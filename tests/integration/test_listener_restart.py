"""A SIGKILLed listener in the emulator: the batch Lambda gave up on while no listener ran is
spooled once (by the retry), not once per attempt still queued in the socket's backlog."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver
from ext.local.sandbox import delivery
from ext.spool.layout import WRITER_LOCK
from tests.integration.extension_harness import (
    expected_lines,
    extension_env,
    lines_of,
    platform_events,
    sandbox,
    self_metrics,
)


def _listener_pid(main_pid: int) -> int:
    """The child of the main process that holds the spool's writer lock."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rfind(")") + 2 :].split()[1]) != main_pid:
                continue
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(link.endswith(WRITER_LOCK) for link in links):
            return int(entry.name)
    raise AssertionError(f"no listener process found among the children of {main_pid}")


def test_a_killed_listener_duplicates_no_abandoned_batch(
        hec: HecReceiver, local_opt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulator's POST timeout, shortened so that attempts are abandoned within the test,
    # and enough retries that the batch is never given up for good.
    monkeypatch.setattr(delivery, "POST_TIMEOUT_S", 0.3)
    monkeypatch.setattr(delivery, "RETRY_ATTEMPTS", 1_000)
    with sandbox(local_opt, extension_env(hec), timeout_s=2.0) as sb:
        sb.invoke({"lines": 5, "tag": "k0", "sleep_ms": 800})  # the listener is up by its end
        listener = _listener_pid(sb.extension_pids()["splunk-hec-extension"])
        killer = threading.Timer(0.3, os.kill, (listener, signal.SIGKILL))
        killer.start()
        # The listener dies while k1 runs; the main process replaces it at the next INVOKE.
        # Meanwhile every attempt to deliver the end of k1 waits in the socket's backlog,
        # times out, is closed and retried on a new connection: abandoned attempts pile up.
        sb.invoke({"lines": 20, "tag": "k1", "sleep_ms": 600})
        killer.join()
        sb.invoke({"lines": 5, "tag": "k2"})
        sb.invoke({"lines": 5, "tag": "k3"})
        sb.shutdown()
    for tag, count in (("k0", 5), ("k1", 20), ("k2", 5), ("k3", 5)):
        assert lines_of(hec, tag) == expected_lines(tag, count)
    seen = [(e["type"], json.dumps(e["record"], sort_keys=True)) for e in platform_events(hec)]
    assert ("platform.runtimeDone" in {kind for kind, _ in seen})
    assert len(seen) == len(set(seen)), "a platform event arrived twice"


def _restarts(body: dict[str, object]) -> tuple[object, ...]:
    metrics = body["metrics"]
    assert isinstance(metrics, dict)
    return tuple(metrics.get(f"splunk.extension.process.{name}")
                 for name in ("listener.restarts", "sender.restarts", "sender.hangs"))


def test_restarted_children_are_counted_in_the_self_metrics(
        hec: HecReceiver, local_opt: Path) -> None:
    # Main restarted crashed children with a line in its log and nothing in Splunk.
    env = extension_env(hec, SPLUNK_FLUSH="sync", SPLUNK_SELF_METRICS_INTERVAL_MS="0")
    with sandbox(local_opt, env, timeout_s=2.0) as sb:
        sb.invoke({"lines": 2, "tag": "a"})
        main = sb.extension_pids()["splunk-hec-extension"]
        os.kill(_listener_pid(main), signal.SIGKILL)  # while frozen: restarted at the INVOKE
        sb.invoke({"lines": 2, "tag": "b"})  # its telemetry goes to the new listener
        listener = _listener_pid(main)
        with open(f"/proc/{main}/task/{main}/children") as fh:
            [sender] = [int(p) for p in fh.read().split() if int(p) != listener]
        os.kill(sender, signal.SIGKILL)
        sb.invoke({"lines": 2, "tag": "c"})  # a new sender, forked with main's counts
        sb.shutdown()
    for tag in ("a", "b", "c"):
        assert lines_of(hec, tag) == expected_lines(tag, 2)
    seen = [_restarts(body) for body in self_metrics(hec)]
    assert seen[0] == (0, 0, 0)
    assert (1, 0, 0) in seen  # the listener's restart, told the sender that ran on
    assert seen[-1] == (1, 1, 0)  # at shutdown, from the sender restarted
