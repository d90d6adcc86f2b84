"""Per-subscriber telemetry delivery: buffering, one POST in flight, retry, drop accounting.

Runs one thread per subscriber inside the emulator process. Events arrive pre-encoded (JSON bytes)
from the bus; a batch is flushed on maxItems/maxBytes at once, or timeoutMs after its oldest event,
never while the sandbox is frozen (lambda-protocol 2.4, 3.3).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from ext.local.sandbox import wire
from ext.local.sandbox.subscription import Subscription

log = logging.getLogger(__name__)

POST_TIMEOUT_S = 10.0
RETRY_ATTEMPTS = 5
RETRY_BASE_S = 0.025
DROP_REASON_SLOW = (
    "Consumer seems to have fallen behind as it has not acknowledged receipt of logs."
)
DROP_REASON_FAILED = "could not send events: "
DROP_REASON_RESET = "could not send events before the execution environment was reset"
_DROP_MARK = b'"platform.logsDropped"'


@dataclass
class DeliveryFaults:
    """Knobs that make delivery slow or failing, shared by every subscriber of a sandbox."""

    delay_s: float = 0.0  # sleep before each POST attempt (slow listener)
    fail_attempts: int = 0  # the next N POST attempts fail without being sent
    # No POST attempt starts while set, thawed or not: the test decides when an extension gets
    # its telemetry. Set and cleared through TelemetryBus (hold, begin_shutdown), which wake
    # the subscribers.
    held: bool = False
    # At SHUTDOWN, deliver nothing for this long (Lambda may deliver the last report late).
    shutdown_delay_s: float = 0.0
    # In the shutdown window, buffer as before it (timeoutMs, maxItems, maxBytes) instead of
    # delivering at once: what Lambda does then is not documented.
    shutdown_buffered: bool = False
    # The next N platform.runtimeDone records are dropped from every subscriber's delivery, a
    # platform.logsDropped in their place: an invocation's end lost as Lambda may lose it.
    drop_runtime_done: int = 0
    # The next N invocations lose both their platform.start and platform.runtimeDone, one
    # platform.logsDropped (counting both) where the runtimeDone would have been: an
    # invocation of which a subscriber reads no landmark at all, only its lines.
    drop_start_and_runtime_done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take_failure(self) -> bool:
        """Consume one injected failure, if any is left."""
        return self._take("fail_attempts")

    def take_runtime_done_drop(self) -> bool:
        """Consume one injected runtimeDone drop, if any is left."""
        return self._take("drop_runtime_done")

    def take_start_drop(self) -> bool:
        """Consume one injected drop of an invocation's start and end, if any is left."""
        return self._take("drop_start_and_runtime_done")

    def _take(self, counter: str) -> bool:
        with self.lock:
            left = getattr(self, counter)
            if left > 0:
                setattr(self, counter, left - 1)
                return True
            return False


@dataclass
class DeliveryStats:
    """Counters of one subscriber (JSON-serialisable through `as_dict`)."""

    batches: int = 0
    events: int = 0
    bytes: int = 0
    failed_attempts: int = 0
    dropped_records: int = 0
    dropped_bytes: int = 0
    max_batch_items: int = 0
    max_age_ms: float = 0.0  # oldest event's wait from emit to POST start

    def as_dict(self) -> dict[str, float]:
        """Plain dict for inspect()."""
        return dict(vars(self))


