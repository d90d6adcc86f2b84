from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.main import minijson

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400)
@given(values, st.booleans())
def test_parses_what_json_writes(value: object, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=None if ascii_only else 1)
    assert minijson.loads(text.encode()) == json.loads(text)


@settings(max_examples=400)
@given(st.text(max_size=30))
def test_agrees_with_json_on_arbitrary_text(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            minijson.loads(text.encode())
        return
    if isinstance(expected, float) and not math.isfinite(expected):
        return  # json accepts NaN/Infinity, which are not JSON
    assert minijson.loads(text.encode()) == expected


@given(st.text())
def test_dumps_str_round_trips(text: str) -> None:
    assert json.loads(minijson.dumps_str(text)) == text


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"{",
        b'{"a":}',
        b"[1,]",
        b"01",
        b"1.",
        b"-",
        b'"\\x"',
        b'{"a":1}x',
        b"\xff",
        b'"\x01"',
        b"tru",
        b"[" * 100 + b"]" * 100,
    ],
)
def test_rejects_invalid(bad: bytes) -> None:
    with pytest.raises(ValueError):
        minijson.loads(bad)


def test_invoke_event() -> None:
    body = (
        b'{"eventType":"INVOKE","deadlineMs":1700000003000,"requestId":"3da1f2dc",'
        b'"invokedFunctionArn":"arn:aws:lambda:us-east-1:1:function:f",'
        b'"tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12"}}'
    )
    event = minijson.loads(body)
    assert isinstance(event, dict)
    assert event["deadlineMs"] == 1700000003000 and event["requestId"] == "3da1f2dc"


# Text drawn from JSON's own characters (and a few that break it) reaches its grammar's corners
# far more often than arbitrary text: escapes, exponents, nesting, words cut short.
NEAR_JSON = '{}[]",:0123456789.eE+- \t\n\\/ubfnrtlsaxD8C\x01é'


@settings(max_examples=400)
@given(st.text(alphabet=NEAR_JSON, max_size=24))
def test_agrees_with_json_on_near_json_text(text: str) -> None:
    data = text.encode()
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(minijson.JsonError):
            minijson.loads(data)
        return
    if isinstance(expected, float) and not math.isfinite(expected):
        return  # json accepts NaN/Infinity, which are not JSON
    value = minijson.loads(data)
    assert value == expected and type(value) is type(expected)
