"""The emulator's telemetry hold (`sb.faults.hold_telemetry()`): no POST attempt while held,
thawed or not, everything at once on release, and SHUTDOWN lifts it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ext.local.sandbox import delivery
from ext.local.sandbox.telemetry import TelemetryBus
from tests.unit import test_sandbox_reset_drops
from tests.unit.test_sandbox_reset_drops import Collector, subscription

# Many times the subscription's 25 ms buffering: a delivery the hold did not stop is in by then.
HELD_S = 0.3


collector = test_sandbox_reset_drops.collector  # pytest takes it as a fixture


def lines(server: Collector) -> list[object]:
    return [e["record"] for e in server.events if e["type"] == "function"]


def thread_cpu_s(thread: threading.Thread) -> float:
    """CPU time a thread of this process has used (Linux: /proc)."""
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def test_a_hold_keeps_everything_back_until_released(collector: Collector) -> None:
    bus = TelemetryBus()
    try:
        bus.hold(True)  # before the subscription: a later subscriber is held too
        bus.subscribe("ext", subscription(collector.server_address[1]))  # its notice is held
        bus.emit_logs("function", ["line 0"])
        time.sleep(HELD_S)
        delivering = bus._subscribers[0]._thread
        cpu_before = thread_cpu_s(delivering)
        bus.set_paused(True)  # a freeze and a thaw: the hold outlasts them
        bus.set_paused(False)
        time.sleep(HELD_S)
        bus.emit_logs("function", ["line 1"])
        time.sleep(HELD_S)
        assert collector.events == []
        # Held, the subscriber waits to be woken: it does not poll for the end of the hold.
        assert thread_cpu_s(delivering) - cpu_before < HELD_S / 5
        bus.hold(False)
        deadline = time.monotonic() + 5.0
        while bus.subscriber_stats()["ext"]["events"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lines(collector) == ["line 0", "line 1"]
        # Nothing was taken while held: everything held goes out in one batch, as at a thaw.
        assert bus.subscriber_stats()["ext"]["batches"] == 1
    finally:
        bus.drop_subscribers(1.0)


def test_a_hold_stops_a_retry_already_under_way(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "RETRY_BASE_S", HELD_S)
    bus = TelemetryBus()
    try:
        bus.subscribe("ext", subscription(collector.server_address[1]))
        bus.faults.fail_attempts = 1
        bus.emit_logs("function", ["line 0"])
        deadline = time.monotonic() + 5.0
        while bus.subscriber_stats()["ext"]["failed_attempts"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        bus.hold(True)  # while the batch waits for its second attempt
        time.sleep(2 * HELD_S)
        assert collector.events == []
        bus.hold(False)
        assert collector.got.wait(5.0)
        assert lines(collector) == ["line 0"]
    finally:
        bus.drop_subscribers(1.0)


def test_shutdown_lifts_a_hold(collector: Collector) -> None:
    bus = TelemetryBus()
    try:
        bus.subscribe("ext", subscription(collector.server_address[1]))
        bus.hold(True)
        bus.emit_logs("function", ["line 0"])
        bus.begin_shutdown(time.monotonic() + 5.0)
        assert collector.got.wait(5.0)
        assert lines(collector) == ["line 0"]
        assert not bus.faults.held  # the next environment's subscribers are not held either
    finally:
        bus.drop_subscribers(1.0)
