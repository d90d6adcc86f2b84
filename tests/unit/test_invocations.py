"""The sender's ledger of invocations: a flush is answered once its runtimeDone is committed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.sender.invocations import REPORT, RUNTIME_DONE, START, InvocationLedger


def test_answered_only_once_the_runtime_done_is_committed() -> None:
    ledger = InvocationLedger()
    assert ledger.request("a") == []  # its runtimeDone is not even read yet
    assert not ledger.urgent()  # the usual batching until it is
    ledger.seen(RUNTIME_DONE, "a", 5)
    assert ledger.urgent()
    assert ledger.settle(4) == []
    assert ledger.settle(5) == ["a"]
    assert not ledger.urgent()


def test_a_request_for_an_invocation_already_committed_is_answered_at_once() -> None:
    ledger = InvocationLedger()
    ledger.seen(RUNTIME_DONE, "a", 3)
    ledger.settle(7)
    assert ledger.request("a") == ["a"]


def test_failing_is_told_once_and_the_request_still_settles() -> None:
    ledger = InvocationLedger()
    ledger.request("a")
    assert ledger.failing() == ["a"]
    assert ledger.failing() == []
    ledger.seen(RUNTIME_DONE, "a", 1)
    assert ledger.settle(1) == ["a"]


def test_reports_are_tracked_apart() -> None:
    ledger = InvocationLedger()
    ledger.seen(REPORT, "a", 2)
    assert ledger.report_spooled("a") and not ledger.report_spooled("b")
    ledger.request("a")
    assert ledger.settle(10) == []  # a report is not where the invocation's logs end


def test_memory_is_bounded() -> None:
    ledger = InvocationLedger(keep=8)
    for n in range(100):
        ledger.seen(RUNTIME_DONE, f"r{n}", n)
        ledger.seen(REPORT, f"r{n}", n)
        ledger.request(f"q{n}")
    assert len(ledger.done_at) <= 8 and len(ledger.report_at) <= 8 and len(ledger.waiting) <= 8


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30)), max_size=30),
       st.lists(st.integers(0, 40), max_size=30))
def test_settled_exactly_when_committed_through_the_runtime_done(
    dones: list[tuple[int, int]], commits: list[int],
) -> None:
    ledger = InvocationLedger()
    first_seen: dict[str, int] = {}
    for n, seq in dones:
        ledger.seen(RUNTIME_DONE, f"r{n}", seq)
        first_seen.setdefault(f"r{n}", seq)
    answered: set[str] = set()
    for rid in first_seen:
        answered.update(ledger.request(rid))
    committed = -1
    for seq in commits:
        committed = max(committed, seq)
        answered.update(ledger.settle(seq))
        for rid, at in first_seen.items():
            assert (rid in answered) == (at <= committed)


def test_running_between_start_and_runtime_done_and_failing_told_once() -> None:
    ledger = InvocationLedger()
    assert not ledger.running("a")
    ledger.seen(START, "a", 1)
    assert ledger.running("a")
    ledger.seen(RUNTIME_DONE, "a", 4)
    assert not ledger.running("a")
    assert not ledger.tell_failing("a")  # nobody waits for it
    ledger.request("a")
    assert ledger.tell_failing("a")
    assert not ledger.tell_failing("a")  # told once
    assert ledger.failing() == []  # a HEC failure does not tell it again
    assert ledger.settle(4) == ["a"]


def test_the_last_keep_requests_are_kept_and_the_oldest_forgotten() -> None:
    ledger = InvocationLedger(keep=3)
    for n in range(4):
        assert ledger.request(f"q{n}") == []
    for n in range(4):
        ledger.seen(RUNTIME_DONE, f"q{n}", n)
    assert ledger.settle(3) == ["q1", "q2", "q3"]  # q0 is no longer waited for


def test_the_last_64_invocations_are_remembered_by_default() -> None:
    ledger = InvocationLedger()
    for n in range(65):
        ledger.seen(RUNTIME_DONE, f"r{n}", n)
    ledger.settle(64)
    assert ledger.request("r0") == []  # forgotten: it can no longer be answered
    assert ledger.request("r1") == ["r1"]


def test_other_platform_events_are_not_landmarks() -> None:
    # Kinds sorting before platform.report and platform.start, and after platform.start
    ledger = InvocationLedger(tell_every=True)
    for kind in ("platform.initStart", "platform.telemetrySubscription", "function"):
        ledger.seen(kind, "a", 1)
    assert not ledger.running("a") and not ledger.report_spooled("a")
    assert ledger.request("a") == [] and ledger.settle(1) == []
    ledger.seen(START, "a", 2)  # the first start read counts, not an earlier other event
    assert ledger.start_at == {"a": 2}


def test_with_sync_flushing_an_invocation_is_waited_for_whatever_the_order_of_its_records() -> None:
    # Its report read before its end (or start) in one record: both tables then hold the same
    # id at the same seq, and the end (or start) still makes it waited for.
    for kind in (RUNTIME_DONE, START):
        ledger = InvocationLedger(wait_every=True)
        ledger.seen(REPORT, "a", 1)
        assert not ledger.waiting
        ledger.seen(kind, "a", 1)
        assert ledger.waiting == {"a": False}


def test_an_invocation_only_hurried_is_sent_at_its_end_and_never_told_failing() -> None:
    ledger = InvocationLedger()
    assert ledger.request("r1", waited=False) == []
    assert ledger.request("r2") == []
    assert not ledger.urgent()  # nothing to send for either before its end
    ledger.seen(RUNTIME_DONE, "r1", 3)
    assert ledger.urgent()  # its end read: send now
    assert ledger.failing() == ["r2"]  # HEC failed: only the waited one is told
    assert not ledger.tell_failing("r1")
    assert ledger.settle(3) == ["r1"]


def test_whether_main_waits_is_said_by_name_only() -> None:
    # A bare bool after the id would read as either meaning (waited, or only hurried): refused,
    # before anything is asked.
    ledger = InvocationLedger()
    with pytest.raises(TypeError):
        ledger.request("r1", False)  # type: ignore[call-arg]
    assert ledger.waiting == {}
    assert ledger.request(request_id="r1", waited=False) == []
    assert ledger.waiting == {"r1": True}


# Lambda drops telemetry it cannot deliver fast enough and says so in a platform.logsDropped
# (lambda-protocol.md §2.4): an invocation's runtimeDone may be among what it dropped.


def test_a_drop_notice_ends_an_invocation_started_and_not_ended_where_the_notice_is() -> None:
    ledger = InvocationLedger(wait_every=True)
    ledger.seen(START, "a", 1)
    assert ledger.running("a")
    assert ledger.dropped(3) == ["a"]
    assert not ledger.running("a")  # a late ask hears no Running
    assert ledger.urgent()  # what came before the notice goes now
    assert ledger.settle(2) == []  # not before everything up to the notice is committed
    assert ledger.settle(3) == ["a"]


def test_a_drop_notice_read_before_an_invocation_started_cannot_hold_its_end() -> None:
    ledger = InvocationLedger(wait_every=True)
    assert ledger.dropped(1) == []
    ledger.seen(START, "a", 2)
    assert ledger.settle(5) == [] and ledger.running("a")
    ledger.seen(RUNTIME_DONE, "a", 6)
    assert ledger.settle(6) == ["a"]


def test_a_drop_notice_leaves_an_invocation_whose_end_was_read_as_it_was() -> None:
    ledger = InvocationLedger()
    ledger.seen(START, "a", 1)
    ledger.seen(RUNTIME_DONE, "a", 2)
    assert ledger.dropped(3) == []
    assert ledger.request("a") == [] and ledger.settle(2) == ["a"]


def test_a_later_invocation_s_start_ends_one_whose_end_was_never_read() -> None:
    ledger = InvocationLedger()
    ledger.seen(START, "a", 1)
    assert ledger.seen(START, "b", 4) == ["a"]  # one invocation at a time: a ended before b
    assert ledger.running("b") and not ledger.running("a")
    assert ledger.request("a") == []
    assert ledger.settle(3) == []
    assert ledger.settle(4) == ["a"]
    assert ledger.seen(START, "b", 5) == []  # a start read again (a batch resent) ends nothing


def test_an_end_read_after_its_end_was_presumed_lost_changes_nothing() -> None:
    ledger = InvocationLedger(wait_every=True)
    ledger.seen(START, "a", 1)
    ledger.dropped(2)
    assert ledger.settle(2) == ["a"]
    ledger.seen(RUNTIME_DONE, "a", 7)  # the drop was of its lines alone; it ran on
    assert ledger.waiting == {}  # answered once; not waited for again
    assert ledger.dropped(8) == []


def test_with_adaptive_flushing_an_end_presumed_lost_is_told_unasked() -> None:
    ledger = InvocationLedger(tell_every=True)
    ledger.seen(START, "a", 1)
    ledger.dropped(2)
    assert ledger.settle(2) == ["a"]


def test_a_request_main_may_wait_for_outlives_those_it_no_longer_waits_for() -> None:
    # After an HEC outage the notes of many hurried invocations are read in one pass after the
    # Flush main waits on: forgetting the oldest would forget the one main waits for.
    ledger = InvocationLedger(keep=4)
    ledger.request("waited")
    for n in range(10):
        ledger.request(f"hurried{n}", waited=False)
    assert ledger.waiting.get("waited") is False
    assert len(ledger.waiting) == 4
    ledger.seen(RUNTIME_DONE, "waited", 3)
    assert ledger.urgent()
    assert ledger.settle(3) == ["waited"]


def test_a_request_told_failing_is_forgotten_before_one_still_waited_for() -> None:
    ledger = InvocationLedger(keep=2)
    ledger.request("waited")
    ledger.request("gone")
    assert ledger.tell_failing("gone")  # main stopped waiting for it
    ledger.request("new")
    assert ledger.waiting == {"waited": False, "new": False}
    ledger.request("newer")  # none told: the oldest goes, as before
    assert ledger.waiting == {"new": False, "newer": False}


# Lambda may drop an invocation's start and its end alike, one notice after both: nothing read
# names it, and the ledger learns its request id only when main asks.


def _previous_invocation(ledger: InvocationLedger) -> None:
    """`p` started, ended and reported (seqs 1-3): what follows is the next invocation's."""
    ledger.seen(START, "p", 1)
    ledger.seen(RUNTIME_DONE, "p", 2)
    ledger.seen(REPORT, "p", 3)


