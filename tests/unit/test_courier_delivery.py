"""The courier's delivery thread against a scripted HEC client: what is reported done, in which
order, what is split, quarantined, retried or held, and the health the sender reads."""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import select
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ext import config
from ext.flush_policy import drain_reserve_s
from ext.sender import courier as courier_module
from ext.sender.batching import HecBatch, seal
from ext.sender.courier import Courier
from ext.sender.hec import HecOutcome, Verdict
from ext.sender.quarantine import FILE_NAME

ACCEPTED = HecOutcome(Verdict.ACCEPTED, 200, 0, "Success")
Answer = Callable[[list[bytes]], HecOutcome]
Make = Callable[..., tuple[Courier, "ScriptedClient"]]


class ScriptedClient:
    """Answers each POST with `answer(envelopes of the body)`; with a `gate`, the POSTs after
    the first `hold_after` wait on the wire until it is set."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.posted: list[list[bytes]] = []
        self.gate: threading.Event | None = None
        self.hold_after = 0
        self.entered = threading.Event()
        self.closed = False
        self.within: list[float | None] = []  # each POST's time limit (None: the configured)

    def post(self, body: bytes, within_s: float | None = None) -> HecOutcome:
        self.within.append(within_s)
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        envelopes = body.split(b"\n")
        self.posted.append(envelopes)
        self.entered.set()
        if self.gate is not None and len(self.posted) > self.hold_after:
            assert self.gate.wait(5)
        return self.answer(envelopes)

    def trust(self) -> None:
        """No CAs to load."""

    def prepare(self) -> None:
        """Nothing to connect ahead."""

    def close(self) -> None:
        self.closed = True


def batch(*envelopes: bytes, seq: int | None = 7) -> HecBatch:
    return seal(list(envelopes), seq, 1)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    made: list[Courier] = []

    def make(answer: Answer, budget_ms: int = 500,
             **settings: str) -> tuple[Courier, ScriptedClient]:
        env = {"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "t",
               "SPLUNK_FLUSH_BUDGET_MS": str(budget_ms), **settings}
        courier = Courier(config.load(env), str(tmp_path))
        courier.client.close()
        client = ScriptedClient(answer)
        courier.client = client  # type: ignore[assignment]
        made.append(courier)
        return courier, client

    yield make
    for courier in made:
        courier.hurry()
        if courier.client.gate is not None:  # type: ignore[attr-defined]
            courier.client.gate.set()  # type: ignore[attr-defined]
        courier.stop()


def done(courier: Courier, count: int = 1, within_s: float = 3.0) -> list[int | None]:
    """What the courier reports delivered, waiting up to `within_s` for `count` batches."""
    results: list[int | None] = []
    end = time.monotonic() + within_s
    while len(results) < count and time.monotonic() < end:
        select.select([courier.done_r], [], [], 0.05)
        results += courier.take_done()
    return results


def health(courier: Courier) -> tuple[bool, bool, int]:
    """(failing, hanging, failures): read through a call, as the sender thread reads them."""
    return courier.failing, courier.hanging, courier.failures


def wait_posts(client: ScriptedClient, count: int) -> None:
    end = time.monotonic() + 3
    while len(client.posted) < count and time.monotonic() < end:
        time.sleep(0.002)
    assert len(client.posted) >= count


def quarantined(tmp_path: Path) -> list[bytes]:
    path = tmp_path / FILE_NAME
    if not path.exists():
        return []
    return [json.loads(line)["envelope"].encode() for line in path.read_text().splitlines()]


def test_an_accepted_batch_is_reported_done_with_its_seq_and_measured(make: Make) -> None:
    courier, client = make(lambda _: ACCEPTED)
    assert courier.idle() and courier.can_accept()
    assert courier.offer(batch(b"a", b"bc", seq=3))
    assert done(courier) == [3]
    assert client.posted == [[b"a", b"bc"]]
    assert round_trip(courier) is not None and round_trip(courier) < 0.5  # type: ignore[operator]
    assert courier.idle()
    assert courier.queued_bytes == 0
    assert courier.sent_bytes == 4
    assert list(courier.recent_trips) == [round_trip(courier)]
    assert courier.send_rate_bps() is None  # one request: all of its time is the round trip
    assert courier.failures == 0 and not courier.failing


def test_batches_are_reported_in_the_order_offered(make: Make) -> None:
    courier, _ = make(lambda _: ACCEPTED)
    for seq in (1, None, 2):
        while not courier.offer(batch(b"x", seq=seq)):
            time.sleep(0.001)
    assert done(courier, 3) == [1, None, 2]


def test_one_batch_waits_in_the_slot_while_another_is_on_the_wire(make: Make) -> None:
    courier, client = make(lambda _: ACCEPTED)
    client.gate = threading.Event()
    assert courier.offer(batch(b"aa", seq=1))
    assert client.entered.wait(2)
    assert not courier.idle()  # busy on the wire
    assert courier.stalled(0.0) and not courier.stalled(0.5) and not courier.stalled(60.0)
    assert courier.offer(batch(b"bbb", seq=2))
    assert courier.queued_bytes == 5  # both offered, neither delivered
    assert not courier.can_accept()
    assert not courier.offer(batch(b"c", seq=3))  # the slot is taken
    client.gate.set()
    assert done(courier, 2) == [1, 2]
    assert not courier.stalled(0.0)
    assert courier.queued_bytes == 0


def test_too_large_halves_until_each_part_is_accepted_in_order(make: Make) -> None:
    def answer(envelopes: list[bytes]) -> HecOutcome:
        return ACCEPTED if len(envelopes) == 1 else HecOutcome(Verdict.TOO_LARGE, 413)

    courier, client = make(answer)
    courier.stats.take()
    courier.offer(batch(b"a", b"b", b"c", seq=5))
    assert done(courier) == [5]
    accepted = [e for e in client.posted if len(e) == 1]
    assert accepted == [[b"a"], [b"b"], [b"c"]]
    assert quarantined(courier_dir(courier)) == []
    # Each part is a request of its own, none a retry of a failed one (its events were not sent).
    stats = courier.stats.take()
    assert (stats["hec.requests"], stats["hec.retries"]) == (len(client.posted), 0)


def courier_dir(courier: Courier) -> Path:
    return Path(courier.quarantine.path).parent


def test_a_single_event_too_large_is_quarantined_not_retried(make: Make) -> None:
    courier, client = make(lambda _: HecOutcome(Verdict.TOO_LARGE, 413))
    courier.offer(batch(b"huge", seq=2))
    assert done(courier) == [2]
    assert client.posted == [[b"huge"]]
    assert quarantined(courier_dir(courier)) == [b"huge"]


def refusing_bad(envelopes: list[bytes]) -> HecOutcome:
    """HEC refusing the event b"bad" by its number, accepting any request without it."""
    if b"bad" in envelopes:
        return HecOutcome(Verdict.POISON, 400, 6, "Invalid data format",
                          invalid_event=envelopes.index(b"bad"))
    return ACCEPTED


def test_the_named_poison_event_is_quarantined_and_the_rest_delivered(make: Make) -> None:
    courier, client = make(refusing_bad)
    courier.offer(batch(b"a", b"bad", b"c", seq=9))
    assert done(courier) == [9]
    assert client.posted[-1] == [b"a", b"c"]
    assert quarantined(courier_dir(courier)) == [b"bad"]
    assert courier.quarantine.count == 1
    assert courier.failures == 0  # poison is not a HEC failure


def test_an_unnamed_poison_event_is_found_by_halving(make: Make) -> None:
    def answer(envelopes: list[bytes]) -> HecOutcome:
        if b"bad" in envelopes:
            return HecOutcome(Verdict.POISON, 400, 6, "Invalid data format")
        return ACCEPTED

    courier, client = make(answer)
    courier.offer(batch(b"a", b"bad", b"c", b"d", seq=4))
    assert done(courier) == [4]
    delivered = [e for posted in client.posted for e in posted if e != b"bad"]
    assert sorted(set(delivered)) == [b"a", b"c", b"d"]
    assert quarantined(courier_dir(courier)) == [b"bad"]


@pytest.mark.parametrize("index", [-1, 1, 5])
def test_a_poison_index_outside_the_batch_is_not_trusted(make: Make, index: int) -> None:
    answers = iter([HecOutcome(Verdict.POISON, 400, 6, "bad", invalid_event=index)])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    courier.offer(batch(b"only", seq=1))
    assert done(courier) == [1]
    # a lone event HEC calls invalid is kept aside, whatever index HEC named
    assert quarantined(courier_dir(courier)) == [b"only"]
    assert client.posted == [[b"only"]]


def test_a_poison_index_at_the_batch_end_splits_instead(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.POISON, 400, 6, "bad", invalid_event=2)])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    courier.offer(batch(b"a", b"b", seq=1))
    assert done(courier) == [1]
    assert quarantined(courier_dir(courier)) == []
    assert client.posted[1:] == [[b"a"], [b"b"]]


def test_a_transient_failure_is_retried_at_once_and_health_recovers(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.RETRY, 503, 9, "Server is busy")])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    courier.offer(batch(b"a", seq=1))
    assert done(courier) == [1]
    assert client.posted == [[b"a"], [b"a"]]
    assert health(courier) == (False, False, 1)
    assert courier.sent_bytes == 1  # measured once, on the accepted attempt


def test_health_while_failing_and_a_timeout_marks_hec_hanging(make: Make) -> None:
    answers = iter([
        HecOutcome(Verdict.RETRY, 0, None, "ReadTimeoutError"),
        HecOutcome(Verdict.RETRY, 0, None, "ConnectionRefusedError"),
    ])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    client.gate, client.hold_after = threading.Event(), 2
    courier.offer(batch(b"a", seq=1))
    wait_posts(client, 3)  # the third attempt is on the wire
    assert health(courier) == (True, True, 2)  # hanging is sticky across a fast failure
    client.gate.set()
    assert done(courier) == [1]
    # One success ends the failing state; HEC stays presumed hanging until a run of fast
    # successes (ext/sender/breaker.py) closes the breaker.
    assert health(courier) == (False, True, 2)


def test_a_fast_refusal_does_not_mark_hec_hanging(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.RETRY, 0, None, "ConnectionRefusedError")])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    client.gate, client.hold_after = threading.Event(), 1
    courier.offer(batch(b"a", seq=1))
    wait_posts(client, 2)  # the retry is on the wire: the failure is recorded
    assert health(courier) == (True, False, 1)
    client.gate.set()
    assert done(courier) == [1]


def test_a_failure_slower_than_the_flush_budget_marks_hec_hanging(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.RETRY, 503, 9, "Server is busy")])

    def slow(_: list[bytes]) -> HecOutcome:
        time.sleep(0.01)  # HEC answers after 10 ms, over the 1 ms budget
        return next(answers, ACCEPTED)

    courier, client = make(slow, budget_ms=1)
    client.gate, client.hold_after = threading.Event(), 1
    courier.offer(batch(b"a", seq=1))
    wait_posts(client, 2)
    assert health(courier) == (True, True, 1)
    client.gate.set()
    assert done(courier) == [1]


def test_a_hold_waits_until_hurried(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.HOLD, 403, 4, "Invalid token")])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    courier.offer(batch(b"a", seq=1))
    assert done(courier, within_s=0.3) == []  # held for 2 s
    assert health(courier) == (True, False, 1)
    courier.hurry()
    assert done(courier) == [1]
    assert len(client.posted) == 2


def test_stop_during_a_hold_leaves_the_batch_undone(make: Make) -> None:
    courier, client = make(lambda _: HecOutcome(Verdict.HOLD, 403, 4, "Invalid token"))
    courier.offer(batch(b"a", seq=1))
    assert client.entered.wait(2)
    courier.stop()
    courier._thread.join(1.0)
    assert not courier._thread.is_alive()  # the hold ended with the stop
    assert client.closed
    assert courier.take_done() == []
    assert len(client.posted) == 1


def test_the_drain_deadline_ends_retries_and_leaves_the_batch_undone(make: Make) -> None:
    courier, client = make(lambda _: HecOutcome(Verdict.RETRY, 503, 9, "busy"))
    courier.drain_deadline = time.monotonic() + 0.2
    courier.offer(batch(b"a", seq=1))
    assert done(courier, within_s=0.4) == []
    courier._thread.join(1.0)
    assert not courier._thread.is_alive()  # gave up at the deadline
    assert 2 <= len(client.posted) <= 8  # brisk retries (50 ms, 100 ms...) until then


def test_backoff_policy() -> None:
    courier = Courier.__new__(Courier)
    courier.drain_deadline = None
    retry = HecOutcome(Verdict.RETRY, 503)
    hold = HecOutcome(Verdict.HOLD, 403, 4)
    assert courier._backoff_s(1, retry) == 0.0  # a stale keep-alive: retry at once
    for attempt in (2, 3, 20):
        cap = min(30.0, 0.05 * 2.0 ** min(attempt, 12))
        draws = [courier._backoff_s(attempt, retry) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in draws)
        assert max(draws) > cap / 2  # jitter over the whole range, not a fixed wait
    assert courier._backoff_s(3, HecOutcome(Verdict.RETRY, 429, retry_after_s=7.0)) == 7.0
    # Retry-After is a floor: "0" (or a tiny value) from a busy HEC still backs off.
    busy_now = HecOutcome(Verdict.RETRY, 503, retry_after_s=0.0)
    assert courier._backoff_s(1, busy_now) == 0.0
    for attempt in (2, 8):
        cap = min(30.0, 0.05 * 2.0 ** attempt)
        draws = [courier._backoff_s(attempt, busy_now) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in draws) and max(draws) > cap / 2
    assert [courier._backoff_s(a, hold) for a in (1, 2, 3, 6, 7, 30)] == [
        2.0, 4.0, 8.0, 60.0, 60.0, 60.0]
    assert courier._backoff_s(1, hold) == 2.0
    courier.drain_deadline = 1.0
    assert [courier._backoff_s(a, hold) for a in (1, 2, 5, 9)] == [0.05, 0.1, 0.25, 0.25]


def round_trip(courier: Courier) -> float | None:
    return courier.round_trip_s


def measuring_courier(trips: int = 3, longest_s: float = 7.0) -> Courier:
    courier = Courier.__new__(Courier)
    courier.sent_bytes, courier.round_trip_s = 0, None
    courier.recent_trips, courier.recent_rates = deque(maxlen=trips), deque(maxlen=trips)
    courier._longest_s = longest_s
    return courier


def test_round_trip_is_the_fastest_recent_one_and_the_rate_what_lies_beyond_it() -> None:
    courier = measuring_courier()
    assert courier.send_rate_bps() is None
    courier._measured(100, 0.05)
    assert round_trip(courier) == 0.05 and courier.send_rate_bps() is None
    courier._measured(200, 0.06)  # within a few round trips: latency, no bandwidth figure
    assert round_trip(courier) == 0.05 and courier.send_rate_bps() is None
    courier._measured(100_000, 0.25)  # 100 kB in 0.2 s beyond the round trip
    assert courier.send_rate_bps() == pytest.approx(500_000)
    courier._measured(40_000, 0.15)  # 0.09 s beyond the fastest now (0.06): 444 kB/s
    assert courier.send_rate_bps() == pytest.approx(500_000)  # the best of the recent ones
    assert list(courier.recent_trips) == [0.06, 0.25, 0.15]  # the last few, for inline attempts
    courier._measured(300, 0.04)
    assert round_trip(courier) == 0.04
    assert courier.sent_bytes == 100 + 200 + 100_000 + 40_000 + 300


def test_a_request_twice_the_fastest_round_trip_measures_the_bandwidth() -> None:
    courier = measuring_courier()
    courier._measured(100, 0.125)
    courier._measured(10_000, 0.25 - 2**-10)  # just under twice the round trip: latency still
    assert courier.send_rate_bps() is None
    courier._measured(12_500, 0.25)  # 12.5 kB in the 0.125 s beyond the round trip
    assert courier.send_rate_bps() == 100_000


def test_a_request_that_spanned_a_freeze_leaves_the_drain_estimate_as_it_was() -> None:
    # Sent as the environment froze, answered at the thaw: 3 s (or 40 s) for 2 kB. Taken as
    # the network's, a shutdown with 200 kB spooled reserved all of its window for the drain.
    courier = measuring_courier()
    for size, took in ((2_000, 0.02), (200_000, 0.12), (2_000, 3.0), (3_000, 40.0)):
        courier._measured(size, took)
    assert round_trip(courier) == 0.02
    assert courier.send_rate_bps() == pytest.approx(2_000_000)
    assert 40.0 not in courier.recent_trips  # longer than the client lets a request take
    reserve = drain_reserve_s(200_000, courier.send_rate_bps(), courier.round_trip_s)
    assert reserve < 0.25


def test_hec_failing_and_recovering_is_logged_once_each(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    answers = iter([HecOutcome(Verdict.RETRY, 503, 9, "Server is busy")] * 3)
    courier, _ = make(lambda _: next(answers, ACCEPTED))
    courier._pause = lambda seconds, floor_s=0.0: None  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="ext.sender.courier"):
        courier.offer(batch(b"a", seq=1))
        assert done(courier) == [1]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "HEC is not accepting events (retry, status 503, code 9: Server is busy); "
        "keeping them spooled",
        "HEC accepts events again",
    ]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_bug_in_delivery_ends_the_process_for_a_restart(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    exits: list[int] = []

    def exit_(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)  # ends the courier thread instead of the test process

    monkeypatch.setattr(os, "_exit", exit_)
    monkeypatch.setattr(logging, "shutdown", lambda: None)

    def answer(_: list[bytes]) -> HecOutcome:
        raise RuntimeError("a bug")

    courier, _ = make(answer)
    courier.offer(batch(b"a", seq=1))
    courier._thread.join(3)
    assert exits == [70]  # supervisor.EXIT_CRASHED: the main process restarts the sender
    assert courier.take_done() == []


def test_waits_between_attempts_follow_the_verdicts(make: Make) -> None:
    hold = HecOutcome(Verdict.HOLD, 403, 4, "Invalid token")
    retry = HecOutcome(Verdict.RETRY, 503, 9, "busy")
    answers = iter([hold, hold, hold, retry])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    waits: list[float] = []

    def pause(seconds: float, floor_s: float = 0.0) -> None:
        waits.append(seconds)

    courier._pause = pause  # type: ignore[method-assign]
    courier.offer(batch(b"a", seq=1))
    assert done(courier) == [1]
    assert waits[:3] == [2.0, 4.0, 8.0]  # holds double from 2 s
    assert 0.0 <= waits[3] <= 0.05 * 2**4  # the fourth failure: jittered, capped by attempt
    assert len(client.posted) == 5 and courier.failures == 4


def test_the_named_poison_event_is_dropped_without_a_probe(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.POISON, 400, 6, "Invalid data format", invalid_event=0)])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    courier.offer(batch(b"bad", b"b", b"c", seq=3))
    assert done(courier) == [3]
    assert client.posted == [[b"bad", b"b", b"c"], [b"b", b"c"]]
    assert quarantined(courier_dir(courier)) == [b"bad"]


def test_a_backoff_is_cut_short_by_the_drain_deadline(make: Make) -> None:
    courier, client = make(lambda _: HecOutcome(Verdict.RETRY, 503, 9, "busy"))
    courier._backoff_s = lambda attempt, outcome: 30.0  # type: ignore[method-assign]
    courier.drain_deadline = time.monotonic() + 0.05
    courier.offer(batch(b"a", seq=1))
    courier._thread.join(0.6)
    assert not courier._thread.is_alive()  # gave up at the deadline, not after 30 s
    assert len(client.posted) == 1 and courier.take_done() == []


def test_retry_waits_at_the_top_of_their_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    courier = Courier.__new__(Courier)
    courier.drain_deadline = None
    retry = HecOutcome(Verdict.RETRY, 503)
    assert [courier._backoff_s(a, retry) for a in (2, 3, 9, 10, 13, 40)] == [
        0.2, 0.4, 25.6, 30.0, 30.0, 30.0]


def test_the_delivery_thread_never_keeps_the_process_alive(make: Make) -> None:
    courier, client = make(lambda _: ACCEPTED)
    assert courier._thread.daemon  # a request hanging at exit must not hold the sender
    courier.stop()
    assert not courier._thread.is_alive()  # an idle thread has ended when stop returns
    assert client.closed


def test_a_batch_waiting_when_stop_is_asked_is_not_sent(make: Make) -> None:
    courier, client = make(lambda _: ACCEPTED)
    client.gate = threading.Event()
    courier.offer(batch(b"a", seq=1))
    assert client.entered.wait(2)
    courier.offer(batch(b"b", seq=2))
    courier.stop()  # returns after 0.2 s with the first request still on the wire
    client.gate.set()
    courier._thread.join(2.0)
    assert not courier._thread.is_alive()
    assert client.posted == [[b"a"]]  # the waiting batch stays in the spool


def test_hurry_ends_a_long_hold_at_once(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.HOLD, 403, 4, "Invalid token")])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    courier._backoff_s = lambda attempt, outcome: 30.0  # type: ignore[method-assign]
    courier.offer(batch(b"a", seq=1))
    assert client.entered.wait(2)
    courier.hurry()
    assert done(courier) == [1]


def test_each_request_is_counted_with_its_latency_and_whether_it_was_a_retry(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.RETRY, 503, 9, "Server is busy")] * 2)

    def slow(_: list[bytes]) -> HecOutcome:
        time.sleep(0.03)  # HEC takes 30 ms to answer each request
        return next(answers, ACCEPTED)

    courier, _ = make(slow)
    courier._pause = lambda seconds, floor_s=0.0: None  # type: ignore[method-assign]
    courier.offer(batch(b"a", seq=1))
    assert done(courier) == [1]
    stats = courier.stats.take()
    assert (stats["hec.requests"], stats["hec.retries"], stats["hec.failures.retry"]) == (3, 2, 2)
    assert 25 <= stats["hec.latency_p50_ms"] < 500  # the time on the wire, in ms


def test_hurry_leaves_an_idle_courier_asleep(make: Make) -> None:
    # Every Flush hurries the courier: an idle one waits on the same condition for its next
    # batch, and waking it would cost a thread switch at every invocation for nothing.
    courier, _ = make(lambda _: ACCEPTED)
    courier.offer(batch(b"a", seq=1))
    assert done(courier) == [1]
    assert not _hurry_wakes(courier)


# A batch sent on the sender's own thread (`deliver_now`) while the delivery thread is idle and
# HEC healthy; every other batch through the thread as before.

BUSY = HecOutcome(Verdict.RETRY, 503, 9, "Server is busy")


class ThreadNoting(ScriptedClient):
    """Notes the thread each POST runs on."""

    def __init__(self, answers: list[HecOutcome]) -> None:
        replies = iter(answers)
        super().__init__(lambda _: next(replies, ACCEPTED))
        self.threads: list[str] = []

    def post(self, body: bytes, within_s: float | None = None) -> HecOutcome:
        self.threads.append(threading.current_thread().name)
        return super().post(body, within_s)


def warmed(make: Make, answers: list[HecOutcome]) -> tuple[Courier, ThreadNoting]:
    """A courier that connected ahead and delivered one batch through its thread."""
    courier, _ = make(lambda _: ACCEPTED)
    client = ThreadNoting([])
    courier.client = client  # type: ignore[assignment]
    assert courier.offer(batch(b"first", seq=1))
    assert done(courier) == [1]
    replies = iter(answers)
    client.answer = lambda _: next(replies, ACCEPTED)
    return courier, client


def test_a_batch_for_an_idle_healthy_courier_is_sent_on_the_callers_thread(make: Make) -> None:
    courier, client = warmed(make, [])
    assert courier.deliver_now(batch(b"a", seq=2), 0.5)
    assert client.threads == ["courier", threading.current_thread().name]
    assert courier.take_done() == []  # accepted already: nothing for the sender to collect
    assert courier.idle() and courier.queued_bytes == 0
    assert courier.stats.requests == 2


def test_before_any_accepted_request_the_thread_sends_it(make: Make) -> None:
    # No request accepted yet: a token may still have to be fetched, the connection made.
    courier, _ = make(lambda _: ACCEPTED)
    client = ThreadNoting([])
    courier.client = client  # type: ignore[assignment]
    assert not courier.deliver_now(batch(b"a", seq=2), 0.5)
    assert done(courier) == [2]
    assert client.threads == ["courier"]


def test_a_failed_attempt_goes_to_the_thread_which_retries_it(make: Make) -> None:
    courier, client = warmed(make, [BUSY])
    assert not courier.deliver_now(batch(b"a", seq=2), 0.5)
    assert health(courier)[2] == 1  # the sender tells the waiting flushes HEC fails
    assert done(courier) == [2]  # retried by the thread at once, accepted
    assert client.threads == ["courier", threading.current_thread().name, "courier"]
    assert not courier.failing


def test_while_hec_fails_every_batch_goes_through_the_thread(make: Make) -> None:
    courier, client = warmed(make, [])
    courier.failing = True  # as after a failed attempt whose retry has not succeeded yet
    assert not courier.deliver_now(batch(b"a", seq=2), 0.5)
    assert done(courier) == [2]
    assert client.threads == ["courier", "courier"]


def test_at_shutdown_every_batch_goes_through_the_thread(make: Make) -> None:
    # The sender's thread must stay free to stop at the drain deadline.
    courier, client = warmed(make, [])
    courier.drain_deadline = float("inf")
    assert not courier.deliver_now(batch(b"a", seq=2), 0.5)
    assert done(courier) == [2]
    assert client.threads == ["courier", "courier"]


def test_with_a_batch_waiting_for_the_thread_the_next_waits_behind_it(make: Make) -> None:
    courier, client = warmed(make, [])
    gate = threading.Event()
    client.gate, client.hold_after = gate, 1  # the thread's next POST stays on the wire
    assert courier.offer(batch(b"a", seq=2))
    try:
        while len(client.posted) < 2:
            threading.Event().wait(0.002)
        assert not courier.deliver_now(batch(b"b", seq=3), 0.5)  # queued: order kept
    finally:
        gate.set()
    assert done(courier, 2) == [2, 3]
    assert client.threads == ["courier"] * 3


def test_the_inline_attempt_is_bounded_by_the_time_the_caller_gives(make: Make) -> None:
    courier, client = warmed(make, [])
    assert courier.deliver_now(batch(b"a", seq=2), 0.3)
    assert client.within == [None, 0.3]  # the thread's requests keep the configured timeout


def test_a_hec_slower_than_the_limit_allows_is_not_tried_inline(make: Make) -> None:
    # A HEC that usually takes 200 ms would time out inline at every invocation (and a request
    # answered late is a duplicate): the thread sends with the configured timeout.
    courier, client = warmed(make, [])
    courier.recent_trips.clear()
    courier.recent_trips.extend([0.2, 0.3])
    assert not courier.deliver_now(batch(b"a", seq=2), 0.5)
    assert done(courier) == [2]
    assert client.threads == ["courier", "courier"]
    courier.recent_trips.clear()
    courier.recent_trips.extend([0.6, 0.1, 0.6])  # one prompt answer: the others spanned freezes
    assert courier.deliver_now(batch(b"b", seq=3), 0.5)


def test_after_an_inline_attempt_timed_out_the_thread_sends_for_a_while(make: Make) -> None:
    timeout = HecOutcome(Verdict.RETRY, 0, 0, "ReadTimeoutError")
    courier, client = warmed(make, [timeout])
    assert not courier.deliver_now(batch(b"a", seq=2), 0.5)
    assert done(courier) == [2]  # the thread's retry, accepted
    assert courier.hanging  # a timeout: flushes do not wait until the breaker closes again
    courier.breaker.is_open = False  # as after a few prompt answers
    assert not courier.deliver_now(batch(b"b", seq=3), 0.5)  # still a minute without
    assert done(courier) == [3]
    assert client.threads == ["courier", threading.current_thread().name, "courier", "courier"]
    courier._inline_after = 0.0
    assert courier.deliver_now(batch(b"c", seq=4), 0.5)


def test_too_little_time_left_sends_through_the_thread(make: Make) -> None:
    courier, client = warmed(make, [])
    assert not courier.deliver_now(batch(b"a", seq=2), courier_module.MIN_INLINE_S / 2)
    assert done(courier) == [2]
    assert client.threads == ["courier", "courier"]


def test_the_inline_limits_are_inclusive(make: Make) -> None:
    # Exactly MIN_INLINE_S to answer, and the fastest recent round trip exactly an
    # INLINE_MARGIN-th of it (binary fractions: the product is exact): still tried inline.
    courier, client = warmed(make, [])
    within = courier_module.MIN_INLINE_S
    courier.recent_trips.clear()
    courier.recent_trips.append(within / courier_module.INLINE_MARGIN)
    assert courier.deliver_now(batch(b"a", seq=2), within)
    courier.recent_trips.clear()
    courier.recent_trips.extend([0.125, 0.25])
    assert courier.deliver_now(batch(b"b", seq=3), 0.125 * courier_module.INLINE_MARGIN)
    assert client.threads == ["courier"] + [threading.current_thread().name] * 2


class SteppedClock:
    """Stands in for the courier's `time` module: monotonic() moves only when told (from a
    small origin, as a fresh microVM's clock)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def test_an_inline_requests_round_trip_is_measured_whatever_the_clocks_origin(
    make: Make, monkeypatch: pytest.MonkeyPatch,
) -> None:
    courier, client = warmed(make, [])
    clock = SteppedClock(0.25)  # 250 ms after boot
    monkeypatch.setattr(courier_module, "time", clock)

    def answer(_: list[bytes]) -> HecOutcome:
        clock.now += 0.4
        return ACCEPTED

    client.answer = answer
    courier.recent_trips.clear()
    courier.recent_trips.append(0.1)
    assert courier.deliver_now(batch(b"a", seq=2), 0.5)
    assert courier.recent_trips[-1] == pytest.approx(0.4)
    assert courier.round_trip_s is not None and courier.round_trip_s < 0.4


