"""The sender's run loop, its shutdown and its clocks, in process: a real spool in a temp dir,
the stand-in couriers of test_sender_dispatch, and where a boundary is exact, a clock and a
select the test controls (`sender.time` and `sender.select` replaced)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from ext import control, flush_policy
from ext.flush_policy import drain_reserve_s, reaction_s
from ext.main import supervisor
from ext.sender import process as sender
from ext.sender import self_metrics
from ext.sender.batching import Gathering, HecBatch, seal
from ext.sender.courier import Courier
from ext.sender.envelope import EnvelopeBuilder
from ext.spool import RecordTooLargeError
from ext.spool import writer as spool_writer
from tests.unit.test_sender_dispatch import HOLDING, TimedCourier, WideRig

EPOCH = 1_800_000_000.0  # what the wall clock reads when the test clock reads 0


class Clock:
    """Stands in for the `time` module the sender reads: both clocks move when the test says."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return EPOCH + self.now

    def time_ns(self) -> int:
        return round(self.time() * 1e9)

    def deadline_ms(self, in_s: float) -> int:
        """A Drain's deadline (epoch ms) `in_s` seconds from now."""
        return round((EPOCH + self.now + in_s) * 1000)


class Poll:
    """Stands in for `select`: records each wait's timeout and reports nothing ready."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []
        self.watched: list[list[int]] = []

    def select(self, read: list[int], write: list[int], error: list[int],
               timeout: float) -> tuple[list[int], list[int], list[int]]:
        self.timeouts.append(timeout)
        self.watched.append(read)
        return [], [], []


class PromptCourier(TimedCourier):
    """HEC accepts every batch as soon as it is offered; the sender is woken as the real courier
    wakes it, and counts how often it was hurried."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def offer(self, batch: HecBatch) -> bool:
        self.calls.append("offer")
        super().offer(batch)
        self.finish()
        os.write(self.done_w, b"d")
        return True

    def take_done(self) -> list[int | None]:
        control.drain_pipe(self.done_r)
        return super().take_done()

    def hurry(self) -> None:
        self.calls.append("hurry")


@pytest.fixture
def rig(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WideRig]:
    made = WideRig(tmp_path, **getattr(request, "param", {}))
    yield made
    made.close()


@pytest.fixture
def prompt(tmp_path: Path) -> Iterator[WideRig]:
    """A rig whose HEC accepts at once, holding what it reads until a drain or flush."""
    made = WideRig(tmp_path, courier=PromptCourier(), **HOLDING)
    yield made
    made.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(sender, "time", made)
    monkeypatch.setattr(self_metrics, "time", made)  # its interval, on the same clock
    monkeypatch.setattr(spool_writer, "time", made)  # records' append stamps, on the same clock
    return made


@pytest.fixture
def poll(monkeypatch: pytest.MonkeyPatch) -> Poll:
    made = Poll()
    monkeypatch.setattr(sender, "select", made)
    return made


SENDING = {"DISPATCH_MIN_BATCH_SIZE": "1", "SPLUNK_DISPATCH_MAX_WAIT_MS": "0"}


def drained_rig(rig: WideRig, last_request: str = "", clock: Clock | None = None) -> WideRig:
    """Shutting down with nothing left (the last self-metrics delivered) and no telemetry for
    longer than the quiet time: the drain's end condition holds. The deadline is a minute away
    on the clock the sender reads."""
    deadline_ms = clock.deadline_ms(60) if clock else int(time.time() * 1000) + 60_000
    rig.tell(control.Drain(deadline_ms, last_request))
    rig.courier.finish(2)
    rig.sender.step()
    rig.sender.heard_at -= rig.sender.quiet_s
    return rig


def texts(rig: WideRig) -> list[str]:
    """The log lines HEC accepted, in order (self-metrics and notices left out)."""
    events = (json.loads(e)["event"] for e in rig.courier.accepted)
    return [e for e in events if isinstance(e, str)]


def main_hangs_up(rig: WideRig) -> None:
    """Main closes its end of the control pipe (it exited)."""
    read_end, write_end = rig.pipes[1]
    os.close(write_end)
    rig.pipes[1] = (read_end, os.open(os.devnull, os.O_WRONLY))  # closed by the rig's close


# -- the run loop -------------------------------------------------------------------------------


def test_a_drain_sends_everything_then_exits_before_its_deadline(prompt: WideRig) -> None:
    for n in range(3):
        prompt.append([f"line {n}.0", f"line {n}.1"])
    prompt.courier.queued_bytes = 0
    control.send(prompt.pipes[1][1], control.Drain(int(time.time() * 1000) + 3_000, ""))
    prompt.sender.run()
    assert prompt.sender.drain_deadline is not None
    assert time.monotonic() < prompt.sender.drain_deadline  # done, not stopped by the deadline
    assert prompt.committed() == 2
    assert texts(prompt) == [f"line {n}.{i}" for n in range(3) for i in range(2)]
    assert prompt.answers() == [control.Ready()]
    assert isinstance(prompt.courier, PromptCourier)
    assert prompt.courier.calls[:2] == ["hurry", "offer"]  # the drain cut any backoff short
    assert prompt.courier.calls.count("hurry") == 1


def test_a_drain_whose_deadline_passes_leaves_the_rest_spooled(rig: WideRig) -> None:
    rig.append(["a"])
    control.send(rig.pipes[1][1], control.Drain(int(time.time() * 1000) + 200, ""))
    # HEC never answers: returns at the deadline, without raising, and says data is left
    # (main then warns; a clean exit said it was drained).
    assert rig.sender.run() == sender.EXIT_UNDRAINED == supervisor.EXIT_UNDRAINED
    assert rig.sender.drain_deadline is not None
    assert time.monotonic() >= rig.sender.drain_deadline
    assert rig.committed() == -1


def test_a_drain_whose_deadline_passes_awaiting_the_report_alone_exits_drained(
    prompt: WideRig,
) -> None:
    prompt.append(["a"])
    prompt.courier.queued_bytes = 0
    control.send(prompt.pipes[1][1], control.Drain(int(time.time() * 1000) + 300, "r1"))
    assert prompt.sender.run() is None  # all sent: only the report never came
    assert texts(prompt) == ["a"]


def test_an_idle_sender_sleeps_and_stops_when_main_hangs_up(rig: WideRig) -> None:
    passes = 0
    step = rig.sender.step

    def counted() -> tuple[bool, bool]:
        nonlocal passes
        passes += 1
        return step()

    rig.sender.step = counted  # type: ignore[method-assign]
    loop = threading.Thread(target=rig.sender.run, daemon=True)
    loop.start()
    time.sleep(0.3)
    main_hangs_up(rig)
    loop.join(timeout=5)
    assert not loop.is_alive()
    assert passes <= 5  # woken by the poll timeout (0.25 s) only, not spinning


def _asked_mid_backlog(rig: WideRig, hang_up_at: int) -> list[bool]:
    """Runs the sender; main asks before its 2nd pass and hangs up before pass `hang_up_at`.
    Returns, per pass, whether main's pipe held unread bytes as the pass began."""
    unread_at: list[bool] = []
    step = rig.sender.step

    def counted() -> tuple[bool, bool]:
        unread_at.append(control.unread(rig.pipes[1][0]))
        if len(unread_at) == 2:
            control.send(rig.pipes[1][1], control.Flush("r1"))  # main asks, mid-backlog
        if len(unread_at) == hang_up_at:
            main_hangs_up(rig)  # the end of the test, once it read or not
        return step()

    rig.sender.step = counted  # type: ignore[method-assign]
    rig.sender.run()
    return unread_at


def test_a_sender_sending_a_backlog_reads_main_s_messages_between_passes(tmp_path: Path) -> None:
    # Pass after pass without a wait between them (a backlog, one small request at a time):
    # main's messages were read only after a wait, i.e. once the whole backlog was sent; main
    # heard nothing meanwhile and took the sender for hung.
    rig = WideRig(tmp_path, courier=PromptCourier(), **SENDING, SPLUNK_MAX_REQUEST_BYTES="4096")
    try:
        for n in range(30):
            rig.append([f"{n:04} " + "x" * 1500])
        assert _asked_mid_backlog(rig, hang_up_at=8)[2] is False  # read before the next pass
        assert len(rig.courier.accepted) < 30  # in the midst of the backlog still
    finally:
        rig.close()


def test_a_sender_reading_a_backlog_it_holds_reads_main_s_messages_between_passes(
    tmp_path: Path,
) -> None:
    # Pass after pass reading, nothing handed over (held for the batch size): the other pass
    # without a wait. Main's ask must be read before the next pass there too.
    rig = WideRig(tmp_path, courier=PromptCourier(), **HOLDING)
    try:
        for n in range(2 * sender.READ_RECORDS + 10):  # three reads: two full, one not
            rig.append([f"{n:04} short"])
        # Hung up before the 3rd pass: it ends the wait that follows the last read.
        assert _asked_mid_backlog(rig, hang_up_at=3)[2] is False  # read before the next pass
        assert rig.courier.accepted == []  # all of it held: no handover came in between
    finally:
        rig.close()