def test_an_unseen_invocation_asked_for_is_presumed_whole_in_a_drop_after_a_report() -> None:
    ledger = InvocationLedger(wait_every=True)
    _previous_invocation(ledger)
    ledger.settle(3)
    assert ledger.dropped(5) == []  # seq 4: its lines; nothing open to end
    assert ledger.read_to(5, caught_up=True) == []  # main has not asked: no name to answer
    assert ledger.request("b") == []
    assert ledger.read_to(None, caught_up=True) == ["b"]  # the read main's ask brings
    assert ledger.urgent()
    assert ledger.settle(4) == []  # not before its lines are committed
    assert ledger.settle(5) == ["b"]


def test_an_unseen_invocation_asked_for_first_is_presumed_at_the_read_that_finds_the_drop(
) -> None:
    ledger = InvocationLedger()
    assert ledger.request("b") == []  # adaptive's note, or a Flush, at the INVOKE
    assert ledger.read_to(None, caught_up=True) == []  # nothing says it is lost
    _previous_invocation(ledger)
    ledger.dropped(5)
    assert ledger.read_to(5, caught_up=False) == []  # more spooled: its start may be in it
    assert ledger.read_to(6, caught_up=True) == ["b"]
    assert ledger.settle(6) == ["b"]


@pytest.mark.parametrize("before", [
    [],  # no report read yet (a cold start, a new sender): the notice may hold anything
    [(START, "p", 1)],  # a notice after a start holds its end, not another invocation
    [(REPORT, "o", 1), (START, "p", 2)],
])
def test_a_drop_notice_not_after_a_report_holds_no_invocation_whole(
    before: list[tuple[str, str, int]],
) -> None:
    ledger = InvocationLedger()
    for kind, rid, seq in before:
        ledger.seen(kind, rid, seq)
    ledger.dropped(5)
    ledger.request("b")
    assert ledger.read_to(5, caught_up=True) == []
    assert ledger.settle(9) == []