def test_a_request_answered_later_than_the_clients_timeouts_allow_is_not_a_round_trip(
    make: Make, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1.25 s to connect and 2 s to read: an answer more than 3.25 s after the POST spanned a
    # freeze (sent as the environment froze, answered at the thaw): nothing of HEC's speed.
    courier, client = make(lambda _: ACCEPTED, SPLUNK_CONNECT_TIMEOUT_MS="1250",
                           SPLUNK_REQUEST_TIMEOUT_MS="2000")
    clock = SteppedClock(0.25)
    monkeypatch.setattr(courier_module, "time", clock)
    just_past = 3.25 + 2**-9  # 2 ms past the limit (binary fractions: exact sums)
    takes = iter([2.5, 3.25, just_past, 40.0, 0.5])

    def answer(_: list[bytes]) -> HecOutcome:
        clock.now += next(takes)
        return ACCEPTED

    client.answer = answer
    for seq in (2, 3, 4, 5, 6):
        assert courier.offer(batch(b"a", seq=seq))
        assert done(courier) == [seq]
    assert list(courier.recent_trips) == [2.5, 3.25, 0.5]  # the limit itself is within it
    assert courier.round_trip_s == 0.5
    assert courier.sent_bytes == 5  # each one delivered all the same


def test_an_inline_attempt_that_timed_out_suspends_them_for_a_minute(
    make: Make, monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeout = HecOutcome(Verdict.RETRY, 0, 0, "ReadTimeoutError")
    courier, client = warmed(make, [timeout])
    clock = SteppedClock(1000.0)
    monkeypatch.setattr(courier_module, "time", clock)
    assert not courier.deliver_now(batch(b"a", seq=2), 0.5)
    assert done(courier) == [2]
    courier.breaker.is_open = False  # as after a few prompt answers
    courier.recent_trips.clear()
    courier.recent_trips.append(0.01)
    clock.now = 1059.5
    assert not courier.deliver_now(batch(b"b", seq=3), 0.5)
    assert done(courier) == [3]
    clock.now = 1060.0
    assert courier.deliver_now(batch(b"c", seq=4), 0.5)
    inline = threading.current_thread().name
    assert client.threads == ["courier", inline, "courier", "courier", inline]


def test_hurry_leaves_a_courier_asleep_once_its_backoff_is_over(make: Make) -> None:
    answers = iter([BUSY, BUSY])  # the second failure waits out a (short) backoff
    courier, _ = make(lambda _: next(answers, ACCEPTED))
    courier._backoff_s = lambda attempt, outcome: 0.01  # type: ignore[method-assign]
    courier.offer(batch(b"a", seq=1))
    assert done(courier) == [1]
    assert not _hurry_wakes(courier)


def test_ten_ms_to_answer_is_too_little_for_an_inline_attempt_even_to_a_prompt_hec(
    make: Make,
) -> None:
    courier, client = warmed(make, [])
    courier.recent_trips.clear()
    courier.recent_trips.append(0.001)  # 4 round trips fit 10 ms easily
    assert not courier.deliver_now(batch(b"a", seq=2), 0.01)
    assert done(courier) == [2]
    assert client.threads == ["courier", "courier"]


def test_an_inline_request_is_counted_as_a_first_attempt(make: Make) -> None:
    courier, _ = warmed(make, [])
    courier.stats.take()
    assert courier.deliver_now(batch(b"a", seq=2), 0.5)
    stats = courier.stats.take()
    assert (stats["hec.requests"], stats["hec.retries"]) == (1, 0)


def test_hurry_ends_a_backoff_already_under_way(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.HOLD, 403, 4, "Invalid token")])
    courier, _ = make(lambda _: next(answers, ACCEPTED))
    courier._backoff_s = lambda attempt, outcome: 30.0  # type: ignore[method-assign]
    courier.offer(batch(b"a", seq=1))
    end = time.monotonic() + 2
    while not courier._pausing and time.monotonic() < end:  # the thread waits out its hold
        time.sleep(0.002)
    assert courier._pausing
    courier.hurry()
    assert done(courier) == [1]


