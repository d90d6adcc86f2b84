"""The adaptive flush's third answer, "linger": do not wait and do not hurry the sender, so that
dense traffic shares HEC requests, while every line still reaches HEC within the latency bound
(plus the one gap nobody could foresee)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ext import control
from ext.flush_policy import MIN_GAPS, RELIABLE_GAPS, AdaptiveFlush
from ext.sender.invocations import REPORT, RUNTIME_DONE, START, InvocationLedger
from tests.unit.test_sender_commits import Rig

FLUSH_S = 0.03  # telemetry buffering plus one HEC round trip


def simulate(gaps: list[float], bound: float, linger: float) -> tuple[list[float], list[str],
                                                                      int]:
    """Invocations separated by `gaps` while HEC is up; each one's log latency, the decisions,
    and how many HEC requests carried them.

    A waited invocation's lines, and everything held before them, reach HEC FLUSH_S after it
    starts; for a backlog, only what is held (this invocation's lines are then held, hurried
    or not as the decision says). Lines not waited for stay with the sender until a thaw: the
    next one for a "dense" invocation (it is hurried), the first one at least `linger` after the
    oldest held line for "linger". Main hears of a delivery at the invocation after the thaw
    that made it.
    """
    policy = AdaptiveFlush(bound, linger)
    starts = [0.0]
    for gap in gaps:
        starts.append(starts[-1] + gap)
    delivered_at: dict[int, float] = {}
    reasons: list[str] = []
    held: list[int] = []
    hurried = False
    requests = 0
    heard: list[tuple[float, int]] = []
    for n, now in enumerate(starts):
        for item in [h for h in heard if h[0] <= now]:
            policy.delivered(f"r{item[1]}")
            heard.remove(item)
        if held and (hurried or now - starts[held[0]] >= linger):
            for m in held:
                delivered_at[m] = now + FLUSH_S
            heard.append((starts[n + 1] if n + 1 < len(starts) else now, held[-1]))
            held, hurried, requests = [], False, requests + 1
        decision = policy.decide(f"r{n}", now)
        reasons.append(decision.reason)
        if decision.wait:  # what is held goes now, with this invocation if it is the awaited
            assert decision.awaited is not None
            waited_for = [*held, n] if decision.awaited == f"r{n}" else held
            for m in waited_for:
                delivered_at[m] = now + FLUSH_S
            policy.delivered(decision.awaited)
            held, hurried, requests = [], False, requests + bool(waited_for)
        if decision.awaited != f"r{n}":
            held.append(n)
            hurried = hurried or decision.hurry
    end = starts[-1] + 3600  # the shutdown drain
    latencies = [delivered_at.get(n, end) - start for n, start in enumerate(starts)]
    return latencies, reasons, requests


def test_dense_traffic_lingers_and_shares_requests() -> None:
    latencies, reasons, requests = simulate([0.2] * 200, bound=2.0, linger=1.0)
    assert reasons[:MIN_GAPS] == ["warming-up"] * MIN_GAPS
    assert "linger" in reasons[MIN_GAPS:]
    assert not any(r in ("sparse", "backlog") for r in reasons[MIN_GAPS:])  # never waits
    # A request for 3 invocations or more, once the rhythm is learnt (until then, its cautious
    # fit leaves less of the bound to linger in: at most a request per invocation)
    assert requests - RELIABLE_GAPS <= (len(reasons) - RELIABLE_GAPS) / 3
    assert max(latencies[:-11]) <= 2.0  # each line followed by 2 s of traffic


def test_without_a_linger_every_invocation_is_sent_at_once() -> None:
    _, reasons, requests = simulate([0.2] * 20, bound=2.0, linger=0.0)
    assert set(reasons[MIN_GAPS:]) == {"dense"}
    assert requests >= 20 - MIN_GAPS


def test_linger_only_while_the_linger_itself_fits_the_bound() -> None:
    policy = AdaptiveFlush(2.0, 1.0)
    for n in range(RELIABLE_GAPS + 1):
        policy.decide(f"w{n}", n * 0.5)
        policy.delivered(f"w{n}")
    # Gaps of 0.5 s: 0 + 0.5 + 1.0 <= 2.0 lingers; with a second of backlog it no longer fits.
    start = (RELIABLE_GAPS + 1) * 0.5
    assert policy.decide("a", start).reason == "linger"
    assert policy.decide("b", start + 0.6).reason == "dense"  # age 0.6 + 0.5 + 1.0 > 2.0
    backlog = policy.decide("c", start + 1.6)  # age 1.6 + gap > 2.0: wait, for "a" and "b"
    assert (backlog.reason, backlog.wait, backlog.awaited) == ("backlog", True, "b")
    assert not backlog.hurry  # "c" alone: 0 + 0.5 + 1.0 <= 2.0, it lingers


gaps = st.lists(st.floats(min_value=0.001, max_value=20.0), min_size=1, max_size=60)


@given(gaps, st.floats(min_value=0.1, max_value=10.0), st.floats(min_value=0.0, max_value=5.0))
def test_latency_never_exceeds_the_bound_plus_one_gap_with_a_linger(
    gap_list: list[float], bound: float, linger: float,
) -> None:
    latencies, _, _ = simulate(gap_list, bound, linger)
    starts = [0.0]
    for gap in gap_list:
        starts.append(starts[-1] + gap)
    for n, latency in enumerate(latencies[:-1]):  # the last one goes with the drain
        if starts[-1] - starts[n] < linger:
            continue  # no thaw came `linger` after it: it goes with the drain, as it should
        unforeseen = max(gap_list[n:], default=0.0)
        assert latency <= bound + unforeseen + FLUSH_S + 1e-9


def test_with_adaptive_flushing_every_invocation_is_told_once_settled_and_never_hurried() -> None:
    ledger = InvocationLedger(tell_every=True)
    ledger.seen(RUNTIME_DONE, "r1", 4)
    assert not ledger.urgent()  # nobody waits: the batching rules apply
    assert ledger.failing() == []  # and HEC failing is nobody's news
    assert ledger.settle(3) == []
    assert ledger.settle(4) == ["r1"]
    assert ledger.settle(5) == []  # once
    ledger.request("r2")  # waited for, and told of anyway: one answer
    ledger.seen(RUNTIME_DONE, "r2", 6)
    assert ledger.settle(6) == ["r2"]


def test_without_adaptive_flushing_only_the_invocations_asked_for_are_told() -> None:
    ledger = InvocationLedger()
    ledger.seen(RUNTIME_DONE, "r1", 4)
    assert ledger.settle(4) == []
    ledger.request("r2")
    ledger.seen(RUNTIME_DONE, "r2", 6)
    assert ledger.settle(6) == ["r2"]


@given(st.lists(st.integers(min_value=0, max_value=30), max_size=40),
       st.lists(st.integers(min_value=0, max_value=30), max_size=10),
       st.integers(min_value=31, max_value=64))
def test_every_invocation_read_is_told_once_and_only_once_committed(
    ends: list[int], waited: list[int], keep: int,
) -> None:
    # Ids repeat (a batch the platform sent again); `keep` remembers them all.
    ledger = InvocationLedger(keep, tell_every=True)
    for n in waited:
        ledger.request(f"r{n}")
    told: list[str] = []
    for seq, n in enumerate(ends):
        ledger.seen(RUNTIME_DONE, f"r{n}", seq)
        settled = ledger.settle(seq - 1)  # committed up to the one before
        assert all(ledger.done_at[rid] <= seq - 1 for rid in settled)
        told += settled
    told += ledger.settle(len(ends))
    assert sorted(told) == sorted({f"r{n}" for n in ends})


def test_with_sync_flushing_every_invocation_read_is_waited_for_unasked() -> None:
    ledger = InvocationLedger(wait_every=True)
    ledger.seen(START, "r1", 1)
    assert ledger.waiting == {"r1": False}  # from its start: HEC failing is news from then on
    assert not ledger.urgent()  # nothing to send for it before its end is read
    assert ledger.failing() == ["r1"]
    ledger.seen(RUNTIME_DONE, "r1", 2)
    assert ledger.waiting == {"r1": True}  # its end read: still waited for, told Failing once
    assert ledger.urgent()  # send everything up to it now, whatever the minimum batch size
    assert ledger.settle(2) == ["r1"]
    ledger.seen(START, "r1", 3)  # a batch the platform sent again: no second wait
    ledger.seen(RUNTIME_DONE, "r1", 4)
    assert ledger.settle(4) == [] and not ledger.waiting
    ledger.seen(RUNTIME_DONE, "r2", 5)  # its start lost: its end is enough
    ledger.seen(REPORT, "r3", 6)  # a report alone is no invocation main waits for
    assert list(ledger.waiting) == ["r2"] and ledger.settle(6) == ["r2"]


def test_what_sync_flushing_waits_for_unasked_is_bounded_like_the_rest() -> None:
    ledger = InvocationLedger(3, wait_every=True)
    for seq in range(10):
        ledger.seen(START, f"r{seq}", seq)
    assert list(ledger.waiting) == ["r7", "r8", "r9"]
    ledger.request("r8")  # asked late: one entry still, not told Failing any more
    ledger.seen(START, "r8", 11)
    assert ledger.waiting == {"r7": False, "r8": False, "r9": False}


def test_what_is_told_unasked_is_bounded_like_the_rest() -> None:
    ledger = InvocationLedger(3, tell_every=True)
    for seq in range(10):
        ledger.seen(RUNTIME_DONE, f"r{seq}", seq)
    assert list(ledger.tracked) == ["r7", "r8", "r9"]
    assert ledger.settle(9) == ["r7", "r8", "r9"]


def _invocation(rig: Rig, rid: str) -> None:
    stamp = "2026-11-26T12:00:00.000Z"
    events = [{"time": stamp, "type": "platform.start", "record": {"requestId": rid}},
              {"time": stamp, "type": "function", "record": "a line"},
              {"time": stamp, "type": "platform.runtimeDone",
               "record": {"requestId": rid, "status": "success"}}]
    rig.writer.append(json.dumps(events).encode(), len(events))


def test_the_sender_holds_an_invocation_not_asked_for_and_sends_a_flushed_one(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, min_batch=500, max_wait_ms=60_000)  # SPLUNK_FLUSH: adaptive, the default
    try:
        _invocation(rig, "r1")  # main, lingering, tells the sender nothing of it
        rig.sender.step()
        assert not rig.courier.in_flight  # lingers: neither full nor old enough
        assert rig.answers() == []  # no Running, no Failing: main is not waiting
        assert rig.tell(control.Flush("r2")) == []
        _invocation(rig, "r2")
        rig.sender.step()
        assert len(rig.courier.in_flight) == 1  # hurried: both invocations in one request
        rig.courier.finish()
        rig.sender.step()
        assert sorted(rig.answers(), key=repr) == [control.Delivered("r1"),
                                                   control.Delivered("r2")]
    finally:
        rig.close()
