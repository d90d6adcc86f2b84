"""The hang breaker's decision: when a flush may wait on HEC again (ext/sender/breaker.py)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from ext.sender.breaker import CLOSE_AFTER, HangBreaker

BUDGET = 0.3
# One attempt: ("ok" | "fail", seconds it took, the client's own timeout error)
ATTEMPT = st.tuples(st.sampled_from(["ok", "fail"]), st.floats(0.0, 2.0), st.booleans())


def replay(attempts: list[tuple[str, float, bool]], close_after: int = CLOSE_AFTER) -> HangBreaker:
    breaker = HangBreaker(BUDGET, close_after)
    for kind, took, timed_out in attempts:
        if kind == "ok":
            breaker.succeeded(took)
        else:
            breaker.failed(took, timed_out)
    return breaker


def is_hang(kind: str, took: float, timed_out: bool) -> bool:
    return kind == "fail" and (timed_out or took > BUDGET)


def is_fast_success(kind: str, took: float) -> bool:
    return kind == "ok" and took <= BUDGET / 2


@given(st.lists(ATTEMPT, max_size=40), st.integers(1, 5))
def test_open_exactly_while_no_run_of_fast_successes_followed_the_last_hang(
    attempts: list[tuple[str, float, bool]], close_after: int
) -> None:
    hangs = [i for i, (kind, took, out) in enumerate(attempts) if is_hang(kind, took, out)]
    if not hangs:
        expected_open = False
    else:
        run = longest = 0
        for kind, took, _ in attempts[hangs[-1] + 1 :]:
            run = run + 1 if is_fast_success(kind, took) else 0
            longest = max(longest, run)
        expected_open = longest < close_after
    assert replay(attempts, close_after).is_open == expected_open


@given(st.lists(ATTEMPT, max_size=20), st.floats(0.0, BUDGET / 2))
def test_one_success_between_two_hangs_never_lets_a_flush_wait(
    before: list[tuple[str, float, bool]], took: float
) -> None:
    # HEC hung, answered one request (fast), hangs again: the next invocation must not wait.
    breaker = replay([*before, ("fail", 0.8, True), ("ok", took, False)])
    assert breaker.is_open
    breaker.failed(0.8, True)
    assert breaker.is_open


def test_it_closes_after_fast_successes_in_a_row_only() -> None:
    breaker = HangBreaker(BUDGET)
    breaker.failed(0.31, timed_out=False)  # slower than the budget: hanging
    assert breaker.is_open
    breaker.succeeded(0.01)
    breaker.succeeded(0.01)
    breaker.failed(0.001, timed_out=False)  # a refused connection: the count starts again
    breaker.succeeded(0.01)
    breaker.succeeded(0.2)  # answered, but slower than half the budget: again
    for _ in range(CLOSE_AFTER - 1):
        breaker.succeeded(0.01)
        assert breaker.is_open
    breaker.succeeded(0.01)
    assert not breaker.is_open


def test_fast_failures_and_slow_successes_do_not_open_it() -> None:
    breaker = HangBreaker(BUDGET)
    breaker.failed(0.01, timed_out=False)  # 503 at once: failing, not hanging
    breaker.succeeded(2.0)  # a slow answer while closed: in-flight stalls are judged live
    assert not breaker.is_open
    breaker.failed(0.05, timed_out=True)  # the client's own timeout, however short
    assert breaker.is_open


def test_a_success_within_half_the_budget_counts_and_one_just_over_it_does_not() -> None:
    # "Within half the budget": exactly half is fast enough; the first float above it is not.
    half = BUDGET / 2
    fast = HangBreaker(BUDGET)
    fast.failed(0.0, timed_out=True)
    for _ in range(CLOSE_AFTER):
        fast.succeeded(half)
    assert not fast.is_open
    slow = HangBreaker(BUDGET)
    slow.failed(0.0, timed_out=True)
    for _ in range(CLOSE_AFTER):
        slow.succeeded(math.nextafter(half, 1.0))
    assert slow.is_open


def test_a_close_after_below_one_is_one_and_a_large_one_is_counted_out() -> None:
    for close_after in (-1, 0, 1):
        breaker = HangBreaker(BUDGET, close_after)
        breaker.failed(0.0, timed_out=True)
        breaker.succeeded(0.0)
        assert not breaker.is_open, close_after  # one fast success is enough
    breaker = HangBreaker(BUDGET, 300)  # counts beyond the small ints CPython shares
    breaker.failed(0.0, timed_out=True)
    for _ in range(299):
        breaker.succeeded(0.0)
    assert breaker.is_open
    breaker.succeeded(0.0)
    assert not breaker.is_open
