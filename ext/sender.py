"""Sender process: drains the spool to Splunk HEC and commits only what HEC accepted.

Holds the spool's reader role. Its main thread reads records, maps them to HEC envelopes,
batches and gzips them, and hands each batch to the courier thread (ext/courier.py), which owns
the single in-flight request and the retry policy; the next batch is prepared while the current
one is on the wire. Dispatches when DISPATCH_MIN_BATCH_SIZE events are waiting, when the oldest
waiting event is older than the linger bound, or at once when the main process asks for a
flush (end of invocation) or a drain (shutdown). Commits in order, after HEC accepted.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections import deque

from ext import control
from ext.batching import HecBatch, plan_batches
from ext.courier import Courier
from ext.envelope import EnvelopeBuilder
from ext.hec import compress
from ext.spool import SpoolReader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.config import Config

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.25
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
        self.wake_fd = wake_fd
        self.control = control.MessageReader(control_fd)
        self.status_fd = status_fd
        self.parent = os.getppid()
        self.held: list[tuple[int, list[bytes]]] = []
        self.held_events = 0
        self.held_bytes = 0
        self.held_since = 0.0
        self.outbox: deque[HecBatch] = deque()
        self.flush_through = -1
        self.drain_deadline: float | None = None  # monotonic
        self.unsent: dict[bytes, tuple[bytes, tuple[object, ...]]] = {}
        self.status_lock = threading.Lock()
        self.courier = Courier(config, os.path.dirname(config.spool_dir.rstrip("/")),
                               self._health_changed)

    def run(self) -> None:
        """Serves until drained at shutdown, the deadline passes, or the parent dies."""
        try:
            while True:
                if self._service_control():
                    self.courier.hurry()
                self._commit_done()
                got = self._read_more()
                if not self.outbox and self._should_dispatch():
                    self.outbox.extend(plan_batches(self.held, self.config.max_request_bytes))
                    self.held, self.held_events, self.held_bytes = [], 0, 0
                if self._hand_over():
                    continue
                if self._drained(got):
                    return  # the main process sees the exit: nothing is left to send
                if not got or self.outbox:
                    self._wait(self._idle_timeout())
        except _StopSendingError:
            return
        finally:
            self.courier.stop()
            self.reader.close()

    def _hand_over(self) -> bool:
        """Gives the courier the next batch if it has room; True if one was handed over."""
        while self.outbox and self.courier.can_accept():
            batch = self.outbox.popleft()
            if not batch.envelopes:  # every event of its records was filtered out
                self._commit(batch.completes_seq)
                continue
            self.courier.offer(batch, compress(batch.body(), self.config.gzip_level))
            return True
        return False

    def _drained(self, got: bool) -> bool:
        return (self.drain_deadline is not None and not got and not self.held
                and not self.outbox and self.courier.idle())

    def _commit_done(self) -> None:
        done = [seq for seq in self.courier.take_done() if seq is not None]
        if done:
            self._commit(done[-1])  # delivered in order: the last covers the others

    def _commit(self, seq: int | None) -> None:
        if seq is None:
            return
        self.reader.commit(seq)
        self._tell_main(control.COMMITTED, seq)

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
            self.held_bytes += sum(map(len, envelopes)) + len(envelopes)
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
            "refused_batches": loss.refused_batches, "refused_events": loss.refused_events,
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
        if self.held and not self.outbox:
            left = self.config.dispatch_max_wait_ms / 1000 - (time.monotonic() - self.held_since)
            return max(0.0, min(left, IDLE_POLL_S))
        return IDLE_POLL_S

    def _health_changed(self, healthy: bool) -> None:
        """From the courier thread: FAILING after each failed attempt, HEALTHY on recovery."""
        self._tell_main(control.HEALTHY if healthy else control.FAILING)

    def _tell_main(self, kind: bytes, *words: object) -> None:
        """Sends a status message; one the full pipe refused is resent by the next call.

        Only the newest commit and the newest health state matter to the main process, so
        a refused message is replaced, never queued: the pipe cannot overflow.
        """
        slot = b"H" if kind in (control.FAILING, control.HEALTHY) else kind
        with self.status_lock:  # the courier thread reports health through here too
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
                self.courier.drain_deadline = self.drain_deadline
                urgent = True
        if self.control.closed or os.getppid() != self.parent:
            raise _StopSendingError
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            raise _StopSendingError
        return urgent

    def _wait(self, timeout_s: float) -> None:
        """Sleeps until new data, a delivered batch, a control message or the timeout."""
        left = timeout_s
        if self.drain_deadline is not None:
            left = min(left, self.drain_deadline - time.monotonic())
        if left > 0:
            fds = [self.wake_fd, self.control.fd, self.courier.done_r]
            ready, _, _ = select.select(fds, [], [], left)
            if self.wake_fd in ready:
                control.drain_pipe(self.wake_fd)