# -- when a drain is done -----------------------------------------------------------------------


def _hold(rig: WideRig) -> None:
    rig.sender.held.add(None, [b"{}"])


def _plan(rig: WideRig) -> None:
    rig.sender.outbox.append(seal([b"{}"], None, 1))


def _unconfirmed(rig: WideRig) -> None:
    rig.sender.commits.sent(0)


def _on_the_wire(rig: WideRig) -> None:
    rig.courier.in_flight.append(seal([b"{}"], None, 1))


@pytest.mark.parametrize("leftover", [_hold, _plan, _unconfirmed, _on_the_wire])
def test_a_drain_is_not_done_while_anything_is_left(rig: WideRig, leftover: object) -> None:
    drained_rig(rig)
    assert rig.sender._drained(False)
    assert not rig.sender._drained(True)  # records were read in this pass
    leftover(rig)  # type: ignore[operator]
    assert not rig.sender._drained(False)


def test_a_record_whose_wake_up_was_lost_is_sent_before_the_drain_ends(rig: WideRig) -> None:
    drained_rig(rig)
    rig.append(["late"])
    control.drain_pipe(rig.pipes[0][0])  # the wake-up byte is lost
    rig.sender.step()
    assert not rig.sender.held  # not woken: this pass did not read the spool
    assert not rig.sender._drained(False)  # but something is unread
    rig.sender.step()
    rig.courier.finish()
    rig.sender.step()
    assert rig.committed() == 0
    assert not rig.sender._drained(False)  # "late" came: the intake is heard from again
    rig.sender.heard_at -= rig.sender.quiet_s
    assert rig.sender._drained(False)


def test_the_last_report_is_waited_for_until_the_drain_reserve_begins(
    rig: WideRig, clock: Clock,
) -> None:
    drained_rig(rig, "r1", clock)
    assert rig.sender.drain_deadline is not None
    end = rig.sender._report_wait_end()
    assert end == rig.sender.drain_deadline - drain_reserve_s(0, None, None)
    clock.now = end - 0.001
    assert not rig.sender._drained(False)  # r1's platform.report may still come
    clock.now = end
    assert rig.sender._drained(False)  # the rest of the window is for sending
    clock.now = end + 1
    assert rig.sender._drained(False)


def test_the_report_wait_leaves_time_to_send_everything_unsent(rig: WideRig) -> None:
    rig.courier.rate_bps = 1000.0
    rig.courier.round_trip_s = 0.5
    rig.courier.queued_bytes = 3000  # in the courier
    rig.append(["x" * 500])
    rig.sender.step()
    held = rig.sender.held.size  # read, not planned yet
    assert held > 500
    _plan(rig)  # 2 bytes planned
    rig.append(["y" * 700])
    unread = rig.sender.reader.unread_bytes()  # still in the spool
    assert unread > 700
    rig.sender.drain_deadline = 1000.0
    unsent = held + 2 + 3000 + unread
    assert rig.sender._report_wait_end() == pytest.approx(
        1000.0 - drain_reserve_s(unsent, 1000.0, 0.5), abs=1e-9)


def test_the_drain_listens_until_the_intake_was_quiet_for_the_buffering_time_and_the_slack(
    rig: WideRig, clock: Clock,
) -> None:
    # The runtime's own shutdown logs were written before SHUTDOWN and come after it, up to the
    # subscription's timeoutMs later: the last report already in, the drain still listens.
    rig.tell(control.Drain(clock.deadline_ms(60), ""))
    rig.courier.finish(2)
    rig.sender.step()
    quiet = rig.sender.config.buffer_timeout_ms / 1000 + sender.QUIET_SLACK_S
    assert rig.sender.quiet_s == quiet
    asked = clock.now
    clock.now = asked + quiet - 0.001
    assert not rig.sender._drained(False)
    rig.append(["bye from the runtime's SIGTERM handler"])
    rig.sender.step()  # read: quiet counts again from here
    rig.courier.finish()
    rig.sender.step()
    heard = clock.now
    clock.now = heard + quiet - 0.001
    assert not rig.sender._drained(False)
    clock.now = heard + quiet
    assert rig.sender._drained(False)
    assert "bye from the runtime's SIGTERM handler" in texts(rig)


def test_the_quiet_wait_ends_where_the_drain_is_reserved(rig: WideRig, clock: Clock) -> None:
    rig.tell(control.Drain(clock.deadline_ms(0.5), ""))
    rig.courier.finish(2)
    rig.sender.step()
    rig.sender.quiet_s = 10.0  # longer than the window
    end = rig.sender._report_wait_end()
    clock.now = end - 0.001
    assert not rig.sender._drained(False)
    clock.now = end
    assert rig.sender._drained(False)


# -- how long an idle pass waits ----------------------------------------------------------------


def _shutting_down(rig: WideRig, clock: Clock, last_request: str | None) -> None:
    """Deadline at 10.4 s on a clock that reads 0.4 s (a sender started right after boot);
    with a 4 s round trip the report wait ends at 10.4 - 6.02 = 4.38 s."""
    clock.now = 0.4
    rig.courier.round_trip_s = 4.0
    rig.sender.drain_deadline = 10.4
    rig.sender.last_request = last_request


