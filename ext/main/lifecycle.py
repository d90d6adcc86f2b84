"""Main process after register: config, children, subscription, and the INVOKE/SHUTDOWN loop.

The flush policy is applied here. To wait for an invocation, the extension, before it calls
event/next, asks the sender to flush it and waits for the answer: the sender answers once
everything up to the invocation's platform.runtimeDone is accepted by HEC (or at once when HEC
is failing). Every wait is bounded by the flush budget and the invocation's deadline, whatever
fails. `sync` waits for every invocation, `background` never, `adaptive` (default) when its
decision unit (ext/flush_policy.py) says so; the sender reports every delivery unasked then
(main's decisions learn from them). Both ask only when late: under `sync` the sender takes
every invocation it reads as waited for, under `adaptive` main notes the one it waits for
(Awaited; one it only hurries: Hurried) on a pipe the sender reads with the spool, so no
INVOKE wakes the sender, and main asks (FlushLate) only when no answer came RUNNING_AT through
its wait, or at once after a wait HEC failed. On SHUTDOWN it hands the sender the deadline and
the last request id; the sender waits for that invocation's platform.report, drains and exits
(one that leaves it unread, hung, is replaced by one that drains: DRAIN_READ_S).
Main talks to the sender only (ext/control.py); the listener just spools.

This module is on the cold-start path: it uses C modules (`_socket`, `select`) and a small
JSON reader, so register and the subscription wait for nothing heavy. Only then does it import
the children's modules (msgspec, urllib3, logging: `preload_children`), once for both children,
which are forked after it; their pools and sockets are still made after the fork.
"""

from __future__ import annotations

import _socket
import os
import select
import time

from ext import config as config_module
from ext import control, diagnostics, errors
from ext.flush_policy import RUNNING_AT, AdaptiveFlush, wait_limit
from ext.main import supervisor, telemetry_api
from ext.main.events import Event

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ext.config import Config
    from ext.main.extensions_api import ExtensionsApi