def _pausing(courier: Courier) -> bool:
    end = time.monotonic() + 2
    while not courier._pausing and time.monotonic() < end:
        time.sleep(0.002)
    return courier._pausing


def test_hurry_does_not_cut_a_retry_after_short(make: Make) -> None:
    # A busy HEC's Retry-After holds even as an invocation ends: a fleet's environments would
    # otherwise all come back at their next invocation, sooner than it asked.
    answers = iter([HecOutcome(Verdict.RETRY, 503, 9, "Server is busy", retry_after_s=0.5)])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    courier.offer(batch(b"a", seq=1))
    assert _pausing(courier)
    courier.hurry()
    assert done(courier, within_s=0.3) == []
    assert len(client.posted) == 1
    assert done(courier) == [1]  # once the 0.5 s are over, at once: the hurry stands


def test_a_drain_ends_a_retry_after_at_once(make: Make) -> None:
    answers = iter([HecOutcome(Verdict.RETRY, 503, 9, "Server is busy", retry_after_s=30.0)])
    courier, client = make(lambda _: next(answers, ACCEPTED))
    courier.offer(batch(b"a", seq=1))
    assert _pausing(courier)
    courier.drain_deadline = time.monotonic() + 5  # what is not sent now is lost
    courier.hurry()
    assert done(courier) == [1]
    assert len(client.posted) == 2