def test_a_report_or_a_start_after_the_notice_closes_its_gap() -> None:
    ledger = InvocationLedger()
    _previous_invocation(ledger)
    ledger.dropped(4)
    ledger.seen(REPORT, "q", 5)  # the notice held what came before this report
    ledger.request("b")
    assert ledger.read_to(5, caught_up=True) == []
    ledger.dropped(6)
    ledger.seen(START, "c", 7)  # the notice came before this start
    assert ledger.read_to(7, caught_up=True) == []


def test_a_gap_holds_the_invocations_asked_for_when_it_is_claimed_and_is_claimed_once() -> None:
    ledger = InvocationLedger()
    _previous_invocation(ledger)
    ledger.request("b")
    ledger.dropped(4)
    assert ledger.read_to(4, caught_up=True) == ["b"]
    ledger.request("c")  # the next one needs a notice of its own
    assert ledger.read_to(5, caught_up=True) == []
    ledger.dropped(6)
    assert ledger.read_to(6, caught_up=True) == ["c"]


def test_an_unseen_invocation_whose_start_is_read_before_the_answer_runs_after_all() -> None:
    ledger = InvocationLedger()
    _previous_invocation(ledger)
    ledger.request("b")
    ledger.dropped(4)  # it held something else (a line), and b's records come late
    assert ledger.read_to(4, caught_up=True) == ["b"]
    ledger.seen(START, "b", 5)
    assert ledger.running("b")
    assert ledger.settle(5) == []
    ledger.seen(RUNTIME_DONE, "b", 7)
    assert ledger.settle(6) == [] and ledger.settle(7) == ["b"]


