"""HEC answers mapped to sender verdicts: every documented code, odd statuses, odd bodies."""

from __future__ import annotations

import json

import pytest

from ext.sender.hec import HecOutcome, Verdict, classify


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, b'{"text":"Success","code":0}', Verdict.ACCEPTED),
        (
            200,
            b'{"text":"HEC queue is approaching its capacity limit","code":24}',
            Verdict.ACCEPTED,
        ),
        (503, b'{"text":"Server is busy","code":9}', Verdict.RETRY),
        (429, b'{"text":"HEC queue is at capacity","code":26}', Verdict.RETRY),
        (500, b'{"text":"Internal server error","code":8}', Verdict.RETRY),
        (502, b"<html>bad gateway</html>", Verdict.RETRY),
        (
            404,
            b'{"text":"The requested URL was not found on this server.","code":404}',
            Verdict.RETRY,
        ),
        (408, b"", Verdict.RETRY),
        (413, b"<html>too large</html>", Verdict.TOO_LARGE),
        (403, b'{"text":"Invalid token","code":4}', Verdict.HOLD),
        (401, b'{"text":"Token is required","code":2}', Verdict.HOLD),
        (403, b'{"text":"Token disabled","code":1}', Verdict.HOLD),
        (400, b'{"text":"Incorrect index","code":7,"invalid-event-number":1}', Verdict.HOLD),
        (400, b'{"text":"ACK is disabled","code":14}', Verdict.HOLD),
        (400, b'{"text":"Invalid data format","code":6,"invalid-event-number":3}', Verdict.POISON),
        (
            400,
            b'{"text":"Event field is required","code":12,"invalid-event-number":0}',
            Verdict.POISON,
        ),
        (400, b"<html>bad gzip</html>", Verdict.HOLD),  # the whole body: no event to blame
    ],
)
def test_classification(status: int, body: bytes, verdict: Verdict) -> None:
    assert classify(status, body, None).verdict is verdict


def test_invalid_event_number_and_retry_after() -> None:
    out = classify(400, b'{"text":"Invalid data format","code":6,"invalid-event-number":3}', None)
    assert out.invalid_event == 3 and out.code == 6
    busy = classify(503, b'{"text":"Server is busy","code":9}', "7")
    assert busy.retry_after_s == 7.0
    assert classify(503, b"", "soon").retry_after_s is None
    assert classify(503, b"", "100000").retry_after_s == 300.0


def test_odd_bodies_never_raise() -> None:
    for body in (b"", b"[]", b'"x"', b"\xff\xfe", b'{"code":"6"}', b'{"invalid-event-number":-1}'):
        out = classify(400, body, None)
        assert out.invalid_event is None


# Every HEC code with the HTTP status Splunk sends it with, and what the sender must do with it
# (hec.md §1.10 and §4.4: config errors hold, data errors quarantine, server errors retry).
ACCEPT, RETRY, HOLD, POISON = Verdict.ACCEPTED, Verdict.RETRY, Verdict.HOLD, Verdict.POISON
HEC_CODE_TABLE: dict[int, tuple[int, Verdict]] = {
    0: (200, ACCEPT),   # Success
    1: (403, HOLD),     # Token disabled
    2: (401, HOLD),     # Token is required
    3: (401, HOLD),     # Invalid authorization
    4: (403, HOLD),     # Invalid token
    5: (400, POISON),   # No data
    6: (400, POISON),   # Invalid data format
    7: (400, HOLD),     # Incorrect index
    8: (500, RETRY),    # Internal server error
    9: (503, RETRY),    # Server is busy
    10: (400, HOLD),    # Data channel is missing
    11: (400, HOLD),    # Invalid data channel
    12: (400, POISON),  # Event field is required
    13: (400, POISON),  # Event field cannot be blank
    14: (400, HOLD),    # ACK is disabled
    15: (400, POISON),  # Error in handling indexed fields
    16: (400, HOLD),    # Query string authorization is not enabled
    17: (200, ACCEPT),  # HEC is healthy
    18: (503, RETRY),   # HEC is unhealthy, queues are full
    19: (503, RETRY),   # HEC is unhealthy, ack service unavailable
    20: (503, RETRY),   # HEC is unhealthy, queues are full, ack service unavailable
    21: (400, HOLD),    # Invalid token (token management)
    22: (400, HOLD),    # Token disabled (token management)
    23: (503, RETRY),   # Server is shutting down
    24: (200, ACCEPT),  # HEC queue is approaching its capacity limit
    25: (200, ACCEPT),  # HEC ACK is approaching its capacity limit
    26: (429, RETRY),   # HEC queue is at capacity
    27: (429, RETRY),   # HEC ACK channel is at capacity
}  # fmt: skip
CONFIG_CODES = sorted(code for code, (_, verdict) in HEC_CODE_TABLE.items() if verdict is HOLD)


def hec_body(code: int, **extra: object) -> bytes:
    return json.dumps({"text": f"code {code}", "code": code, **extra}).encode()


@pytest.mark.parametrize("code", sorted(HEC_CODE_TABLE))
def test_every_hec_code_with_its_documented_status(code: int) -> None:
    status, verdict = HEC_CODE_TABLE[code]
    out = classify(status, hec_body(code), None)
    assert (out.verdict, out.status, out.code, out.text) == (verdict, status, code, f"code {code}")


