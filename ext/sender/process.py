"""Sender process: drains the spool to Splunk HEC and commits only what HEC accepted.

Holds the spool's reader role. Its main thread reads records, maps them to HEC envelopes, batches
and gzips them, and hands each batch to the courier thread (ext/sender/courier.py), which owns the
single in-flight request and the retry policy; the next batch is prepared while the current one is
on the wire. A lone batch (the usual one per invocation) finding the courier idle and HEC healthy
(and prompt) is sent on this thread instead, within the first waiting flush's budget, and
committed at once: no thread switch each way; a failure hands it to the courier thread.
Records are read when the listener's wake-up asks: it writes it at once for a batch with a
runtimeDone (a flush may wait for it) or a large one, and holds it a little for others (at most
0.25 s, ext/listener/process.py), so that the platform.report arriving alone as the environment
thaws is read with the invocation that follows, in one pass, rather than in a pass of its own.
Dispatches when DISPATCH_MIN_BATCH_SIZE events are waiting, when the oldest waiting event is
older than the linger bound, or at once while the main process waits for an invocation (Flush)
or the environment shuts down (Drain). Commits in order, after HEC accepted.

It is the main process's only peer: while mapping records it learns where each invocation's
platform.runtimeDone and platform.report sit in the spool (ext/sender/invocations.py), and it
answers a Flush once everything up to that runtimeDone is committed, or at once with Failing while
HEC fails. With sync flushing main waits for every invocation without a word: the sender takes
each invocation it reads as asked for (Running told from its start's stamp), and main asks
(FlushLate) only when no answer came RUNNING_AT through its wait, so that the usual invocation
costs no wake-up of its own here. With adaptive flushing main notes the invocations it waits for
(Awaited) or hurries (Hurried) on a pipe that wakes nobody, read before the spool: the same, for
those.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections import deque

import msgspec

from ext import control, flush_policy
from ext.flush_policy import RUNNING_AT, drain_reserve_s
from ext.sender.batching import Gathering, HecBatch
from ext.sender.commit_order import CommitOrder
from ext.sender.courier import Courier
from ext.sender.envelope import EnvelopeBuilder
from ext.sender.invocations import DROPPED, RUNTIME_DONE, START, InvocationLedger
from ext.sender.quarantine import Quarantine
from ext.sender.self_metrics import SelfMetrics
from ext.spool import SpoolReader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.config import Config

log = logging.getLogger(__name__)

# With nothing held and no timer running, every source of work ends a wait by itself: the
# listener's wake-up byte, main's messages, the courier's done pipe (a closed control pipe: main
# is gone). A wait's timeout then bounds only what a lost wake-up costs (a listener killed between
# its append and its byte); a short one cost a pass every 0.25 s while the function ran (a 2 s
# invocation: 8), and, where a freeze lets timers run out (docs/emulator.md), one at each thaw.
IDLE_WAIT_S = 60.0
READ_RECORDS = 256
# Envelopes built and held at a time from one record (~90 KB of the usual ~700-byte ones): a
# batch of up to 10,000 events is never all objects at once (batching.Gathering).
PART_EVENTS = 128
LOSS_NOTICE = "splunk-extension.spool-loss"
QUARANTINE_NOTICE = "splunk-extension.record-quarantined"
MAX_UNSENT_ANSWERS = 256
PIPE_READ_BYTES = 65_536  # a pipe's default capacity
# While the drain waits for the last platform.report, the spool is read this often: the listener
# may hold its wake-up (DEFER_WAKE_S), and the shutdown window has no 0.25 s to spare.
REPORT_POLL_S = 0.02
# At shutdown the drain also reads until no telemetry came for the subscription's buffering time
# and this much more. Lambda stops the runtime before it tells extensions (RIE rapid/shutdown.go):
# what the runtime logs as it shuts down (a SIGTERM handler) was written before SHUTDOWN, and
# is delivered after it, buffered up to timeoutMs; a late delivery comes in a burst.
QUIET_SLACK_S = 0.075
# Running is told RUNNING_AT into main's wait (flush_policy), and by the pass at hand when due
# within RUNNING_SLACK_S once the invocation's start is read, rather than by a pass of its own
# when its timer runs out.
RUNNING_SLACK_S = 0.05
EXIT_UNDRAINED = 75  # as supervisor.EXIT_UNDRAINED: the drain deadline passed, data unsent


class _StopSendingError(Exception):
    """The drain deadline passed or the parent is gone: leave what is unsent in the spool."""


class Sender:
    def __init__(
        self, config: Config, function_name: str, wake_fd: int, control_fd: int, status_fd: int,
        *, courier: Courier | None = None, notes_fd: int = -1,
        restarts: control.Restarts | None = None, before_snapshot: bool = False,
    ) -> None:
        self.config = config
        # SnapStart, until main says the environment was restored (control.Restored): Lambda
        # snapshots it once the init is done, a moment no process here is told of, and what is
        # held then is in every environment restored from it, each sending it again. Nothing
        # lingers meanwhile (an init logs little); from the restore on, the dispatch settings.
        self.before_snapshot = before_snapshot
        self.settling = False  # main waits for everything spooled to be in HEC (control.Settle)
        self.reader = SpoolReader(config.spool_dir)
        self.builder = EnvelopeBuilder(config, function_name)
        self.wake_fd = wake_fd
        self.control = control.Inbox(control_fd)
        # Main's notes (adaptive: Awaited, Hurried), read with the spool: never in a wait's select.
        self.notes = control.Inbox(notes_fd) if notes_fd >= 0 else None
        self.status_fd = status_fd
        self.parent = os.getppid()
        self.flush_budget_s = config.flush_budget_ms / 1000
        # The longest a flush may wait: the budget less main's reaction (flush_policy).
        self.flush_wait_s = flush_policy.wait_limit(self.flush_budget_s)
        # Envelopes read and not yet cut into requests, gzipped as they come past 64 KiB.
        self.held = Gathering(config.max_request_bytes, config.gzip_level)
        self.growth = 1.0  # envelope bytes per spooled byte, as the last read found it
        self.held_since = 0.0
        self.spool_dirty = True  # records may be waiting: read the spool at the next pass
        self.control_ready = True  # main may have written: read the control pipe
        # The courier's wake-up pipe was found readable: empty it at the next pass even with
        # nothing in flight (a byte written after its batch was collected would otherwise end
        # every wait at once until the next batch: a busy loop).
        self.done_ready = False
        self.read_this_pass = False
        self.outbox: deque[HecBatch] = deque()
        self.commits = CommitOrder()
        self.ledger = InvocationLedger(tell_every=config.flush == "adaptive",
                                       wait_every=config.flush == "sync")
        # Flushes of ended invocations: request id -> monotonic time its budget ends (counted
        # from the runtimeDone read, i.e. from the runtime's end, not from the INVOKE event).
        self.due: dict[str, float] = {}
        # Flushes main waits for -> monotonic time to tell it Running if still undelivered.
        self.running_due: dict[str, float] = {}
        self.unsent: list[control.Message] = []  # answers a full pipe refused; resent first
        self.failures_seen = 0
        self.drain_deadline: float | None = None  # monotonic
        self.last_request: str | None = None  # at shutdown: whose platform.report to wait for
        self.quiet_s = config.buffer_timeout_ms / 1000 + QUIET_SLACK_S
        self.heard_at = 0.0  # monotonic: the last read that found records, or the Drain
        quarantine_dir = os.path.dirname(config.spool_dir.rstrip("/"))
        self.quarantine = Quarantine(quarantine_dir)  # the courier keeps its own for events
        self.courier = courier or Courier(config, quarantine_dir)
        self.self_metrics = SelfMetrics(self.builder.derivation.metrics, config.self_metrics,
                                        getattr(self.courier, "stats", None),
                                        config.self_metrics_interval_ms / 1000)
        if restarts is not None:  # main's counts at this process's fork
            self._supervised(restarts)
        self.shutdown_metrics_due = False
        # The time of the last platform.logsDropped read: the budget of an invocation presumed
        # ended in it (ext/sender/invocations.py, unseen) counts from there.
        self.dropped_s: float | None = None

    def run(self) -> int | None:
        """Serves until drained at shutdown, the deadline passes, or the parent dies; returns
        EXIT_UNDRAINED when the drain deadline passed with data not sent (main warns then: an
        exit as clean as a drained one said nothing of it)."""
        self._answer(control.Ready())
        try:
            while True:
                if self._service_control():
                    self.courier.hurry()
                handed, got = self.step()
                if handed and (self.outbox or self.commits or self.spool_dirty
                               or self.drain_deadline is not None):
                    # More to hand over, read or finish: another pass at once. Main's pipe is
                    # looked at before it, as after a wait: through a backlog it went unread
                    # until the backlog was sent, and main, hearing nothing, would take the
                    # sender for hung (lifecycle.HUNG_WAITS).
                    self.control_ready = True
                    continue
                # (A lone batch sent and committed inline leaves nothing: the wait's select
                # sees anything that came meanwhile, without a pass of its own.)
                if self._drained(got):
                    return None  # the main process sees the exit: nothing is left to send
                if not self.spool_dirty or self.outbox:
                    self._wait(self._idle_timeout())
                else:
                    self.control_ready = True  # another pass at once, as above
        except _StopSendingError:
            if self.drain_deadline is not None and (self._in_hand()
                                                    or self.reader.unread_bytes()):
                return EXIT_UNDRAINED
            return None
        finally:
            self.courier.stop()
            self.reader.close()

    def step(self) -> tuple[bool, bool]:
        """One pass without waiting: commit what finished, read, plan, hand over.

        Returns (a batch was handed to the courier, new records were read).
        """
        self._commit_done()
        self._answer_failures()
        self._answer_overdue()
        got = self._read_more()
        self._answer_running()
        if self.shutdown_metrics_due:
            self._shutdown_metrics()
        if not self.outbox and self._should_dispatch():
            self.outbox.extend(self.held.take())
        handed = self._hand_over()
        if self.settling:
            self._answer_settle()
        return handed, got

    def _answer_settle(self) -> None:
        """control.Settle: Delivered once everything spooled is in HEC, Failing while HEC hangs
        (or at its next failed attempt: `_answer_failures`); main waits no longer then."""
        if self.courier.hanging or self.courier.stalled(self.flush_wait_s):
            answer: control.Message = control.Failing(control.SETTLED)
        elif self.spool_dirty or self._in_hand() or self.reader.unread_bytes():
            return
        else:
            answer = control.Delivered(control.SETTLED)
        self.settling = False
        self._answer(answer)

    def _hand_over(self) -> bool:
        """Gives the courier the next batch if it has room; True if one was handed over."""
        while self.outbox and self.courier.can_accept():
            batch = self.outbox.popleft()
            if not batch.count:  # every event of its records was filtered out
                # Committable only once every batch before it is: it waits behind them.
                self._commit(self.commits.skipped(batch.completes_seq))
                continue
            self.commits.sent(batch.completes_seq)
            delivery = self.self_metrics.delivery
            delivery.bytes_uncompressed += batch.size
            delivery.bytes_compressed += len(batch.body)  # gzipped when planned
            if self.outbox or self.before_snapshot:
                # More to send: the thread posts this one while the next is prepared. Before a
                # SnapStart snapshot: a request on this thread when it is taken would keep this
                # thread from hearing of the restore (control.Restored) until it timed out.
                self.courier.offer(batch)
            elif self.courier.deliver_now(batch, self._inline_limit_s()):
                self._commit(self.commits.delivered(1))  # the only one in flight: commit it
            return True
        return False

    def _inline_limit_s(self) -> float:
        """How long a request on this thread may take: this thread answers the waiting flushes
        (Failing once their budget has passed), so no longer than the first budget ends. The
        budgets already over are answered first: a runtimeDone read after a thaw is often past
        its budget (main did not wait for it), and would leave no time at all."""
        self._answer_overdue()
        limit = self.flush_wait_s
        if self.due:
            limit = min(limit, min(self.due.values()) - time.monotonic())
        return limit

    def _drained(self, got: bool) -> bool:
        """Shutting down, nothing left to send, and the last report is in (or cannot be)."""
        if self.drain_deadline is None or got or self._in_hand():
            return False
        if time.monotonic() < self._listening_until():
            return False
        if not self.read_this_pass and self.reader.unread_bytes():
            self.spool_dirty = True  # appended since the last read: one more pass
            return False
        return True

    def _in_hand(self) -> bool:
        """Something read, planned or in flight is not delivered yet."""
        return bool(self.held or self.outbox or self.commits or not self.courier.idle())

    def _unsent_bytes(self) -> int:
        """What is not delivered yet: read, planned, with the courier, or still in the spool."""
        return (self.held.size + sum(b.size for b in self.outbox)
                + getattr(self.courier, "queued_bytes", 0) + self.reader.unread_bytes())

    def _awaiting_report(self) -> bool:
        return self.last_request is not None and not self.ledger.report_spooled(self.last_request)

    def _listening_until(self) -> float:
        """Until when the drain keeps reading: while the last report is awaited, or until the
        intake was quiet for `quiet_s`; never past what the window leaves once the drain is
        reserved."""
        end = self._report_wait_end()
        return end if self._awaiting_report() else min(end, self.heard_at + self.quiet_s)

    def _report_wait_end(self) -> float:
        """Wait for the last report as long as the window allows once the drain is reserved."""
        assert self.drain_deadline is not None
        reserve = drain_reserve_s(self._unsent_bytes(), self.courier.send_rate_bps(),
                                  self.courier.round_trip_s)
        return self.drain_deadline - reserve

    def _commit_done(self) -> None:
        """Commits up to the last batch delivered since the previous call (all in order)."""
        if not self.commits and not self.done_ready:
            return  # none in flight: nothing can have finished (spares a syscall and a lock)
        self.done_ready = False
        delivered = len(self.courier.take_done())
        if delivered:
            self._commit(self.commits.delivered(delivered))

    def _commit(self, seq: int | None) -> None:
        if seq is None:
            return
        self.reader.commit(seq)
        self.self_metrics.unsent.committed(seq)
        self._settle(seq)

    def _settle(self, seq: int) -> None:
        """Answers the invocations whose end is committed now."""
        for request_id in self.ledger.settle(seq):
            self._answer(control.Delivered(request_id))
            # Its timers go with it: left until the next pass, they would end the next wait
            # (after a batch sent on this thread, the wait that follows the invocation: where a
            # freeze lets timers run out, a pass at the thaw for nothing).
            self.running_due.pop(request_id, None)
            self.due.pop(request_id, None)

    def _answer_failures(self) -> None:
        """Each failed attempt answers the waiting flushes: HEC will not accept them soon."""
        failures = self.courier.failures
        if failures != self.failures_seen:
            self.failures_seen = failures
            for request_id in self.ledger.failing():
                self._answer(control.Failing(request_id))
            if self.settling:
                self.settling = False
                self._answer(control.Failing(control.SETTLED))

    def _answer(self, message: control.Message | None) -> None:
        """Tells the main process; answers a full pipe refused are kept (bounded), resent first."""
        if message is not None:
            self.unsent.append(message)
            del self.unsent[:-MAX_UNSENT_ANSWERS]
        while self.unsent and control.send(self.status_fd, self.unsent[0]):
            del self.unsent[0]

    def _read_more(self) -> bool:
        """Reads and maps what the listener appended; the spool is read only when it woke us
        (or after a timeout, or when the last read stopped at a limit): one pass per append."""
        # Emptied even when nothing more can be held: a wake-up left in the pipe would end
        # every wait at once, and the sender would spin while a slow HEC holds the courier.
        if _emptied(self.wake_fd):
            self.spool_dirty = True
        if self.held.size >= self.config.max_request_bytes:
            return True
        self.read_this_pass = self.spool_dirty
        if not self.spool_dirty:
            return False
        self._take_notes()  # before the records that may hold a noted invocation's start
        # Records grow into envelopes (the fields of every event: 3-5x with enrichment), and the
        # envelopes held are what a request is cut from: read only what fills one request, so
        # the sender's memory stays bounded by a few requests' worth, whatever the backlog.
        room = self.config.max_request_bytes - self.held.size
        budget = max(int(room / self.growth), 1)
        records = self.reader.read(max_records=READ_RECORDS, max_bytes=budget)
        read_bytes = sum(len(r.payload) for r in records)
        # The linger bound counts from the first record's append: its wake-up may have been held.
        appended_since = _since(records[0].append_time_ns) if records else None
        self.spool_dirty = len(records) >= READ_RECORDS or (bool(records) and read_bytes >= budget)
        if records:
            self.heard_at = time.monotonic()
        held_before = self.held.size
        builder = self.builder
        for record in records:
            envelopes: list[bytes] = []
            try:
                # A large batch is held a part at a time (gzipped as it comes past 64 KiB); the
                # last part, with the record's seq, completes it.
                for part in builder.build_parts(record.payload, PART_EVENTS):
                    if envelopes:
                        self._hold(None, envelopes, appended_since)
                    envelopes = part
            except Exception as err:  # whatever it is, no record may stop the ones after it
                # What was built before is sent; the notice follows, the whole record is kept.
                envelopes.append(self._quarantined(record.seq, record.payload, err))
            self.self_metrics.unsent.read(record.seq, record.event_count, record.append_time_ns)
            if builder.landmarks and self._landmarks(record.seq):
                # Once per invocation batch: the sender's own figures ride with it.
                envelopes.extend(self._self_metrics("invocation"))
            if record is records[-1]:
                envelopes.extend(self._loss_notices())
            self._hold(record.seq, envelopes, appended_since)
        if read_bytes:
            self.growth = max(1.0, (self.held.size - held_before) / read_bytes)
        self._presume(records[-1].seq if records else None)
        return bool(records)

    def _presume(self, seq: int | None) -> None:
        """After a read through `seq`: ends presumed at a drop notice follow it, and the
        invocations main waits for that nothing read names may be presumed ended in a drop
        (ext/sender/invocations.py), answered once what was read is committed (maybe at once:
        the notice's batch may be committed already)."""
        lost = self.ledger.read_to(seq, caught_up=not self.spool_dirty)
        for lost_id in lost:
            self.self_metrics.ends_lost += 1
            self._ended(lost_id, self.dropped_s)
        if lost:
            self._settle(self.ledger.committed)

    def _landmarks(self, seq: int) -> bool:
        """Where the record at `seq` starts or ends invocations (or Lambda dropped telemetry);
        True if it holds a runtimeDone."""
        builder = self.builder
        ended = False
        seen = [(kind, _decode_id(request_id) if request_id else "", stamp)
                for kind, request_id, stamp in builder.landmarks]
        builder.landmarks.clear()
        for kind, rid, stamp in seen:
            # In order: a drop notice before a start in the same record cannot hold that
            # invocation's end.
            lost = (self.ledger.dropped(seq) if kind == DROPPED
                    else self.ledger.seen(kind, rid, seq))
            if kind == DROPPED:
                self.dropped_s = builder.seconds(stamp)
            for lost_id in lost:  # its runtimeDone never read: ended here, presumed
                self.self_metrics.ends_lost += 1
                self._ended(lost_id, builder.seconds(stamp))
            if kind == RUNTIME_DONE:
                self._ended(rid, builder.seconds(stamp))
                ended = True
        for kind, rid, stamp in seen:
            if kind == START and self.ledger.running(rid):
                self._started(rid, builder.seconds(stamp))
        return ended

    def _hold(self, seq: int | None, envelopes: list[bytes], since: float | None) -> None:
        """Holds envelopes for the next request; the first held counts from `since` (else now)
        for the linger bound."""
        if not self.held:
            self.held_since = time.monotonic() if since is None else since
        self.held.add(seq, envelopes)

    def _ended(self, request_id: str, ended_s: float | None = None) -> None:
        """A waited-for invocation ended: its budget runs from `ended_s`, its runtimeDone's
        time, when known, else from now. (That it started is told by `_answer_running`.)"""
        if self.ledger.waiting.get(request_id, True):
            return  # not waited for, or told Failing already: main does not wait for it
        left = flush_policy.budget_left(self.flush_budget_s, ended_s, time.time())
        self.due.setdefault(request_id, time.monotonic() + left)
        # A quiet wait (sync, or an Awaited note) asks nothing before it is late: a backoff is
        # cut short (a failing HEC gets one attempt now, whose failure tells main), a hanging HEC
        # told now.
        self.courier.hurry()
        self._answer_hanging()

    def _started(self, request_id: str, started_s: float | None) -> None:
        """An invocation main waits for without asking (sync, or an Awaited note) started:
        Running is due RUNNING_AT through main's wait, which began at the INVOKE, i.e. at the
        start's own time. Told by the pass that reads the start, most often (the listener holds
        its wake-up 0.25 s), so that main, which would ask then (FlushLate), has no need to."""
        if self.ledger.waiting.get(request_id, True):
            return  # not waited for unasked, or told Failing already: main does not wait
        left = flush_policy.running_left(self.flush_wait_s, started_s, time.time())
        self.running_due.setdefault(request_id, time.monotonic() + left)

    def _answer_hanging(self) -> None:
        """A HEC that let a request time out, or is taking longer than a flush may wait, is
        treated as down until a request succeeds: the courier probes on its own schedule, main
        does not wait."""
        if self.courier.hanging or self.courier.stalled(self.flush_wait_s):
            for request_id in self.ledger.failing():
                self._answer(control.Failing(request_id))

    def _answer_running(self) -> None:
        """Waited-for invocations that started and are not delivered RUNNING_AT through main's
        wait: Running, so main waits on until the sender answers (within the budget after their
        runtimeDone). Not at once: most are delivered by then, and the answer would wake main
        (and cost this process a write) for nothing at every waited invocation."""
        if not self.running_due:
            return
        now = time.monotonic()
        for request_id, due in list(self.running_due.items()):
            if request_id not in self.ledger.waiting:
                del self.running_due[request_id]  # delivered (or forgotten): nothing to tell
            elif now >= due - RUNNING_SLACK_S:
                started = (self.ledger.waiting[request_id] is False
                           and request_id in self.ledger.start_at)
                if started or now >= due:  # early only with something to tell
                    del self.running_due[request_id]
                if started:
                    self._answer(control.Running(request_id))

    def _answer_overdue(self) -> None:
        """Flushes whose budget since their runtimeDone has passed: main stops waiting for them
        (their data stays spooled and goes later, like while HEC is failing)."""
        if not self.due:
            return
        now = time.monotonic()
        for request_id, end in list(self.due.items()):
            if request_id not in self.ledger.waiting:
                del self.due[request_id]  # delivered in time
            elif now >= end:
                del self.due[request_id]
                if self.ledger.tell_failing(request_id):
                    self._answer(control.Failing(request_id))

    def _self_metrics(self, reason: str) -> list[bytes]:
        if not self.self_metrics.due(reason):
            return []
        envelope = self.self_metrics.envelope(self.builder, self.reader.stats,
                                              self._unsent_bytes(), reason)
        return [] if envelope is None else [envelope]

    def _shutdown_metrics(self) -> None:
        """The last self-metrics, sent with the drain (with the last record read, or alone)."""
        self.shutdown_metrics_due = False
        # Main restarts a dead listener at SHUTDOWN and notes it before the drain, which may
        # find nothing more to read (the notes are read with the spool): once, at the end.
        self._take_notes()
        envelopes = self._self_metrics("shutdown")
        if not envelopes:
            return
        # Completes no record: nothing to commit for it, and it holds nothing back.
        self._hold(None, envelopes, None)

    def _quarantined(self, seq: int, payload: bytes, error: Exception) -> bytes:
        """A record that cannot be mapped (e.g. RecursionError on JSON nested ~1,000 deep): kept
        in the dead-letter file and replaced by a notice to Splunk, at its first failure; its
        position is committed once the notice is accepted, so it is never retried."""
        self.quarantine.keep_record(seq, payload, error)
        return self.builder.notice(QUARANTINE_NOTICE, {
            "spool_seq": seq, "bytes": len(payload), "error": type(error).__name__,
            "quarantined_records": self.quarantine.records,
            "deadletter": self.quarantine.path,
        })

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
        if (self.drain_deadline is not None or self.ledger.urgent() or self.before_snapshot
                or self.settling):
            return True
        if self.held.events >= self.config.dispatch_min_batch_size:
            return True
        if self.held.size >= self.config.max_request_bytes:
            return True
        waited = time.monotonic() - self.held_since
        return waited * 1000 >= self.config.dispatch_max_wait_ms

    def _idle_timeout(self) -> float:
        if self.held and not self.outbox:
            left = self.config.dispatch_max_wait_ms / 1000 - (time.monotonic() - self.held_since)
            return max(0.0, min(left, IDLE_WAIT_S))
        return IDLE_WAIT_S

    def _request(self, request_id: str, waited: bool = True) -> None:
        """Main asks for the invocation (a Flush or a note); answered at once if settled."""
        for settled in self.ledger.request(request_id, waited=waited):
            self._answer(control.Delivered(settled))

    def _take_notes(self) -> None:
        """Invocations main waits for quietly (Awaited) or hurries (Hurried): asked for, as sync
        flushing takes every invocation, only not urgent before their runtimeDone is read; and
        main's restart counts (Restarts), when a listener was restarted."""
        if self.notes is None:
            return
        for message in self.notes.read():
            if isinstance(message, control.Awaited):
                request_id = message.request_id
                if request_id in self.ledger.waiting:
                    continue  # a late ask came first: asked, maybe told Failing already
                self._request(request_id, waited=not isinstance(message, control.Hurried))
                if request_id in self.ledger.done_at:
                    self._ended(request_id)
            elif isinstance(message, control.Restarts):
                self._supervised(message)

    def _supervised(self, counts: control.Restarts) -> None:
        """Main's restart counts, for the self-metrics."""
        self.self_metrics.supervised(counts.listener, counts.sender, counts.sender_hangs)

    def _service_control(self) -> bool:
        """Applies main's messages; True when one asks for a send now (flush or drain)."""
        urgent = False
        messages = self.control.read() if self.control_ready else ()
        self.control_ready = False
        for message in messages:
            if isinstance(message, control.Flush):
                urgent = True
                # Nothing read names it: the next pass reads the spool (caught up, a drop may
                # be found to hold it whole).
                self.spool_dirty = self.spool_dirty or self.ledger.unseen(message.request_id)
                self._request(message.request_id)
                self._answer_hanging()
                if isinstance(message, control.FlushBacklog):
                    self._ended(message.request_id)  # ended long ago: the budget from now
                    continue  # and never Running (main would not wait longer for it)
                # Running, if it comes to that, RUNNING_AT through main's own wait: now, for a
                # late ask, once the spool is read again (its start may be spooled, not read).
                late = isinstance(message, control.FlushLate)
                self.spool_dirty = self.spool_dirty or late
                self.running_due[message.request_id] = (
                    time.monotonic() + (0.0 if late else self.flush_wait_s * RUNNING_AT))
                if message.request_id in self.ledger.done_at:
                    self._ended(message.request_id)
            elif isinstance(message, control.Settle):
                self.settling = self.spool_dirty = urgent = True
            elif isinstance(message, control.Restored):
                self.before_snapshot = False
                self.courier.restored()
            elif isinstance(message, control.Drain):
                left_s = message.deadline_ms / 1000 - time.time()
                self.drain_deadline = time.monotonic() + left_s
                self.courier.draining(self.drain_deadline)
                self.last_request = message.request_id or None
                self.heard_at = time.monotonic()
                self.shutdown_metrics_due = self.drain_deadline is not None
                urgent = True
        self._answer(None)
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
            now = time.monotonic()
            listening = self._awaiting_report() or now < self.heard_at + self.quiet_s
            if listening and not self.held and not self.outbox:
                left = min(left, REPORT_POLL_S, max(0.001, self._listening_until() - now))
        if self.due:  # a flush's budget ends: answer it then
            left = min(left, max(0.001, min(self.due.values()) - time.monotonic()))
        if self.running_due:  # RUNNING_AT through a flush main waits for: maybe tell it Running
            left = min(left, max(0.001, min(self.running_due.values()) - time.monotonic()))
        if left <= 0:
            self.control_ready = True
            return
        fds = [self.wake_fd, self.control.fd, self.courier.done_r]
        ready = select.select(fds, [], [], left)[0]
        if not ready:  # a timeout: look everywhere (a lost wake-up costs this)
            self.spool_dirty = self.control_ready = True
            return
        if self.control.fd in ready:
            self.control_ready = True
        if self.courier.done_r in ready:
            self.done_ready = True



def _emptied(fd: int) -> bool:
    """Empties a non-blocking wake-up pipe; True if it held a byte. A read shorter than asked
    emptied it: no second read to meet EAGAIN."""
    woken = False
    try:
        while True:
            got = os.read(fd, PIPE_READ_BYTES)
            woken = woken or bool(got)
            if len(got) < PIPE_READ_BYTES:
                break
    except BlockingIOError:
        pass
    return woken


def _since(append_time_ns: int) -> float:
    """The monotonic time of a record's append (its wall-clock stamp), never after now."""
    now = time.monotonic()
    return now - max(0.0, (time.time_ns() - append_time_ns) / 1e9)


def _decode_id(request_id: bytes) -> str:
    """A request id as the envelope builder keeps it (a JSON string) to the id main sends."""
    try:
        return str(msgspec.json.decode(request_id))
    except msgspec.DecodeError:
        return ""
