"""Telemetry bus of one sandbox: encodes every event once and fans it out to subscribers.

Emulator process only. Keeps the replay log of events emitted before subscriptions close
(lambda-protocol 2.2), counts events per type, and freezes/thaws every subscriber's delivery.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ext.local.sandbox import wire
from ext.local.sandbox.delivery import DROP_REASON_SLOW, DeliveryFaults, Subscriber
from ext.local.sandbox.subscription import Subscription

DEFAULT_BUFFER_LIMIT_BYTES = 32 * 1024 * 1024


def category_of(event_type: str) -> str:
    """Subscription type that selects `event_type` (platform.* -> platform)."""
    return "platform" if event_type.startswith("platform.") else event_type


class TelemetryBus:
    """Fans encoded events out to subscribers; thread-safe."""

    def __init__(self, buffer_limit_bytes: int = DEFAULT_BUFFER_LIMIT_BYTES) -> None:
        self.faults = DeliveryFaults()
        self.counts: Counter[str] = Counter()
        self.clock = wire.IsoClock()
        self._limit = buffer_limit_bytes
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._retired: list[Subscriber] = []
        # (records, bytes) a reset left undelivered, by extension name: reported to its next
        # subscription as platform.logsDropped rather than silently forgotten.
        self._undelivered: dict[str, tuple[int, int]] = {}
        self._replay: list[tuple[str, bytes]] | None = []
        self._paused = False
        self._observers: list[Callable[[str, Any], None]] = []
        # A platform.start dropped by the fault (drop_start_and_runtime_done), held until its
        # invocation's runtimeDone: both are reported in one notice where that end stood.
        self._dropped_start: list[bytes] = []

    def add_observer(self, callback: Callable[[str, Any], None]) -> None:
        """Call `callback(event_type, record)` for every platform.* event (tests, CLI)."""
        self._observers.append(callback)

    def emit(self, event_type: str, record: Any) -> None:
        """Emit one event stamped now."""
        now = time.time()
        encoded = wire.encode(
            {"time": self.clock.format(now), "type": event_type, "record": record}
        )
        for callback in self._observers:
            callback(event_type, record)
        self._fan_out(category_of(event_type), event_type, [encoded], 1)

    def emit_logs(self, event_type: str, records: list[Any], epoch_s: float | None = None) -> None:
        """Emit a batch of `function` or `extension` records sharing one timestamp."""
        if not records:
            return
        stamp = self.clock.format(time.time() if epoch_s is None else epoch_s)
        encode = wire.encode
        encoded = [encode({"time": stamp, "type": event_type, "record": r}) for r in records]
        self._fan_out(event_type, event_type, encoded, len(encoded))

    def emit_timed(self, event_type: str, records: list[tuple[float, Any]]) -> None:
        """Emit log records that carry their own epoch timestamps (framed runtime logs)."""
        if not records:
            return
        fmt = self.clock.format
        encode = wire.encode
        encoded = [encode({"time": fmt(t), "type": event_type, "record": r}) for t, r in records]
        self._fan_out(event_type, event_type, encoded, len(encoded))

    def _fan_out(self, category: str, event_type: str, encoded: list[bytes], count: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts[event_type] += count  # emitted, whether delivered or dropped
            if self._replay is not None:
                self._replay.extend((category, item) for item in encoded)
            # Taken under the lock: one record's drop applies to every subscriber alike.
            dropped: list[bytes] = []
            if event_type == "platform.start":
                if self._dropped_start:  # its invocation never ended: its start reported alone
                    self._drop(category, self._dropped_start, now)
                    self._dropped_start = []
                if self.faults.take_start_drop():
                    self._dropped_start = encoded
                    return
            elif event_type == "platform.runtimeDone":
                if self._dropped_start:
                    dropped, self._dropped_start = self._dropped_start + encoded, []
                elif self.faults.take_runtime_done_drop():
                    dropped = encoded
            if dropped:
                self._drop(category, dropped, now)
                return
            for sub in self._subscribers:
                if category in sub.types:
                    sub.offer(encoded, now)

    def _drop(self, category: str, encoded: list[bytes], now: float) -> None:
        """Drops records from every subscriber of their category, one platform.logsDropped
        (counting them all) in their place (caller holds _lock)."""
        for sub in self._subscribers:
            if category in sub.types:
                sub.drop(encoded, now, DROP_REASON_SLOW)

    def subscribe(self, name: str, sub: Subscription) -> None:
        """Add (or replace) `name`'s subscriber, replaying events emitted so far in this init."""
        with self._lock:
            replaced = [s for s in self._subscribers if s.name == name]
            for old in replaced:
                self._subscribers.remove(old)
                self._retired.append(old)
            subscriber = Subscriber(name, sub, self.faults, self._limit)
            replay = [item for cat, item in self._replay or [] if cat in subscriber.types]
            if replay:
                subscriber.offer(replay, time.monotonic())
            records, size = self._undelivered.pop(name, (0, 0))
            if records:
                subscriber.report_earlier_drop(records, size)
            self._subscribers.append(subscriber)
            subscriber.start(self._paused)
        for old in replaced:
            old.join(0.5)
        self.emit(
            "platform.telemetrySubscription",
            {"name": name, "state": "Subscribed", "types": list(sub.types)},
        )

    def close_replay(self) -> None:
        """Subscriptions closed: stop keeping events for late subscribers."""
        with self._lock:
            self._replay = None

    def open_replay(self) -> None:
        """A new init begins: record events for subscribers of this init."""
        with self._lock:
            self._replay = []

    def set_paused(self, paused: bool) -> None:
        """Freeze (no deliveries) or thaw every subscriber."""
        with self._lock:
            self._paused = paused
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.set_paused(paused)

    def hold(self, held: bool) -> None:
        """Hold (True) every subscriber's delivery, thawed or not, or lift the hold (False)."""
        with self._lock:
            self.faults.held = held
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.wake()

    def begin_shutdown(self, stop_at: float) -> None:
        """Flush pending telemetry at once and keep delivering until monotonic `stop_at`
        (a hold ends here: the window is for delivering what is pending)."""
        with self._lock:
            self._paused = False
            self.faults.held = False
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.begin_shutdown(stop_at)

    def drop_subscribers(self, join_timeout_s: float = 1.0) -> None:
        """Stop every delivery thread and forget the subscriptions (reset or shutdown end).

        What a subscriber still held (events not delivered, logsDropped notices not sent: its
        listener was dead or too slow) is not forgotten: the extension's next subscription, in
        the environment that replaces this one, gets one platform.logsDropped counting it.
        """
        with self._lock:
            subscribers = self._subscribers
            self._subscribers = []
            self._retired.extend(subscribers)
        for sub in subscribers:
            sub.join(join_timeout_s)
            records, size = sub.undelivered()
            if records:
                with self._lock:
                    before = self._undelivered.get(sub.name, (0, 0))
                    self._undelivered[sub.name] = (before[0] + records, before[1] + size)

    def subscriber_stats(self) -> dict[str, dict[str, float]]:
        """Delivery counters per subscriber name, including retired ones."""
        with self._lock:
            subs = self._retired + self._subscribers
        stats: dict[str, dict[str, float]] = {}
        for sub in subs:
            merged = stats.setdefault(sub.name, {})
            for key, value in sub.stats.as_dict().items():
                if key.startswith("max_"):
                    merged[key] = max(merged.get(key, 0.0), value)
                else:
                    merged[key] = merged.get(key, 0.0) + value
        return stats