# Lambda SIGKILLs whatever still runs at the SHUTDOWN deadline (lambda-protocol.md §3.4);
# exit this long before it so the exit is ours, not the platform's.
SHUTDOWN_MARGIN_S = 0.15
# The first INVOKE warns when the function's timeout is below this many times main's own init:
# an init in the invoke (after a reset) shares the CPU with the runtime's own init, and at
# 128 MB a 2 s timeout against a ~2.6 s init timed out every invocation after a reset.
REINIT_ROOM = 1.25
# Leave the function this much of its own timeout when flushing near the invoke deadline.
INVOKE_MARGIN_S = 0.05
# SnapStart: the longest main waits for the spool to be in HEC before its first event/next
# (settle_before_snapshot). Most often a request's time; never near the shortest init Lambda
# allows a SnapStart function (130 s, lambda-protocol.md §3.1).
SNAPSHOT_SETTLE_S = 2.0
LISTEN_BACKLOG = 16
STOP_CHILDREN_S = 0.5
# While waiting on the sender without the children's pidfds (a kernel before 5.3), look this
# often whether it died (it is then restarted and asked again; the spool makes that lossless).
SENDER_CHECK_S = 0.1
# How long the first event/next waits for the sender to have started (opened the spool, made
# its pool: its modules are imported before the fork). Paid once, in the init phase, where it
# overlaps the runtime's own init; otherwise the first invocation's flush would wait for it.
SENDER_START_WAIT_S = 2.0
# A sender alive but stuck (a deadlock, a call that never returns, stopped) never exits, so no
# restart would ever come, and every waited invocation would cost its whole budget while the
# spool fills. A wait that ends at its end with nothing at all from the sender (no Running,
# Failing, Delivered, nothing) and main's ask still unread in the control pipe says its loop did
# not come round in that time. A sender in health reads the pipe between any two passes (even
# while its courier thread holds a request to a slow HEC, and it answers Failing then); what
# holds one pass is bounded: an inline attempt by the flush budget per socket operation (then
# Failing, and none for a minute), a read by one request's worth of records. HEC slow or down
# is answered, telemetry that never comes leaves the asks read: neither counts. So after
# HUNG_WAITS such waits in a row, HUNG_AFTER_S of unread asks in all (a pass at a 128 MB CPU
# share may outlast one short budget, not a second of them), it is presumed hung: SIGKILL,
# and the restart resumes from the spool's last commit (at-least-once: duplicates, no loss).
# With the default 500 ms budget that is the third such wait (0.18 + 0.49 + 0.49 s).
HUNG_WAITS = 3
HUNG_AFTER_S = 1.0
# Where main does not wait (background; adaptive waits once the backlog outgrows the latency
# bound, which judges the sender as above), nothing judged it: a hung sender let the spool grow
# for the environment's whole life. A sender in health says nothing unasked there, so main looks
# at most every PROBE_AFTER_S, at an INVOKE, whether there is reason to expect it to act: a
# wake-up byte of the listener's it has not taken (nothing spooled: an idle sender, not probed).
# Then it asks for the previous invocation (FlushBacklog, not waited for), which a sender in
# health reads at its next pass; at the first INVOKE PROBE_READ_S later, an ask still unread
# makes main wait for the invocation before it as adaptive waits for a backlog, and those
# waits are judged as above (their time is thawed: main's wait holds the environment
# thawed, where the time between two INVOKEs may be a freeze the sender could not use). While
# healthy: a clock read per INVOKE, a poll every few seconds, a probe rarely (a wake-up byte the
# sender has not taken yet). A few seconds: over the default latency bound and linger, so a
# sender that sends within them is hardly ever probed, and a hang is caught in seconds.
PROBE_AFTER_S = 5.0
PROBE_READ_S = 1.0
# A budget of 0 is valid (main never waits), so its flush waits end at once and judge nothing,
# the probe's waits neither: main probes as in background, and a probe's waits, the only
# ones it makes then, last this long: the third (HUNG_WAITS) kills, about a second billed,
# once, and only when an ask lay unread PROBE_READ_S with something spooled.
PROBE_WAIT_S = 0.35
# On Lambda Managed Instances no INVOKE comes: main probes from its wait for the next event,
# as at an INVOKE, when PROBE_AFTER_S (or PROBE_READ_S) are up, for an invocation it cannot
# name (no event names one): the sender reads the ask, and answers it, all the same. Nothing
# freezes there, so the time between two looks is the sender's to use.
UNNAMED_REQUEST = "-"
PROBE_DEADLINE_S = 60.0  # a probe's waits end far sooner: their budget (flush_invocation)
# At SHUTDOWN a sender in health reads the Drain at its next pass: within milliseconds when
# idle; a long pass (a request's worth of records at a 128 MB CPU share) may take hundreds
# (not measured; a wrong kill costs a duplicate batch and a start). One that hung shortly before
# (under background, before a probe could judge it) never does, and all it had not committed
# was lost with the environment. Found with the Drain unread and nothing heard from it
# DRAIN_READ_S after it, it is killed and a new one drains, from the spool's last commit, in
# what is left of the window (~1.35 s of Lambda's 2 s: docs/benchmarks.md drains 100,000
# events in 0.71 s). One still starting (no Ready heard) is not judged, nor is its successor.
DRAIN_READ_S = 0.5
# A request on the sender's own thread (courier.deliver_now) holds it up to the flush budget
# before it reads its pipe again: a Drain is judged no sooner than that, and this, after it.
INLINE_SLACK_S = 0.1


def run(api: ExtensionsApi, environ: Mapping[str, str]) -> int:
    """Everything after register; returns the process exit code."""
    try:
        config = config_module.load(environ, api.account_id())
    except errors.ConfigError as err:
        return _config_failed(api, err, environ)
    diagnostics.set_level(config.log_level)
    function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME") or "unknown-function"
    try:
        main = MainLoop(api, config, function_name)
        main.start()
    except errors.ConfigError as err:  # the listener's address, known only when bound
        return _config_failed(api, err, environ)
    except Exception as err:
        diagnostics.note("ERROR", f"startup failed: {err!r}")
        api.init_error(errors.STARTUP_FAILED, f"splunk-hec-extension startup failed: {err}")
        return 1
    try:
        return main.serve()
    except Exception as err:
        # After init, Lambda wants exit/error before the extension goes (lambda-protocol §1.3).
        diagnostics.note("ERROR", f"unrecoverable error: {err!r}")
        main.stop_children()
        try:
            api.exit_error(errors.RUNTIME_FAILED, f"splunk-hec-extension failed: {err}")
        except (OSError, errors.ApiError) as report_err:
            diagnostics.note("ERROR", f"could not report exit/error: {report_err!r}")
        return 1


