"""The courier: HEC answers that concern a single event, and what it tells the hang breaker."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ext import config
from ext.batching import HecBatch
from ext.courier import Courier
from ext.hec import HecOutcome, Verdict, classify


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
    assert courier.offer(HecBatch([b"x"], 1, seq), b"x")
    end = time.monotonic() + timeout_s
    while seq not in courier.take_done():
        assert time.monotonic() < end, "not delivered in time"
        time.sleep(0.005)
