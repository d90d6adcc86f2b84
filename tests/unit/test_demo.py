"""The demo's reading of the extension's per-invocation flush decision (ext/local/demo.py)."""

from __future__ import annotations

from ext.flush_policy import AdaptiveFlush
from ext.local.demo import FLUSH_W, flush_decision

RID = "8c3f6a0e-1d2b-4c5d-9e8f-0a1b2c3d4e5f"
EARLIER = "00000000-0000-4000-8000-000000000000"
PREFIX = "[splunk-hec-ext] INFO main: "


def test_decision_is_the_newest_decision_line_of_the_request() -> None:
    lines = [
        f"{PREFIX}flush-decision request_id={RID} wait=yes reason=warming-up "
        "expected_gap_ms=- backlog_age_ms=0",
        f"{PREFIX}flush-decision request_id={EARLIER} wait=no reason=dense "
        "expected_gap_ms=180 backlog_age_ms=0",
        f"[splunk-hec-ext] WARNING sender: flush of {RID} slow",
        f"{PREFIX}flush-decision request_id={RID} wait=no reason=linger "
        "expected_gap_ms=180 backlog_age_ms=12",
    ]
    assert flush_decision(lines, RID) == "no wait: linger"
    assert flush_decision(lines, EARLIER) == "no wait: dense"


def test_a_backlog_decision_names_the_invocation_waited_for() -> None:
    policy = AdaptiveFlush(2.0)  # the line as the extension writes it
    for n, start in enumerate((0.0, 0.1, 0.2, 0.3)):
        policy.decide(f"w{n}", start)
        policy.delivered(f"w{n}")
    policy.decide(EARLIER, 0.4)
    decision = policy.decide(RID, 1.5)  # the earlier one 1.1 s old: with the gap, past 2 s
    assert decision.reason == "backlog"
    line = PREFIX + decision.describe(RID)
    assert flush_decision([line], RID, {EARLIER: "demo004"}) == "wait: backlog (for demo004)"
    assert flush_decision([line], RID) == f"wait: backlog (for {EARLIER})"[:FLUSH_W]


def test_no_decision_logged_shows_a_dash() -> None:
    lines = [f"[splunk-hec-ext] WARNING sender: HEC answered 503 for {RID}", "ready",
             f"{PREFIX}flush-decision request_id={EARLIER} wait=no reason=dense"]
    assert flush_decision(lines, RID) == "-"
    assert flush_decision(lines, "") == "-"


def test_a_long_decision_is_cut_to_the_column() -> None:
    line = f"{PREFIX}flush-decision request_id={RID} wait=yes reason={'x' * 80}"
    assert len(flush_decision([line], RID)) == FLUSH_W