def test_with_sync_flushing_a_start_read_after_its_presumed_end_was_answered_is_not_answered_again(
) -> None:
    ledger = InvocationLedger(wait_every=True)
    _previous_invocation(ledger)
    assert ledger.settle(3) == ["p"]
    ledger.request("b")
    ledger.dropped(4)
    ledger.read_to(4, caught_up=True)
    assert ledger.settle(4) == ["b"]
    ledger.seen(START, "b", 5)  # late: what comes now goes with the next batch
    assert ledger.waiting == {}
    assert ledger.settle(9) == []


def test_a_presumed_end_follows_what_is_read_until_it_is_answered() -> None:
    ledger = InvocationLedger()
    ledger.seen(START, "a", 1)
    ledger.request("a")
    assert ledger.dropped(2) == ["a"]
    ledger.read_to(4, caught_up=True)  # seqs 3-4 may be its lines: it may run on
    assert ledger.settle(3) == []
    assert ledger.settle(4) == ["a"]
    ledger.read_to(6, caught_up=True)  # answered: what comes now is late, not waited for
    assert ledger.done_at["a"] == 4


def test_a_real_end_read_before_the_answer_takes_the_place_of_the_presumed_one() -> None:
    ledger = InvocationLedger()
    ledger.seen(START, "a", 1)
    ledger.request("a")
    ledger.dropped(2)
    ledger.read_to(3, caught_up=True)
    ledger.seen(RUNTIME_DONE, "a", 5)  # the drop was of its lines alone
    ledger.read_to(8, caught_up=True)
    assert ledger.settle(4) == []
    assert ledger.settle(5) == ["a"]


