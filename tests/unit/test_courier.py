"""The courier: HEC answers that concern a single event, and what it tells the hang breaker."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ext import config
from ext.sender import courier as courier_module
from ext.sender.batching import seal
from ext.sender.courier import Courier
from ext.sender.hec import HecOutcome, Verdict, classify


def test_incorrect_index_is_held_never_quarantined() -> None:
    # Code 7 carries an invalid-event-number (off by one on Splunk 10.4, hec.md §1.10), but it
    # is a configuration problem: the whole batch is held, no event is dead-lettered. That is
    # why the courier has no off-by-one adjustment for it.
    for status in (400, 403, 500):
        body = json.dumps({"text": "Incorrect index", "code": 7, "invalid-event-number": 2})
        outcome = classify(status, body.encode(), None)
        assert outcome.verdict is Verdict.HOLD, status


def test_too_large_names_no_event() -> None:
    body = json.dumps({"text": "Incorrect index", "code": 7, "invalid-event-number": 2})
    outcome = classify(413, body.encode(), None)
    assert outcome.verdict is Verdict.TOO_LARGE and outcome.invalid_event is None


class ScriptedClient:
    """Stands in for HecClient: each post takes the next (seconds, outcome) of the script."""

    def __init__(self, script: list[tuple[float, HecOutcome]]) -> None:
        self.script = script
        self.posts = 0

    def post(self, body: bytes) -> HecOutcome:
        took, outcome = self.script[min(self.posts, len(self.script) - 1)]
        self.posts += 1
        time.sleep(took)
        return outcome

    def trust(self) -> None:
        """No CAs to load."""

    def prepare(self) -> None:
        """Nothing to connect ahead."""

    def close(self) -> None:
        pass


def test_one_answer_between_two_hangs_keeps_flushes_from_waiting(tmp_path: Path) -> None:
    # The courier feeds the breaker each attempt's duration and outcome: a timeout opens it, one
    # fast success does not close it, so the next flush is still answered at once.
    env = {"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "t",
           "SPLUNK_FLUSH_BUDGET_MS": "100", "SPLUNK_SPOOL_DIR": str(tmp_path / "spool")}
    courier = Courier(config.load(env), str(tmp_path))
    timeout = HecOutcome(Verdict.RETRY, text="ReadTimeoutError")
    ok = HecOutcome(Verdict.ACCEPTED, 200, 0, "Success")
    try:
        courier.client = ScriptedClient([(0.0, timeout), (0.0, ok), (0.0, ok), (0.0, ok),
                                         (0.0, ok)])  # type: ignore[assignment]
        deliver(courier, 0)
        assert courier.hanging  # a timeout, then one success: still presumed hanging
        deliver(courier, 1)
        assert courier.hanging
        deliver(courier, 2)
        assert not courier.hanging  # 3 fast successes in a row
    finally:
        courier.stop()


def deliver(courier: Courier, seq: int, timeout_s: float = 5.0) -> None:
    """Offers one batch and waits until the courier reports it delivered."""
    assert courier.offer(seal([b"x"], seq, 0))
    end = time.monotonic() + timeout_s
    while seq not in courier.take_done():
        assert time.monotonic() < end, "not delivered in time"
        time.sleep(0.005)


class Clock:
    """Stands in for the `time` module the courier reads; a request moves it (TimedClient)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


class TimedClient:
    """Each post takes the next (seconds on the test clock, outcome) of the script."""

    def __init__(self, clock: Clock, script: list[tuple[float, HecOutcome]]) -> None:
        self.clock = clock
        self.script = script

    def post(self, body: bytes) -> HecOutcome:
        took, outcome = self.script.pop(0)
        self.clock.now += took
        return outcome

    def trust(self) -> None:
        """No CAs to load."""

    def prepare(self) -> None:
        """Nothing to connect ahead."""

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("failed_after_s", "hanging"), [(0.5, False), (0.5004, True)])
def test_the_breaker_opens_on_a_failure_slower_than_the_flush_budget_not_as_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failed_after_s: float, hanging: bool,
) -> None:
    clock = Clock(0.25)  # right after boot: a duration is a difference, whatever the origin
    monkeypatch.setattr(courier_module, "time", clock)
    env = {"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "t",
           "SPLUNK_FLUSH_BUDGET_MS": "500", "SPLUNK_SPOOL_DIR": str(tmp_path / "spool")}
    courier = Courier(config.load(env), str(tmp_path))
    busy = HecOutcome(Verdict.RETRY, 503, 9, "Server is busy")
    ok = HecOutcome(Verdict.ACCEPTED, 200, 0, "Success")
    try:
        courier.client = TimedClient(clock, [(failed_after_s, busy), (0.1, ok)])  # type: ignore[assignment]
        deliver(courier, 0)
        assert courier.hanging is hanging  # one fast success does not close an open breaker
        stats = courier.stats.take()
        assert stats["hec.latency_p50_ms"] == pytest.approx(100.0)
        assert stats["hec.latency_p99_ms"] == pytest.approx(failed_after_s * 1000)
    finally:
        courier.stop()


class PreparingClient(ScriptedClient):
    """Its `trust` waits for `trusted`; its `prepare` for `release`, then fails as a bug would."""

    def __init__(self) -> None:
        super().__init__([(0.0, HecOutcome(Verdict.ACCEPTED, 200, 0, "Success"))])
        self.trusted = threading.Event()
        self.release = threading.Event()
        self.trusting = threading.Event()
        self.prepared = threading.Event()

    def trust(self) -> None:
        self.trusting.set()
        assert self.trusted.wait(5)

    def prepare(self) -> None:
        self.prepared.set()
        assert self.release.wait(5)
        raise RuntimeError("a bug in connecting ahead")


def test_the_courier_readies_the_client_as_it_starts_and_delivers_whatever_that_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = PreparingClient()
    monkeypatch.setattr(courier_module, "HecClient", lambda config: client)
    env = {"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "t",
           "SPLUNK_SPOOL_DIR": str(tmp_path / "spool")}
    courier = Courier(config.load(env), str(tmp_path))
    try:
        assert client.trusting.wait(5)  # before any batch was offered
        assert courier.offer(seal([b"x"], 0, 0))
        time.sleep(0.05)
        assert not courier.stalled(0.01)  # loading CAs is CPU, not a request on the wire
        client.trusted.set()
        assert client.prepared.wait(5)
        time.sleep(0.05)
        # Connecting ahead counts as a request on the wire: a flush does not wait on it forever.
        assert courier.stalled(0.01) and client.posts == 0
        client.release.set()
        end = time.monotonic() + 5
        while 0 not in courier.take_done():
            assert time.monotonic() < end, "not delivered after a failed head start"
            time.sleep(0.005)
        assert client.posts == 1 and not courier.stalled(0.0)
    finally:
        client.trusted.set()
        client.release.set()
        courier.stop()
