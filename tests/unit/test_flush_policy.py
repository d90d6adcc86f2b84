"""The adaptive flush decision, alone, and in a model of thaws and deliveries while HEC is up."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext.flush_policy import (
    EXPONENTIAL_QUANTILE_FACTOR,
    GAP_QUANTILE,
    HISTORY,
    MAX_UNDELIVERED,
    MIN_GAPS,
    RELIABLE_GAPS,
    RUNNING_AT,
    AdaptiveFlush,
    Decision,
    budget_left,
    cautious_exponential_quantile,
    drain_reserve_s,
    running_left,
    wait_limit,
)

FLUSH_S = 0.03  # a waited flush: telemetry buffering plus one HEC round trip


def simulate(gaps: list[float], bound: float) -> tuple[list[float], list[bool]]:
    """Invocations separated by `gaps`; returns each one's log latency and whether it waited.

    HEC is up. A waited invocation's lines, and everything undelivered before them, reach HEC
    FLUSH_S after it starts and main hears so at once. Otherwise they leave at the next thaw
    (FLUSH_S after the next invocation starts), and main hears so at the invocation after that,
    or at once when it waits for them ("backlog": that thaw delivers them, and main hears so
    before this invocation's freeze, while this invocation's lines wait for the next thaw).
    """
    policy = AdaptiveFlush(bound)
    starts = [0.0]
    for gap in gaps:
        starts.append(starts[-1] + gap)
    delivered_at: dict[int, float] = {}
    waits: list[bool] = []
    undelivered: list[int] = []
    heard: list[tuple[float, int]] = []  # (when main reads it, invocation confirmed)
    for n, now in enumerate(starts):
        for when, confirmed in [h for h in heard if h[0] <= now]:
            policy.delivered(f"r{confirmed}")
            heard.remove((when, confirmed))
        if undelivered:  # this thaw delivers the backlog, after main decided
            for m in undelivered:
                delivered_at[m] = now + FLUSH_S
            heard.append((starts[n + 1] if n + 1 < len(starts) else now, undelivered[-1]))
            undelivered = []
        decision = policy.decide(f"r{n}", now)
        waits.append(decision.wait)
        if decision.wait:
            assert decision.awaited is not None
            policy.delivered(decision.awaited)
        if decision.awaited == f"r{n}":
            delivered_at[n] = now + FLUSH_S
        else:
            undelivered.append(n)
    end = starts[-1] + 3600  # the shutdown drain
    latencies = [delivered_at.get(n, end) - start for n, start in enumerate(starts)]
    return latencies, waits


def test_the_first_invocations_wait() -> None:
    _, waits = simulate([0.01] * 10, bound=2.0)
    assert waits[:MIN_GAPS] == [True] * MIN_GAPS  # the rhythm is not known yet
    assert not any(waits[MIN_GAPS:])  # then dense traffic never waits


def test_sparse_traffic_always_waits() -> None:
    _, waits = simulate([5.0] * 20, bound=2.0)
    assert all(waits)


def test_a_backlog_main_never_hears_about_is_flushed_before_it_exceeds_the_bound() -> None:
    policy = AdaptiveFlush(1.0)
    decisions = [policy.decide(f"r{n}", n * 0.1) for n in range(30)]  # no delivery confirmed
    waited = [n for n, d in enumerate(decisions) if d.wait and n > MIN_GAPS]
    assert waited and decisions[waited[0]].reason == "backlog"
    assert decisions[waited[0]].backlog_age_s <= 1.0


def _learnt_half_second_rhythm() -> tuple[AdaptiveFlush, float]:
    """A policy (2 s bound) that learnt a 0.5 s rhythm, everything delivered; the next start."""
    policy = AdaptiveFlush(2.0)
    for n in range(RELIABLE_GAPS + 1):
        policy.decide(f"w{n}", n * 0.5)
        policy.delivered(f"w{n}")
    return policy, (RELIABLE_GAPS + 1) * 0.5


def test_a_backlog_is_waited_for_not_the_invocation_that_just_started() -> None:
    policy, start = _learnt_half_second_rhythm()
    assert policy.decide("a", start).reason == "dense"
    assert policy.decide("b", start + 0.5).reason == "dense"  # age 0.5 + 0.5 <= 2.0
    late = policy.decide("c", start + 1.7)  # "a" is 1.7 s old: 1.7 + 0.5 > 2.0
    assert (late.wait, late.reason, late.awaited, late.hurry) == (True, "backlog", "b", True)
    assert "awaited_request_id=b" in late.describe("c")
    policy.delivered("b")  # settles "a" too
    assert list(policy.undelivered) == ["c"]
    # An expected gap longer than the bound: this invocation's own lines would miss it,
    # backlog or not
    sparse_policy = AdaptiveFlush(2.0)
    for n in range(RELIABLE_GAPS + 2):
        sparse = sparse_policy.decide(f"s{n}", n * 3.0)  # none delivered
    assert (sparse.wait, sparse.reason, sparse.awaited) == (True, "sparse", f"s{n}")
    assert "awaited_request_id" not in sparse.describe(f"s{n}")


def test_decision_describes_itself_for_the_demo() -> None:
    text = AdaptiveFlush(2.0).decide("abc", 0.0).describe("abc")
    assert text.startswith("flush-decision request_id=abc wait=yes reason=warming-up")


gaps = st.lists(st.floats(min_value=0.001, max_value=20.0), min_size=1, max_size=60)
bounds = st.floats(min_value=0.1, max_value=10.0)


@given(gaps, bounds)
def test_latency_never_exceeds_the_bound_plus_one_invocation_gap(
    gap_list: list[float], bound: float
) -> None:
    latencies, _ = simulate(gap_list, bound)
    for n, latency in enumerate(latencies[:-1]):
        assert latency <= bound + gap_list[n] + FLUSH_S + 1e-9


@given(st.floats(min_value=0.001, max_value=20.0), st.integers(5, 60), bounds)
def test_regular_traffic_keeps_the_bound_and_waits_only_when_it_must(
    gap: float, count: int, bound: float
) -> None:
    latencies, waits = simulate([gap] * count, bound)
    assert max(latencies[:-1]) <= bound + FLUSH_S + 1e-9
    if 2 * gap < bound - 1e-9:  # the next thaw comes in time, even for a backlog of one (with
        # a float margin: the starts are sums of gaps, so an age may come out an ulp longer),
        # once enough gaps are known for the rhythm's own quantile to count
        assert not any(waits[RELIABLE_GAPS:])
    if gap * (1 + cautious_exponential_quantile([1.0] * MIN_GAPS)) < bound - 1e-9:
        assert not any(waits[MIN_GAPS:])  # so short that even the cautious fit lets it pass
    if gap > bound:  # the next thaw is too far
        assert all(waits)


def test_a_few_short_gaps_of_sparse_traffic_do_not_pass_for_dense() -> None:
    # Three gaps of 0.5 s: their longest plus nothing undelivered fits a 2 s bound, but three
    # such gaps are as likely from a 2 s Poisson rhythm as from a dense one.
    policy = AdaptiveFlush(2.0)
    for n in range(MIN_GAPS + 1):
        policy.decide(f"r{n}", n * 0.5)
        policy.delivered(f"r{n}")
    assert policy.decide("next", (MIN_GAPS + 1) * 0.5).reason == "sparse"


def poisson_decisions(mean_gap_s: float, sandboxes: int) -> list[bool]:
    """Whether each invocation after the warm-up waited, over fresh policies fed with Poisson
    arrivals (a fixed seed: the figures are the same on every run), each wait delivered."""
    rng = random.Random(2026)
    waits = []
    for _ in range(sandboxes):
        policy, now = AdaptiveFlush(2.0), 0.0
        for n in range(20):
            decision = policy.decide(f"r{n}", now)
            if decision.wait:
                policy.delivered(f"r{n}")
            if n > MIN_GAPS:
                waits.append(decision.wait)
            now += rng.expovariate(1 / mean_gap_s)
    return waits


def test_a_sparse_rhythm_is_rarely_taken_for_dense_while_it_is_learnt() -> None:
    waits = poisson_decisions(2.0, 500)
    assert len(waits) == 500 * (20 - MIN_GAPS - 1)
    assert waits.count(False) <= 0.005 * len(waits)  # 0.13%; 1.7% with the longest gap alone


def test_a_dense_rhythm_is_dense_from_the_first_gaps() -> None:
    assert not any(poisson_decisions(0.02, 100))


@given(st.lists(st.floats(min_value=0.001, max_value=20.0), min_size=MIN_GAPS,
                max_size=RELIABLE_GAPS))
def test_the_cautious_fit_is_above_the_plain_one_and_shrinks_towards_it(
    gap_list: list[float]
) -> None:
    mean = sum(gap_list) / len(gap_list)
    cautious = cautious_exponential_quantile(gap_list)
    assert cautious >= EXPONENTIAL_QUANTILE_FACTOR * mean
    assert cautious_exponential_quantile(gap_list * 2) <= cautious * (1 + 1e-12)


@given(st.integers(0, 10**9), st.integers(0, 10**9),
       st.none() | st.floats(min_value=1.0, max_value=1e10),
       st.none() | st.floats(min_value=0.0, max_value=10.0))
def test_drain_reserve_grows_with_the_backlog_and_covers_one_round_trip(
    a: int, b: int, rate: float | None, trip: float | None
) -> None:
    small, large = sorted((a, b))
    assert drain_reserve_s(small, rate, trip) <= drain_reserve_s(large, rate, trip)
    assert drain_reserve_s(0, rate, trip) >= (trip if trip is not None else 0.0)


def test_drain_reserve_from_measurements() -> None:
    # 2 MB at 4 MB/s plus a 50 ms round trip, times the safety factor, plus the margin.
    assert abs(drain_reserve_s(2_000_000, 4e6, 0.05) - (1.5 * 0.55 + 0.02)) < 1e-9
    assert drain_reserve_s(0, None, None) < 0.2  # nothing spooled: the report can wait long


def test_after_a_restart_the_rhythm_is_learnt_anew() -> None:
    policy = AdaptiveFlush(2.0)
    decisions = [policy.decide(f"r{n}", n * 0.01) for n in range(10)]
    assert not decisions[-1].wait
    policy.relearn()
    again = [policy.decide(f"s{n}", 1 + n * 0.01) for n in range(MIN_GAPS + 1)]
    assert [d.wait for d in again] == [True] * MIN_GAPS + [False]


@given(st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=80),
       st.sets(st.integers(min_value=0, max_value=79)))
def test_the_expected_gap_is_the_quantile_of_the_recent_starts_gaps(
        gaps: list[float], relearn_at: set[int]) -> None:
    # The gaps are kept as invocations come (cheaper than recomputing them at each decision):
    # the figure is still the one the recent starts give.
    policy = AdaptiveFlush(2.0)
    starts: list[float] = []
    now = 100.0
    for n, gap in enumerate(gaps):
        if n in relearn_at:
            policy.relearn()
            starts = []
        now += gap
        policy.decide(f"r{n}", now)
        starts = [*starts, now][-HISTORY:]
        between = sorted(b - a for a, b in itertools.pairwise(starts))
        if len(starts) <= MIN_GAPS:
            assert policy.expected_gap_s() is None
            continue
        expected = between[min(len(between) - 1, int(GAP_QUANTILE * len(between)))]
        if len(between) < RELIABLE_GAPS:
            expected = max(expected, cautious_exponential_quantile(between))
        assert policy.expected_gap_s() == expected


def _chi_square_quantile(p: float, dof: int) -> float:
    """The exact quantile of chi-square with an even `dof`, by bisection of its closed-form
    CDF (1 - e^(-x/2) * sum over j < dof/2 of (x/2)^j / j!)."""
    def cdf(x: float) -> float:
        return 1 - math.exp(-x / 2) * sum((x / 2) ** j / math.factorial(j)
                                          for j in range(dof // 2))
    low, high = 0.0, 10.0 * dof
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < p else (low, middle)
    return low


@pytest.mark.parametrize("count", range(MIN_GAPS, RELIABLE_GAPS))
def test_the_cautious_fit_is_the_exponential_quantile_of_the_upper_confidence_mean(
    count: int,
) -> None:
    # The mean's one-sided 75% upper bound is 2 * sum / chi-square(2n) at its 25% point; the
    # fit's Wilson-Hilferty approximation of that point is within 1% from 3 gaps on.
    gap_list = [0.1 * (n % 7 + 1) for n in range(count)]
    upper_mean = 2 * sum(gap_list) / _chi_square_quantile(0.25, 2 * count)
    exact = -math.log(1 - GAP_QUANTILE) * upper_mean
    assert cautious_exponential_quantile(gap_list) == pytest.approx(exact, rel=0.01)


def test_one_long_pause_among_the_recent_gaps_does_not_make_dense_traffic_wait() -> None:
    # The 95th percentile of the last HISTORY - 1 gaps, not the longest: one pause of 30 s
    # (the function idle for a while) among 0.2 s gaps leaves the rhythm dense.
    policy = AdaptiveFlush(2.0)
    now = 0.0
    for n in range(HISTORY):
        now += 30.0 if n == HISTORY // 2 else 0.2
        policy.decide(f"r{n}", now)
        policy.delivered(f"r{n}")
    assert policy.expected_gap_s() == pytest.approx(0.2)
    assert policy.decide("next", now + 0.2).reason == "dense"


# The counts are GAP_QUANTILE's, not RELIABLE_GAPS' (the cautious fit's end, 20 too by chance).
@pytest.mark.parametrize(("count", "expected"), [*((n, 60.0) for n in range(6, 21)), (21, 0.2)])
def test_the_95th_percentile_of_up_to_twenty_gaps_is_the_longest(
    count: int, expected: float,
) -> None:
    # int(0.95 * n) is n - 1 up to n = 20: so few gaps have no top 5% to leave out, and a 60 s
    # pause among 0.2 s gaps is the rhythm (from 6 gaps on it is above the cautious fit); at 21
    # the percentile is the second longest gap.
    policy = AdaptiveFlush(2.0)
    now = 0.0
    policy.decide("r0", now)
    for n in range(1, count + 1):
        now += 60.0 if n == count // 2 else 0.2
        policy.decide(f"r{n}", now)
    assert policy.expected_gap_s() == pytest.approx(expected)


@pytest.mark.parametrize(("short_gaps", "expected"), [(HISTORY - 3, 9.0), (HISTORY - 2, 0.1)])
def test_the_expected_gap_forgets_gaps_older_than_the_last_history_starts(
    short_gaps: int, expected: float,
) -> None:
    # Two pauses of 9 s, then short gaps: while both pauses are among the last HISTORY - 1
    # gaps, they are the top 5% (the 95th percentile of 31 gaps is the second longest); once
    # the older one has left the window, the quantile is a short gap again.
    policy = AdaptiveFlush(2.0)
    now = 0.0
    for n, gap in enumerate([0.1] * 40 + [9.0, 9.0] + [0.1] * short_gaps):
        now += gap
        policy.decide(f"r{n}", now)
    assert policy.expected_gap_s() == pytest.approx(expected)


def test_a_backlog_of_one_invocation_is_waited_for_alone() -> None:
    policy, start = _learnt_half_second_rhythm()
    assert policy.decide("a", start).reason == "dense"
    late = policy.decide("b", start + 1.6)  # "a" is 1.6 s old: 1.6 + 0.5 > 2.0
    assert (late.wait, late.reason, late.awaited) == (True, "backlog", "a")


def test_a_delivery_settles_every_earlier_invocation_whatever_their_ids() -> None:
    # Request ids are UUIDs: their order says nothing about the invocations'
    policy = AdaptiveFlush(2.0)
    for n, rid in enumerate(["f0", "a1", "c2", "b3"]):
        policy.decide(rid, float(n))
    policy.delivered("".join(["c", "2"]))  # as read from the pipe: equal, not the same object
    assert list(policy.undelivered) == ["b3"]
    policy.delivered("zz")  # an invocation it never heard of (forgotten): nothing settled
    assert list(policy.undelivered) == ["b3"]


def test_the_undelivered_invocations_remembered_are_bounded_forgetting_the_oldest() -> None:
    policy = AdaptiveFlush(2.0)
    for n in range(MAX_UNDELIVERED + 10):  # HEC down: nothing confirmed
        decision = policy.decide(f"r{n}", float(n))
    assert len(policy.undelivered) == MAX_UNDELIVERED
    assert next(iter(policy.undelivered)) == "r10"
    assert decision.backlog_age_s == MAX_UNDELIVERED - 1  # from the oldest still remembered
    assert len(policy.starts) == HISTORY
    assert len(policy.gaps) == HISTORY - 1


def test_a_decision_puts_its_figures_in_whole_milliseconds() -> None:
    dense = Decision(False, "dense", 1.5, 1.234)
    assert dense.describe("r1") == ("flush-decision request_id=r1 wait=no reason=dense "
                                    "expected_gap_ms=1500 backlog_age_ms=1234")
    learning = Decision(True, "warming-up", None, 0.0, awaited="r2")
    assert learning.describe("r2") == ("flush-decision request_id=r2 wait=yes "
                                       "reason=warming-up expected_gap_ms=- backlog_age_ms=0")


def test_drain_reserve_without_measurements_assumes_1_mb_per_second_and_100_ms() -> None:
    assert drain_reserve_s(2_000_000, None, None) == pytest.approx(1.5 * (2.0 + 0.1) + 0.02,
                                                                   rel=1e-9)
    assert drain_reserve_s(2_000_000, 0.0, 0.0) == pytest.approx(1.5 * 2.0 + 0.02,  # no rate
                                                                 rel=1e-9)


def test_drain_reserve_takes_a_measured_rate_however_slow() -> None:
    assert drain_reserve_s(100, 0.5, 0.0) == pytest.approx(1.5 * 200 + 0.02)


def test_a_runtime_done_up_to_five_seconds_old_is_trusted() -> None:
    ended = 1_800_000_000.0  # epoch seconds, as the platform stamps it
    for age in (4.5, 5.0):
        assert budget_left(10.0, ended, ended + age) == pytest.approx(wait_limit(10.0) - age)
    assert budget_left(10.0, ended, ended + 5.5) == pytest.approx(wait_limit(10.0))


def test_running_is_due_running_at_through_a_wait_that_began_at_the_start_s_stamp() -> None:
    started = 1_800_000_000.0
    assert running_left(0.48, started, started + 0.1) == pytest.approx(0.48 * RUNNING_AT - 0.1)
    assert running_left(0.48, started, started + 5.0) == 0.0  # trusted, long past: now
    for now in (started - 0.2, started + 5.5):  # ahead of now, or implausibly old: from now
        assert running_left(0.48, started, now) == pytest.approx(0.48 * RUNNING_AT)
    assert running_left(0.48, None, started) == pytest.approx(0.48 * RUNNING_AT)


def test_the_rhythm_is_unknown_until_three_gaps_are_known() -> None:
    # The cautious fit's chi-square approximation holds from three gaps on (within 1%): with
    # fewer, even a 10 ms rhythm waits.
    policy = AdaptiveFlush(2.0)
    decisions = [policy.decide(f"r{n}", n * 0.01) for n in range(5)]
    assert [d.reason for d in decisions] == ["warming-up"] * 3 + ["dense"] * 2
    assert [d.expected_gap_s is None for d in decisions] == [True] * 3 + [False] * 2


def _learnt(gap: float, bound: float = 2.0) -> tuple[AdaptiveFlush, float]:
    """A policy that has learnt a regular rhythm, everything delivered; and the next start."""
    policy = AdaptiveFlush(bound)
    for n in range(RELIABLE_GAPS + 1):
        policy.decide(f"w{n}", n * gap)
        policy.delivered(f"w{n}")
    return policy, (RELIABLE_GAPS + 1) * gap


def test_a_backlog_exactly_at_the_bound_is_not_waited_for() -> None:
    policy, start = _learnt(0.5)  # binary fractions: the sums are exact
    assert policy.decide("a", start).reason == "dense"
    assert policy.decide("b", start + 1.5).reason == "dense"  # 1.5 + 0.5 == 2.0: in time


def test_a_gap_exactly_at_the_bound_still_waits_for_the_backlog_alone() -> None:
    policy, start = _learnt(2.0)
    assert policy.decide("a", start).reason == "dense"  # 0 + 2.0 == 2.0
    late = policy.decide("b", start + 2.0)  # 2.0 + 2.0 > 2.0, but the gap alone fits
    assert (late.reason, late.awaited) == ("backlog", "a")
