"""Invocations whose platform.runtimeDone never reaches the sender: Lambda dropped it (and said
so in a platform.logsDropped, lambda-protocol.md §2.4), or a later invocation started without
it. Main, told Running, waits up to the function's deadline for an answer (billed): it must hear
once what did arrive is in HEC, and the loss must stay visible. Also the flush main waits for,
which the ledger forgot after an HEC outage (its last KEEP requests)."""

from __future__ import annotations

import json

import pytest

from ext import control, flush_policy
from ext.flush_policy import reaction_s
from tests.unit import test_sender_loop
from tests.unit.test_sender_dispatch import HOLDING, WideRig
from tests.unit.test_sender_loop import ADAPTIVE, EPOCH, SYNC, Clock, _iso, self_metrics_in

# The sender's rig and the clock it runs on, as the loop's tests set them up (pytest takes a
# fixture from any name of a test module).
rig = test_sender_loop.rig
clock = test_sender_loop.clock

DROPPED = {"droppedBytes": 5120, "droppedRecords": 40,
           "reason": "Consumer seems to have fallen behind as it has not acknowledged receipt "
                     "of logs."}


def _record(rig: WideRig, *events: dict[str, object]) -> None:
    rig.writer.append(json.dumps(list(events)).encode(), len(events))


def _start(rid: str, epoch_s: float) -> dict[str, object]:
    return {"time": _iso(epoch_s), "type": "platform.start", "record": {"requestId": rid}}


def _line(text: str, epoch_s: float) -> dict[str, object]:
    return {"time": _iso(epoch_s), "type": "function", "record": text}


def _dropped(epoch_s: float) -> dict[str, object]:
    return {"time": _iso(epoch_s), "type": "platform.logsDropped", "record": DROPPED}


def _running(rig: WideRig, clock: Clock, rid: str) -> None:
    """`rid` started long enough ago that main has been told Running: it waits to its deadline."""
    running_at = rig.sender.flush_wait_s * flush_policy.RUNNING_AT
    _record(rig, _start(rid, EPOCH + clock.now - running_at))
    rig.sender.step()
    assert rig.answers() == [control.Running(rid)]


def _accepted(rig: WideRig) -> list[dict[str, object]]:
    return [json.loads(e) for e in rig.courier.accepted]


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_with_sync_flushing_a_drop_notice_answers_a_running_invocation_once_what_came_is_sent(
    rig: WideRig, clock: Clock,
) -> None:
    _running(rig, clock, "r1")
    _record(rig, _line("before the drop", EPOCH + clock.now), _dropped(EPOCH + clock.now))
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1  # sent now, whatever the batch size: main waits
    assert rig.answers() == []  # not before HEC has it
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r1")]
    events = [e["event"] for e in _accepted(rig)]
    assert "before the drop" in events
    # The platform's own notice reaches Splunk as it came: the loss stays visible.
    assert {"type": "platform.logsDropped", "record": DROPPED} in events
    rig.append_invocation("r1", ["after"])  # it was only its lines: its end comes after all
    rig.sender.step()
    assert rig.answers() == [] and not rig.sender.due  # told once; no budget left running


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_with_adaptive_flushing_a_drop_notice_answers_a_noted_invocation(
    rig: WideRig, clock: Clock,
) -> None:
    rig.note("r1")
    rig.sender.spool_dirty = True  # the note is read with the start's record
    _running(rig, clock, "r1")
    _record(rig, _dropped(EPOCH + clock.now))
    rig.sender.step()
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r1")]


@pytest.mark.parametrize("rig", [{**SYNC, "SPLUNK_FLUSH_BUDGET_MS": "1500"}], indirect=True)
def test_a_drop_notice_while_hec_fails_answers_failing_a_budget_after_the_notice(
    rig: WideRig, clock: Clock,
) -> None:
    _running(rig, clock, "r1")
    _record(rig, _dropped(EPOCH + clock.now - 0.5))  # stamped half a second before its read
    rig.sender.step()
    end = clock.now + 1.5 - reaction_s(1.5) - 0.5
    clock.now = end - 0.001
    rig.sender.step()
    assert rig.answers() == []
    clock.now = end
    rig.sender.step()
    assert rig.answers() == [control.Failing("r1")]


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_a_drop_notice_read_before_an_invocation_started_does_not_end_it(
    rig: WideRig, clock: Clock,
) -> None:
    _record(rig, _dropped(EPOCH + clock.now), _start("r1", EPOCH + clock.now))
    rig.sender.step()
    assert rig.sender.ledger.running("r1")
    assert not rig.courier.in_flight  # nothing to hurry: its end is still to come


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_a_backlog_whose_end_never_came_is_answered_once_the_next_invocation_started(
    rig: WideRig, clock: Clock,
) -> None:
    # r1's runtimeDone was lost (and so was the notice, say): main, waiting for that backlog
    # while r2 runs, used to wait its whole budget and hear Failing.
    _record(rig, _start("r1", EPOCH + clock.now), _line("r1's line", EPOCH + clock.now))
    rig.sender.step()
    _record(rig, _start("r2", EPOCH + clock.now + 1))
    rig.sender.step()
    assert rig.tell(control.FlushBacklog("r1")) == []
    assert len(rig.courier.in_flight) == 1
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r1")]


