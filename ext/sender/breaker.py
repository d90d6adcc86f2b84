"""The circuit breaker that keeps invocations from waiting on a HEC that hangs (sender process).

A flush waits for HEC within the flush budget. A HEC that accepts connections and never
answers (or answers slower than the budget) would cost every invocation that whole budget, so
the breaker opens on the first sign of it: a failed attempt slower than the budget, or a
request timeout. While it is open, flushes are answered "failing" at once and the courier keeps
probing on its own schedule; nothing is lost, delivery just does not hold invocations.

It closes only after `close_after` successes in a row, each answered within half the budget
(a success slower than that, or any failure, starts the count again). One success is not
enough: a HEC that hangs intermittently (an overloaded indexer, a load balancer with one bad
backend) answers one request and hangs on the next, and closing at once would make the next
invocation wait out its budget again. Pure: no I/O, no clock; the courier reports each attempt.
"""

from __future__ import annotations

CLOSE_AFTER = 3  # fast successes in a row that close an open breaker


class HangBreaker:
    """Open while HEC is presumed to hang; the courier reports every attempt's outcome."""

    __slots__ = ("budget_s", "close_after", "is_open", "streak")

    def __init__(self, budget_s: float, close_after: int = CLOSE_AFTER) -> None:
        self.budget_s = budget_s
        self.close_after = max(1, close_after)
        self.is_open = False
        self.streak = 0  # fast successes in a row since the breaker opened

    def failed(self, took_s: float, timed_out: bool) -> None:
        """An attempt failed after `took_s` (judged by its duration, not the exception's name:
        a read timeout, a connect timeout and a peer that never answers surface differently)."""
        self.streak = 0
        if timed_out or took_s > self.budget_s:
            self.is_open = True

    def succeeded(self, took_s: float) -> None:
        """HEC accepted a request after `took_s`."""
        if not self.is_open:
            return
        if took_s > self.budget_s / 2:
            self.streak = 0  # answering, but too slowly for a flush to wait on it
            return
        self.streak += 1
        if self.streak >= self.close_after:
            self.is_open = False
            self.streak = 0