class Subscriber:
    """Buffers events for one extension's listener and POSTs them from its own thread."""

    def __init__(
        self, name: str, sub: Subscription, faults: DeliveryFaults, buffer_limit_bytes: int
    ) -> None:
        self.name = name
        self.sub = sub
        self.types = frozenset(sub.types)
        self.stats = DeliveryStats()
        self._faults = faults
        self._limit = buffer_limit_bytes
        self._cv = threading.Condition()
        self._pending: deque[tuple[bytes, float]] = deque()
        self._pending_bytes = 0
        self._first_t: float | None = None
        self._paused = False
        self._urgent = False  # shutdown window: ignore timeoutMs
        self._stop_at: float | None = None
        self._resume_at: float | None = None  # shutdown delivery held until then (fault)
        self._drop_pending = (0, 0, "")
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name=f"telemetry-{name}", daemon=True)

    def start(self, paused: bool) -> None:
        """Start the delivery thread."""
        self._paused = paused
        self._thread.start()

    def offer(self, items: list[bytes], now: float) -> None:
        """Queue encoded events, dropping what exceeds the memory bound."""
        sub = self.sub.buffering
        with self._cv:
            was_empty = not self._pending
            for item in items:
                size = len(item)
                if self._pending_bytes + size > self._limit:
                    rec, byt, _ = self._drop_pending
                    self._drop_pending = (rec + 1, byt + size, DROP_REASON_SLOW)
                    continue
                self._pending.append((item, now))
                self._pending_bytes += size
            if not self._pending:
                return
            if was_empty:
                self._first_t = now
                self._cv.notify()
            elif len(self._pending) >= sub.max_items or self._pending_bytes >= sub.max_bytes:
                self._cv.notify()

    def drop(self, items: list[bytes], now: float, reason: str) -> None:
        """Drop encoded events as if this subscriber had fallen behind (a fault): counted, with
        a platform.logsDropped where they would have been, so the listener reads the notice
        right after what preceded them."""
        with self._cv:
            self._queue_drop_notice(len(items), sum(len(item) for item in items), reason, now)
            # The notice is buffered like any event; the thread re-reads when a batch is due.
            self._cv.notify()

    def set_paused(self, paused: bool) -> None:
        """Freeze (True) or thaw (False) delivery."""
        with self._cv:
            self._paused = paused
            self._cv.notify()

    def wake(self) -> None:
        """Look at the shared faults again (a hold was lifted)."""
        with self._cv:
            self._cv.notify()

    def _gated(self) -> bool:
        """No attempt may start now: frozen, or held by the fault (caller holds _cv)."""
        return self._paused or self._faults.held

    def begin_shutdown(self, stop_at: float) -> None:
        """Deliver everything pending at once (after the fault's shutdown delay, if any) and keep
        going until monotonic `stop_at`."""
        with self._cv:
            if self._faults.shutdown_delay_s > 0:
                self._resume_at = time.monotonic() + self._faults.shutdown_delay_s
            self._paused = False
            self._urgent = not self._faults.shutdown_buffered
            self._stop_at = stop_at
            self._cv.notify()

    def pending_count(self) -> int:
        """Events not yet delivered."""
        with self._cv:
            return len(self._pending)

    def join(self, timeout_s: float) -> None:
        """Stop now: abort any POST in flight and wait for the thread (bounded)."""
        with self._cv:
            self._stop_at = time.monotonic()
            self._cv.notify()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(2)
        self._thread.join(timeout_s)
        if self._conn is not None:
            self._conn.close()

    def undelivered(self) -> tuple[int, int]:
        """After `join`: (records, bytes) this subscriber could no longer deliver, its queued
        platform.logsDropped notices included (what they count). The events never sent are
        counted as dropped in its stats here; the caller reports the total to the next
        subscriber of the same extension (a notice queued for a dead listener would vanish)."""
        with self._cv:
            records, size, _ = self._drop_pending
            fresh = 0
            for item, _ in self._pending:
                if _DROP_MARK in item:
                    record = json.loads(item).get("record", {})
                    records += int(record.get("droppedRecords", 0))
                    size += int(record.get("droppedBytes", 0))
                else:
                    fresh += 1
                    size += len(item)
            self.stats.dropped_records += fresh + self._drop_pending[0]
            self.stats.dropped_bytes += self._drop_pending[1] + sum(
                len(item) for item, _ in self._pending if _DROP_MARK not in item)
            self._pending.clear()
            self._pending_bytes = 0
            self._drop_pending = (0, 0, "")
            return records + fresh, size

    def report_earlier_drop(self, records: int, size: int) -> None:
        """Queue a platform.logsDropped for what an earlier subscriber of this extension could
        not deliver before a reset (already counted in that subscriber's stats)."""
        with self._cv:
            self._queue_drop_notice(records, size, DROP_REASON_RESET, time.monotonic(),
                                    count=False)
            self._cv.notify()

    def _ready(self, now: float) -> bool:
        buf = self.sub.buffering
        if not self._pending or self._gated():
            return False
        if self._resume_at is not None and now < self._resume_at:
            return False
        if self._urgent or len(self._pending) >= buf.max_items:
            return True
        if self._pending_bytes >= buf.max_bytes:
            return True
        return self._first_t is not None and now >= self._first_t + buf.timeout_ms / 1000

    def _next_batch(self) -> list[tuple[bytes, float]] | None:
        """Block until a batch is due; None once stopped."""
        with self._cv:
            while True:
                now = time.monotonic()
                if self._stop_at is not None and now >= self._stop_at:
                    return None
                if self._ready(now):
                    break
                wait: float | None = None
                if self._pending and not self._gated():
                    if self._resume_at is not None and now < self._resume_at:
                        wait = self._resume_at - now
                    elif self._first_t is not None:
                        wait = self._first_t + self.sub.buffering.timeout_ms / 1000 - now
                if self._stop_at is not None:
                    left = self._stop_at - now
                    wait = left if wait is None else min(wait, left)
                self._cv.wait(wait)
            return self._take_batch(now)

    def _take_batch(self, now: float) -> list[tuple[bytes, float]]:
        buf = self.sub.buffering
        batch: list[tuple[bytes, float]] = []
        size = 0
        while self._pending and len(batch) < buf.max_items:
            item_size = len(self._pending[0][0])
            if batch and size + item_size > buf.max_bytes:
                break
            entry = self._pending.popleft()
            batch.append(entry)
            size += item_size
        self._pending_bytes -= size
        # Items left behind are older than timeoutMs/limits already: they go out right after.
        self._first_t = self._pending[0][1] if self._pending else None
        rec, byt, reason = self._drop_pending
        if rec:
            self._drop_pending = (0, 0, "")
            self._queue_drop_notice(rec, byt, reason, now)
        return batch

    def _queue_drop_notice(
        self, records: int, size: int, reason: str, now: float, count: bool = True
    ) -> None:
        """Count a drop and queue platform.logsDropped for this subscriber (caller holds _cv)."""
        if count:
            self.stats.dropped_records += records
            self.stats.dropped_bytes += size
        if "platform" not in self.types:
            return
        record = {"droppedBytes": size, "droppedRecords": records, "reason": reason}
        encoded = wire.encode(
            {"time": wire.iso_ms(time.time()), "type": "platform.logsDropped", "record": record}
        )
        self._pending.append((encoded, now))
        self._pending_bytes += len(encoded)
        if self._first_t is None:
            self._first_t = now

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            body = b"[" + b",".join(item for item, _ in batch) + b"]"
            age_ms = (time.monotonic() - batch[0][1]) * 1000
            error = self._post_with_retry(body)
            if error is None:
                st = self.stats
                st.batches += 1
                st.events += len(batch)
                st.bytes += len(body)
                st.max_batch_items = max(st.max_batch_items, len(batch))
                st.max_age_ms = max(st.max_age_ms, age_ms)
            else:
                log.debug("telemetry to %s dropped %d events: %s", self.name, len(batch), error)
                with self._cv:
                    reason = DROP_REASON_FAILED + error
                    self._queue_drop_notice(len(batch), len(body), reason, time.monotonic())

    def _post_with_retry(self, body: bytes) -> str | None:
        """POST `body`; None on 2xx, else the last error after bounded retries."""
        error = "not attempted"
        for attempt in range(RETRY_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
            with self._cv:
                while self._gated() and self._stop_at is None:
                    self._cv.wait()  # no delivery attempts while frozen or held
                if self._stop_at is not None and time.monotonic() >= self._stop_at:
                    return "shutdown deadline"
            error = self._post_once(body)
            if not error:
                return None
            self.stats.failed_attempts += 1
        return error

    def _post_once(self, body: bytes) -> str:
        if self._faults.delay_s:
            time.sleep(self._faults.delay_s)
        if self._faults.take_failure():
            return "injected failure"
        sub = self.sub
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", sub.port, timeout=POST_TIMEOUT_S)
        headers = {"Content-Type": "application/json", "Host": f"{sub.host}:{sub.port}"}
        try:
            self._conn.request("POST", sub.path, body, headers)
            resp = self._conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as err:
            self._conn.close()
            self._conn = None
            return f"{type(err).__name__}: {err}"
        if resp.will_close:
            self._conn.close()
            self._conn = None
        if resp.status >= 300:
            return f"HTTP {resp.status}"
        return ""
