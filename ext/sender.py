"""Sender process: drains the spool to Splunk HEC and commits only what HEC accepted.

Holds the spool's reader role. Dispatches when DISPATCH_MIN_BATCH_SIZE events are waiting, when
the oldest waiting event is older than the linger bound, or at once when the main process asks
for a flush (end of invocation) or a drain (shutdown). Retries transient failures with capped,
jittered backoff and holds data through configuration errors: nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
import random
import select
import time
from typing import TYPE_CHECKING

from ext import control
from ext.batching import HecBatch, plan_batches, split_batch, without
from ext.envelope import EnvelopeBuilder
from ext.hec import HecClient, HecOutcome, Verdict
from ext.quarantine import Quarantine
from ext.spool import SpoolReader

if TYPE_CHECKING:
    from ext.config import Config

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.05
RETRY_CAP_S = 30.0
HOLD_BASE_S = 2.0
HOLD_CAP_S = 60.0
IDLE_POLL_S = 0.25
DRAIN_RETRY_S = 0.05
READ_RECORDS = 256
LOSS_NOTICE = "splunk-extension.spool-loss"


class _StopSendingError(Exception):
    """The drain deadline passed or the parent is gone: leave what is unsent in the spool."""


class Sender:
    def __init__(
        self, config: Config, function_name: str, wake_fd: int, control_fd: int, status_fd: int
    ) -> None:
        self.config = config
        self.reader = SpoolReader(config.spool_dir)
        self.builder = EnvelopeBuilder(config, function_name)
        self.client = HecClient(config)
        self.quarantine = Quarantine(os.path.dirname(config.spool_dir.rstrip("/")))
        self.wake_fd = wake_fd
        self.control = control.MessageReader(control_fd)
        self.status_fd = status_fd
        self.parent = os.getppid()
        self.held: list[tuple[int, list[bytes]]] = []
        self.held_events = 0
        self.held_bytes = 0
        self.held_since = 0.0
        self.flush_through = -1
        self.drain_deadline: float | None = None  # monotonic
        self.failing = False
        self.unsent: dict[bytes, tuple[bytes, tuple[object, ...]]] = {}

    def run(self) -> None:
        """Serves until drained at shutdown, the deadline passes, or the parent dies."""
        try:
            while True:
                self._service_control()
                got = self._read_more()
                if self._should_dispatch():
                    self._dispatch_held()
                    continue
                if self.drain_deadline is not None and not got and not self.held:
                    self._tell_main(control.DRAINED, self.reader.committed_seq)
                    return
                if not got:
                    self._wait(self._idle_timeout())
        except _StopSendingError:
            return
        finally:
            self.client.close()
            self.reader.close()

    def _read_more(self) -> bool:
        if self.held_bytes >= self.config.max_request_bytes:
            return True
        budget = max(self.config.max_request_bytes - self.held_bytes, 1)
        records = self.reader.read(max_records=READ_RECORDS, max_bytes=budget, timeout_s=0)
        for record in records:
            envelopes = self.builder.build(record.payload)
            if record is records[-1]:
                envelopes.extend(self._loss_notices())
            if not self.held:
                self.held_since = time.monotonic()
            self.held.append((record.seq, envelopes))
            self.held_events += len(envelopes)
            self.held_bytes += sum(len(e) for e in envelopes) + len(envelopes)
        return bool(records)

    def _loss_notices(self) -> list[bytes]:
        """Spool losses found while reading, reported to Splunk with the data that follows them.

        The spool marks them reported in the commit of this record, so a crash before that
        commit reports them again rather than never.
        """
        loss = self.reader.take_loss_report()
        if not loss:
            return []
        log.error("spool lost data before delivery: %s", loss)
        return [self.builder.notice(LOSS_NOTICE, {
            "dropped_records": loss.dropped_records, "dropped_events": loss.dropped_events,
            "corrupt_records": loss.corrupt_records, "corrupt_events": loss.corrupt_events,
        })]

    def _should_dispatch(self) -> bool:
        if not self.held:
            return False
        if self.drain_deadline is not None or self.held[0][0] <= self.flush_through:
            return True
        if self.held_events >= self.config.dispatch_min_batch_size:
            return True
        if self.held_bytes >= self.config.max_request_bytes:
            return True
        waited = time.monotonic() - self.held_since
        return waited * 1000 >= self.config.dispatch_max_wait_ms

    def _idle_timeout(self) -> float:
        if self.held:
            left = self.config.dispatch_max_wait_ms / 1000 - (time.monotonic() - self.held_since)
            return max(0.0, min(left, IDLE_POLL_S))
        return IDLE_POLL_S

    def _dispatch_held(self) -> None:
        batches = plan_batches(self.held, self.config.max_request_bytes)
        self.held, self.held_events, self.held_bytes = [], 0, 0
        for batch in batches:
            self._deliver(batch)

    def _deliver(self, batch: HecBatch) -> None:
        """Sends one batch until HEC accepts it (or its poison is quarantined), then commits."""
        attempt = 0
        while batch.envelopes:
            outcome = self.client.post(batch.body())
            verdict = outcome.verdict
            if verdict is Verdict.ACCEPTED:
                break
            if verdict is Verdict.TOO_LARGE and len(batch.envelopes) > 1:
                first, second = split_batch(batch)
                self._deliver(first)
                batch = second
                continue
            if verdict in (Verdict.POISON, Verdict.TOO_LARGE):
                batch = self._isolate_poison(batch, outcome)
                continue
            attempt += 1
            self._set_failing(True, outcome)
            self._wait(self._backoff_s(attempt, outcome), servicing=True)
        self._set_failing(False, None)
        self._commit(batch.completes_seq)

    def _isolate_poison(self, batch: HecBatch, outcome: HecOutcome) -> HecBatch:
        index = outcome.invalid_event
        if outcome.code == 7 and index is not None:
            index -= 1  # Splunk 10.4 reports code 7 one past the event (hec.md §1.10)
        if index is not None and 0 <= index < len(batch.envelopes):
            self.quarantine.keep(batch.envelopes[index], outcome.status, outcome.code, outcome.text)
            return without(batch, index)
        if len(batch.envelopes) == 1:
            self.quarantine.keep(batch.envelopes[0], outcome.status, outcome.code, outcome.text)
            return without(batch, 0)
        first, second = split_batch(batch)
        self._deliver(first)
        return second

    def _commit(self, seq: int | None) -> None:
        if seq is None:
            return
        self.reader.commit(seq)
        self._tell_main(control.COMMITTED, seq)

    def _backoff_s(self, attempt: int, outcome: HecOutcome) -> float:
        if self.drain_deadline is not None:
            # The environment is going away: what is not sent now is lost with it, so
            # retry briskly until the deadline instead of waiting out a long backoff.
            return min(DRAIN_RETRY_S * attempt, 0.25)
        if outcome.verdict is Verdict.HOLD:
            hold: float = min(HOLD_CAP_S, HOLD_BASE_S * 2.0 ** min(attempt - 1, 10))
            return hold
        if outcome.retry_after_s is not None:
            return outcome.retry_after_s
        if attempt == 1:
            # The first failure is often a keep-alive connection that went stale during a
            # freeze, or a request that "timed out" while frozen: retry at once.
            return 0.0
        cap: float = min(RETRY_CAP_S, RETRY_BASE_S * 2.0 ** min(attempt, 12))
        return random.uniform(0.0, cap)

    def _set_failing(self, failing: bool, outcome: HecOutcome | None) -> None:
        if failing and self.failing:
            # Each failed attempt answers a pending flush, so the main process stops waiting.
            self._tell_main(control.FAILING)
            return
        if failing == self.failing:
            return
        self.failing = failing
        if failing and outcome is not None:
            log.warning(
                "HEC is not accepting events (%s, status %s, code %s: %s); keeping them spooled",
                outcome.verdict.value, outcome.status, outcome.code, outcome.text,
            )
            self._tell_main(control.FAILING)
        else:
            log.warning("HEC accepts events again")
            self._tell_main(control.HEALTHY)

    def _tell_main(self, kind: bytes, *words: object) -> None:
        """Sends a status message; one the full pipe refused is resent by the next call.

        Only the newest commit and the newest health state matter to the main process, so
        a refused message is replaced, never queued: the pipe cannot overflow.
        """
        slot = b"H" if kind in (control.FAILING, control.HEALTHY) else kind
        self.unsent[slot] = (kind, words)
        for key, (pending_kind, pending_words) in list(self.unsent.items()):
            if control.send(self.status_fd, pending_kind, *pending_words):
                del self.unsent[key]

    def _service_control(self) -> bool:
        """Applies control messages; True when one asks for a send now (flush or drain)."""
        urgent = False
        for kind, words in self.control.read():
            if kind == control.FLUSH and words:
                self.flush_through = max(self.flush_through, int(words[0]))
                urgent = True
            elif kind == control.DRAIN and words:
                left_s = int(words[0]) / 1000 - time.time()
                self.drain_deadline = time.monotonic() + left_s
                urgent = True
        if self.control.closed or os.getppid() != self.parent:
            raise _StopSendingError
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            raise _StopSendingError
        return urgent

    def _wait(self, timeout_s: float, servicing: bool = False) -> None:
        """Sleeps until new data, a control message or the timeout; backoff waits stay live."""
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if self.drain_deadline is not None:
                left = min(left, self.drain_deadline - time.monotonic())
            if left <= 0:
                self._service_control()
                return
            fds = [self.control.fd] if servicing else [self.wake_fd, self.control.fd]
            ready, _, _ = select.select(fds, [], [], min(left, IDLE_POLL_S))
            if self.wake_fd in ready:
                _drain_pipe(self.wake_fd)
            urgent = self._service_control()
            if ready and (not servicing or urgent):
                # New data; or, during a backoff, an invocation ending (flush) or the shutdown
                # (drain): one attempt now, so logs reach HEC as soon as it is back.
                return


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 65_536):
            pass
    except BlockingIOError:
        return
