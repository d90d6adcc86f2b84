from __future__ import annotations

import pytest

from ext.hec import Verdict, classify


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
        (400, b"<html>bad gzip</html>", Verdict.POISON),
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