def test_a_drain_makes_retries_brisk_and_lets_a_held_token_be_read_again(make: Make) -> None:
    courier, client = make(lambda _: ACCEPTED)
    told: list[str] = []
    client.tokens = types.SimpleNamespace(  # type: ignore[attr-defined]
        draining=lambda: told.append("draining"))
    courier.draining(123.0)
    assert courier.drain_deadline == 123.0 and told == ["draining"]


def test_only_a_retry_after_outside_a_drain_is_a_floor() -> None:
    courier = Courier.__new__(Courier)
    courier.drain_deadline = None
    assert courier._floor_s(HecOutcome(Verdict.RETRY, 503, retry_after_s=7.0)) == 7.0
    assert courier._floor_s(HecOutcome(Verdict.RETRY, 503)) == 0.0
    assert courier._floor_s(HecOutcome(Verdict.HOLD, 403, 4)) == 0.0
    courier.drain_deadline = time.monotonic() + 1
    assert courier._floor_s(HecOutcome(Verdict.RETRY, 429, retry_after_s=7.0)) == 0.0


def _hurry_wakes(courier: Courier) -> bool:
    """Whether `hurry` wakes the courier's thread (notifies its condition)."""
    woken: list[int] = []
    notify = courier._cv.notify_all

    def notify_all() -> None:
        woken.append(1)
        notify()

    courier._cv.notify_all = notify_all  # type: ignore[method-assign]
    courier.hurry()
    return bool(woken)