@pytest.mark.parametrize("status", [404, 408, 429, 500, 503])
@pytest.mark.parametrize("code", sorted(HEC_CODE_TABLE))
def test_a_config_code_holds_even_when_the_status_says_retry(code: int, status: int) -> None:
    # The code alone makes a hold: a receiver that maps statuses differently must not turn a bad
    # token into an endless retry that nobody is told about.
    expected = HOLD if code in CONFIG_CODES else RETRY
    assert classify(status, hec_body(code), None).verdict is expected


@pytest.mark.parametrize("code", sorted(HEC_CODE_TABLE))
def test_auth_statuses_hold_whatever_the_code(code: int) -> None:
    for status in (401, 403):
        assert classify(status, hec_body(code), None).verdict is HOLD


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (400, hec_body(99), HOLD),  # an unknown code: not known to be the data's fault
        # No code at all: not HEC naming an event (a proxy, or the whole body refused): held,
        # never dead-lettered, as every event of every request would be.
        (400, b"", HOLD),
        (400, b'{"text":"x"}', HOLD),
        (400, b"<html><body>400 Bad Request</body></html>", HOLD),
        (400, b'{"code":"6"}', HOLD),  # a code that is not a number is no code
        (415, b"<html>unsupported encoding</html>", HOLD),
        (302, b"", HOLD),  # redirects are not followed: the URL is misconfigured
        (410, b"", HOLD),
        (499, b"", HOLD),
        (199, b"", HOLD),
        (201, b"", ACCEPT),
        (299, b"", ACCEPT),
        (300, b"", HOLD),
        (501, b"", RETRY),
        (504, b"", RETRY),
        (599, b"<html>proxy</html>", RETRY),
        (413, hec_body(6), Verdict.TOO_LARGE),
        (500, hec_body(6, **{"invalid-event-number": 2}), RETRY),  # data codes need status 400
        (302, hec_body(6, **{"invalid-event-number": 2}), HOLD),  # below it too: no event blamed
        (199, hec_body(12), HOLD),
    ],
)
def test_statuses_without_a_known_code(status: int, body: bytes, verdict: Verdict) -> None:
    assert classify(status, body, None).verdict is verdict


def test_the_event_index_travels_with_hold_and_poison_only() -> None:
    indexed = {"invalid-event-number": 0}
    assert classify(400, hec_body(6, **indexed), None).invalid_event == 0
    assert classify(400, hec_body(7, **indexed), None).invalid_event == 0
    assert classify(403, hec_body(4, **indexed), None).invalid_event == 0
    assert classify(503, hec_body(9, **indexed), None).invalid_event is None
    assert classify(200, hec_body(0, **indexed), None).invalid_event is None
    assert classify(413, hec_body(0, **indexed), None).invalid_event is None


def test_retry_after_is_bounded_and_kept_for_retries_only() -> None:
    assert classify(429, hec_body(26), "0").retry_after_s == 0.0
    assert classify(429, hec_body(26), "1.5").retry_after_s == 1.5
    assert classify(429, hec_body(26), "-3").retry_after_s == 0.0
    assert classify(429, hec_body(26), "300").retry_after_s == 300.0
    assert classify(429, hec_body(26), "300.5").retry_after_s == 300.0
    assert classify(429, hec_body(26), "").retry_after_s is None
    assert classify(429, hec_body(26), None).retry_after_s is None
    for status, code in ((403, 4), (400, 6), (200, 0), (413, 0)):
        assert classify(status, hec_body(code), "5").retry_after_s is None


def test_text_is_kept_short_whatever_the_body() -> None:
    long_text = "x" * 500
    assert classify(400, json.dumps({"text": long_text, "code": 6}).encode(), None).text == (
        "x" * 200
    )
    assert classify(502, b"<html>" + b"y" * 500, None).text == "<html>" + "y" * 194
    assert classify(502, b"\xff" * 3, None).text == "\ufffd" * 3
    assert classify(400, b"[1, 2]", None).text == "[1, 2]"
    assert classify(400, b"[" + b"1," * 300 + b"1]", None).text == str([1] * 301)[:200]
    assert classify(400, b'{"code":6}', None).text == ""
    assert classify(400, b'{"code":6,"text":12}', None).text == "12"


@pytest.mark.parametrize(
    "body",
    [b'{"text":"Success","code":0}', b'{"text": "Success", "code": 0}',
     b'{"text":"Success","code":0,"ackId":3}'],
)
def test_the_usual_success_answer_is_classified_like_any_other(body: bytes) -> None:
    # The exact bytes Splunk sends skip the JSON parsing: the outcome must not tell.
    assert classify(200, body, None) == HecOutcome(Verdict.ACCEPTED, 200, 0, "Success")


@pytest.mark.parametrize("status", [199, 201, 302, 400, 503])
def test_the_success_body_under_another_status_is_classified_by_the_status(status: int) -> None:
    outcome = classify(status, b'{"text":"Success","code":0}', None)
    assert outcome.status == status
    assert (outcome.verdict is Verdict.ACCEPTED) is (status == 201)


def test_another_2xx_body_keeps_its_code_and_text() -> None:
    assert classify(200, b'{"text":"Zzz","code":5}', None) == HecOutcome(
        Verdict.ACCEPTED, 200, 5, "Zzz")
