"""The emulator's runtimeDone drop (`sb.faults.drop_runtime_done(n)`): the next n
platform.runtimeDone records never reach a subscriber, a platform.logsDropped stands exactly
where each would have been, and the subscriber's drop counters count it."""

from __future__ import annotations

import threading
import time

from ext.local.sandbox import delivery, wire
from ext.local.sandbox.subscription import Buffering, Subscription
from ext.local.sandbox.telemetry import TelemetryBus
from tests.unit import test_sandbox_reset_drops
from tests.unit.test_sandbox_reset_drops import Collector, subscription

collector = test_sandbox_reset_drops.collector  # pytest takes it as a fixture


def delivered(bus: TelemetryBus, events: int) -> None:
    deadline = time.monotonic() + 5.0
    while sum(s["events"] for s in bus.subscriber_stats().values()) < events:
        assert time.monotonic() < deadline, bus.subscriber_stats()
        time.sleep(0.005)


def invocation(bus: TelemetryBus, request_id: str) -> int:
    """Emit one invocation's start, line and end; returns the encoded runtimeDone's size."""
    bus.emit("platform.start", {"requestId": request_id})
    bus.emit_logs("function", [f"{request_id} line"])
    done = {"requestId": request_id, "status": "success"}
    bus.emit("platform.runtimeDone", done)
    return len(wire.encode({"time": bus.clock.format(time.time()),
                            "type": "platform.runtimeDone", "record": done}))


def test_the_next_runtime_done_is_replaced_by_a_drop_notice_in_its_place(
    collector: Collector,
) -> None:
    bus = TelemetryBus()
    try:
        bus.subscribe("ext", subscription(collector.server_address[1]))
        bus.faults.drop_runtime_done = 1
        size = invocation(bus, "r0")
        invocation(bus, "r1")  # one drop asked for: the next end is delivered
        delivered(bus, 7)
        seen = [(e["type"], e["record"].get("requestId") if isinstance(e["record"], dict)
                 else e["record"]) for e in collector.events]
        assert seen == [
            ("platform.telemetrySubscription", None),
            ("platform.start", "r0"), ("function", "r0 line"), ("platform.logsDropped", None),
            ("platform.start", "r1"), ("function", "r1 line"), ("platform.runtimeDone", "r1"),
        ]
        [notice] = [e for e in collector.events if e["type"] == "platform.logsDropped"]
        assert notice["record"] == {"droppedBytes": size, "droppedRecords": 1,
                                    "reason": delivery.DROP_REASON_SLOW}
        stats = bus.subscriber_stats()["ext"]
        assert (stats["dropped_records"], stats["dropped_bytes"]) == (1, size)
        assert bus.counts["platform.runtimeDone"] == 2  # emitted, whether delivered or not
        assert bus.faults.drop_runtime_done == 0
    finally:
        bus.drop_subscribers(1.0)


def test_one_drop_applies_to_every_platform_subscriber_and_not_to_others(
    collector: Collector,
) -> None:
    other = Collector()
    # A short poll: its shutdown, inside the test, is not half a second.
    thread = threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    port = other.server_address[1]
    functions_only = Subscription("2022-12-13", ("function",), Buffering(1000, 262_144, 25),
                                  f"http://127.0.0.1:{port}/", "127.0.0.1", port, "/")
    bus = TelemetryBus()
    try:
        bus.subscribe("a", subscription(collector.server_address[1]))
        bus.subscribe("b", functions_only)
        bus.faults.drop_runtime_done = 1
        invocation(bus, "r0")
        delivered(bus, 5 + 1)
        assert [e["type"] for e in collector.events if e["type"].startswith("platform.")] == [
            "platform.telemetrySubscription", "platform.telemetrySubscription",
            "platform.start", "platform.logsDropped"]
        assert [e["record"] for e in other.events] == ["r0 line"]
        stats = bus.subscriber_stats()
        assert (stats["a"]["dropped_records"], stats["b"]["dropped_records"]) == (1, 0)
    finally:
        bus.drop_subscribers(1.0)
        other.shutdown()
        other.server_close()


def test_an_invocation_s_start_and_end_dropped_together_leave_one_notice_where_its_end_was(
    collector: Collector,
) -> None:
    bus = TelemetryBus()
    try:
        bus.subscribe("ext", subscription(collector.server_address[1]))
        bus.faults.drop_start_and_runtime_done = 1
        start = len(wire.encode({"time": bus.clock.format(time.time()),
                                 "type": "platform.start", "record": {"requestId": "r0"}}))
        done = invocation(bus, "r0")
        invocation(bus, "r1")  # one asked for: the next invocation is delivered whole
        delivered(bus, 6)
        seen = [(e["type"], e["record"].get("requestId") if isinstance(e["record"], dict)
                 else e["record"]) for e in collector.events]
        assert seen == [
            ("platform.telemetrySubscription", None),
            ("function", "r0 line"), ("platform.logsDropped", None),
            ("platform.start", "r1"), ("function", "r1 line"), ("platform.runtimeDone", "r1"),
        ]
        [notice] = [e for e in collector.events if e["type"] == "platform.logsDropped"]
        assert notice["record"] == {"droppedBytes": start + done, "droppedRecords": 2,
                                    "reason": delivery.DROP_REASON_SLOW}
        stats = bus.subscriber_stats()["ext"]
        assert (stats["dropped_records"], stats["dropped_bytes"]) == (2, start + done)
        assert bus.counts["platform.start"] == 2  # emitted, whether delivered or not
        assert bus.faults.drop_start_and_runtime_done == 0
    finally:
        bus.drop_subscribers(1.0)


def test_a_start_dropped_whose_invocation_never_ended_is_reported_at_the_next_start(
    collector: Collector,
) -> None:
    bus = TelemetryBus()
    try:
        bus.subscribe("ext", subscription(collector.server_address[1]))
        bus.faults.drop_start_and_runtime_done = 1
        bus.emit("platform.start", {"requestId": "r0"})  # no runtimeDone follows (a reset)
        invocation(bus, "r1")
        delivered(bus, 5)
        assert [e["type"] for e in collector.events] == [
            "platform.telemetrySubscription", "platform.logsDropped", "platform.start",
            "function", "platform.runtimeDone"]
        assert collector.events[1]["record"]["droppedRecords"] == 1
    finally:
        bus.drop_subscribers(1.0)
