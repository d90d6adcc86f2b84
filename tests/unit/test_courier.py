"""The courier's handling of HEC answers that concern a single event."""

from __future__ import annotations

import json

from ext.hec import Verdict, classify


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