def test_events_hec_refused_are_counted_in_the_self_metrics_and_so_are_those_not_kept(
    make: Make,
) -> None:
    # The dead-letter file lives in the environment's /tmp, which nobody reads: the count of
    # events taken out of delivery must reach Splunk, and so must those the (full) file lost.
    courier, _ = make(refusing_bad)
    courier.stats.take()
    courier.offer(batch(b"a", b"bad", seq=1))
    assert done(courier) == [1]
    courier.quarantine.max_bytes = 0  # the file is full from now on
    courier.offer(batch(b"bad", b"c", seq=2))
    assert done(courier) == [2]
    stats = courier.stats.take()
    assert (stats["hec.quarantined_events"], stats["hec.quarantine_lost_events"]) == (2, 1)
    again = courier.stats.take()  # deltas, like the other delivery counters
    assert (again["hec.quarantined_events"], again["hec.quarantine_lost_events"]) == (0, 0)


def test_the_threads_resend_of_a_batch_that_failed_inline_is_counted_as_a_retry(
    make: Make,
) -> None:
    courier, client = warmed(make, [HecOutcome(Verdict.RETRY, 503, 9, "Server is busy")])
    courier.stats.take()
    assert not courier.deliver_now(batch(b"a", seq=2), 0.5)  # failed inline: the thread resends
    assert done(courier) == [2]
    assert client.posted[-2:] == [[b"a"], [b"a"]]
    stats = courier.stats.take()
    assert (stats["hec.requests"], stats["hec.retries"], stats["hec.failures.retry"]) == (2, 1, 1)