def test_another_invocation_s_start_bounds_an_end_presumed_after_the_invocation_s_own_start(
) -> None:
    ledger = InvocationLedger()
    ledger.seen(START, "a", 1)
    ledger.request("a")
    ledger.dropped(2)
    ledger.seen(START, "b", 4)  # a ended before b started: its records lie before seq 4
    ledger.read_to(9, caught_up=True)
    assert ledger.settle(4) == ["a"]


_LINE = "line"
_NOTICE = "notice"


@st.composite
def _histories(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[tuple[object, ...]], int]:
    """What the sender reads of a few invocations, one at a time as an environment runs them,
    some records dropped by Lambda, each drop reported by a notice after it (maybe later,
    maybe never), and notices for drops of records not modelled (e.g. extension lines)
    anywhere; main's asks and the commits interleaved with the reads, in any order."""
    count = draw(st.integers(1, 4))
    true: list[tuple[str, str]] = []
    for n in range(count):
        rid = f"r{n}"
        lines = [(_LINE, rid)] * draw(st.integers(0, 2))
        true += [(START, rid), *lines, (RUNTIME_DONE, rid), (REPORT, rid)]
    read: list[tuple[str, str]] = []
    owed: int | None = None  # records to pass before the notice of a drop is delivered
    for event in true:
        if draw(st.integers(0, 3)) == 3:  # Lambda dropped it
            owed = draw(st.integers(0, 2)) if owed is None else owed
        else:
            read.append(event)
            owed = None if owed is None else owed - 1
        if owed is not None and owed <= 0:
            read.append((_NOTICE, ""))
            owed = None
        if draw(st.integers(0, 7)) == 7:
            read.append((_NOTICE, ""))
    if owed is not None and draw(st.booleans()):
        read.append((_NOTICE, ""))
    ops: list[tuple[object, ...]] = []
    unread, asked = len(read), list(range(count))
    while unread or asked:
        op = draw(st.sampled_from(["read"] * bool(unread) + ["ask"] * bool(asked) + ["commit"]))
        if op == "read":
            take = draw(st.integers(1, min(3, unread)))
            ops.append(("read", take, draw(st.booleans()) or take == unread))
            unread -= take
        elif op == "ask":
            n = asked.pop(draw(st.integers(0, len(asked) - 1)))
            ops.append(("ask", f"r{n}", draw(st.booleans())))
        elif op == "commit":
            ops.append(("commit", draw(st.floats(0, 1))))
    ops.append(("commit", 1.0))
    return read, ops, draw(st.sampled_from([0, 1, 2]))


@settings(max_examples=500)  # the cases that break it are a few reads deep
@given(_histories())
def test_an_answer_never_precedes_the_commit_of_the_invocation_s_lines_that_arrived(
    history: tuple[list[tuple[str, str]], list[tuple[object, ...]], int],
) -> None:
    read, ops, mode = history
    ledger = InvocationLedger(tell_every=mode == 1, wait_every=mode == 2)
    lines_read: dict[str, list[int]] = {}
    answered: set[str] = set()
    seq, position = -1, 0

    def answer(settled: list[str]) -> None:
        for rid in settled:
            late = [s for s in lines_read.get(rid, []) if s > ledger.committed]
            assert not late, f"{rid} answered with its lines at {late} uncommitted"
            answered.add(rid)

    for op in ops:
        if op[0] == "read":  # one spool record of `take` events, then the pass's end
            _, take, caught_up = op
            assert isinstance(take, int)
            seq += 1
            for kind, rid in read[position:position + take]:
                if kind == _NOTICE:
                    ledger.dropped(seq)
                elif kind == _LINE:
                    lines_read.setdefault(rid, []).append(seq)
                else:
                    ledger.seen(kind, rid, seq)
            position += take
            if ledger.read_to(seq, caught_up=bool(caught_up)):
                answer(ledger.settle(ledger.committed))
        elif op[0] == "ask":
            if op[1] not in answered:  # main asks only what it was not told (bar races)
                answer(ledger.request(str(op[1]), waited=bool(op[2])))
        else:
            fraction = op[1]
            assert isinstance(fraction, float)
            target = ledger.committed + round((seq - ledger.committed) * fraction)
            answer(ledger.settle(max(ledger.committed, target)))


