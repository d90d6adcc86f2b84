"""The extension's own health as metrics: spool, HEC delivery, CPU and memory, in the sender.

Collected once per invocation batch (a spool record holding an invocation's platform.runtimeDone;
Lambda may deliver several invocations' telemetry in one batch after a freeze) and
once at shutdown; never per event, never at init. Counters are deltas since the previous
emission (so `sum` over time is the total), gauges are the state at emission. Sent as one
multi-metric event into SPLUNK_METRICS_INDEX, or as an `aws:lambda:extension` event with
`telemetry_type=splunk-extension.self-metrics` (the values under `metrics`) when no metrics
index is set. Names in docs/metrics.md.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

from ext.sender.metrics import encode, inner_fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.sender.envelope import EnvelopeBuilder
    from ext.sender.metrics import MetricMapper
    from ext.spool.ackstate import SpoolStats

KIND = "splunk-extension.self-metrics"
PREFIX = "splunk.extension."
MAX_LATENCIES = 4096
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class DeliveryStats:
    """What the courier thread did since the last emission (written there, read here); the
    byte counts are the sender thread's own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a request counted while take() resets is not lost
        self.requests = 0
        self.retries = 0
        self.failures: dict[str, int] = {}  # by verdict: retry, hold, poison, too_large
        self.latencies_ms: list[float] = []
        self.quarantined = 0  # events HEC refused as invalid, taken out of delivery
        self.quarantine_lost = 0  # of those, the ones the dead-letter file could not keep
        self.repaired = 0  # events HEC refused, then took with U+FFFD for invalid UTF-8
        self.bytes_uncompressed = 0
        self.bytes_compressed = 0

    def requested(self, elapsed_s: float, verdict: str, retry: bool) -> None:
        """One HEC request ended with `verdict` after `elapsed_s`."""
        with self._lock:
            self.requests += 1
            if retry:
                self.retries += 1
            if verdict != "accepted":
                self.failures[verdict] = self.failures.get(verdict, 0) + 1
            if len(self.latencies_ms) < MAX_LATENCIES:
                self.latencies_ms.append(elapsed_s * 1000)

    def quarantined_event(self, kept: bool) -> None:
        """One event HEC refused as invalid went to the dead-letter file (`kept`) or, the file
        full or unwritable, was lost."""
        with self._lock:
            self.quarantined += 1
            if not kept:
                self.quarantine_lost += 1

    def repaired_event(self) -> None:
        """One event HEC refused for invalid UTF-8 was delivered with U+FFFD in its place."""
        with self._lock:
            self.repaired += 1

    def take(self) -> dict[str, float | int]:
        """The counters since the last call, as metric values; resets them."""
        with self._lock:
            requests, retries, failures = self.requests, self.retries, self.failures
            quarantined, lost, repaired = self.quarantined, self.quarantine_lost, self.repaired
            latencies = sorted(self.latencies_ms)
            self.requests = self.retries = self.quarantined = self.quarantine_lost = 0
            self.repaired = 0
            self.failures, self.latencies_ms = {}, []
        values: dict[str, float | int] = {
            "hec.requests": requests, "hec.retries": retries,
            "hec.quarantined_events": quarantined, "hec.quarantine_lost_events": lost,
            "hec.repaired_events": repaired,
            "hec.bytes_uncompressed": self.bytes_uncompressed,
            "hec.bytes_compressed": self.bytes_compressed,
        }
        self.bytes_uncompressed = self.bytes_compressed = 0
        for verdict in ("retry", "hold", "poison", "too_large"):
            values[f"hec.failures.{verdict}"] = failures.get(verdict, 0)
        if latencies:
            values["hec.latency_p50_ms"] = round(percentile(latencies, 50), 3)
            values["hec.latency_p99_ms"] = round(percentile(latencies, 99), 3)
        return values