def refusing_invalid_utf8(envelopes: list[bytes]) -> HecOutcome:
    """HEC's /event parser: the first event that is not valid UTF-8 refused by its number."""
    for index, envelope in enumerate(envelopes):
        try:
            envelope.decode()
        except UnicodeDecodeError:
            return HecOutcome(Verdict.POISON, 400, 6, "Invalid data format", invalid_event=index)
    return ACCEPTED


BAD_LINE = b'{"time":1.5,"event":"bad \xff line\xe2\x82"}'
REPAIRED_LINE = b'{"time":1.5,"event":"bad \xef\xbf\xbd line\xef\xbf\xbd"}'


def test_an_event_refused_for_invalid_utf8_is_delivered_repaired_not_dead_lettered(
    make: Make, caplog: pytest.LogCaptureFixture,
) -> None:
    # The listener keeps records as msgspec.Raw (no UTF-8 check), so a log line's invalid
    # bytes reach HEC, which refuses the event: it reaches Splunk with U+FFFD in their place.
    courier, client = make(refusing_invalid_utf8)
    courier.stats.take()
    caplog.set_level(logging.WARNING, logger=courier_module.__name__)
    courier.offer(batch(b'{"event":"a"}', BAD_LINE, b'{"event":"c"}', seq=5))
    assert done(courier) == [5]
    assert client.posted == [[b'{"event":"a"}', BAD_LINE, b'{"event":"c"}'],
                             [REPAIRED_LINE],  # once, on its own
                             [b'{"event":"a"}', b'{"event":"c"}']]
    assert quarantined(courier_dir(courier)) == [] and courier.quarantine.count == 0
    stats = courier.stats.take()
    assert (stats["hec.repaired_events"], stats["hec.quarantined_events"]) == (1, 0)
    assert (stats["hec.requests"], stats["hec.retries"]) == (3, 0)  # the repair is no retry
    assert courier.stats.take()["hec.repaired_events"] == 0  # a delta, like its neighbours
    assert courier.failures == 0 and not courier.failing
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "invalid UTF-8" in caplog.text and "code 6" in caplog.text


