"""ext/main/events.py: an Extensions API event parsed with the C scanner of `_json` (without
importing `json`), minijson as the fallback and as the judge of a body that is not JSON, and the
fields the main loop reads from it."""

from __future__ import annotations

import json
import sys

import pytest

from ext.main import events, minijson

INVOKE = (
    b'{"eventType":"INVOKE","deadlineMs":1700000003000,"requestId":"3da1f2dc",'
    b'"invokedFunctionArn":"arn:aws:lambda:us-east-1:1:function:f",'
    b'"tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12"}}'
)


@pytest.fixture
def fresh_scanner(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner is made at the first event; each test here starts before it."""
    monkeypatch.setattr(events, "_scanner", [])


@pytest.fixture
def without_json(monkeypatch: pytest.MonkeyPatch, fresh_scanner: None) -> None:
    """The main process has not imported `json`: the scanner then has no JSONDecodeError to
    raise for some bad bodies and fails with SystemError instead."""
    for name in ("json", "json.decoder", "json.scanner", "json.encoder"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def minijson_refused(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """minijson made to fail, counting the bodies it was given."""
    asked: list[bytes] = []

    def refuse(body: bytes) -> object:
        asked.append(body)
        raise minijson.JsonError("minijson was asked")

    monkeypatch.setattr(minijson, "loads", refuse)
    return asked


def test_an_invoke_event_gives_the_loop_its_fields(fresh_scanner: None) -> None:
    event = events.Event(INVOKE)
    assert (event.kind, event.request_id, event.deadline_ms, event.reason) == (
        "INVOKE", "3da1f2dc", 1700000003000, "")


def test_a_shutdown_event_gives_its_reason_and_a_float_deadline(fresh_scanner: None) -> None:
    event = events.Event(b'{"eventType":"SHUTDOWN","shutdownReason":"timeout","deadlineMs":5.5}')
    assert (event.kind, event.request_id, event.deadline_ms, event.reason) == (
        "SHUTDOWN", None, 5.5, "timeout")


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b'["not an object"]', ""), (b"{}", ""), (b"7", ""), (b'"INVOKE"', ""), (b"null", ""),
     (b'{"eventType":"X","requestId":5,"deadlineMs":"9","shutdownReason":null}', "X"),
     (b'{"requestId":["r"],"deadlineMs":null,"shutdownReason":""}', "")],
)
def test_fields_missing_or_of_another_type_read_as_none(
    body: bytes, kind: str, fresh_scanner: None,
) -> None:
    event = events.Event(body)
    assert (event.kind, event.request_id, event.deadline_ms, event.reason) == (kind, None, 0, "")


def test_a_valid_event_is_read_by_the_scanner_not_by_minijson(
    monkeypatch: pytest.MonkeyPatch, fresh_scanner: None,
) -> None:
    asked = minijson_refused(monkeypatch)
    for body in (INVOKE, INVOKE + b" \t\r\n", b'{"eventType":"SHUTDOWN"}'):
        assert events._parse_event(body) == json.loads(body)
    assert asked == []


def test_a_valid_event_is_read_by_the_scanner_also_without_json(
    monkeypatch: pytest.MonkeyPatch, without_json: None,
) -> None:
    asked = minijson_refused(monkeypatch)
    assert events.Event(INVOKE).request_id == "3da1f2dc"
    assert asked == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"eventType":"INVOKE"',  # the scanner fails with SystemError without json
        b'{"eventType":"INVOKE","x":"\x01"}',  # a control character: strict JSON refuses it
        b'{"eventType":}',  # StopIteration: no value where one must be
        b"",
        b'{"eventType":"INVOKE"} x',  # a value with text after it
        b'{"deadlineMs":NaN}', b'{"deadlineMs":-Infinity}', b"Infinity",  # not JSON
        b'{"eventType":"\xff"}',  # not UTF-8
    ],
)
@pytest.mark.parametrize("json_imported", [True, False])
def test_a_body_that_is_not_json_raises_minijsons_error(
    body: bytes, json_imported: bool, monkeypatch: pytest.MonkeyPatch, fresh_scanner: None,
) -> None:
    if not json_imported:
        for name in ("json", "json.decoder", "json.scanner", "json.encoder"):
            monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(minijson.JsonError):
        events.Event(body)


@pytest.mark.parametrize("body", [b' {"eventType":"INVOKE"}', b'\n{"eventType":"INVOKE"}'])
def test_a_body_the_scanner_cannot_start_on_is_read_by_minijson(
    body: bytes, fresh_scanner: None,
) -> None:
    assert events.Event(body).kind == "INVOKE"  # the scanner does not skip leading whitespace


def test_without_the_json_extension_module_minijson_reads_every_event(
    monkeypatch: pytest.MonkeyPatch, fresh_scanner: None,
) -> None:
    monkeypatch.setitem(sys.modules, "_json", None)  # its import then raises ImportError
    assert events.Event(INVOKE).request_id == "3da1f2dc"
    assert events._scanner == [None]
    assert events.Event(b'{"eventType":"SHUTDOWN"}').kind == "SHUTDOWN"
    with pytest.raises(minijson.JsonError):
        events.Event(b'{"eventType":"INVOKE"} x')


def test_the_scanner_is_made_once(fresh_scanner: None) -> None:
    events.Event(INVOKE)
    [scanner] = events._scanner
    events.Event(INVOKE)
    assert events._scanner == [scanner] and scanner is not None