class MainLoop:
    def __init__(self, api: ExtensionsApi, config: Config, function_name: str) -> None:
        self.api = api
        self.config = config
        self.function_name = function_name
        self.server = _bind_listener(config)
        self.wake_r, self.wake_w = control.make_pipe()
        self.ctl_r, self.ctl_w = control.make_pipe()
        # Adaptive's notes (Awaited, Hurried), which the sender reads with the spool, unwoken.
        self.notes_r, self.notes_w = control.make_pipe()
        self.status_r, self.status_w = control.make_pipe()
        self.status = control.Inbox(self.status_r)
        self.answers: dict[str, bool] = {}  # request id -> delivered (True) or failing (False)
        self.running: set[str] = set()  # invocations the sender saw start and not yet end
        self.last_request: str | None = None
        # The last wait ended delivered, so the next one asks only if late (a Failing or a
        # budget run out: HEC is not well, ask at once and hear so at once). Sync: the sender
        # takes every invocation as waited for; adaptive: main notes those it waits for.
        self.ask_late = True
        self.notes_waits = config.flush == "adaptive"
        # Neither without platform events (config.py) nor without a Telemetry API (start):
        # a wait for telemetry that cannot come is billed.
        self.sees_invocation_ends = config.sees_invocation_ends
        self.flush = config.flush
        self.never_waits = config.flush_budget_ms == 0
        self.sender_started = False
        # SnapStart: the first event comes in an environment resumed from the init's snapshot.
        self.restore_due = config.snap_start
        self.init_s: float | None = None  # how long the init took, until the first INVOKE
        # Waits in a row that ended with nothing from the sender and main's ask unread, and the
        # time those asks lay unread (HUNG_WAITS, HUNG_AFTER_S).
        self.unheard_waits = 0
        self.unheard_s = 0.0
        # Where main does not wait: when it next looks at the sender (monotonic), and whether
        # an ask of its (PROBE_AFTER_S) is out, to be found read at that look.
        self.look_at = time.monotonic() + PROBE_AFTER_S
        self.probing = False
        self.adaptive = AdaptiveFlush(config.max_latency_ms / 1000,
                                      config.dispatch_max_wait_ms / 1000)
        level = config.log_level
        self.listener = supervisor.Child(
            "listener", self._run_listener, (self.server.fileno(), self.wake_w), level)
        self.sender = supervisor.Child(
            "sender", self._run_sender, (self.wake_r, self.ctl_r, self.notes_r, self.status_w),
            level)

    def _all_fds(self) -> tuple[int, ...]:
        """Every fd main holds, which a child closes but for its own: main's connection to
        the Extensions API too (held by a child, it stayed open after main closed it)."""
        pidfds = tuple(c.exit_fd for c in (self.listener, self.sender) if c.exit_fd >= 0)
        api_fd = self.api.connection_fd()
        return (self.server.fileno(), self.wake_r, self.wake_w, self.ctl_r, self.ctl_w,
                self.notes_r, self.notes_w, self.status_r, self.status_w, *pidfds,
                *((api_fd,) if api_fd >= 0 else ()))

    def _wait_answer(self, left: float, children: list[supervisor.Child]) -> bool:
        """Waits up to `left` for the sender's status pipe; True if it has something to read.
        A death among `children` ends the wait too (their pidfds), or, without pidfds, the wait
        ends every SENDER_CHECK_S so the caller can look at them."""
        exits = supervisor.exit_fds(children)
        if exits is None:
            left = min(left, SENDER_CHECK_S)
            exits = []
        return self.status_r in select.select([self.status_r, *exits], [], [], left)[0]

    def start(self) -> None:
        for notice in self.config.notices:
            diagnostics.note("WARNING", notice)
        port = self.server.getsockname()[1]
        subscription = telemetry_api.build_subscription(self.config, port)
        if not telemetry_api.subscribe(self.api, subscription):
            diagnostics.note("WARNING", "the Telemetry API is not supported here (202): "
                                        "nothing will be forwarded")
            self.flush, self.sees_invocation_ends = "background", False
        preload_children()
        supervisor.spawn(self.listener, self._all_fds())
        supervisor.spawn(self.sender, self._all_fds())
        self._await_sender_start(time.monotonic() + SENDER_START_WAIT_S)
        # SnapStart restores the snapshot after a reset: no init in an invoke to fit.
        self.init_s = None if self.restore_due else _age_s()

    def _await_sender_start(self, end: float) -> None:
        while not self.sender_started:
            if supervisor.held_back(self.sender):
                return  # it fails to start: nothing to wait for
            left = end - time.monotonic()
            if left <= 0:
                diagnostics.note("WARNING", "the sender is slow to start; not waiting for it")
                return
            if self._wait_answer(left, [self.sender]):
                self._read_answers()
            else:
                self._sender_restarted()

    def _run_listener(self) -> None:
        import socket

        from ext.listener.process import Listener

        server = socket.socket(fileno=self.server.detach())
        Listener(self.config, server, self.wake_w).serve()

    def _run_sender(self) -> int | None:
        from ext.sender.process import Sender

        return Sender(self.config, self.function_name, self.wake_r, self.ctl_r, self.status_w,
                      notes_fd=self.notes_r, restarts=self._restart_counts(),
                      before_snapshot=self.restore_due).run()

    def _restart_counts(self) -> control.Restarts:
        """What the sender reports of the children's restarts (self-metrics); in the sender's
        entry, main's counts as they were at its fork."""
        return control.Restarts(self.listener.restarts, self.sender.restarts, self.sender.hangs)

    def serve(self) -> int:
        """The event loop: one INVOKE or SHUTDOWN at a time until SHUTDOWN."""
        # On Managed Instances the next event is the SHUTDOWN, hours away: main watches the
        # children meanwhile. Elsewhere every invocation brings an event, and no select per
        # event is paid for it.
        watch = self._watch_children if self.config.managed_instances else None
        if self.restore_due:
            self.settle_before_snapshot()
        while True:
            event = Event(self.api.next_event(watch))
            self._restart_dead_children(anyway=event.kind == "SHUTDOWN")
            if self.restore_due:
                # Before this invocation's flush: HEC's connection from before the snapshot
                # would hold it until a timeout.
                self.restore_due = False
                self._tell_sender(control.Restored())
            if event.kind == "SHUTDOWN":
                self.shutdown(event.deadline_ms, event.reason)
                return 0
            if event.kind == "INVOKE" and event.request_id:
                if self.init_s is not None:
                    _warn_if_no_room_to_reinit(self.init_s, event.deadline_ms / 1000)
                    self.init_s = None
                previous, self.last_request = self.last_request, event.request_id
                # Before this invocation's flush, whose ask the probe would find unread
                if ((self.flush == "background" or self.never_waits)
                        and time.monotonic() >= self.look_at):
                    self.probe(previous or event.request_id, event.deadline_ms / 1000)
                if self.flush == "sync":
                    self.flush_invocation(event.request_id, event.deadline_ms / 1000,
                                          ask_late=self.ask_late)
                    self.ask_late = self.answers.get(event.request_id) is True
                elif self.flush == "adaptive":
                    self.adapt(event.request_id, event.deadline_ms / 1000)

    def settle_before_snapshot(self) -> None:
        """SnapStart: waits, at most SNAPSHOT_SETTLE_S, until everything spooled is in HEC
        (control.Settle), before main's first event/next: Lambda snapshots the environment once
        the runtime and every extension are ready, maybe at once, and every environment restored
        from it would send again what was not. The runtime is often ready first (the
        extension's children start slowly at a small CPU share): its init's lines are spooled,
        the sender has not sent them yet. Not an invocation's wait: SnapStart's init runs when a
        version is published."""
        if not self._tell_sender(control.Settle()):
            return
        end = time.monotonic() + SNAPSHOT_SETTLE_S
        while control.SETTLED not in self.answers:
            left = end - time.monotonic()
            if left <= 0:
                break
            if self._wait_answer(left, [self.sender]):
                self._read_answers()
            elif self._sender_restarted() or supervisor.held_back(self.sender):
                break  # a new sender sends the spool anyway; main does not wait on it
        self.answers.pop(control.SETTLED, None)

    def _watch_children(self, api_fd: int) -> None:
        """Returns once the Extensions API's answer on `api_fd` may be read; meanwhile restarts
        a child that dies, or one held back once its back-off is over, and probes the sender
        as at an INVOKE (PROBE_AFTER_S): the next event may be hours away."""
        children = [self.listener, self.sender]
        while True:
            exits = supervisor.exit_fds(children)
            now = time.monotonic()
            timeouts = [SENDER_CHECK_S] if exits is None else []  # no pidfds: look now and then
            if self.sender.pid:
                # A probe's waits pace themselves, unless one ends at once (a sender not
                # started yet): then no sooner than SENDER_CHECK_S.
                timeouts.append(max(SENDER_CHECK_S if self.probing else 0.0, self.look_at - now))
            timeouts.extend(max(0.0, c.restart_at - now) for c in children
                            if supervisor.held_back(c))
            ready = select.select([api_fd, *(exits or ())], [], [],
                                  min(timeouts) if timeouts else None)[0]
            if api_fd in ready:
                return
            self._restart_dead_children()
            if self.sender.pid and time.monotonic() >= self.look_at:
                self.probe(UNNAMED_REQUEST, time.time() + PROBE_DEADLINE_S)

    def adapt(self, request_id: str, deadline: float) -> None:
        """Waits for the invocation, or asks for it and waits for the earlier ones alone (a
        backlog), or only asks for it, as the adaptive decision says."""
        self._read_answers()  # deliveries confirmed since the last invocation
        self.answers.clear()
        self.running.clear()
        decision = self.adaptive.decide(request_id, time.monotonic())
        if diagnostics.enabled("INFO"):  # formatting its figures costs CPU at every invocation
            diagnostics.note("INFO", decision.describe(request_id))
        if decision.wait and decision.awaited == request_id:
            self.flush_invocation(request_id, deadline, ask_late=self.ask_late)
            self.ask_late = self.answers.get(request_id) is True
            return
        # Hurried: sent once its end is read (a note, which wakes nothing now); else nothing:
        # the sender tells every delivery (adaptive) unasked.
        if decision.hurry and not self._note(control.Hurried(request_id)):
            self._tell_sender(control.Flush(request_id))
        if decision.wait and decision.awaited:
            self.flush_invocation(decision.awaited, deadline, ended=True)

    def flush_invocation(self, request_id: str, deadline: float, ended: bool = False,
                         ask_late: bool = False, zero_budget_s: float = 0.0) -> None:
        """Asks the sender to flush the invocation; waits for its answer, within the budget.

        The budget counts from the invocation's end, which only the telemetry shows: once the
        sender reports the invocation running (its platform.start spooled, and not delivered
        5/8 through this wait), main may wait up to the deadline, and the sender answers
        within the budget after the runtimeDone. Until then, or when the listener died
        meanwhile (telemetry may come late), main waits at most the budget from now (from its
        first death in this wait: later ones move the end no later); so too once the sender
        was restarted (its predecessor may have sent the invocation and died unanswered).
        An earlier invocation (`ended`: a backlog) cannot be running any more, whatever its
        spooled records say (its runtimeDone may have been dropped): the budget from now.
        `ask_late`: the sender answers unasked (sync: it takes every invocation as waited for;
        adaptive: from an Awaited note, which does not wake it), so the request (FlushLate) goes
        only if no answer came RUNNING_AT through the wait, when the sender says at once
        whether the invocation runs. `zero_budget_s`: the budget where the configured one is 0
        (a probe's wait, PROBE_WAIT_S).
        """
        if supervisor.held_back(self.sender):
            return  # it failed to start again and again: no answer can come before its restart
        now = time.monotonic()
        budget = wait_limit(self.config.flush_budget_ms / 1000) or zero_budget_s
        last = now + max(0.0, deadline - INVOKE_MARGIN_S - time.time())
        end = min(now + budget, last)
        heard = self._read_answers()
        # Answers about earlier invocations no longer matter; this one's may be in already.
        answer = self.answers.get(request_id)
        self.answers.clear()
        if answer is not None:
            self.answers[request_id] = answer
        self.running.clear()
        flush = control.FlushBacklog(request_id) if ended else control.Flush(request_id)
        ask_at = now + budget * RUNNING_AT if ask_late else None
        note = control.Awaited(request_id)
        if ask_at is not None and self.notes_waits and not self._note(note):
            ask_at = None  # the notes pipe is full: ask now
        if ask_at is None and not self._tell_sender(flush):
            return
        asked_at = now if ask_at is None else None  # the ask main's liveness check looks at
        listener_died = False
        while request_id not in self.answers:
            if request_id in self.running and not ended:
                end = last
                ask_at = None  # told unasked (sync): nothing left to ask
            now = time.monotonic()
            if ask_at is not None and now >= ask_at:
                ask_at = None
                flush = control.FlushLate(request_id)
                if not self._tell_sender(flush):
                    return
                asked_at = now
            left = (end if ask_at is None else min(end, ask_at)) - now
            if left <= 0:
                self._judge_silence(heard, asked_at, now)
                return
            if self._wait_answer(left, [self.sender, self.listener]):
                heard = True
                self._read_answers()
                continue
            if self._sender_restarted():
                # Its predecessor may have sent the invocation's start, or its end, and died
                # before answering: the new one reads on from its commit and may never tell.
                # Running: the budget from now (told Running again, main waits on as before).
                if request_id in self.running and not ended:
                    self.running.discard(request_id)
                    end = min(time.monotonic() + budget, last)
                self._ask_again(flush, note, asked=ask_at is None)
                asked_at = None  # a new sender, judged from its own next wait
            elif supervisor.held_back(self.sender):
                return  # it died again at its start: left down, it answers nothing
            if supervisor.reap([self.listener]):
                self._restart(self.listener)
                self.running.discard(request_id)
                # Telemetry may come late, to the new listener: the budget from the first
                # death. A listener that dies again sent nothing meanwhile: its death moves the
                # end no later (each one pushed it a budget on, to the deadline in a crash loop).
                fallback = min(time.monotonic() + budget, last)
                end = min(end, fallback) if listener_died else fallback
                listener_died = True

    def probe(self, request_id: str, deadline: float) -> None:
        """Where main does not wait: asks for `request_id` (an earlier invocation) when the
        sender has a wake-up it has not taken, and at a later INVOKE, the ask still unread,
        waits for it as for a backlog, to judge it (PROBE_AFTER_S)."""
        now = time.monotonic()
        if not self.probing:
            self.look_at = now + PROBE_AFTER_S
            if not control.unread(self.wake_r):
                return  # nothing spooled that it has not looked at: its silence says nothing
            self._read_answers()  # what it said before: only what comes after the ask counts
            self._forget_answers()
            if self._tell_sender(control.FlushBacklog(request_id)):
                self.probing, self.look_at = True, now + PROBE_READ_S
            return
        self._read_answers()  # an answer since the ask starts the count again, as in a wait
        self._forget_answers()
        if control.unread(self.ctl_r):
            self.flush_invocation(request_id, deadline, ended=True, zero_budget_s=PROBE_WAIT_S)
            if self.unheard_waits:
                return  # still unread, and unheard: judged again at the next INVOKE
        # Read or answered (or killed: its successor reads what is left)
        self._count_silence_again()
        self.probing, self.look_at = False, time.monotonic() + PROBE_AFTER_S

    def _forget_answers(self) -> None:
        """Answers nobody waits for (main does not wait: they only said the sender lives)."""
        self.answers.clear()
        self.running.clear()

    def _count_silence_again(self) -> None:
        """The sender was heard, took main's ask, or is a new one: no wait it let pass counts."""
        self.unheard_waits, self.unheard_s = 0, 0.0

    def _judge_silence(self, heard: bool, asked_at: float | None, now: float) -> None:
        """A wait ran to its end: was the sender heard, or did it take main's ask at least?
        After HUNG_WAITS waits in a row with neither (HUNG_AFTER_S of asks unread), it is
        presumed hung and killed; one restarted or heard starts the count again."""
        if heard or asked_at is None:
            return  # heard: the count starts again (_read_answers); not asked: nothing to judge
        if not control.unread(self.ctl_r):
            self._count_silence_again()
            return
        self.unheard_waits += 1
        self.unheard_s += now - asked_at
        if self.unheard_waits < HUNG_WAITS or self.unheard_s < HUNG_AFTER_S:
            return
        self._kill_hung(f"answered nothing and read none of main's flush requests through "
                        f"{self.unheard_waits} waited invocations in a row "
                        f"({self.unheard_s:.1f} s)")

    def _ask_again(self, flush: control.Flush, note: control.Awaited, asked: bool) -> None:
        """A new sender reads the invocation again; unasked only under sync (the note may have
        gone with the old one)."""
        if asked:
            self._tell_sender(flush)
        elif self.notes_waits:
            self._note(note)

    def shutdown(self, deadline_ms: float, reason: str) -> None:
        """Lets the sender wait for the last report and drain, until just before the deadline;
        then stops the intake, and sends what came in after the sender's last look, if any."""
        left_s = max(0.0, deadline_ms / 1000 - time.time() - SHUTDOWN_MARGIN_S)
        deadline = time.monotonic() + left_s
        awaited = self.last_request if self.sees_invocation_ends else None
        drain = control.Drain(int((time.time() + left_s) * 1000), awaited or "")
        self._read_answers()  # its Ready, and what it said before: only what comes after counts
        drained = self._drain(drain, deadline)
        # The sender ends once the intake was quiet a while; a batch the listener took in after
        # its last look, and answered 2xx, would be lost with the environment. No more is taken
        # in from here on (a request cut short has no 2xx: Lambda has it as undelivered).
        supervisor.stop([self.listener], deadline)
        if drained and deadline - time.monotonic() > SENDER_CHECK_S and _unsent(self.config):
            diagnostics.note("INFO", "telemetry came in after the drain's last look; "
                                     "a sender is started to send it")
            self.sender_started = False
            supervisor.spawn(self.sender, self._all_fds())
            drained = self._drain(control.Drain(drain.deadline_ms, ""), deadline)
        if not drained:
            diagnostics.note("WARNING", f"shutdown ({reason}): deadline reached with events "
                                        "possibly still spooled")
        supervisor.stop([self.sender], deadline)

    def _drain(self, drain: control.Drain, deadline: float) -> bool:
        """Has the sender drain, restarting one that crashed (it resumes from the spool) and
        replacing one presumed hung; whether it exited drained by `deadline`."""
        read_s = max(DRAIN_READ_S, self.config.flush_budget_ms / 1000 + INLINE_SLACK_S)
        read_by = time.monotonic() + read_s if self.sender_started else deadline
        ticks = supervisor.cpu_ticks(self.sender) if read_by < deadline else None
        drained = False
        while self._tell_sender(drain):
            if read_by < deadline and self._drain_unread(read_by) and not self._busy(ticks):
                self._kill_hung(f"read no Drain, answered nothing and used no CPU in "
                                f"{read_s:.2f} s after SHUTDOWN")  # a new one drains: below
            read_by = deadline
            if not supervisor.wait_exit(self.sender, deadline):
                break
            drained = self.sender.exit_status == supervisor.EXIT_OK
            if drained or deadline - time.monotonic() < SENDER_CHECK_S:
                break
            if not self._restart(self.sender):  # it crashed while draining: resume from the spool
                break  # unless it fails to start: the spool keeps the rest
        return drained

    def _drain_unread(self, read_by: float) -> bool:
        """Whether the sender, by `read_by`, neither exited, said anything, nor read its pipe."""
        return not (supervisor.wait_exit(self.sender, read_by) or self._read_answers()
                    or not control.unread(self.ctl_r))

    def _busy(self, ticks_before: int | None) -> bool:
        """Whether the sender used CPU since it had used `ticks_before`: a long pass (a backlog
        at a 128 MB CPU share) is silent too, but not idle. Unknown (no /proc): not busy."""
        ticks = supervisor.cpu_ticks(self.sender)
        return ticks_before is not None and ticks is not None and ticks > ticks_before

    def _kill_hung(self, silence: str) -> None:
        """SIGKILLs the sender presumed hung; the next reap restarts it."""
        diagnostics.note("WARNING", f"the sender {silence}: presumed hung, killing it (SIGKILL); "
                                    "it is restarted and resumes from the spool's last commit "
                                    "(events it had sent since may reach HEC twice)")
        self.sender.hangs += 1
        self._count_silence_again()
        supervisor.kill(self.sender)

    def stop_children(self) -> None:
        supervisor.stop([self.listener, self.sender], time.monotonic() + STOP_CHILDREN_S)

    def _tell_sender(self, message: control.Message) -> bool:
        """Sends to the sender; a dead sender is restarted and asked again, once."""
        if control.send(self.ctl_w, message):
            return True
        if self._sender_restarted() and control.send(self.ctl_w, message):
            return True
        diagnostics.note("WARNING", f"the sender does not take messages ({message!r}); "
                                    "not waiting for it")
        return False

    def _note(self, note: control.Awaited | control.Restarts) -> bool:
        """Tells the sender without waking it: to send the invocation once its end is read (main
        waits for it quietly, or only hurries it), or main's restart counts."""
        return control.send(self.notes_w, note)

    def _read_answers(self) -> bool:
        """Takes the sender's answers; True if there was any (it is alive: the count of waits
        it let pass unheard starts again)."""
        messages = self.status.read()
        if messages:
            self._count_silence_again()
        for message in messages:
            if isinstance(message, control.Delivered):
                self.answers[message.request_id] = True
                self.adaptive.delivered(message.request_id)
            elif isinstance(message, control.Failing):
                self.answers.setdefault(message.request_id, False)
            elif isinstance(message, control.Running):
                self.running.add(message.request_id)
            elif isinstance(message, control.Ready):
                self.sender_started = True
        return bool(messages)

    def _sender_restarted(self) -> bool:
        """Restarts the sender if it died (and is not held back); True if it did."""
        return bool(supervisor.reap([self.sender])) and self._restart(self.sender)

    def _restart_dead_children(self, anyway: bool = False) -> None:
        """Restarts the children that died, and those held back whose back-off is over (or
        `anyway`: at SHUTDOWN, their last chance to send what is spooled)."""
        children = [self.listener, self.sender]
        if _a_child_exited():
            for child in supervisor.reap(children):
                self._restart(child, anyway)
        for child in children:
            if supervisor.held_back(child) and (anyway or supervisor.restart_due(child)):
                self._restart(child, anyway=True)

    def _restart(self, child: supervisor.Child, anyway: bool = False) -> bool:
        """Starts `child` again; one failing to start is held back (supervisor.QUICK_EXIT_S)
        and started at the first event after its back-off. True if it was started."""
        if not (anyway or supervisor.restart_due(child)):
            diagnostics.note("ERROR", f"{child.role} exited with {child.exit_status} "
                                      f"{child.quick_exits} times in a row right after its start; "
                                      "not restarting it before its back-off is over")
            return False
        diagnostics.note("ERROR", f"{child.role} exited with {child.exit_status}; restarting it")
        child.restarts += 1
        if child is self.sender:
            self.sender_started = False
            self._count_silence_again()
        self.adaptive.relearn()
        supervisor.spawn(child, self._all_fds())
        if child is self.listener:
            # A sender takes the counts at its fork; of a listener restarted since, it is told on
            # the notes pipe: no wake-up, read with the spool before the self-metrics that read
            # may emit. Not retried: a pipe too full to take it is one no sender has read for
            # hundreds of invocations (hung or dead: the next one is forked with the counts).
            self._note(self._restart_counts())
        return True


