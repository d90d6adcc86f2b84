"""Body parsing of the embedded HEC receiver (ext.local.hec.body_parser): pure, no sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.local.hec.body_parser import ParseContext, RawMeta, parse_event_body, parse_raw_body
from ext.local.hec.model import HecToken

TOKEN = HecToken(name="t", value="v", indexes=("a", "b"), default_index="a", sourcetype="tst")


def ctx(**overrides: object) -> ParseContext:
    args: dict[str, object] = {"token": TOKEN, "host": "10.0.0.1", "max_event_size": 100}
    args.update(overrides)
    return ParseContext(**args)  # type: ignore[arg-type]


def events_of(body: bytes) -> list[str]:
    outcome = parse_event_body(body, ctx())
    assert outcome.error_code is None, outcome
    return [e.event for e in outcome.events]


def test_defaults_come_from_token_and_client() -> None:
    (event,) = parse_event_body(b'{"event":"x"}', ctx()).events
    assert (event.host, event.source, event.sourcetype, event.index_name) == (
        "10.0.0.1",
        "http:t",
        "tst",
        "a",
    )
    assert (event.time, event.fields, event.kind) == (None, None, "event")


def test_time_accepts_number_and_numeric_string() -> None:
    outcome = parse_event_body(b'{"event":1,"time":5}{"event":2,"time":"1.25"}', ctx())
    assert [e.time for e in outcome.events] == [5.0, 1.25]


def test_boundary_inside_string_is_not_split() -> None:
    # "}\n{" cannot appear raw in a string, but "} {" can: it must stay one event.
    assert events_of(b'{"event":"a} {b"}\n{"event":"c"}') == ['"a} {b"', '"c"']


def test_newline_between_nested_objects_is_not_a_boundary() -> None:
    # Invalid as one value; splitting here must not make it look valid.
    outcome = parse_event_body(b'{"event":[{"a":1}\n{"b":2}]}', ctx())
    assert (outcome.error_code, outcome.event_number) == (6, 0)


def test_false_split_cannot_hide_a_missing_comma() -> None:
    outcome = parse_event_body(b'{"event":1}\n{"event":[{}\n{}]},{"event":2}', ctx())
    assert (outcome.error_code, outcome.event_number, len(outcome.events)) == (6, 1, 1)


def test_array_form_and_errors_inside_it() -> None:
    assert events_of(b' [ {"event":1} , {"event":2} ] ') == ["1", "2"]
    outcome = parse_event_body(b'[{"event":1},{"event":""}]', ctx())
    assert (outcome.error_code, outcome.event_number) == (13, 1)
    assert parse_event_body(b'[{"event":1},', ctx()).error_code == 6


def test_event_size_limit_is_on_the_event_value() -> None:
    fits = b'{"event":"' + b"x" * 98 + b'"}'
    assert events_of(fits) == ['"' + "x" * 98 + '"']
    outcome = parse_event_body(fits + b'{"event":"' + b"x" * 99 + b'"}', ctx())
    assert (outcome.error_code, outcome.event_number) == (6, 1)


@pytest.mark.parametrize(("quirk", "number"), [(True, 2), (False, 1)])
def test_code_7_quirk_is_configurable(quirk: bool, number: int) -> None:
    outcome = parse_event_body(
        b'{"event":1,"index":"b"}{"event":1,"index":"z"}', ctx(index_quirk=quirk)
    )
    assert (outcome.error_code, outcome.event_number) == (7, number)


def test_metric_event_kind() -> None:
    body = b'{"event":"metric","fields":{"metric_name:x":1}}'
    (event,) = parse_event_body(body, ctx(metrics_indexes=frozenset({"a"}))).events
    assert event.kind == "metric" and event.fields == '{"metric_name:x":1}'


def test_invalid_utf8_in_event_is_code_6() -> None:
    outcome = parse_event_body(b'{"event":{"a":"\xff"}}', ctx())
    assert outcome.error_code == 6


def test_raw_body_lines_and_meta() -> None:
    outcome = parse_raw_body(b"one\n\r\ntwo\n", RawMeta(sourcetype="s", time="7"), ctx())
    assert [(e.event, e.sourcetype, e.time, e.kind) for e in outcome.events] == [
        ("one", "s", 7.0, "raw"),
        ("two", "s", 7.0, "raw"),
    ]
    assert parse_raw_body(b"x", RawMeta(index="nope"), ctx()).error_code == 7
    assert parse_raw_body(b"x", RawMeta(time="1.5"), ctx()).error_code == 6


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
).filter(lambda v: v not in (None, {}, []) and not (isinstance(v, str) and not v.strip()))


@settings(max_examples=200)
@given(
    items=st.lists(values, min_size=1, max_size=8),
    seps=st.lists(st.sampled_from(["", " ", "\n", "\r\n\t "]), min_size=8, max_size=8),
    compact=st.booleans(),
)
def test_concatenated_values_round_trip_byte_equal(
    items: list[object], seps: list[str], compact: bool
) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    raws = [json.dumps(v, separators=separators, ensure_ascii=False) for v in items]
    body = "".join(f'{sep}{{"event": {raw}}}' for sep, raw in zip(seps, raws, strict=False))
    outcome = parse_event_body(body.encode(), ctx(max_event_size=10**6))
    assert outcome.error_code is None
    assert [e.event for e in outcome.events] == raws


@settings(max_examples=300)
@given(body=st.binary(max_size=120))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    outcome = parse_event_body(body, ctx())
    assert outcome.error_code in (None, 5, 6, 7, 12, 13, 15)
    if outcome.error_code not in (None, 5):
        assert outcome.event_number == len(outcome.events) + (1 if outcome.error_code == 7 else 0)
