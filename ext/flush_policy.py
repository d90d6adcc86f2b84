"""The adaptive flush (`SPLUNK_FLUSH=adaptive`): per invocation, wait before event/next or not.

Waiting (a sync flush) puts the invocation's logs in Splunk before the environment freezes, at
the price of post-runtime duration (billed): the Telemetry API's buffering (25 ms at least) plus
one HEC round trip. Not waiting costs nothing now, but the logs leave only when the environment
thaws again, at the next invocation. So: do not wait when the next thaw is expected soon enough
for everything still undelivered to reach HEC within the latency bound; wait otherwise (sparse
traffic, the first invocations, a backlog about to exceed the bound).

Inputs: the start times of recent invocations (their rhythm), the bound, and which invocations
the sender confirmed delivered. With "expected gap" a high quantile of recent gaps (no lower,
while few are known, than a cautious exponential fit's: expected_gap_s) and "age" how
long the oldest undelivered invocation has been waiting, it does not wait only when
age + expected gap <= bound. When the next invocation then comes within the expected gap and
its thaw delivers the backlog, every line arrives within the bound; whatever happens, a line's
latency stays under the bound plus one invocation gap (the gap that was not foreseen).

A backlog is not a reason to wait for the invocation that just started. When age + expected
gap exceeds the bound only because earlier invocations are still undelivered (expected gap <=
bound), main waits for those alone ("backlog"): their telemetry was buffered while the
environment was frozen and arrives as it thaws, so it reaches HEC while this invocation runs,
and main's wait usually ends before the runtime does (waiting for this invocation's own
runtimeDone would cost the Telemetry API's buffering, 25 ms at least, at every such
invocation). This invocation then goes as a "dense" or "linger" one would, with nothing older
left behind it.

Not waiting comes in two kinds. When even the sender's batching delay (the linger,
SPLUNK_DISPATCH_MAX_WAIT_MS) fits, age + expected gap + linger <= bound, the sender is not
hurried: it sends when the batch is full or has lingered, so dense traffic shares one HEC request
between several invocations (each request costs the extension ~0.5 ms of CPU, and HEC one
request). Otherwise ("dense") it sends this invocation's events as soon as they are read.

Default bound: 2 s (SPLUNK_MAX_LATENCY_MS). Gaps between invocations are roughly exponential,
whose 95th percentile is 3x the mean, and the age of the oldest undelivered invocation adds one
more gap: a 2 s bound keeps traffic with mean gaps up to ~400 ms wait-free (where waiting would
add ~27 ms to every invocation), while sparser traffic, where the next thaw may be seconds or
minutes away, always waits. It is also well under the delay a person notices when searching for
a log line they just caused, and far under the minutes a frozen environment can stay frozen.

Pure: no I/O, no clock (times are passed in, in seconds on one monotonic clock). Plain
classes: it runs in the main process.
"""

from __future__ import annotations

from math import sqrt

HISTORY = 32  # recent invocation starts kept
MIN_GAPS = 3  # before that many gaps are known, the rhythm is unknown: wait
GAP_QUANTILE = 0.95
# Until this many gaps are known, the expected gap is at least a cautious exponential fit's:
# with 3 gaps of a 2 s Poisson rhythm, the chance of deciding "dense" falls from 8% to 2%,
# and 20 ms or 200 ms rhythms still pass as dense from the start.
RELIABLE_GAPS = 20
CONFIDENCE_Z = 0.6745  # the standard normal quantile of a one-sided 75% confidence
EXPONENTIAL_QUANTILE_FACTOR = 2.995732  # -ln(1 - GAP_QUANTILE): the quantile over the mean
MAX_UNDELIVERED = 256  # invocations remembered as undelivered (older ones are forgotten)