def test_repairs_are_logged_at_the_first_second_fourth_like_quarantines(
    make: Make, caplog: pytest.LogCaptureFixture,
) -> None:
    courier, _ = make(refusing_invalid_utf8)
    caplog.set_level(logging.WARNING, logger=courier_module.__name__)
    courier.offer(batch(*[BAD_LINE] * 5, b"c", seq=1))
    assert done(courier) == [1]
    assert courier.repaired == 5 and quarantined(courier_dir(courier)) == []
    assert [r.getMessage().split(" event(s)")[0] for r in caplog.records] == [
        "HEC refused 1", "HEC refused 2", "HEC refused 4"]


def test_an_unnamed_refusal_is_halved_to_the_invalid_utf8_event_then_repaired(
    make: Make,
) -> None:
    def answer(envelopes: list[bytes]) -> HecOutcome:  # code 6 on the body, no event number
        refused = refusing_invalid_utf8(envelopes)
        return refused if refused.verdict is Verdict.ACCEPTED else HecOutcome(
            Verdict.POISON, 400, 6, "Invalid data format")

    courier, client = make(answer)
    courier.offer(batch(b"a", b"b", BAD_LINE, b"d", seq=3))
    assert done(courier) == [3]
    accepted = [e for posted in client.posted if answer(posted) == ACCEPTED for e in posted]
    assert sorted(accepted) == sorted([b"a", b"b", REPAIRED_LINE, b"d"])
    assert quarantined(courier_dir(courier)) == []
    assert courier.stats.take()["hec.repaired_events"] == 1