def percentile(ordered: list[float], pct: int) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, -(-pct * len(ordered) // 100))
    return ordered[rank - 1]


class UnsentRecords:
    """Records read from the spool and not yet committed: count, events, oldest append time."""

    def __init__(self) -> None:
        self._records: deque[tuple[int, int, int]] = deque()  # seq, events, append_time_ns
        self.events = 0

    def read(self, seq: int, events: int, append_time_ns: int) -> None:
        self._records.append((seq, events, append_time_ns))
        self.events += events

    def committed(self, through_seq: int) -> None:
        records = self._records
        while records and records[0][0] <= through_seq:
            self.events -= records.popleft()[1]

    def oldest_age_ms(self) -> float:
        if not self._records:
            return 0.0
        return max(0.0, (time.time_ns() - self._records[0][2]) / 1e6)


def process_figures(pids: dict[str, int]) -> dict[str, float | int]:
    """CPU milliseconds used so far and resident MB, per role, from /proc/<pid>/stat alone (one
    small read per process); a process that is gone is left out."""
    values: dict[str, float | int] = {}
    for role, pid in pids.items():
        try:
            fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            try:
                stat = os.read(fd, 1024)  # raw read: a third of the cost of a buffered file
            finally:
                os.close(fd)
            fields = stat[stat.rfind(b")") + 2:].split()
            # proc(5): utime and stime are fields 14 and 15, rss (pages) 24; field 3 is index 0.
            ticks, pages = int(fields[11]) + int(fields[12]), int(fields[21])
        except (OSError, ValueError, IndexError):
            continue
        values[f"process.{role}.cpu_ms"] = round(ticks * 1000 / _TICKS_PER_S, 1)
        values[f"process.{role}.rss_mb"] = round(pages * _PAGE_KB / 1024, 2)
    return values


def extension_pids() -> dict[str, int]:
    """The sender (this process), main (its parent) and the listener (main's other child)."""
    pids = {"sender": os.getpid()}
    main = os.getppid()
    if main > 1:
        pids["main"] = main
        try:
            with open(f"/proc/{main}/task/{main}/children", "rb") as fh:
                children = [int(p) for p in fh.read().split()]
        except (OSError, ValueError):
            children = []
        others = [p for p in children if p != pids["sender"]]
        if len(others) == 1:
            pids["listener"] = others[0]
    return pids


class SelfMetrics:
    """Builds the self-metrics event from the sender's figures."""

    def __init__(self, metrics: MetricMapper, enabled: bool,
                 delivery: DeliveryStats | None = None, interval_s: float = 0.0) -> None:
        self.metrics = metrics
        self.enabled = enabled
        self.interval_s = interval_s
        self.last_emitted: float | None = None  # monotonic
        self.delivery = delivery or DeliveryStats()
        self.unsent = UnsentRecords()
        # Invocations whose runtimeDone was never read, answered where their end was presumed
        # (ext/sender/invocations.py): a count of what the drop notices cost the flushes.
        self.ends_lost = 0
        # Main's counts over the environment's life (a restarted sender reports them on, where
        # its own counters start from 0): told at this sender's fork, then by main's notes.
        self.restarts = {"process.listener.restarts": 0, "process.sender.restarts": 0,
                         "process.sender.hangs": 0}
        self.emitted = 0
        self._pids: dict[str, int] = {}

    def supervised(self, listener_restarts: int, sender_restarts: int, sender_hangs: int) -> None:
        """Main's restart counts as told: totals, so a note read late (left by the sender before
        this one, older than the counts this one was forked with) lowers none."""
        counts = self.restarts
        for name, told in (("process.listener.restarts", listener_restarts),
                           ("process.sender.restarts", sender_restarts),
                           ("process.sender.hangs", sender_hangs)):
            counts[name] = max(counts[name], told)

    def due(self, reason: str) -> bool:
        """An event would be made now: turned on and, at an invocation, the interval passed.
        Asked first, so that the figures cost nothing (a directory listing) when none is due."""
        if not self.enabled:
            return False
        return (reason != "invocation" or self.last_emitted is None
                or time.monotonic() - self.last_emitted >= self.interval_s)

    def envelope(self, builder: EnvelopeBuilder, spool: SpoolStats, unsent_bytes: int,
                 reason: str) -> bytes | None:
        """One self-metrics event (metric or event), or None when turned off or, at an
        invocation, when the last one is less than the interval old (counters accumulate)."""
        if not self.due(reason):
            return None
        self.last_emitted = time.monotonic()
        values: dict[str, float | int] = {
            "spool.unsent_events": self.unsent.events,
            "spool.unsent_bytes": unsent_bytes,
            "spool.oldest_unsent_age_ms": round(self.unsent.oldest_age_ms(), 1),
            "spool.delivered_events": spool.delivered_events,
            "spool.dropped_events": spool.dropped_events,
            "spool.corrupt_events": spool.corrupt_events,
            "spool.refused_events": spool.refused_events,
            "envelope.malformed_events": builder.malformed,
            "telemetry.dropped_records": builder.dropped_records,
            "invocations.ends_lost": self.ends_lost,
            **self.restarts,
        }
        values.update(self.delivery.take())
        if len(self._pids) < 3 or self.emitted % 64 == 0:  # a restarted listener has a new pid
            self._pids = extension_pids()
        values.update(process_figures(self._pids))
        self.emitted += 1
        stamp = f"{time.time():.3f}".encode()
        named = {PREFIX + name: value for name, value in values.items()}
        common = inner_fields(builder._fields_for(KIND))
        metric = self.metrics.metric_event(stamp, common, {"reason": reason}, named)
        if metric is not None:
            return metric
        # Nested: the extension's loss notices keep their counts at the top level of the body.
        body = encode({"type": KIND, "reason": reason, "metrics": named})
        return (b'{"time":' + stamp + builder._fields_for(KIND)
                + b'},"event":' + body + b"}")