class Decision:
    """Whether to wait, for which invocation, why, and the figures behind it."""

    __slots__ = ("awaited", "backlog_age_s", "expected_gap_s", "hurry", "reason", "wait")

    def __init__(self, wait: bool, reason: str, expected_gap_s: float | None,
                 backlog_age_s: float, *, awaited: str | None = None, hurry: bool = True) -> None:
        self.wait = wait
        # "warming-up", "sparse", "backlog" (wait); "dense" (send now), "linger" (no hurry)
        self.reason = reason
        self.expected_gap_s = expected_gap_s  # None while warming up
        self.backlog_age_s = backlog_age_s
        # The invocation main waits for: this one, or for "backlog" the newest earlier one
        # still undelivered (its delivery settles every invocation before it too).
        self.awaited = awaited
        # This invocation, when main does not wait for it: send it at once (Flush) or as the
        # batching rules say (main tells the sender nothing).
        self.hurry = hurry

    def describe(self, request_id: str) -> str:
        gap = "-" if self.expected_gap_s is None else f"{self.expected_gap_s * 1000:.0f}"
        awaited = ("" if self.awaited in (None, request_id)
                   else f" awaited_request_id={self.awaited}")
        return (f"flush-decision request_id={request_id} wait={'yes' if self.wait else 'no'} "
                f"reason={self.reason} expected_gap_ms={gap} "
                f"backlog_age_ms={self.backlog_age_s * 1000:.0f}{awaited}")


class AdaptiveFlush:
    def __init__(self, max_latency_s: float, linger_s: float = 0.0) -> None:
        self.max_latency_s = max_latency_s
        self.linger_s = linger_s  # how long the sender may hold events it was not hurried for
        self.starts: list[float] = []  # recent invocation start times, oldest first
        # The gaps between them, kept as they come: recomputed at every invocation they cost
        # main more CPU than the rest of its decision.
        self.gaps: list[float] = []
        self.undelivered: dict[str, float] = {}  # request id -> start time, oldest first

    def decide(self, request_id: str, now: float) -> Decision:
        """Called at each INVOKE (`now`: its arrival); records the invocation as undelivered."""
        if self.starts:
            self.gaps.append(now - self.starts[-1])
            del self.gaps[: -(HISTORY - 1)]
        self.starts.append(now)
        del self.starts[:-HISTORY]
        self.undelivered[request_id] = now
        if len(self.undelivered) > MAX_UNDELIVERED:
            del self.undelivered[next(iter(self.undelivered))]
        age = now - next(iter(self.undelivered.values()))
        gap = self.expected_gap_s()
        if gap is None:
            return Decision(True, "warming-up", None, age, awaited=request_id)
        if self._lingers(age + gap):
            return Decision(False, "linger", gap, age, hurry=False)
        if age + gap <= self.max_latency_s:
            return Decision(False, "dense", gap, age)
        if gap <= self.max_latency_s and len(self.undelivered) > 1:
            # Only the backlog is too old: wait for it, and let this invocation go as if it
            # were the only one undelivered (its age is 0).
            newest_first = reversed(self.undelivered)
            next(newest_first)
            earlier = next(newest_first)
            return Decision(True, "backlog", gap, age, awaited=earlier,
                            hurry=not self._lingers(gap))
        return Decision(True, "sparse", gap, age, awaited=request_id)

    def _lingers(self, age_and_gap: float) -> bool:
        return self.linger_s > 0 and age_and_gap + self.linger_s <= self.max_latency_s

    def relearn(self) -> None:
        """A child process was restarted: wait again until the rhythm is known anew, so the
        new processes get thawed time to start and catch up rather than a frozen sandbox."""
        self.starts.clear()
        self.gaps.clear()

    def delivered(self, request_id: str) -> None:
        """The sender committed everything up to this invocation's runtimeDone: it and every
        invocation before it are delivered."""
        if request_id not in self.undelivered:
            return
        while self.undelivered:
            rid = next(iter(self.undelivered))
            del self.undelivered[rid]
            if rid == request_id:
                return

    def expected_gap_s(self) -> float | None:
        """A high quantile of the recent gaps between invocation starts; None if too few.

        Below RELIABLE_GAPS gaps, the empirical quantile is just the longest gap seen, and a
        few short gaps of sparse traffic (exponential gaps are often short) would pass for
        dense traffic: the first invocations of a 2 s rhythm went unwaited and missed their
        freeze. So until then it is also bounded below by a cautious exponential fit."""
        if len(self.gaps) < MIN_GAPS:
            return None
        gaps = sorted(self.gaps)
        empirical = gaps[min(len(gaps) - 1, int(GAP_QUANTILE * len(gaps)))]
        if len(gaps) >= RELIABLE_GAPS:
            return empirical
        return max(empirical, cautious_exponential_quantile(gaps))