def test_a_repaired_event_hec_refuses_too_is_dead_lettered_as_it_was_sent(make: Make) -> None:
    courier, client = make(lambda envelopes: HecOutcome(
        Verdict.POISON, 400, 6, "Invalid data format", invalid_event=0)
        if any(b"bad" in e for e in envelopes) else ACCEPTED)
    kept: list[tuple[bytes, int | None]] = []

    def keep(envelope: bytes, status: int, code: int | None, text: str) -> bool:
        kept.append((envelope, code))  # the file would show it decoded, U+FFFD and all
        return True

    courier.quarantine.keep = keep  # type: ignore[method-assign]
    courier.stats.take()
    courier.offer(batch(BAD_LINE, b"c", seq=2))
    assert done(courier) == [2]
    assert client.posted == [[BAD_LINE, b"c"], [REPAIRED_LINE], [b"c"]]  # one repair, no more
    assert kept == [(BAD_LINE, 6)]  # the original bytes, HEC's reason for them
    stats = courier.stats.take()
    assert (stats["hec.repaired_events"], stats["hec.quarantined_events"]) == (0, 1)
    assert stats["hec.failures.poison"] == 2


def test_a_repaired_event_is_retried_through_a_transient_failure(make: Make) -> None:
    answers = iter([refusing_invalid_utf8([BAD_LINE]),
                    HecOutcome(Verdict.RETRY, 503, 9, "Server is busy")])
    courier, client = make(lambda envelopes: next(answers, ACCEPTED))
    courier.offer(batch(BAD_LINE, seq=1))
    assert done(courier) == [1]
    assert client.posted == [[BAD_LINE], [REPAIRED_LINE], [REPAIRED_LINE]]
    assert quarantined(courier_dir(courier)) == []
    assert courier.stats.take()["hec.repaired_events"] == 1


@pytest.mark.parametrize("refusal", [
    HecOutcome(Verdict.POISON, 400, 6, "Invalid data format", invalid_event=0),
    HecOutcome(Verdict.TOO_LARGE, 413, None, "Content too large"),  # not an encoding problem
])
def test_no_second_request_for_an_event_the_repair_cannot_change(
    make: Make, refusal: HecOutcome,
) -> None:
    # Valid UTF-8 refused (or any lone event too large): dead-lettered at once, as before.
    line = BAD_LINE if refusal.verdict is Verdict.TOO_LARGE else b'{"event":"fine"}'
    answers = iter([refusal])
    courier, client = make(lambda envelopes: next(answers, ACCEPTED))
    courier.offer(batch(line, seq=1))
    assert done(courier) == [1]
    assert client.posted == [[line]]
    assert courier.quarantine.count == 1
    assert courier.stats.take()["hec.repaired_events"] == 0