def _fresh(text: str) -> str:
    """An equal string that is another object, as a kind decoded from a record is."""
    copy = "".join(list(text))
    assert copy == text and copy is not text
    return copy


@pytest.mark.parametrize("kinds", [(START, RUNTIME_DONE, REPORT),
                                   tuple(map(_fresh, (START, RUNTIME_DONE, REPORT)))],
                         ids=["constants", "decoded"])
def test_records_are_told_apart_by_their_kind_s_value(kinds: tuple[str, str, str]) -> None:
    start, done, report = kinds
    ledger = InvocationLedger(wait_every=True)
    ledger.seen(start, "a", 0)
    assert ledger.running("a") and ledger.waiting == {"a": False}
    ledger.seen(done, "a", 1)
    ledger.seen(report, "a", 2)
    assert ledger.report_spooled("a") and not ledger.running("a")
    assert ledger.settle(1) == ["a"]
    ledger.dropped(3)  # after a report: it may hold the next invocation whole
    ledger.request("b")
    assert ledger.read_to(3, caught_up=True) == ["b"]
    ledger.seen(start, "b", 4)  # it started after all: the presumption gives way
    assert ledger.running("b") and ledger.settle(4) == []


def test_a_start_the_platform_sends_again_leaves_an_end_presumed_at_a_notice_as_it_is() -> None:
    # The start and the notice in one record: start_at and done_at then hold the same entries.
    ledger = InvocationLedger()
    ledger.request("a")
    ledger.seen(START, "a", 1)
    assert ledger.dropped(1) == ["a"]
    ledger.seen(START, "a", 1)  # the batch again (a retry of the platform's)
    assert ledger.settle(1) == ["a"]


def test_a_start_the_platform_sends_again_later_does_not_fix_an_end_presumed_at_a_notice(
) -> None:
    # Only another invocation's start bounds a presumed end: a start of its own read again,
    # after the notice, says nothing of where its lines stop, so the end still follows the reads.
    ledger = InvocationLedger()
    ledger.request("a")
    ledger.seen(START, "a", 0)
    assert ledger.dropped(1) == ["a"]
    assert ledger.seen(START, "a", 2) == []  # the start's batch again (a platform retry)
    assert ledger.read_to(3, caught_up=True) == []  # a line of "a" after it: it ran on
    assert ledger.settle(2) == []  # that line is not committed yet
    assert ledger.settle(3) == ["a"]


def test_an_end_presumed_at_a_notice_stays_there_while_nothing_later_is_read() -> None:
    ledger = InvocationLedger()
    ledger.request("a")
    ledger.seen(START, "a", 0)
    assert ledger.dropped(0) == ["a"]
    ledger.read_to(None, caught_up=False)  # a pass that read nothing new
    assert ledger.settle(0) == ["a"]


def test_an_end_forgotten_is_not_revived_by_a_later_start() -> None:
    # Past `keep` ends, the oldest presumed one is forgotten (no answer comes from it: main's
    # wait ends at its budget); another invocation's start must not place it anew.
    ledger = InvocationLedger(keep=2)
    ledger.request("a")
    ledger.seen(START, "a", 0)
    assert ledger.dropped(1) == ["a"]
    ledger.seen(RUNTIME_DONE, "x", 2)
    ledger.seen(RUNTIME_DONE, "y", 3)  # "a" forgotten
    ledger.seen(START, "z", 4)
    assert "a" not in ledger.settle(4)