def test_an_idle_wait_while_awaiting_the_last_report_looks_at_the_spool_until_that_wait_ends(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    _shutting_down(rig, clock, "r1")
    rig.sender.spool_dirty = False
    rig.sender._wait(5.0)
    # The listener may hold its wake-up for the report's batch (DEFER_WAKE_S, 0.25 s): the
    # spool is read every 20 ms instead, the shutdown window has no 0.25 s to spare.
    assert poll.timeouts == [0.02]
    assert rig.sender.spool_dirty  # a timeout: the next pass reads the spool
    clock.now = 4.37  # 10 ms before the report wait ends
    rig.sender._wait(5.0)
    assert poll.timeouts[1:] == [pytest.approx(0.01)]


def test_an_idle_wait_while_the_intake_is_not_yet_quiet_looks_at_the_spool_until_it_is(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    _shutting_down(rig, clock, None)
    rig.sender.heard_at = clock.now
    rig.sender.spool_dirty = False
    rig.sender._wait(5.0)
    assert poll.timeouts == [0.02]
    assert rig.sender.spool_dirty
    clock.now = rig.sender.heard_at + rig.sender.quiet_s - 0.005
    rig.sender._wait(5.0)
    assert poll.timeouts[1:] == [pytest.approx(0.005)]


def test_once_the_report_wait_is_over_an_idle_wait_is_a_poll(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    _shutting_down(rig, clock, "r1")
    clock.now = 5.0  # past 4.38
    rig.sender.spool_dirty = False
    rig.sender._wait(5.0)
    assert poll.timeouts == [0.001]
    assert rig.sender.spool_dirty  # a timeout: look at the spool again


@pytest.mark.parametrize("last_request", ["r1", None])
def test_the_report_wait_does_not_shorten_other_waits(
    rig: WideRig, clock: Clock, poll: Poll, last_request: str | None,
) -> None:
    _shutting_down(rig, clock, last_request)
    if last_request:
        _hold(rig)  # something to send: its dispatch timing rules the wait
    rig.sender._wait(5.0)
    assert poll.timeouts == [5.0]


def test_an_idle_wait_ends_when_a_flush_budget_does(rig: WideRig, clock: Clock, poll: Poll) -> None:
    clock.now = 0.4  # a sender started right after boot
    rig.sender.due["r1"] = 1.0
    rig.sender._wait(5.0)
    clock.now = 2.0  # overdue: answered at the next pass
    rig.sender.spool_dirty = False
    rig.sender._wait(5.0)
    assert poll.timeouts == [pytest.approx(0.6), 0.001]
    assert rig.sender.spool_dirty


# -- exact budgets, on the test's clock ---------------------------------------------------------


@pytest.mark.parametrize("rig", [{"DISPATCH_MIN_BATCH_SIZE": "1000",
                                  "SPLUNK_DISPATCH_MAX_WAIT_MS": "1000"}], indirect=True)
def test_held_events_go_exactly_when_the_linger_bound_is_reached(
    rig: WideRig, clock: Clock,
) -> None:
    clock.now = 1.0  # early in the clock: the wait is a difference, whatever the origin
    rig.append(["a"])
    rig.sender.step()
    clock.now = 1.9995
    rig.sender.step()
    assert not rig.courier.in_flight
    clock.now = 2.0
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1


@pytest.mark.parametrize("rig", [{"DISPATCH_MIN_BATCH_SIZE": "1000",
                                  "SPLUNK_DISPATCH_MAX_WAIT_MS": "1200"}], indirect=True)
def test_the_idle_wait_is_what_is_left_of_the_linger_bound(rig: WideRig, clock: Clock) -> None:
    clock.now = 1.0
    rig.append(["a"])
    rig.sender.step()
    clock.now = 2.1
    assert rig.sender._idle_timeout() == pytest.approx(0.1, abs=1e-9)


def assert_failing_exactly_at(rig: WideRig, clock: Clock, end: float, request_id: str) -> None:
    """The flush of `request_id` is unanswered just before `end`, answered Failing at `end`."""
    clock.now = end - 0.001
    rig.sender.step()
    assert rig.answers() == []
    clock.now = end
    rig.sender.step()
    assert rig.answers() == [control.Failing(request_id)]


def _started(rig: WideRig, rid: str) -> None:
    start = [{"time": "2026-11-26T12:00:00.000Z", "type": "platform.start",
              "record": {"requestId": rid}}]
    rig.writer.append(json.dumps(start).encode(), 1)
    rig.sender.step()


@pytest.mark.parametrize("rig", [{"SPLUNK_FLUSH_BUDGET_MS": "1500"}], indirect=True)
def test_a_flush_is_answered_failing_exactly_its_budget_after_the_runtime_done(
    rig: WideRig, clock: Clock,
) -> None:
    clock.now = 99.0
    _started(rig, "r1")
    assert rig.tell(control.Flush("r1")) == []
    clock.now = 100.0  # the function ran on for a second after main asked
    rig.append_invocation("r1", ["late line"])
    rig.sender.step()  # its runtimeDone is read now (its own stamp is no use)
    assert rig.answers() == [control.Running("r1")]  # past RUNNING_AT through main's wait
    end = 100.0 + (1.5 - 0.0 - reaction_s(1.5))  # main's reaction is kept out of the budget
    assert_failing_exactly_at(rig, clock, end, "r1")


@pytest.mark.parametrize("rig", [{"SPLUNK_FLUSH_BUDGET_MS": "1500"}], indirect=True)
def test_a_flush_is_answered_failing_when_a_request_is_on_the_wire_longer_than_its_budget(
    rig: WideRig,
) -> None:
    rig.append_invocation("r1", ["a"])
    rig.append_invocation("r2", ["b"])
    rig.courier.on_wire_s = 1.4
    assert rig.tell(control.Flush("r1")) == []  # a slow request, not a hanging HEC
    rig.courier.on_wire_s = 1.6
    assert rig.tell(control.Flush("r2")) == [control.Failing("r1"), control.Failing("r2")]


@pytest.mark.parametrize("rig", [{"SPLUNK_FLUSH_BUDGET_MS": "1500"}], indirect=True)
def test_a_flush_after_its_runtime_done_was_read_has_its_budget_from_then(
    rig: WideRig, clock: Clock,
) -> None:
    rig.append_invocation("r1", ["a"])
    rig.sender.step()  # read at 100.0; nobody waits for it yet
    clock.now = 100.2
    assert rig.tell(control.Flush("r1")) == []
    end = 100.2 + (1.5 - 0.0 - reaction_s(1.5))
    assert_failing_exactly_at(rig, clock, end, "r1")


@pytest.mark.parametrize("rig", [{"SPLUNK_FLUSH_BUDGET_MS": "1500"}], indirect=True)
def test_a_report_read_before_the_runtime_done_does_not_start_the_budget(
    rig: WideRig, clock: Clock,
) -> None:
    assert rig.tell(control.Flush("r1")) == []
    _platform(rig, "platform.report")
    rig.sender.step()  # read at 100.0
    clock.now = 101.0
    _platform(rig, "platform.runtimeDone")
    rig.sender.step()
    end = 101.0 + (1.5 - 0.0 - reaction_s(1.5))
    assert_failing_exactly_at(rig, clock, end, "r1")


def test_a_flush_asked_before_the_invocation_started_hears_running_part_way_through_its_wait(
    rig: WideRig, clock: Clock,
) -> None:
    assert rig.tell(control.Flush("r1")) == []
    _started(rig, "r1")
    _started(rig, "r2")  # nobody waits for r2
    assert rig.answers() == []  # most invocations are delivered before main needs to know
    clock.now += rig.sender.flush_wait_s * flush_policy.RUNNING_AT
    rig.sender.step()
    assert rig.answers() == [control.Running("r1")]
    clock.now += 10
    rig.sender.step()
    # Running once. r2's start ended r1 (its runtimeDone never came: ext/sender/invocations.py),
    # and HEC has not taken what came of it within the budget since.
    assert rig.answers() == [control.Failing("r1")]


def _asked_to_flush(rig: WideRig, clock: Clock, request_id: str) -> float:
    """Main asks now; returns when Running is due (RUNNING_AT through main's wait)."""
    asked = clock.now
    assert rig.tell(control.Flush(request_id)) == []
    return asked + rig.sender.flush_wait_s * flush_policy.RUNNING_AT


def test_running_is_told_by_a_pass_that_reads_the_start_shortly_before_it_is_due(
    rig: WideRig, clock: Clock,
) -> None:
    # In a long invocation the listener's held wake-up brings the start just before main's wait
    # is 5/8 over: that pass tells main, rather than one more pass when the timer runs out.
    running_at = _asked_to_flush(rig, clock, "r1")
    clock.now = running_at - sender.RUNNING_SLACK_S - 0.001
    _started(rig, "r1")
    assert rig.answers() == []  # too early: most invocations are delivered by then
    clock.now = running_at - sender.RUNNING_SLACK_S
    rig.sender.step()
    assert rig.answers() == [control.Running("r1")]
    assert rig.sender.running_due == {}  # no timer left for it


def test_shortly_before_it_is_due_without_the_start_running_waits_for_the_timer(
    rig: WideRig, clock: Clock,
) -> None:
    running_at = _asked_to_flush(rig, clock, "r1")
    clock.now = running_at - 0.01
    rig.sender.step()
    assert rig.answers() == [] and "r1" in rig.sender.running_due  # nothing to tell yet
    clock.now = running_at
    _started(rig, "r1")  # the timer's pass reads the spool: the start is there by then
    assert rig.answers() == [control.Running("r1")]


def test_a_running_timer_run_out_without_the_start_is_dropped_by_a_late_pass(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    # The timer's pass rarely comes at the exact instant: one a little past its due time that
    # finds no start has nothing to tell, and must not leave the timer, or each later wait would
    # end at once (1 ms) until the invocation is delivered, and a start read late would tell
    # Running.
    asked = clock.now
    assert rig.tell(control.Flush("r1")) == []
    clock.now = asked + rig.sender.flush_wait_s * flush_policy.RUNNING_AT + 0.01
    rig.sender.step()
    assert rig.answers() == [] and rig.sender.running_due == {}
    rig.sender._wait(sender.IDLE_WAIT_S)
    assert poll.timeouts == [sender.IDLE_WAIT_S]  # nothing is due: no busy wait
    _started(rig, "r1")
    assert rig.answers() == []


def test_a_flush_delivered_before_part_way_through_its_wait_hears_no_running(
    prompt: WideRig, clock: Clock, poll: Poll,
) -> None:
    assert prompt.tell(control.Flush("r1")) == []
    _started(prompt, "r1")
    prompt.append_invocation("r1", ["a"])
    prompt.sender.step()
    prompt.sender.step()  # collects what the courier delivered
    assert prompt.answers() == [control.Delivered("r1")]  # main woken once, not twice
    assert not prompt.sender.running_due
    clock.now += 10
    prompt.sender.step()
    assert prompt.answers() == []


def test_the_wait_ends_part_way_through_a_flush_main_waits_for(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    rig.tell(control.Flush("r1"))
    rig.sender._wait(sender.IDLE_WAIT_S)
    assert poll.timeouts == [pytest.approx(rig.sender.flush_wait_s * flush_policy.RUNNING_AT)]


def test_the_sender_stops_exactly_at_the_drain_deadline(rig: WideRig, clock: Clock) -> None:
    rig.tell(control.Drain(clock.deadline_ms(5), ""))
    assert rig.sender.drain_deadline is not None
    clock.now = rig.sender.drain_deadline
    rig.sender.control_ready = True
    with pytest.raises(sender._StopSendingError):
        rig.sender._service_control()


# -- answers, and what a new sender finds -------------------------------------------------------


def test_answers_a_full_status_pipe_refused_are_resent_in_order_the_latest_kept(
    rig: WideRig,
) -> None:
    while control.send(rig.pipes[2][1], control.Ready()):
        pass  # main is busy: the status pipe is full
    for n in range(300):
        rig.sender._answer(control.Delivered(f"r{n}"))
    assert set(rig.answers()) == {control.Ready()}  # main reads again: none of them got through
    rig.sender._service_control()  # the next pass resends
    assert rig.answers() == [control.Delivered(f"r{n}") for n in range(44, 300)]


def test_a_new_sender_reads_what_the_spool_holds_without_a_wake_up(rig: WideRig) -> None:
    rig.append(["left by the sender before"])
    control.drain_pipe(rig.pipes[0][0])
    rig.sender.step()
    assert rig.sender.held


def test_a_new_sender_reads_what_main_sent_before_it_started(rig: WideRig) -> None:
    control.send(rig.pipes[1][1], control.Flush("r1"))
    assert rig.sender._service_control() is True  # the flush asks to send now


def test_a_drain_asks_to_send_now(rig: WideRig) -> None:
    rig.sender.control_ready = False
    control.send(rig.pipes[1][1], control.Drain(int(time.time() * 1000) + 60_000, ""))
    rig.sender.control_ready = True
    assert rig.sender._service_control() is True


# -- what is read and held ----------------------------------------------------------------------


@pytest.mark.parametrize("rig", [SENDING], indirect=True)
def test_a_loss_is_reported_once_after_the_records_read_with_it(
    rig: WideRig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig.append(["before"])
    with monkeypatch.context() as patch:
        patch.setattr(rig.writer, "max_bytes", 100)
        with pytest.raises(RecordTooLargeError):
            rig.writer.append(b"x" * 200, 3)  # refused: the listener answered an error
    rig.append(["after"])
    rig.append(["and after"])
    rig.sender.step()  # reads the three records in one pass
    rig.courier.finish()
    events = [json.loads(e)["event"] for e in rig.courier.accepted]
    assert events[:3] == ["before", "after", "and after"]
    assert [e["refused_events"] for e in events[3:]] == [3]


@pytest.mark.parametrize("rig", [{"DISPATCH_MIN_BATCH_SIZE": "3",
                                  "SPLUNK_DISPATCH_MAX_WAIT_MS": "600000"}], indirect=True)
def test_each_dispatch_starts_the_count_of_held_events_and_bytes_anew(rig: WideRig) -> None:
    for _ in range(2):
        rig.append(["a", "bb"])
        rig.sender.step()
        assert not rig.courier.in_flight  # 2 events: below the minimum
        envelopes = [e for _, held in rig.sender.held.records for e in held]
        assert rig.sender.held.size == sum(len(e) + 1 for e in envelopes)  # body + separators
        rig.append(["ccc"])
        rig.sender.step()
        assert len(rig.courier.in_flight) == 1  # 3 events
        rig.courier.finish()
        rig.sender.step()
    assert rig.committed() == 3


# -- how much is read while a request fills -----------------------------------------------------

STAMP = "2026-11-26T12:00:00.000Z"
FULL = {**HOLDING, "SPLUNK_MAX_REQUEST_BYTES": "4096"}


def payload_of(line: str) -> bytes:
    """A record of one function line, as the rigs append it."""
    return json.dumps([{"time": STAMP, "type": "function", "record": line}]).encode()


def line_of_payload(size: int) -> str:
    """A line whose record's payload is exactly `size` bytes."""
    return "p" * (size - len(payload_of("")))


def line_held_as(rig: WideRig, size: int) -> str:
    """A line whose record, the first a fresh sender reads, holds exactly `size` bytes (its
    envelope and separator)."""
    envelope = EnvelopeBuilder(rig.sender.config, "fn").build(payload_of("h"))[0]
    return "h" * (size - len(envelope))


def courier_busy(rig: WideRig) -> None:
    """Both courier slots taken and a planned batch waiting: nothing held can be planned."""
    for _ in range(2):
        _on_the_wire(rig)
    _plan(rig)


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
@pytest.mark.parametrize("per_record", [10, 200])  # 200: one record, built in parts
def test_what_waits_past_64_kib_is_held_gzipped_and_sent_whole(
    rig: WideRig, per_record: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [f"{n:04d} " + "w" * 600 for n in range(200)]  # ~140 KB of envelopes
    for n in range(0, 200, per_record):
        rig.append(lines[n:n + per_record])
    held_at_once: list[int] = []
    add = Gathering.add

    def spy(gathering: Gathering, seq: int | None, envelopes: list[bytes]) -> None:
        held_at_once.append(len(envelopes))
        add(gathering, seq, envelopes)

    monkeypatch.setattr(Gathering, "add", spy)
    rig.sender.step()
    assert max(held_at_once) <= sender.PART_EVENTS  # never a whole large record at once
    assert not rig.courier.in_flight  # lingers: below the minimum, not old enough
    planner = rig.sender.held.planner
    assert planner is not None and not rig.sender.held.records and not planner.envelopes
    assert sum(map(len, planner.parts)) * 10 < rig.sender.held.size
    rig.tell(control.Drain(int(time.time() * 1000) + 60_000, ""))  # held ones go now
    rig.courier.finish()
    rig.sender.step()
    assert texts(rig) == lines
    assert rig.committed() == 200 // per_record - 1  # every record


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_a_request_held_exactly_full_is_dispatched(rig: WideRig) -> None:
    rig.append([line_held_as(rig, 4096)])
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1  # far below the minimum batch size, but full
    assert rig.courier.in_flight[0].size == 4095  # the body: no separator after the last


@pytest.mark.parametrize("rig", [FULL], indirect=True)
@pytest.mark.parametrize("held", [4096, 5000])
def test_nothing_more_is_read_while_a_full_request_waits_for_the_courier(
    rig: WideRig, held: int,
) -> None:
    courier_busy(rig)
    rig.append([line_held_as(rig, held)])  # a lone record larger than a request is still read
    rig.sender.step()
    assert rig.sender.held.size == held
    rig.append(["next"])
    rig.sender.step()
    assert len(rig.sender.held.records) == 1  # memory stays bounded while HEC is slow


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_a_wake_up_while_a_full_request_waits_does_not_end_every_wait(rig: WideRig) -> None:
    courier_busy(rig)
    rig.append([line_held_as(rig, 4096)])
    rig.sender.step()
    rig.append(["next"])  # the listener's wake-up, with nothing more that can be held
    rig.sender.step()
    # Left in the pipe, it would end each wait at once: a busy loop for as long as HEC is slow.
    assert not control.drain_pipe(rig.pipes[0][0])
    assert rig.sender.spool_dirty  # the appended record is read once there is room
    rig.courier.finish(3)
    for _ in range(3):
        rig.sender.step()
    taken = [e for b in [*rig.courier.in_flight, *rig.sender.outbox] for e in b.envelopes()]
    taken += [e for _, held in rig.sender.held.records for e in held]
    assert any(b'"event":"next"' in e for e in taken)


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
def test_records_linger_from_their_append_not_from_their_read(
    rig: WideRig, clock: Clock,
) -> None:
    rig.sender.step()  # the first pass reads in any case
    clock.now += 1
    rig.sender.step()  # nothing appended: no wake-up
    clock.now += 5
    appended = clock.now
    rig.append(["a"])
    clock.now += 0.1
    rig.append(["b"])
    clock.now += 0.25  # the listener held the wake-up this long
    rig.sender.step()
    assert len(rig.sender.held.records) == 2
    assert rig.sender.held_since == pytest.approx(appended)  # the first record's append


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
def test_a_backlog_appended_long_ago_lingers_from_its_append_to_the_microsecond(
    rig: WideRig, clock: Clock,
) -> None:
    """A sender restarted on a spool it had not sent: the age is the stamps' difference in
    seconds, exactly (whole seconds: both clocks read exact values). 500 s, within the linger
    bound of 600 s: still held."""
    clock.now = 1000.0
    rig.append(["left by the sender before"])
    clock.now = 1500.0
    rig.sender.step()  # the first pass reads in any case
    assert len(rig.sender.held.records) == 1
    assert rig.sender.held_since == pytest.approx(1000.0, abs=1e-9)


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
def test_a_record_stamped_after_now_lingers_from_its_read(rig: WideRig, clock: Clock) -> None:
    """The wall clock stepped back (NTP) after the append: the stamp lies ahead of now, and no
    age is negative: the record counts from its read, never from a time still to come."""
    clock.now = 500.0
    rig.append(["a"])
    clock.now = 400.0  # both clocks read 100 s earlier now
    rig.sender.step()
    assert len(rig.sender.held.records) == 1
    assert rig.sender.held_since == 400.0


def lines_taken(rig: WideRig) -> list[str]:
    """The lines the sender has read so far: held, planned or with the courier, in order."""
    batches = [*rig.courier.in_flight, *rig.sender.outbox]
    envelopes = [e for b in batches for e in b.envelopes()]
    envelopes += [e for _, held in rig.sender.held.records for e in held]
    return [json.loads(e)["event"] for e in envelopes]


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_a_pass_reads_what_fills_the_request_and_comes_back_for_the_rest(rig: WideRig) -> None:
    rig.append([line_held_as(rig, 3000)])
    rig.sender.step()
    lines = [line_of_payload(600).replace("p", str(n)) for n in range(4)]
    for line in lines:
        rig.append([line])
    rig.sender.step()  # room for 1,096 bytes of payload: two records of 600
    assert lines_taken(rig)[1:] == lines[:2]
    rig.sender.step()  # no wake-up pending: read again because the last read stopped short
    assert lines_taken(rig)[1:] == lines


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_a_read_that_ends_exactly_at_the_request_size_comes_back_for_more(rig: WideRig) -> None:
    rig.append(["first"])
    rig.sender.step()
    # What a read may take: the room left, in spooled bytes (records grow into envelopes).
    budget = int((4096 - rig.sender.held.size) / rig.sender.growth)
    rig.append([line_of_payload(budget)])
    rig.append(["last"])
    rig.sender.step()
    assert "last" not in lines_taken(rig)  # the read stopped at the request's size
    rig.sender.step()
    assert lines_taken(rig)[-1] == "last"


def self_metrics_in(envelopes: list[bytes]) -> list[tuple[str, dict[str, float]]]:
    """(reason, figures) of each self-metrics event among `envelopes`."""
    events = [json.loads(e)["event"] for e in envelopes]
    return [(e["reason"], e["metrics"]) for e in events
            if isinstance(e, dict) and e.get("type") == "splunk-extension.self-metrics"]


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_the_shutdown_self_metrics_are_held_like_any_event(rig: WideRig) -> None:
    courier_busy(rig)
    rig.tell(control.Drain(int(time.time() * 1000) + 60_000, ""))
    [(seq, envelopes)] = rig.sender.held.records  # completes no record
    assert seq is None
    assert [reason for reason, _ in self_metrics_in(envelopes)] == ["shutdown"]
    assert rig.sender.held.size == sum(len(e) + 1 for e in envelopes)


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_the_shutdown_self_metrics_come_after_the_last_record_read(rig: WideRig) -> None:
    courier_busy(rig)
    rig.append(["a"])
    rig.append(["b"])
    rig.tell(control.Drain(int(time.time() * 1000) + 60_000, ""))
    first, second, (seq, last) = rig.sender.held.records
    assert self_metrics_in(first[1]) == self_metrics_in(second[1]) == []
    assert seq is None  # completes no record: the records' commit does not wait for it
    assert [reason for reason, _ in self_metrics_in(last)] == ["shutdown"]


EVERY_INVOCATION = {**HOLDING, "SPLUNK_SELF_METRICS_INTERVAL_MS": "0"}


def _platform(rig: WideRig, *kinds: str) -> None:
    """One record of platform events about invocation r1."""
    events = [{"time": STAMP, "type": kind, "record": {"requestId": "r1"}} for kind in kinds]
    rig.writer.append(json.dumps(events).encode(), len(events))


@pytest.mark.parametrize("rig", [EVERY_INVOCATION], indirect=True)
def test_self_metrics_ride_once_with_the_record_that_ends_an_invocation(rig: WideRig) -> None:
    _platform(rig, "platform.start")
    _platform(rig, "platform.report")
    _platform(rig, "platform.runtimeDone", "platform.report")
    rig.append_invocation("r2", ["a"])
    rig.sender.step()
    counts = [len(self_metrics_in(envelopes)) for _, envelopes in rig.sender.held.records]
    assert counts == [0, 0, 1, 1]


@pytest.mark.parametrize("rig", [{**HOLDING, "SPLUNK_SELF_METRICS_INTERVAL_MS": "1500"}],
                         indirect=True)
def test_invocations_closer_than_the_interval_share_one_self_metrics_event(
    rig: WideRig, clock: Clock,
) -> None:
    for n, now in enumerate((100.0, 101.499, 101.5, 102.999)):
        clock.now = now
        rig.append_invocation(f"r{n}", ["a"])
        rig.sender.step()
    counts = [len(self_metrics_in(envelopes)) for _, envelopes in rig.sender.held.records]
    assert counts == [1, 0, 1, 0]


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_self_metrics_count_as_unsent_what_is_held_queued_and_still_spooled(
    rig: WideRig,
) -> None:
    courier_busy(rig)
    rig.courier.queued_bytes = 3000
    rig.append([line_held_as(rig, 3000)])
    rig.sender.step()
    held = rig.sender.held.size
    rig.append_invocation("r1", ["x" * 1200])  # fills the read: the next record stays unread
    rig.append(["next"])
    before = rig.sender.reader.unread_bytes()
    rig.sender.step()
    unread = rig.sender.reader.unread_bytes()
    assert 0 < unread < before
    [(_, figures)] = self_metrics_in(rig.sender.held.records[1][1])
    planned = sum(batch.size for batch in rig.sender.outbox)  # cut, waiting for the courier
    assert planned > 0
    assert figures["splunk.extension.spool.unsent_bytes"] == unread + held + planned + 3000


def test_a_pass_says_whether_it_handed_a_batch_over_and_read_records(rig: WideRig) -> None:
    assert rig.sender.step() == (False, False)  # nothing to do
    rig.append(["a"])
    rig.sender.drain_deadline = time.monotonic() + 60  # sends at once
    assert rig.sender.step() == (True, True)
    assert rig.sender.step() == (False, False)


# -- after the merge of the linger and the budget from the runtimeDone's stamp -----------------


@pytest.mark.parametrize(("rig", "told"), [
    ({"SPLUNK_FLUSH": "adaptive"}, [control.Delivered("r1")]),
    ({"SPLUNK_FLUSH": "background"}, []),  # main never listens
], indirect=["rig"])
def test_an_invocation_is_told_delivered_unasked_with_adaptive_flushing_and_never_hurried(
    rig: WideRig, told: list[control.Message],
) -> None:
    rig.append_invocation("r1", ["a"])
    rig.sender.step()  # held: below the minimum batch size
    rig.sender.step()
    assert not rig.courier.in_flight  # no hurry: the sender may linger
    rig.courier.failures += 1
    rig.sender.drain_deadline = time.monotonic() + 60  # sends now
    rig.sender.step()
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == told  # never Failing
    rig.sender.step()
    assert rig.answers() == []  # once


SYNC = {"SPLUNK_FLUSH": "sync", **HOLDING}


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_with_sync_flushing_an_invocation_is_sent_at_once_and_told_delivered_unasked(
    rig: WideRig,
) -> None:
    rig.append_invocation("r1", ["a"])
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1  # far below the minimum batch size: main waits
    assert rig.answers() == []
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r1")]
    rig.sender.step()
    assert rig.answers() == [] and not rig.sender.due  # once, and its budget's timer gone


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_with_sync_flushing_a_started_invocation_hears_hec_failing_unasked(
    rig: WideRig,
) -> None:
    rig.append(["before"])  # something on the wire to fail
    rig.sender.drain_deadline = time.monotonic() + 60
    rig.sender.step()
    rig.sender.drain_deadline = None
    rig.sender.spool_dirty = True  # as the listener's held wake-up, when it comes
    _started(rig, "r1")
    rig.courier.failures += 1
    rig.sender.step()
    assert rig.answers() == [control.Failing("r1")]


class HurriedCourier(TimedCourier):
    def __init__(self) -> None:
        super().__init__()
        self.hurried = 0

    def hurry(self) -> None:
        self.hurried += 1


@pytest.mark.parametrize(("flush", "hurried"), [("sync", 1), ("adaptive", 0)])
def test_with_sync_flushing_an_invocation_s_end_cuts_a_backoff_short_unasked(
    tmp_path: Path, flush: str, hurried: int,
) -> None:
    courier = HurriedCourier()
    made = WideRig(tmp_path, courier=courier, SPLUNK_FLUSH=flush, **HOLDING)
    try:
        _started(made, "r1")
        assert courier.hurried == 0  # running: nothing to send for it yet
        made.append_invocation("r1", ["a"])
        made.sender.step()
        assert courier.hurried == hurried  # adaptive: nobody waits for it
    finally:
        made.close()


@pytest.mark.parametrize(("rig", "told"), [
    (SYNC, [control.Failing("r1")]),
    ({"SPLUNK_FLUSH": "adaptive", **HOLDING}, []),  # nobody waits for it
], indirect=["rig"])
def test_with_sync_flushing_a_hanging_hec_is_told_at_an_invocation_s_end_unasked(
    rig: WideRig, told: list[control.Message],
) -> None:
    rig.courier.hanging = True  # the last attempt timed out
    _started(rig, "r1")
    assert rig.answers() == []  # nothing to send for it yet
    rig.append_invocation("r1", ["a"])
    rig.sender.step()
    assert rig.answers() == told


def _started_at(rig: WideRig, rid: str, epoch_s: float, *more: dict[str, object]) -> None:
    """A record with the platform.start of `rid` stamped `epoch_s` (and `more` events)."""
    start = {"time": _iso(epoch_s), "type": "platform.start", "record": {"requestId": rid}}
    rig.writer.append(json.dumps([start, *more]).encode(), 1 + len(more))
    rig.sender.step()


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_with_sync_flushing_running_is_told_unasked_by_the_pass_that_reads_the_start(
    rig: WideRig, clock: Clock,
) -> None:
    running_at = rig.sender.flush_wait_s * flush_policy.RUNNING_AT
    _started_at(rig, "r1", EPOCH + clock.now - running_at + 0.04)  # within the slack
    assert rig.answers() == [control.Running("r1")]
    _started_at(rig, "r2", EPOCH + clock.now - 0.1)  # read early: told when it is due
    assert rig.answers() == []
    assert rig.sender.running_due == {"r2": pytest.approx(clock.now + running_at - 0.1)}
    clock.now += running_at - 0.1
    rig.sender.step()
    assert rig.answers() == [control.Running("r2")]
    clock.now += 10
    rig.sender.step()
    # Running once each. r2's start ended r1 (its runtimeDone never came), and HEC has not
    # taken what came of it within the budget since.
    assert rig.answers() == [control.Failing("r1")]


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_with_sync_flushing_a_report_read_before_the_end_tells_running_no_second_time(
    rig: WideRig, clock: Clock,
) -> None:
    running_at = rig.sender.flush_wait_s * flush_policy.RUNNING_AT
    _started_at(rig, "r1", EPOCH + clock.now - running_at)  # due: told by this pass
    assert rig.answers() == [control.Running("r1")]
    report = {"time": _iso(EPOCH + clock.now), "type": "platform.report",
              "record": {"requestId": "r1", "status": "success"}}
    rig.writer.append(json.dumps([report]).encode(), 1)  # its runtimeDone not read yet
    rig.sender.step()
    assert rig.sender.ledger.running("r1")
    assert not rig.sender.running_due  # only a start starts the timer: none from the report
    clock.now += running_at
    rig.sender.step()
    assert rig.answers() == []


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_no_running_unasked_for_an_invocation_that_ended_or_was_told_failing(
    rig: WideRig, clock: Clock,
) -> None:
    done: dict[str, object] = {"time": _iso(EPOCH + clock.now), "type": "platform.runtimeDone",
                               "record": {"requestId": "r1", "status": "success"}}
    _started_at(rig, "r1", EPOCH + clock.now - 1, done)  # ended in the same record
    assert rig.answers() == [] and not rig.sender.running_due
    rig.courier.hanging = True
    assert control.Failing("r2") in rig.tell(control.Flush("r2"))  # main asked at once
    rig.sender.running_due.clear()  # (the Flush's own timer: not the one looked at here)
    _started_at(rig, "r2", EPOCH + clock.now)
    assert not rig.sender.running_due  # no timer to end a wait for nothing


@pytest.mark.parametrize("rig", [{"SPLUNK_FLUSH": "adaptive", **HOLDING}], indirect=True)
def test_no_running_unasked_without_sync_flushing(rig: WideRig, clock: Clock) -> None:
    _started_at(rig, "r1", EPOCH + clock.now)  # nobody waits for it
    assert not rig.sender.running_due  # no timer to end a wait for nothing


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_a_late_ask_reads_the_spool_again_and_hears_running_at_once(
    rig: WideRig, clock: Clock,
) -> None:
    rig.sender.step()  # nothing spooled yet: the next pass reads only when woken
    start = [{"time": STAMP, "type": "platform.start", "record": {"requestId": "r1"}}]
    rig.writer.append(json.dumps(start).encode(), 1, read_now=False)  # its wake-up held
    rig.sender.step()
    assert "r1" not in rig.sender.ledger.start_at
    assert rig.tell(control.FlushLate("r1")) == [control.Running("r1")]
    assert not rig.sender.running_due  # told: no timer left to end a wait
    rig.append_invocation("r1", ["a"])
    rig.sender.step()
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r1")]


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_a_late_ask_about_an_invocation_not_started_leaves_no_timer(
    rig: WideRig, clock: Clock,
) -> None:
    assert rig.tell(control.FlushLate("r1")) == []  # no start spooled: nothing to tell
    assert not rig.sender.running_due
    assert rig.sender.ledger.waiting == {"r1": False}  # still waited for


ADAPTIVE = {"SPLUNK_FLUSH": "adaptive", **HOLDING}


@pytest.mark.parametrize("rig", [{"SPLUNK_FLUSH": "background", **SENDING}], indirect=True)
def test_an_ask_about_an_invocation_already_delivered_is_answered_at_once(rig: WideRig) -> None:
    rig.append_invocation("r1", ["a"])
    rig.sender.step()
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == []  # nobody asked: nothing told
    assert rig.tell(control.Flush("r1")) == [control.Delivered("r1")]
    rig.note("r1")
    rig.append(["b"])  # the note is read with the spool
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r1")]


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_with_adaptive_flushing_a_noted_invocation_is_sent_at_once_and_told_delivered_unasked(
    rig: WideRig,
) -> None:
    rig.note("r1")
    rig.append_invocation("r1", ["a"])
    rig.append_invocation("r2", ["b"])  # not noted: main does not wait for it
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1  # far below the minimum batch size: main waits
    assert rig.answers() == []
    rig.courier.finish()
    rig.sender.step()
    # r2 rode with it, and is told too: adaptive flushing tells every delivery.
    assert rig.answers() == [control.Delivered("r1"), control.Delivered("r2")]
    assert not rig.sender.due  # its budget's timer gone
    rig.append_invocation("r3", ["c"])
    rig.sender.step()
    assert not rig.courier.in_flight  # held: nobody waits for it


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_a_hurried_invocation_is_sent_at_once_and_told_nothing_but_its_delivery(
    rig: WideRig, clock: Clock,
) -> None:
    rig.courier.hanging = True  # would be told at its end, were it waited for
    rig.sender.spool_dirty = True  # the note is read with the start's record
    assert control.send(rig.pipes[3][1], control.Hurried("r1"))
    _started_at(rig, "r1", EPOCH + clock.now - 10)  # long started: Running due long ago
    assert not rig.sender.running_due
    rig.append_invocation("r1", ["a"])
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1  # sent at once, whatever the batch size
    assert not rig.sender.due  # no budget: nobody waits for it
    rig.courier.failures += 1
    rig.sender.step()
    assert rig.answers() == []  # neither Running nor Failing
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r1")]


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_a_note_wakes_no_wait_and_is_read_with_the_spool(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    rig.sender.step()  # the first pass reads the spool: nothing there
    rig.note("r1")
    rig.sender.step()
    assert "r1" not in rig.sender.ledger.waiting  # no wake-up from the listener: not read yet
    rig.sender._wait(1.0)
    assert poll.watched == [[rig.sender.wake_fd, rig.sender.control.fd,
                             rig.courier.done_r]]  # not the notes pipe
    rig.append_invocation("r0", ["a"])
    rig.sender.step()
    assert rig.sender.ledger.waiting == {"r1": False}


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_a_noted_invocation_hears_running_from_its_start_unasked(
    rig: WideRig, clock: Clock,
) -> None:
    running_at = rig.sender.flush_wait_s * flush_policy.RUNNING_AT
    rig.note("r1")
    _started_at(rig, "r1", EPOCH + clock.now - running_at)  # due: told by this pass
    assert rig.answers() == [control.Running("r1")]


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_a_note_read_after_its_invocation_s_end_sends_it_with_the_budget_from_then(
    rig: WideRig, clock: Clock,
) -> None:
    rig.append_invocation("r1", ["a"])
    rig.sender.step()
    assert not rig.courier.in_flight  # held: not noted yet
    rig.note("r1")
    clock.now += 5.0
    rig.append(["b"])  # the next wake-up reads the note
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1
    assert rig.sender.due == {"r1": pytest.approx(clock.now + rig.sender.flush_wait_s)}


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_a_note_read_after_a_late_ask_told_failing_tells_it_no_second_time(
    rig: WideRig, clock: Clock,
) -> None:
    rig.courier.hanging = True
    rig.note("r1")  # written first, read after the late ask (the ask reads the spool)
    assert control.Failing("r1") in rig.tell(control.FlushLate("r1"))
    assert rig.sender.ledger.waiting == {"r1": True}  # the note changed nothing
    rig.courier.failures += 1
    rig.sender.step()
    assert rig.answers() == []


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_a_note_read_after_one_a_late_ask_took_first_is_taken_still(
    rig: WideRig, clock: Clock,
) -> None:
    rig.note("r1")
    rig.note("r2")  # both read with the late ask about r1, which skips r1's note alone
    assert rig.tell(control.FlushLate("r1")) == []  # not started: nothing to tell
    rig.append_invocation("r2", ["b"])
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1  # r2 noted: sent at once, whatever the batch size


@contextlib.contextmanager
def _pipe_at(fd: int) -> Iterator[int]:
    """A pipe whose read end stands at `fd` (a standard stream's) until the block ends; yields
    its write end."""
    try:
        saved: int | None = os.dup(fd)
    except OSError:  # nothing stood there
        saved = None
    read_end, write_end = control.make_pipe()
    try:
        os.dup2(read_end, fd)  # shares the read end's non-blocking status
        yield write_end
    finally:
        if saved is None:
            os.close(fd)
        else:
            os.dup2(saved, fd)
            os.close(saved)
        os.close(read_end)
        os.close(write_end)


def _restarted(rig: WideRig, notes_fd: int | None = None) -> None:
    """The rig's sender replaced by one made with `notes_fd` as given (or left out)."""
    rig.sender.reader.close()  # the spool's reader role passes to the new one
    args = (rig.sender.config, "fn", rig.pipes[0][0], rig.pipes[1][0], rig.pipes[2][1])
    courier = cast(Courier, rig.courier)
    rig.sender = (sender.Sender(*args, courier=courier) if notes_fd is None
                  else sender.Sender(*args, courier=courier, notes_fd=notes_fd))


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_a_sender_given_no_notes_pipe_takes_no_note_from_its_standard_streams(
    rig: WideRig,
) -> None:
    with _pipe_at(0) as stdin, _pipe_at(1) as stdout:
        assert control.send(stdin, control.Awaited("r1"))
        assert control.send(stdout, control.Awaited("r1"))
        _restarted(rig)  # no notes_fd: no notes pipe at all
        rig.append_invocation("r1", ["a"])
        rig.sender.step()
    assert not rig.courier.in_flight  # held: nobody noted it


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_a_notes_pipe_at_fd_0_is_read(rig: WideRig) -> None:
    # A descriptor like any other: where the extension starts with stdin closed, the first
    # descriptor it opens is 0.
    with _pipe_at(0) as notes:
        _restarted(rig, notes_fd=0)
        assert control.send(notes, control.Awaited("r1"))
        rig.append_invocation("r1", ["a"])
        rig.sender.step()
    assert len(rig.courier.in_flight) == 1  # noted: sent at once, whatever the batch size


def _iso(epoch_s: float) -> str:
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@pytest.mark.parametrize("rig", [{"SPLUNK_FLUSH_BUDGET_MS": "1500"}], indirect=True)
def test_a_flush_budget_runs_from_the_runtime_done_stamp(rig: WideRig, clock: Clock) -> None:
    assert rig.tell(control.Flush("r1")) == []
    clock.now = 100.0
    ended = round(EPOCH + 99.7, 3)  # the runtime ended 300 ms before the sender read it
    events = [{"time": _iso(ended), "type": "platform.runtimeDone",
               "record": {"requestId": "r1", "status": "success"}}]
    rig.writer.append(json.dumps(events).encode(), 1)
    rig.sender.step()
    end = 100.0 + 1.5 - 0.3 - reaction_s(1.5)
    clock.now = end - 0.005
    rig.sender.step()
    assert rig.answers() == []
    clock.now = end + 0.005
    rig.sender.step()
    assert rig.answers() == [control.Failing("r1")]


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_a_read_takes_what_fills_the_request_once_records_grow_into_envelopes(
    rig: WideRig,
) -> None:
    courier_busy(rig)  # nothing held is planned: what a read takes stays held
    many = [f"e{n}" for n in range(10)]  # small events: envelopes ~2.5x their spooled bytes
    rig.append(many)
    rig.sender.step()
    growth = rig.sender.growth  # envelope bytes per spooled byte, measured on this read
    assert growth > 2
    one_record = rig.sender.held.size
    for _ in range(6):
        rig.append(many)
    rig.sender.step()
    assert len(rig.sender.held.records) == 3  # 1 + the 2 records whose envelopes fill the request
    assert rig.sender.held.size <= 4096 + one_record
    assert rig.sender.growth == pytest.approx(growth, rel=0.01)  # measured on this read alone


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_a_new_sender_first_reads_a_request_of_spooled_bytes(rig: WideRig) -> None:
    courier_busy(rig)
    for _ in range(8):
        rig.append([line_of_payload(600)])
    rig.sender.step()
    assert len(rig.sender.held.records) == 7  # 7 x 600 >= 4,096: nothing known yet of their growth


@pytest.mark.parametrize("rig", [FULL], indirect=True)
def test_records_that_map_to_nothing_do_not_stop_the_reads_after_them(rig: WideRig) -> None:
    courier_busy(rig)
    rig.append([""] * 20)  # only empty lines: no envelope at all
    rig.sender.step()
    assert rig.sender.held.size == 0
    rig.append(["after"])
    rig.sender.step()
    held = [json.loads(e)["event"] for _, envelopes in rig.sender.held.records for e in envelopes]
    assert held == ["after"]


class CountingCourier(TimedCourier):
    """The stand-in that counts how often the sender collected finished batches."""

    def __init__(self) -> None:
        super().__init__()
        self.collected = 0

    def take_done(self) -> list[int | None]:
        self.collected += 1
        control.drain_pipe(self.done_r)
        return super().take_done()


def test_the_courier_is_asked_for_finished_batches_only_while_one_is_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    courier = CountingCourier()
    rig = WideRig(tmp_path, courier=courier, SPLUNK_DISPATCH_MAX_WAIT_MS="0")
    try:
        reads: list[int] = []
        read = os.read

        def recording(fd: int, n: int) -> bytes:
            reads.append(fd)
            return read(fd, n)

        monkeypatch.setattr(os, "read", recording)
        rig.sender.step()
        rig.sender.step()
        assert courier.collected == 0  # nothing handed over: nothing can have finished
        assert reads == [rig.pipes[0][0]] * 2  # the wake-up pipe, empty: one read per pass
        rig.append(["a"])
        reads.clear()
        rig.sender.step()  # reads the record and hands it to the courier
        assert reads == [rig.pipes[0][0]]  # one read empties it: none more to meet EAGAIN
        assert courier.collected == 0 and len(courier.in_flight) == 1
        rig.sender.step()
        assert courier.collected == 1  # in flight: asked at every pass
        courier.finish()
        rig.sender.step()
        assert courier.collected == 2 and rig.committed() == 0
        rig.sender.step()
        assert courier.collected == 2  # committed: none in flight any more
    finally:
        rig.close()


def test_a_late_wake_up_from_the_courier_is_emptied_with_nothing_in_flight(
    tmp_path: Path,
) -> None:
    """The courier appends a finished batch, then writes its wake-up byte: a sender that took
    the batch in between (and committed it) later finds the byte with nothing in flight. It
    must still empty the pipe, or every wait ends at once: a busy loop until the next batch."""
    courier = CountingCourier()
    rig = WideRig(tmp_path, courier=courier, SPLUNK_DISPATCH_MAX_WAIT_MS="0")
    try:
        rig.append(["a"])
        rig.sender.step()
        courier.finish()
        rig.sender.step()
        assert rig.committed() == 0 and not rig.sender.commits  # nothing in flight
        os.write(courier.done_w, b"d")  # the byte that came after the batch was collected
        for _ in range(3):
            started = time.monotonic()
            rig.sender._wait(0.2)
            rig.sender.step()
        assert time.monotonic() - started >= 0.15  # the last wait waited
        assert not control.drain_pipe(courier.done_r)
    finally:
        rig.close()


def test_emptying_a_wake_up_pipe_full_to_the_brim(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    assert not sender._emptied(read_fd)
    os.write(write_fd, b"\x01" * 3)
    assert sender._emptied(read_fd)
    assert not sender._emptied(read_fd)
    filled = 0
    try:
        while True:
            filled += os.write(write_fd, b"\x01" * 4096)
    except BlockingIOError:
        pass
    assert filled >= sender.PIPE_READ_BYTES  # a full pipe: the first read takes all it asks
    assert sender._emptied(read_fd)
    assert not control.drain_pipe(read_fd)  # nothing left


def test_emptying_a_wake_up_pipe_larger_than_one_read(pipe: tuple[int, int]) -> None:
    # Where pages are 64 KiB (some arm64 kernels) a pipe holds 1 MiB by default.
    read_fd, write_fd = pipe
    size = fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4 * sender.PIPE_READ_BYTES)
    assert size > sender.PIPE_READ_BYTES
    os.write(write_fd, b"\x01" * (3 * sender.PIPE_READ_BYTES))
    assert sender._emptied(read_fd)
    assert not control.drain_pipe(read_fd)  # nothing left


def test_a_wake_up_pipe_whose_writers_are_gone_holds_no_wake_up() -> None:
    read_fd, write_fd = control.make_pipe()
    try:
        os.write(write_fd, b"\x01")
        os.close(write_fd)
        assert sender._emptied(read_fd)  # the byte written before the close
        assert not sender._emptied(read_fd)  # then end of file: nothing to look at
    finally:
        os.close(read_fd)


class InlineCourier(TimedCourier):
    """Sends every lone batch on the sender's thread, as the real courier does while HEC is
    healthy and its thread idle; batches with more behind them go to the thread, and so do
    lone ones once HEC is not `healthy`."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[HecBatch] = []
        self.healthy = True

    def deliver_now(self, batch: HecBatch, within_s: float) -> bool:
        if not self.healthy:
            return super().deliver_now(batch, within_s)
        self.inline.append(batch)
        self.accepted.extend(batch.envelopes())
        return True


@pytest.fixture
def inline(tmp_path: Path) -> Iterator[tuple[WideRig, InlineCourier]]:
    """A rig whose courier sends a lone batch on the sender's thread, and one batch ("a")
    already sent that way: committed in the pass that sent it, with no take_done to wait for."""
    courier = InlineCourier()
    rig = WideRig(tmp_path, courier=courier, **SENDING)
    rig.append(["a"])
    rig.sender.step()
    assert rig.committed() == 0 and len(courier.inline) == 1
    yield rig, courier
    rig.close()


def _passes_until_the_first_wait(rig: WideRig, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Runs the sender's loop until it would wait (or returns); what it did, in order."""
    done: list[str] = []
    step = rig.sender.step

    def counted_step() -> tuple[bool, bool]:
        done.append("step")
        return step()

    def stop(timeout_s: float) -> None:
        done.append("wait")
        raise sender._StopSendingError

    monkeypatch.setattr(rig.sender, "step", counted_step)
    monkeypatch.setattr(rig.sender, "_wait", stop)
    monkeypatch.setattr(rig.sender.courier, "stop", lambda: None)  # the rig closes it
    monkeypatch.setattr(rig.sender.reader, "close", lambda: None)
    rig.sender.run()
    return done


def test_a_lone_batch_sent_inline_is_followed_by_a_wait_not_another_pass(
    inline: tuple[WideRig, InlineCourier], monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig, courier = inline
    rig.append_invocation("r1", ["b"])
    assert _passes_until_the_first_wait(rig, monkeypatch) == ["step", "wait"]
    assert rig.committed() == 1 and len(courier.inline) == 2


def test_while_draining_a_lone_batch_sent_inline_is_followed_by_the_pass_that_ends_it(
    inline: tuple[WideRig, InlineCourier], monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig, courier = inline
    rig.sender.drain_deadline = time.monotonic() + 10  # as a Drain without a report to await
    rig.sender.quiet_s = 0.0  # and the intake taken as quiet once read
    rig.append(["b"])
    assert _passes_until_the_first_wait(rig, monkeypatch) == ["step", "step"]  # then drained
    assert rig.committed() == 1 and len(courier.inline) == 2


def test_a_batch_sent_on_the_senders_thread_is_committed_and_answered_in_the_same_pass(
    inline: tuple[WideRig, InlineCourier],
) -> None:
    rig, courier = inline
    assert not courier.in_flight
    rig.tell(control.Flush("r1"))  # main waits for r1
    rig.append_invocation("r1", ["b"])
    rig.sender.step()
    assert rig.committed() == 1
    assert rig.answers() == [control.Delivered("r1")]


def test_an_invocation_delivered_on_the_senders_thread_leaves_no_timer_to_end_the_next_wait(
    inline: tuple[WideRig, InlineCourier], poll: Poll,
) -> None:
    rig, _ = inline
    rig.tell(control.Flush("r1"))  # main waits: Running is due RUNNING_AT through its wait
    rig.append_invocation("r1", ["b"])  # its runtimeDone: a budget from then
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r1")]
    assert not rig.sender.running_due and not rig.sender.due
    rig.sender._wait(rig.sender._idle_timeout())
    assert poll.timeouts == [sender.IDLE_WAIT_S]  # asleep until the next invocation wakes it


def test_after_a_batch_sent_on_the_senders_thread_an_empty_batch_still_waits_behind_the_wire(
    inline: tuple[WideRig, InlineCourier],
) -> None:
    rig, courier = inline
    courier.healthy = False  # HEC failed meanwhile: the next batch goes to the thread
    rig.append(["b"])
    rig.sender.step()
    assert len(courier.in_flight) == 1
    rig.append([""])  # only an empty line: a batch with nothing to send
    rig.sender.step()
    assert rig.committed() == 0  # "b" is on the wire: nothing after it is committed
    courier.finish()
    rig.sender.step()
    assert rig.committed() == 2


@pytest.mark.parametrize("rig", [{**SENDING, "SPLUNK_MAX_REQUEST_BYTES": "4096"}], indirect=True)
def test_with_more_batches_to_send_the_first_goes_to_the_courier_thread(rig: WideRig) -> None:
    courier = InlineCourier()
    rig.sender.courier = cast(Courier, courier)  # a stand-in, as WideRig's own courier is
    rig.append(["x" * 1500, "y" * 1500, "z" * 1500])  # three requests' worth
    rig.sender.step()
    # The next is prepared while the thread posts: only the last one may go inline.
    assert len(courier.in_flight) == 1 and not courier.inline


def test_a_request_on_the_senders_thread_ends_before_the_first_flush_budget(
    rig: WideRig,
) -> None:
    # This thread answers waiting flushes Failing once their budget passed: a request it makes
    # itself must give up by then.
    assert rig.sender._inline_limit_s() == rig.sender.flush_wait_s
    rig.tell(control.Flush("r1"))
    rig.tell(control.Flush("r2"))
    rig.sender.due = {"r1": time.monotonic() + 0.1, "r2": time.monotonic() + 0.3}
    assert 0.05 < rig.sender._inline_limit_s() <= 0.1


def test_a_flush_whose_budget_is_over_is_answered_before_the_inline_request_not_waited_for(
    rig: WideRig,
) -> None:
    # A runtimeDone read after a thaw is past its budget at once (main did not wait for it):
    # it is answered Failing now, and leaves the request the whole limit, not none.
    rig.tell(control.Flush("r1"))
    rig.sender.due = {"r1": time.monotonic() - 0.001}
    assert rig.sender._inline_limit_s() == rig.sender.flush_wait_s
    assert rig.answers() == [control.Failing("r1")]

# What the sender tells main about the flushes it waits for, and when its waits end for them
# (Running RUNNING_AT through main's wait, never to an invocation already told Failing, never
# for a backlog; every message read with a backlog flush applied; the inline request's limit
# and the idle wait on a monotonic clock counted from boot: a fresh microVM's reads well
# under a second).


def test_an_invocation_told_failing_is_not_told_running_part_way_through_the_wait(
    rig: WideRig, clock: Clock,
) -> None:
    assert rig.tell(control.Flush("r1")) == []
    _started(rig, "r1")
    rig.courier.failures += 1  # HEC refused an attempt: main stops waiting for r1
    rig.sender.step()
    assert rig.answers() == [control.Failing("r1")]
    clock.now += rig.sender.flush_wait_s * flush_policy.RUNNING_AT
    rig.sender.step()
    assert rig.answers() == []  # main no longer waits: Running would only wake it
    assert not rig.sender.running_due


def test_a_backlog_flush_that_started_is_never_told_running(rig: WideRig, clock: Clock) -> None:
    _started(rig, "r1")  # its platform.start is spooled, its runtimeDone not (yet, or lost)
    assert rig.tell(control.FlushBacklog("r1")) == []
    clock.now += rig.sender.flush_wait_s * flush_policy.RUNNING_AT
    rig.sender.step()
    assert rig.answers() == []  # main would not wait longer for an invocation ended long ago
    clock.now = rig.sender.due["r1"]
    rig.sender.step()
    assert rig.answers() == [control.Failing("r1")]  # its budget from the asking


def test_the_messages_read_with_a_backlog_flush_are_all_applied(
    rig: WideRig, clock: Clock,
) -> None:
    # Main asks for the new invocation, then for the backlog; the sender reads both at once,
    # with whatever came after them (the next invocation's flush, main's shutdown).
    for message in (control.FlushBacklog("r1"), control.Flush("r3"),
                    control.Drain(clock.deadline_ms(60), "r3")):
        control.send(rig.pipes[1][1], message)
    rig.sender.control_ready = True
    assert rig.sender._service_control() is True
    assert set(rig.sender.due) == {"r1"}
    assert set(rig.sender.running_due) == {"r3"}
    assert rig.sender.drain_deadline == pytest.approx(clock.now + 60)
    assert rig.sender.last_request == "r3"


def test_a_request_on_the_senders_thread_ends_with_the_first_budget_right_after_boot(
    rig: WideRig, clock: Clock,
) -> None:
    clock.now = 0.25  # the monotonic clock of a microVM booted a quarter of a second ago
    rig.tell(control.Flush("r1"))
    rig.sender.due["r1"] = 0.55
    assert rig.sender._inline_limit_s() == pytest.approx(0.3)


def test_an_idle_wait_right_after_boot_ends_part_way_through_main_s_wait(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    clock.now = 0.1  # a sender started right after boot
    rig.tell(control.Flush("r1"))
    rig.sender._wait(5.0)
    assert poll.timeouts == [pytest.approx(rig.sender.flush_wait_s * flush_policy.RUNNING_AT)]


def test_an_idle_wait_past_main_s_running_point_is_a_poll(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    # The Running point passed during the pass (Running is told at the next): a 1 ms poll that
    # looks everywhere, as for a flush's budget that ended.
    rig.tell(control.Flush("r1"))
    clock.now += rig.sender.flush_wait_s
    rig.sender.spool_dirty = False
    rig.sender._wait(5.0)
    assert poll.timeouts == [0.001]
    assert rig.sender.spool_dirty
