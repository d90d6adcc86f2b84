"""Courier: the sender process's delivery thread, one HEC request in flight at a time.

It takes a prepared batch, POSTs it, and keeps at it until HEC accepted it (a kept-alive
connection found dropped is replaced within the request by the client, ext/sender/hec.py, and
is no failure): immediate retry once (a request that "timed out" while frozen), then capped,
jittered backoff on
transient failures, longer holds on configuration errors, halving on 413, quarantine of an event
HEC names as invalid (sent once more first if it holds invalid UTF-8, with U+FFFD in its
place). While it waits on the network, the sender thread prepares (decodes, maps, gzips) the
next batch: that overlap is the sender's throughput. It never touches the spool;
the sender commits what the courier reports done, in order. A lone batch while the thread is
idle and HEC healthy is sent on the sender's thread (`deliver_now`): one attempt, then the thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections import deque

from ext import control
from ext.sender.batching import HecBatch, seal, split_batch, without
from ext.sender.breaker import HangBreaker
from ext.sender.hec import HecClient, HecOutcome, Verdict
from ext.sender.quarantine import Quarantine, repaired_utf8
from ext.sender.self_metrics import DeliveryStats

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.config import Config

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.05
RETRY_CAP_S = 30.0
HOLD_BASE_S = 2.0
HOLD_CAP_S = 60.0
DRAIN_RETRY_S = 0.05
# An attempt on the sender's thread with less time than this to answer a waiting flush would
# most likely time out: the courier thread sends it.
MIN_INLINE_S = 0.02
INLINE_MARGIN = 4.0  # the round trips an inline attempt may take at least
RECENT_TRIPS = 5
TRANSFER_SHOWS = 2.0  # a request this many times the fastest round trip measures the bandwidth
INLINE_SUSPEND_S = 60.0  # after an inline attempt timed out: at most one such a minute
EXIT_CRASHED = 70  # as supervisor.EXIT_CRASHED; the main process restarts the sender


class _StoppedError(Exception):
    """Stop was asked for, or the drain deadline passed: the batch stays in the spool."""


class Courier:
    """Delivers batches on its own thread; `offer` hands one over, `take_done` collects results."""

    def __init__(self, config: Config, quarantine_dir: str) -> None:
        self.client = HecClient(config)
        self.quarantine = Quarantine(quarantine_dir)
        self.repaired = 0  # events HEC took once their invalid UTF-8 was replaced
        # Read by the sender thread: a new failure answers the flushes waiting on HEC.
        self.failures = 0  # failed attempts so far
        self.failing = False  # since the last failure, no request succeeded
        self.posting_since: float | None = None  # monotonic start of the POST on the wire
        # Open after a failed attempt slower than a flush may wait (or a timeout): HEC may not
        # answer at all, flushes do not wait on it (ext/sender/breaker.py).
        self.breaker = HangBreaker(config.flush_budget_ms / 1000)
        # Measured on accepted requests, for the shutdown's drain estimate (flush_policy.py).
        self.queued_bytes = 0  # uncompressed bytes offered and not yet delivered
        self.sent_bytes = 0
        # A request that spanned a freeze (sent as the environment froze, answered at the thaw)
        # takes as long as the freeze: only the fastest recent figures are trusted, a freeze
        # only ever makes one slower (a cumulative rate took one such as the network's, and
        # the shutdown then kept seconds for a drain of milliseconds: the last report lost).
        self.round_trip_s: float | None = None  # the fastest recent accepted request
        self.recent_trips: deque[float] = deque(maxlen=RECENT_TRIPS)  # accepted requests' times
        self.recent_rates: deque[float] = deque(maxlen=RECENT_TRIPS)  # bytes/s beyond the trip
        # Longer than the client lets a request take (connecting, then reading): it was frozen.
        self._longest_s = (config.connect_timeout_ms + config.request_timeout_ms) / 1000
        self._inline_after = 0.0  # monotonic; no inline attempt before (one timed out)
        self.drain_deadline: float | None = None  # monotonic; set by the sender thread
        self.stats = DeliveryStats()  # requests, retries, failures, latency: self-metrics
        self._cv = threading.Condition()
        self._slot: HecBatch | None = None
        self._resent: HecBatch | None = None  # offered after its inline attempt failed
        self._busy = False
        self._done: list[int | None] = []
        self._hurry = False
        self._pausing = False  # in a backoff: what `hurry` has to wake
        self._connected_ahead = False  # `_prepare` is done: the client is free for the caller
        self._reconnect = False  # `restored`: connect ahead again
        self._cut = False  # `restored` cut the connection of the request on the wire
        self._stopping = False
        self.done_r, self._done_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="courier", daemon=True)
        self._thread.start()

    @property
    def hanging(self) -> bool:
        """HEC is presumed to hang: a flush must not wait on it (the breaker is open)."""
        return self.breaker.is_open

    def stalled(self, limit_s: float) -> bool:
        """A request has been on the wire for longer than `limit_s`: as good as hanging for an
        invocation that would wait at most that long (a HEC that accepts connections and never
        answers only times out after SPLUNK_REQUEST_TIMEOUT_MS)."""
        since = self.posting_since
        return since is not None and time.monotonic() - since > limit_s

    def offer(self, batch: HecBatch) -> bool:
        """Queues one batch; False if one is already waiting."""
        with self._cv:
            if self._slot is not None:
                return False
            self._slot = batch
            self.queued_bytes += batch.size
            self._cv.notify_all()
            return True

    def deliver_now(self, batch: HecBatch, within_s: float) -> bool:
        """Sends `batch` on the caller's thread when nothing else is pending and HEC is healthy;
        True once HEC accepted it (nothing to collect with `take_done`). Otherwise it is offered
        to the delivery thread, which sends or retries it as usual; False. The attempt gives up
        (a RETRY) after `within_s`, so the caller answers a waiting flush within its budget.

        The usual batch per invocation finds the thread idle: handing it over cost a thread
        switch each way (the condition, the GIL, the wake-up pipe and the sender's extra pass),
        more CPU than the request itself. Only while HEC answers promptly: the first failure,
        and every batch while it fails, goes through the thread, whose backoff and breaker
        keep the sender free to answer the main process. A token is held by then (at least one
        request was accepted), so the attempt never waits on a token fetch either. Only when
        HEC's recent round trips (the fastest of them: a request that spanned a freeze looks
        slow) are well within the limit, and not for a while after an inline attempt timed out:
        a HEC slower than the limit would time out here at every invocation, and a request it
        received and answered late is a duplicate.
        """
        with self._cv:
            inline = (within_s >= MIN_INLINE_S and self._connected_ahead and self._slot is None
                      and not self._busy
                      and not self._done and not self.failing and not self.breaker.is_open
                      and self.drain_deadline is None and bool(self.recent_trips)
                      and min(self.recent_trips) * INLINE_MARGIN <= within_s
                      and time.monotonic() >= self._inline_after)
            if inline:
                self._busy = True  # the thread stays off the connection meanwhile
        if not inline:
            self.offer(batch)
            return False
        try:
            started = self.posting_since = time.monotonic()
            try:
                outcome = self.client.post(batch.body, within_s)
            finally:
                self.posting_since = None
            took = time.monotonic() - started
            verdict = outcome.verdict
            self.stats.requested(took, verdict.value, False)
            if verdict is Verdict.ACCEPTED:
                self._measured(batch.size, took)
                self.breaker.succeeded(took)
                return True
            if verdict not in (Verdict.TOO_LARGE, Verdict.POISON):
                timed_out = outcome.text.endswith("TimeoutError")
                if timed_out:
                    self._inline_after = time.monotonic() + INLINE_SUSPEND_S
                self.breaker.failed(took, timed_out)
                self._health(False, outcome)
        finally:
            with self._cv:
                self._busy = False
        with self._cv:
            self._resent = batch  # failed here: the thread's first request of it is a retry
        self.offer(batch)  # the thread retries, splits or quarantines it from here
        return False

    def can_accept(self) -> bool:
        with self._cv:
            return self._slot is None

    def idle(self) -> bool:
        """Nothing waiting, nothing in flight, nothing done but not yet collected."""
        with self._cv:
            return self._slot is None and not self._busy and not self._done

    def take_done(self) -> list[int | None]:
        """The `completes_seq` of every batch delivered since the last call, in order."""
        control.drain_pipe(self.done_r)
        with self._cv:
            done, self._done = self._done, []
        return done

    def hurry(self) -> None:
        """Cuts a backoff short: an invocation is ending, or the environment is shutting down.

        Called at every Flush: only a courier in a backoff is woken (an idle one waits on the
        same condition for its next batch, and waking it costs a thread switch for nothing);
        one about to start a backoff finds the flag set."""
        with self._cv:
            self._hurry = True
            if self._pausing:
                self._cv.notify_all()

    def draining(self, deadline: float) -> None:
        """The environment shuts down by monotonic `deadline`: retries turn brisk, a held
        token may be read again at once."""
        self.drain_deadline = deadline
        self.client.tokens.draining()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout=0.2)
        self.client.close()

    def restored(self) -> None:
        """SnapStart resumed the environment (control.Restored): the connection from before the
        snapshot is cut off (a request on it fails at once and is retried at once, as after a
        freeze), and the thread connects again ahead of the first flush, which would otherwise
        pay for it."""
        # A request on the wire now fails by this cut, not by HEC: it is not a failure to tell.
        # Only a batch's (`_busy`: this thread's inline attempts are not under way while it runs
        # this): connecting ahead is on the wire too, for `stalled`, and carries no request, so
        # excusing it would excuse HEC failing the next one.
        with self._cv:
            self._cut = self._busy and self.posting_since is not None
        self.client.restored()
        with self._cv:
            self._reconnect = True
            # The caller keeps off the client until the thread connected again: it may ask
            # for an inline attempt before the thread even wakes (the Restored and the next
            # Flush read in one pass), and both would use the client at once.
            self._connected_ahead = False
            self._cv.notify_all()

    def _run(self) -> None:
        self._prepare()
        while True:
            with self._cv:
                while self._slot is None and not self._stopping and not self._reconnect:
                    self._cv.wait()
                if self._stopping:
                    return
                # A batch connects again as it is sent: no connecting ahead of it, and the
                # caller keeps off the client while it is busy. Without one, it keeps off until
                # `_prepare` is done.
                self._reconnect = False
                batch = self._slot
                self._connected_ahead = batch is not None
                if batch is not None:
                    resent = batch is self._resent
                    self._slot = self._resent = None
                    self._busy = True
            if batch is None:  # connect ahead again (`restored`)
                self._prepare()
                continue
            try:
                self._deliver(batch, resent)
            except _StoppedError:
                return
            except Exception:
                # A bug, not a HEC answer: end the whole sender process so the main process
                # restarts it, and the batch is read again from the spool.
                log.exception("delivery failed unexpectedly; restarting the sender")
                logging.shutdown()
                os._exit(EXIT_CRASHED)
            with self._cv:
                self._busy = False
                self.queued_bytes = max(0, self.queued_bytes - batch.size)
                self._done.append(batch.completes_seq)
            self._wake_sender()

    def _prepare(self) -> None:
        """Readies the HEC client as the sender starts (near the end of Lambda's init), on this
        thread: the lifecycle never waits on it, and the first flush finds the connection ready
        unless the first invocation comes first (then it waits on it like on a request).

        Connecting counts as a request on the wire (`stalled`): a flush that comes meanwhile
        does not wait longer on a HEC that does not answer than on one that hangs a request.
        Loading the CAs is CPU alone and does not count.
        """
        try:
            self.client.trust()
            self.posting_since = time.monotonic()
            self.client.prepare()
        except Exception:  # only a head start: the first request meets the problem again
            log.exception("connecting to HEC ahead failed unexpectedly")
        finally:
            self.posting_since = None
            with self._cv:
                self._connected_ahead = True

    def _wake_sender(self) -> None:
        with contextlib.suppress(BlockingIOError):  # wake-ups already pending suffice
            os.write(self._done_w, b"d")

    def _deliver(self, batch: HecBatch, resent: bool = False, *, repair: bool = False) -> bool:
        """POSTs until HEC accepted the batch or quarantined its poison events; `resent`: its
        first request here repeats one that failed (inline), and counts as a retry. `repair`:
        the batch is one event repaired after HEC refused it; False if HEC refuses it again
        (the caller quarantines it as it was sent), rather than quarantining it here."""
        attempt = 0
        while batch.count:
            started = self.posting_since = time.monotonic()
            try:
                outcome = self.client.post(batch.body)
            finally:
                self.posting_since = None
            self.stats.requested(time.monotonic() - started, outcome.verdict.value,
                                 attempt > 0 or resent)
            resent = False
            verdict = outcome.verdict
            took = time.monotonic() - started
            if verdict is Verdict.ACCEPTED:
                self._measured(batch.size, took)
                self.breaker.succeeded(took)
                self._cut = False  # answered before the cut reached it
                break
            if verdict is Verdict.TOO_LARGE and batch.count > 1:
                first, batch = split_batch(batch)
                self._deliver(first)
                continue
            if verdict in (Verdict.POISON, Verdict.TOO_LARGE):
                if repair:  # refused again: the caller quarantines the event as first sent
                    return False
                batch = self._isolate_poison(batch, outcome)
                continue
            if self._cut and verdict is Verdict.RETRY:
                # The restore cut it (a waiting flush told Failing would not wait for the
                # request that now follows on a new connection): again at once, uncounted.
                self._cut = False
                continue
            attempt += 1
            self.breaker.failed(took, outcome.text.endswith("TimeoutError"))
            self._health(False, outcome)
            self._pause(self._backoff_s(attempt, outcome), self._floor_s(outcome))
        self._health(True, None)
        return True

    def send_rate_bps(self) -> float | None:
        """Uncompressed bytes per second beyond a request's round trip: the best of the recent
        requests large enough to show it; None until one was."""
        return max(self.recent_rates) if self.recent_rates else None

    def _measured(self, size: int, elapsed_s: float) -> None:
        self.sent_bytes += size
        if elapsed_s > self._longest_s:
            return
        self.recent_trips.append(elapsed_s)
        fastest = self.round_trip_s = min(self.recent_trips)
        # A request within a few round trips of the fastest says nothing of the bandwidth (its
        # time is latency): counted as bandwidth, it would reserve seconds for a large drain.
        if elapsed_s >= TRANSFER_SHOWS * fastest and elapsed_s > fastest:
            self.recent_rates.append(size / (elapsed_s - fastest))

    def _quarantine(self, envelope: bytes, outcome: HecOutcome) -> None:
        kept = self.quarantine.keep(envelope, outcome.status, outcome.code, outcome.text)
        self.stats.quarantined_event(kept)

    def _refused(self, envelope: bytes, outcome: HecOutcome, level: int) -> None:
        """One event HEC refused as sent. If it holds invalid UTF-8 (a record's bytes are not
        checked for it: ext/sender/quarantine.py), the likely reason, it is sent once more with
        U+FFFD in its place, a request of its own ahead of the rest of the batch, retried as
        any. What HEC refuses still (or a lone event too large: not an encoding problem) is
        quarantined as it was first sent, with HEC's reason for that."""
        repaired = repaired_utf8(envelope) if outcome.verdict is Verdict.POISON else None
        if repaired is not None and self._deliver(seal([repaired], None, level), repair=True):
            self.repaired += 1
            self.stats.repaired_event()
            if self.repaired & (self.repaired - 1) == 0:  # 1, 2, 4, 8...: as quarantine's
                log.warning(
                    "HEC refused %d event(s) for invalid UTF-8 (last: status %s, code %s: %s); "
                    "delivered them with U+FFFD in place of each invalid sequence",
                    self.repaired, outcome.status, outcome.code, outcome.text,
                )
            return
        self._quarantine(envelope, outcome)

    def _isolate_poison(self, batch: HecBatch, outcome: HecOutcome) -> HecBatch:
        # Code 7 (incorrect index, off by one on Splunk 10.4) never gets here: it is a HOLD.
        index = outcome.invalid_event
        if index is not None and 0 <= index < batch.count:
            self._refused(batch.envelopes()[index], outcome, batch.level)
            return without(batch, index)
        if batch.count == 1:
            self._refused(batch.joined(), outcome, batch.level)
            return without(batch, 0)
        first, second = split_batch(batch)
        self._deliver(first)
        return second

    def _backoff_s(self, attempt: int, outcome: HecOutcome) -> float:
        if self.drain_deadline is not None:
            # The environment is going away: what is not sent now is lost with it, so
            # retry briskly until the deadline instead of waiting out a long backoff.
            return min(DRAIN_RETRY_S * attempt, 0.25)
        if outcome.verdict is Verdict.HOLD:
            hold: float = min(HOLD_CAP_S, HOLD_BASE_S * 2.0 ** min(attempt - 1, 10))
            return hold
        if attempt == 1:
            # The first failure is often a keep-alive connection that went stale during a
            # freeze, or a request that "timed out" while frozen: retry at once.
            backoff = 0.0
        else:
            cap: float = min(RETRY_CAP_S, RETRY_BASE_S * 2.0 ** min(attempt, 12))
            backoff = random.uniform(0.0, cap)
        if outcome.retry_after_s is not None:
            # The server's Retry-After is a floor, not the backoff: a busy HEC answering
            # "Retry-After: 0" would otherwise be retried in a tight loop while it stays busy.
            return max(outcome.retry_after_s, backoff)
        return backoff

    def _floor_s(self, outcome: HecOutcome) -> float:
        """How long a `hurry` still waits: a server's Retry-After (429, 503), which every
        environment of a fleet would otherwise cut short at each invocation's end, on a HEC
        that asked for less; none once the environment is going away."""
        if self.drain_deadline is not None or outcome.retry_after_s is None:
            return 0.0
        return outcome.retry_after_s

    def _pause(self, seconds: float, floor_s: float = 0.0) -> None:
        """Backoff that `hurry` ends early, though not before `floor_s`, and `stop` at once;
        stops at the drain deadline."""
        start = time.monotonic()
        end, floor = start + seconds, start + floor_s
        with self._cv:
            self._pausing = True
            while not self._stopping:
                now = time.monotonic()
                draining = self.drain_deadline is not None
                if self._hurry and draining:  # a Drain came meanwhile: no floor then
                    break
                left = (floor if self._hurry else end) - now
                if self.drain_deadline is not None:
                    left = min(left, self.drain_deadline - now)
                if left <= 0:
                    break
                self._cv.wait(left)
            self._pausing = False
            self._hurry = False
            stopping = self._stopping
        if stopping or (self.drain_deadline is not None
                        and time.monotonic() >= self.drain_deadline):
            raise _StoppedError

    def _health(self, healthy: bool, outcome: HecOutcome | None) -> None:
        if healthy:
            if self.failing:
                self.failing = False
                log.warning("HEC accepts events again")
            return
        if not self.failing and outcome is not None:
            log.warning(
                "HEC is not accepting events (%s, status %s, code %s: %s); keeping them spooled",
                outcome.verdict.value, outcome.status, outcome.code, outcome.text,
            )
        self.failing = True
        self.failures += 1
        self._wake_sender()