def _age_s() -> float | None:
    """How long this process has run, its interpreter's start included; None without /proc."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            start_ticks = int(stat.read().rpartition(b")")[2].split()[19])  # field 22
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _warn_if_no_room_to_reinit(init_s: float, deadline: float) -> None:
    """At the first INVOKE: warns when the function's timeout leaves no room for an init like
    this one. After a timeout or a crash Lambda initialises the environment again inside the
    next invocation, within its timeout: an init that does not fit times that one out too, and
    the next, for as long as the environment lives (at 128 MB this init takes ~2 s, the
    sample function's own ~0.5 s; docs/deploy.md)."""
    timeout_s = deadline - time.time()
    if timeout_s >= REINIT_ROOM * init_s:
        return
    diagnostics.note("WARNING", f"the function's timeout ({timeout_s:.1f} s) leaves too little "
                                f"room to initialise this extension again ({init_s:.1f} s here): "
                                "after a timeout or a crash, Lambda does that inside the next "
                                "invocation, within its timeout, and each invocation of this "
                                "environment may then time out; raise the timeout to "
                                f"{int(2 * init_s) + 1} s or more, or the memory (the CPU "
                                "grows with it)")


def _unsent(config: Config) -> bool:
    """Whether the spool holds a record not delivered: read once, as a sender starting would
    (only with no sender running: the reader's role lock is free then)."""
    from ext.spool.reader import SpoolReader

    try:
        reader = SpoolReader(config.spool_dir)
    except OSError:
        return False  # no spool to read: nothing a sender could send either
    try:
        return bool(reader.read(max_records=1, max_bytes=1))
    except OSError:
        return False
    finally:
        reader.close()


def _a_child_exited() -> bool:
    """Whether a child waits to be reaped: one system call at every event, not one per child
    (the child is left for supervisor.reap, which says which it was)."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # none to wait for: reaped elsewhere, which supervisor.reap takes as dead


def preload_children() -> None:
    """Imports the children's modules once, here, before they are forked.

    Both children need msgspec and the stdlib modules it pulls in, the sender also urllib3
    and ssl: imported in each child, they cost their CPU twice and their memory once per
    process. Imported here, after register and the subscription (so neither waits for it),
    the children start with nothing left to import, the pages stay shared between the three
    processes (gc.freeze before each fork keeps the collector off them), and under a 128 MB
    CPU share the sender is ready in a fraction of the time: the first invocation's flush no
    longer waits for imports. What they import without needing it is left out (ext/main/preload.py).
    """
    from ext.main import preload

    preload.import_children_modules()


def _bind_listener(config: Config) -> _socket.socket:
    """The listening socket; a host or port that cannot be bound (taken, privileged, not a
    local address, not resolving) is a configuration error naming the variables set."""
    host = config.listener_host or _default_listener_host()
    server = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        server.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        server.bind((host, config.listener_port))
        server.listen(LISTEN_BACKLOG)
    except OSError as err:
        server.close()
        named = [f"{name}={value}" for name, value in (
            (config_module.SPLUNK_LISTENER_HOST, config.listener_host),
            (config_module.SPLUNK_LISTENER_PORT, config.listener_port or None)) if value]
        raise errors.ConfigError([
            f"{' and '.join(named) or 'the Telemetry API listener'} cannot be listened on "
            f"({err.strerror or err}): give a local address and a free port, or leave them "
            "unset"]) from err
    return server


def _default_listener_host() -> str:
    """sandbox.localdomain in Lambda; loopback where it does not resolve (local emulator)."""
    try:
        return _socket.gethostbyname(telemetry_api.DESTINATION_HOST)
    except OSError:
        return "127.0.0.1"


def _config_failed(api: ExtensionsApi, err: errors.ConfigError, environ: Mapping[str, str]) -> int:
    message = "splunk-hec-extension configuration: " + "; ".join(err.problems)
    diagnostics.note("ERROR", message)
    if config_module.config_error_action(environ) == "disable":
        diagnostics.note("ERROR", f"{config_module.SPLUNK_ON_CONFIG_ERROR}=disable: "
                                  "forwarding nothing; the function runs on")
        while Event(api.next_event()).kind != "SHUTDOWN":
            pass
        return 0
    api.init_error(errors.CONFIG_INVALID, message)
    return 1
