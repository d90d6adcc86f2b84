"""The sender's ledger of invocations: a flush is answered once its runtimeDone is committed."""

from __future__ import annotations

import pytest
from hypothesis import given
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