@pytest.mark.parametrize("rig", [{**SYNC, "SPLUNK_SELF_METRICS_INTERVAL_MS": "0"}],
                         indirect=True)
def test_the_self_metrics_count_what_lambda_dropped_and_the_ends_lost(
    rig: WideRig, clock: Clock,
) -> None:
    _running(rig, clock, "r1")
    _record(rig, _dropped(EPOCH + clock.now))
    rig.sender.step()
    [(_, figures)] = self_metrics_in(rig.sender._self_metrics("shutdown"))
    assert figures["splunk.extension.telemetry.dropped_records"] == 40
    assert figures["splunk.extension.invocations.ends_lost"] == 1


@pytest.mark.parametrize("rig", [{"SPLUNK_FLUSH": "adaptive", **HOLDING}], indirect=True)
def test_the_invocation_main_asked_for_outlives_the_notes_of_a_long_outage(
    rig: WideRig, clock: Clock,
) -> None:
    # While HEC was down the sender read nothing (a full request waited), and the notes of the
    # invocations main hurried piled up; main's Flush, on the control pipe, is read before them.
    for n in range(80):
        assert control.send(rig.pipes[3][1], control.Hurried(f"h{n}"))
    rig.sender.spool_dirty = True
    assert rig.tell(control.Flush("r1")) == []
    _record(rig, _start("r1", EPOCH + clock.now))
    rig.sender.step()
    clock.now += rig.sender.flush_wait_s * flush_policy.RUNNING_AT
    rig.sender.step()
    assert rig.answers() == [control.Running("r1")]  # main waits on, to the deadline if need be
    rig.append_invocation("r1", ["a"])
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1  # its end read: sent now
    rig.courier.finish()
    rig.sender.step()
    assert control.Delivered("r1") in rig.answers()


# Lambda dropped both the platform.start and the platform.runtimeDone of the invocation main
# waits for (one notice after both): nothing read names it; main's ask is the first the sender
# hears of its request id.


def _done(rid: str, epoch_s: float) -> dict[str, object]:
    return {"time": _iso(epoch_s), "type": "platform.runtimeDone",
            "record": {"requestId": rid, "status": "success"}}


def _report(rid: str, epoch_s: float) -> dict[str, object]:
    return {"time": _iso(epoch_s), "type": "platform.report", "record": {"requestId": rid}}


def _previous_delivered(rig: WideRig, clock: Clock) -> None:
    """`p` ran and is in HEC; its report comes with the next invocation, as Lambda sends it."""
    rig.note("p")  # adaptive waits for it; sync takes it as waited for anyway
    rig.sender.spool_dirty = True
    now = EPOCH + clock.now
    _record(rig, _start("p", now), _line("p's line", now), _done("p", now))
    rig.sender.step()
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("p")]


def _unseen_invocation(rig: WideRig, clock: Clock, *lines: str) -> None:
    """The next invocation's lines and the notice of its start and end: nothing names it."""
    now = EPOCH + clock.now
    _record(rig, _report("p", now), *(_line(text, now) for text in lines), _dropped(now))


def _unseen_invocation_read(rig: WideRig, clock: Clock) -> None:
    """`p` delivered, then `r's line` and the notice of r's start and end read by the sender."""
    _previous_delivered(rig, clock)
    _unseen_invocation(rig, clock, "r's line")
    rig.sender.step()


@pytest.mark.parametrize("ask", [control.FlushLate, control.Flush])
@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_main_s_ask_for_an_invocation_nothing_names_is_answered_once_a_drop_after_a_report_is_sent(
    rig: WideRig, clock: Clock, ask: type[control.Flush],
) -> None:
    _unseen_invocation_read(rig, clock)
    assert not rig.courier.in_flight  # held: nobody is known to wait for these lines
    clock.now += rig.sender.flush_wait_s * flush_policy.RUNNING_AT
    assert rig.tell(ask("r")) == []  # no Running: it is not known to have started
    assert len(rig.courier.in_flight) == 1  # sent now: main waits
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r")]
    assert "r's line" in [e["event"] for e in _accepted(rig)]
    assert rig.sender.self_metrics.ends_lost == 1