def cautious_exponential_quantile(gaps: list[float]) -> float:
    """The GAP_QUANTILE of exponential gaps whose mean is the one-sided upper confidence bound
    (CONFIDENCE_Z) on the mean of these gaps: 2 * sum / chi-square(2n) at the lower tail, the
    chi-square quantile by Wilson and Hilferty's approximation (within 1% from n = 3)."""
    k = 2 * len(gaps)
    chi2 = k * (1 - 2 / (9 * k) - CONFIDENCE_Z * sqrt(2 / (9 * k))) ** 3
    return EXPONENTIAL_QUANTILE_FACTOR * 2 * sum(gaps) / chi2


# When main stops waiting (its own timer, or the sender's Failing), it still has to wake and call
# event/next: a few ms, more under a CPU quota whose spent period delays every wake-up. The
# budget bounds the post-runtime duration, so waits end this much before it (a tenth of the
# budget at most).
REACTION_S = 0.02
# Running is told this far into main's wait (5/8: 0.3 s of the default 0.48), where a sync
# flush that heard nothing yet asks (FlushLate): in a long invocation the listener's held
# wake-up (0.25 s after the start's batch, which comes 25 ms or more after the INVOKE) brings
# the start just before. Halfway (0.24 s) came just before that wake-up: the sender's pass then
# read the start, and the wake-up came for nothing.
RUNNING_AT = 0.625
# A runtimeDone stamped further back than this is not taken as the invocation's end: clocks
# that disagree (the platform's and ours), not a late delivery.
TRUSTED_AGE_S = 5.0


def reaction_s(budget_s: float) -> float:
    """The part of a flush budget kept for main's own reaction."""
    return min(REACTION_S, budget_s / 10)


def wait_limit(budget_s: float) -> float:
    """The longest a flush may wait from now: the budget less main's reaction time (its own
    wake-up and event/next count in the post-runtime duration too)."""
    return budget_s - reaction_s(budget_s)


def budget_left(budget_s: float, ended_s: float | None, now_s: float) -> float:
    """How long a flush may still wait, on a budget that runs from the invocation's end
    (`ended_s`: its runtimeDone's own time, epoch seconds): the post-runtime duration Lambda
    bills counts from there, and the Telemetry API delivers the runtimeDone only after its
    buffering (25 ms at least), later still if a delivery was retried. Without a usable time
    (unknown, ahead of `now_s`, or implausibly old) the budget runs from now. Less main's
    reaction time, never below 0."""
    return max(0.0, wait_limit(budget_s) - _trusted_age(ended_s, now_s))


def running_left(wait_s: float, started_s: float | None, now_s: float) -> float:
    """How long until an invocation that started at `started_s` (its platform.start's own time,
    epoch seconds; as at INVOKE, where main's wait of `wait_s` begins) is RUNNING_AT through
    that wait; from now without a usable time, never below 0."""
    return max(0.0, wait_s * RUNNING_AT - _trusted_age(started_s, now_s))


def _trusted_age(stamp_s: float | None, now_s: float) -> float:
    """Seconds since a platform's stamp, or 0 when it is unknown, ahead of now or implausibly
    old (clocks that disagree)."""
    if stamp_s is not None and 0.0 <= now_s - stamp_s <= TRUSTED_AGE_S:
        return now_s - stamp_s
    return 0.0


# At SHUTDOWN: the time kept for the drain, until the sender has measured its own.
ASSUMED_SEND_RATE_BPS = 1_000_000.0  # uncompressed bytes per second to HEC
ASSUMED_ROUND_TRIP_S = 0.1
DRAIN_SAFETY = 1.5  # the estimate is from earlier requests; the network may be slower now
DRAIN_MARGIN_S = 0.02


def drain_reserve_s(unsent_bytes: int, send_rate_bps: float | None,
                    round_trip_s: float | None) -> float:
    """How long before the shutdown deadline to stop waiting for the last platform.report so
    that what is spooled, and the report itself, still reach HEC: the unsent bytes at the
    measured send rate plus one request's round trip, with a safety factor."""
    rate = send_rate_bps if send_rate_bps and send_rate_bps > 0 else ASSUMED_SEND_RATE_BPS
    trip = round_trip_s if round_trip_s is not None else ASSUMED_ROUND_TRIP_S
    return DRAIN_SAFETY * (unsent_bytes / rate + trip) + DRAIN_MARGIN_S