@pytest.mark.parametrize("rig", [ADAPTIVE], indirect=True)
def test_with_adaptive_flushing_a_noted_invocation_nothing_names_is_answered_at_the_drop(
    rig: WideRig, clock: Clock,
) -> None:
    _previous_delivered(rig, clock)
    rig.note("r")  # at its INVOKE: read before the records that may hold its start and end
    _unseen_invocation(rig, clock, "r's line")
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1
    assert rig.answers() == []
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r")]


@pytest.mark.parametrize("rig", [SYNC], indirect=True)
def test_lines_read_after_an_unseen_invocation_was_presumed_ended_are_committed_before_its_answer(
    rig: WideRig, clock: Clock,
) -> None:
    _previous_delivered(rig, clock)
    _unseen_invocation(rig, clock)  # the notice held its start alone: it runs on
    rig.sender.step()
    rig.tell(control.FlushLate("r"))
    assert len(rig.courier.in_flight) == 1
    _record(rig, _line("r's later line", EPOCH + clock.now))
    rig.sender.step()
    rig.courier.finish()  # the notice's batch: not all of what arrived
    rig.sender.step()
    assert rig.answers() == []
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == [control.Delivered("r")]
    assert "r's later line" in [e["event"] for e in _accepted(rig)]


@pytest.mark.parametrize("rig", [{**SYNC, "SPLUNK_FLUSH_BUDGET_MS": "1500"}], indirect=True)
def test_an_unseen_invocation_presumed_ended_while_hec_fails_is_told_failing_within_its_budget(
    rig: WideRig, clock: Clock,
) -> None:
    _unseen_invocation_read(rig, clock)
    rig.tell(control.FlushLate("r"))
    clock.now += 1.5 - reaction_s(1.5)  # the budget from the notice's stamp
    rig.sender.step()
    assert rig.answers() == [control.Failing("r")]


@pytest.mark.parametrize("rig", [{**SYNC, "SPLUNK_FLUSH_BUDGET_MS": "1500"}], indirect=True)
def test_an_unseen_invocation_s_budget_runs_from_the_drop_notice_s_own_stamp(
    rig: WideRig, clock: Clock,
) -> None:
    # The other landmarks read with the notice carry other stamps: p's report before it, and
    # after it p's runtimeDone again (the platform sent that batch once more).
    _previous_delivered(rig, clock)
    p_done = EPOCH + clock.now
    clock.now += 1.0
    now = EPOCH + clock.now
    _record(rig, _report("p", now - 0.75), _line("r's line", now - 0.6), _dropped(now - 0.5))
    _record(rig, _start("p", p_done), _line("p's line", p_done), _done("p", p_done))
    rig.sender.step()
    assert rig.tell(control.FlushLate("r")) == []
    end = clock.now + 1.5 - reaction_s(1.5) - 0.5  # the budget from the notice's stamp
    clock.now = end - 0.001
    rig.sender.step()
    assert rig.answers() == []
    clock.now = end
    rig.sender.step()
    assert rig.answers() == [control.Failing("r")]


@pytest.mark.parametrize("rig", [{"SPLUNK_FLUSH": "sync", **test_sender_loop.SENDING}],
                         indirect=True)
def test_an_ask_for_an_unseen_invocation_whose_notice_is_in_hec_already_is_answered_at_once(
    rig: WideRig, clock: Clock,
) -> None:
    # Sent as read: the notice's batch is in HEC before main, late, asks.
    _unseen_invocation_read(rig, clock)
    assert len(rig.courier.in_flight) == 1
    rig.courier.finish()
    rig.sender.step()
    assert rig.answers() == []
    assert rig.tell(control.FlushLate("r")) == [control.Delivered("r")]
    assert not rig.sender.due  # no budget left running


@pytest.mark.parametrize("rig", [{**SYNC, "SPLUNK_MAX_REQUEST_BYTES": "4096"}], indirect=True)
def test_an_end_presumed_at_a_notice_follows_the_records_read_with_it_to_the_last(
    rig: WideRig, clock: Clock,
) -> None:
    # The records read after a notice may be the invocation's own (the notice held only some of
    # its lines): its presumed end moves to the last one read, not only to the notice.
    _running(rig, clock, "r1")
    now = EPOCH + clock.now
    _record(rig, _dropped(now))
    _record(rig, _line("r1's later line " + "x" * 3500, now))  # read with it; a request of its own
    rig.sender.step()
    rig.courier.finish()  # the start's and the notice's batch
    rig.sender.step()
    assert not any("later line" in str(e["event"]) for e in _accepted(rig))
    assert rig.answers() == []
    rig.courier.finish()
    rig.sender.step()
    assert any("later line" in str(e["event"]) for e in _accepted(rig))
    assert rig.answers() == [control.Delivered("r1")]
