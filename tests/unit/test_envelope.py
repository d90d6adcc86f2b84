from __future__ import annotations

import calendar
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext import config
from ext.sender.envelope import EnvelopeBuilder

RID = "79b5e81f-9cdd-4145-b1f6-7c50ef8a2a36"


def builder(**extra: str) -> EnvelopeBuilder:
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t", **extra})
    return EnvelopeBuilder(cfg, "my-fn")


def one(b: EnvelopeBuilder, event: Mapping[str, object]) -> dict[str, object]:
    out = b.build(json.dumps([event]).encode())
    assert len(out) == 1
    parsed: dict[str, object] = json.loads(out[0])
    return parsed


def test_text_log_line_from_logging_module() -> None:
    line = f"[ERROR]\t2026-10-08T07:30:29.443Z\t{RID}\tWidget failed\n"
    env = one(builder(), {"time": "2026-10-08T07:30:29.443Z", "type": "function", "record": line})
    assert env["event"] == line[:-1]
    assert env["time"] == datetime(2026, 10, 8, 7, 30, 29, 443000, tzinfo=UTC).timestamp()
    assert env["sourcetype"] == "aws:lambda:function"
    assert env["source"] == "lambda:my-fn"
    assert env["host"] == "my-fn"
    assert "index" not in env
    assert env["fields"] == {
        "function_name": "my-fn",
        "telemetry_type": "function",
        "request_id": RID,
        "level": "ERROR",
    }


def test_json_log_record_and_overrides() -> None:
    b = builder(
        SPLUNK_INDEX="lambda", SPLUNK_SOURCETYPE="_json", SPLUNK_SOURCE="src", SPLUNK_HEC_HOST="hst"
    )
    record = {"timestamp": "x", "level": "WARN", "requestId": RID, "message": "m", "n": [1, 2]}
    env = one(b, {"time": "2026-10-08T07:30:29.443Z", "type": "function", "record": record})
    assert env["event"] == record
    assert (env["index"], env["sourcetype"], env["source"], env["host"]) == (
        "lambda",
        "_json",
        "src",
        "hst",
    )
    fields = env["fields"]
    assert isinstance(fields, dict)
    assert fields["level"] == "WARN" and fields["request_id"] == RID


def test_platform_records_and_request_tracking() -> None:
    b = builder()
    start = one(
        b,
        {
            "time": "2026-10-08T07:30:28.235Z",
            "type": "platform.start",
            "record": {"requestId": RID, "version": "$LATEST"},
        },
    )
    assert start["event"] == {
        "type": "platform.start",
        "record": {"requestId": RID, "version": "$LATEST"},
    }
    assert start["sourcetype"] == "aws:lambda:platform"
    printed = one(b, {"time": "2026-10-08T07:30:28.236Z", "type": "function", "record": "hi\n"})
    assert printed["event"] == "hi"
    fields = printed["fields"]
    assert isinstance(fields, dict) and fields["request_id"] == RID and "level" not in fields
    one(b, {"time": "2026-10-08T07:30:30.000Z", "type": "platform.initStart", "record": {}})
    later = one(b, {"time": "2026-10-08T07:30:30.001Z", "type": "function", "record": "x"})
    assert isinstance(later["fields"], dict) and "request_id" not in later["fields"]


def test_own_log_lines_skipped_unless_asked() -> None:
    line = f"{config.OWN_LOG_MARKER} INFO sender: spool opened"
    event = {"time": "2026-10-08T07:30:28.235Z", "type": "extension", "record": line}
    b = builder()
    assert b.build(json.dumps([event]).encode()) == []
    assert b.skipped_own == 1
    assert one(builder(SPLUNK_FORWARD_OWN_LOGS="true"), event)["event"] == line


@pytest.mark.parametrize("level", ["WARNING", "ERROR", "CRITICAL"])
def test_own_warnings_and_errors_always_forwarded(level: str) -> None:
    # With CloudWatch Logs denied, Splunk is the only place they can be seen (issue 11).
    line = f"{config.OWN_LOG_MARKER} {level} sender: HEC is not accepting events"
    event = {"time": "2026-10-08T07:30:28.235Z", "type": "extension", "record": line}
    b = builder()
    forwarded = one(b, event)
    assert forwarded["event"] == line
    assert forwarded["sourcetype"] == "aws:lambda:extension"
    assert b.skipped_own == 0


def test_malformed_events_salvaged_and_counted() -> None:
    b = builder()
    body = json.dumps(
        [
            {"time": None, "type": "function", "record": "bad time"},
            3,
            {"time": "2026-10-08T07:30:28.235Z", "type": "function", "record": "ok"},
        ]
    )
    out = b.build(body.encode())
    notice = {"type": "splunk-extension.malformed-events", "malformed_events": 2}
    assert [json.loads(e)["event"] for e in out] == ["ok", notice]
    assert b.malformed == 2
    [alone] = b.build(b"not json")
    assert json.loads(alone)["event"]["malformed_events"] == 1 and b.malformed == 3


def test_numeric_time_and_type_are_kept() -> None:
    b = builder()
    seconds = one(b, {"time": 1791444629.443, "type": "function", "record": "s"})
    assert (seconds["event"], seconds["time"]) == ("s", 1791444629.443)
    millis = one(b, {"time": 1791444629443, "type": "function", "record": "ms"})
    assert millis["time"] == 1791444629.443
    typed = one(b, {"time": "2026-10-08T07:30:28.235Z", "type": 7, "record": {"a": 1}})
    assert typed["event"] == {"type": "7", "record": {"a": 1}}
    assert typed["sourcetype"] == "aws:lambda:platform"
    for odd in (-5, 1e300, 10**30):
        assert one(b, {"time": odd, "type": "function", "record": "x"})["time"] is None
    assert b.malformed == 0


def test_records_nested_past_the_decoder_limit_cost_only_their_event() -> None:
    b = builder()
    deep = "[" * 5000 + "]" * 5000
    body = ('[{"time":"2026-10-08T07:30:28.235Z","type":"function","record":"ok"},'
            '{"time":"2026-10-08T07:30:28.235Z","type":"function","record":' + deep + "}]")
    out = b.build(body.encode())
    notice = {"type": "splunk-extension.malformed-events", "malformed_events": 1}
    assert [json.loads(e)["event"] for e in out] == ["ok", notice]
    assert b.malformed == 1


def test_own_notices_use_the_extension_sourcetype() -> None:
    env = one(builder(), {"time": "2026-10-08T07:30:28.235Z",
                          "type": "splunk-extension.intake-dropped", "record": {"dropped": 1}})
    assert env["sourcetype"] == "aws:lambda:extension"
    assert env["event"] == {"type": "splunk-extension.intake-dropped", "record": {"dropped": 1}}


def test_empty_lines_skipped() -> None:
    b = builder()
    body = [
        {"time": "2026-10-08T07:30:28.235Z", "type": "function", "record": r}
        for r in ("", "\n", None)
    ]
    assert b.build(json.dumps(body).encode()) == []
    assert b.skipped_empty == 3


def test_same_millisecond_keeps_order() -> None:
    events = [
        {"time": "2026-10-08T07:30:28.235Z", "type": "function", "record": f"l{i}"}
        for i in range(3)
    ]
    out = [json.loads(e, parse_float=Decimal) for e in builder().build(json.dumps(events).encode())]
    times = [e["time"] for e in out]
    assert times == sorted(times) and len(set(times)) == 3
    assert all(int(t * 1000) == int(times[0] * 1000) for t in times)


def test_odd_timestamps() -> None:
    b = builder()
    env = one(b, {"time": "2026-10-08T07:30:28.5+00:00", "type": "function", "record": "x"})
    assert env["time"] == datetime(2026, 10, 8, 7, 30, 28, 500000, tzinfo=UTC).timestamp()
    env = one(b, {"time": "yesterday", "type": "function", "record": "x"})
    assert env["time"] is None


base = datetime(2020, 1, 1, tzinfo=UTC)
instants = st.integers(min_value=0, max_value=20 * 365 * 86400 * 1000).map(
    lambda ms: base + timedelta(milliseconds=ms)
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
json_objects = st.dictionaries(
    st.text(max_size=10),
    st.recursive(json_scalars, lambda c: st.lists(c, max_size=3), max_leaves=5),
    min_size=1,
    max_size=5,
)
records = st.one_of(st.text(min_size=1, max_size=80).filter(lambda t: t.strip("\n")), json_objects)
kinds = st.sampled_from(["function", "extension", "platform.report", "platform.start"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(instants, kinds, records), max_size=20))
def test_any_batch_maps_losslessly(items: list[tuple[datetime, str, object]]) -> None:
    batch = [
        {
            "time": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
            "type": kind,
            "record": rec,
        }
        for t, kind, rec in items
    ]
    out = builder(SPLUNK_FORWARD_OWN_LOGS="true").build(json.dumps(batch).encode())
    # Lines of whitespace only are skipped, as HEC would refuse them (code 13); nothing else.
    kept = [(t, kind, rec) for t, kind, rec in items
            if kind.startswith("platform.") or not isinstance(rec, str) or rec.strip(" \t\r\n")]
    assert len(out) == len(kept)
    for raw, (t, kind, rec) in zip(out, kept, strict=True):
        env = json.loads(raw, parse_float=Decimal)  # exact: HEC time is decimal text
        epoch_ms = calendar.timegm(t.timetuple()) * 1000 + t.microsecond // 1000
        assert int(env["time"] * 1000) == epoch_ms
        if kind.startswith("platform."):
            assert env["event"] == {"type": kind, "record": rec}
        elif isinstance(rec, str):
            assert env["event"] == (rec[:-1] if rec.endswith("\n") else rec)
        else:
            assert env["event"] == rec
        assert env["fields"]["telemetry_type"] == kind


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(instants, kinds, records), max_size=30),
       st.integers(min_value=1, max_value=12), st.booleans())
def test_a_batch_built_in_parts_is_the_batch_built_at_once(
    items: list[tuple[datetime, str, object]], part_events: int, malformed: bool,
) -> None:
    batch = [
        {"time": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
         "type": kind, "record": rec}
        for t, kind, rec in items
    ]
    # A malformed element: the batch is salvaged, the last part ends with the notice of it.
    payload = json.dumps(batch + (["not an event"] if malformed else [])).encode()
    whole = builder().build(payload)
    parts = list(builder().build_parts(payload, part_events))
    joined = [e for part in parts for e in part]
    if malformed:  # the notice is stamped when it is made
        assert json.loads(joined.pop())["event"] == json.loads(whole.pop())["event"]
    assert joined == whole
    assert len(parts) == max(1, -(-len(batch) // part_events))  # the last takes the rest
    assert not malformed or b"malformed-events" in parts[-1][-1]
    assert all(len(part) <= part_events for part in parts[:-1])


@pytest.mark.parametrize("record", ["   \n", " ", "\t\t", "\n\n", " \r\n", [], {}])
def test_blank_lines_are_skipped_as_hec_would_refuse_them(record: object) -> None:
    b = builder()
    body = [{"time": "2026-10-08T07:30:28.235Z", "type": "function", "record": record}]
    assert b.build(json.dumps(body).encode()) == []
    assert b.skipped_empty == 1


@pytest.mark.parametrize("record", ["\\n", "\\\n", " tn", "\tat Foo.bar(Foo.java:1)", "\\t", ["x"],
                                    " [] ", "\u00a0"])
def test_lines_with_something_in_them_are_kept(record: object) -> None:
    b = builder()
    body = [{"time": "2026-10-08T07:30:28.235Z", "type": "function", "record": record}]
    (env,) = b.build(json.dumps(body).encode())
    kept = record[:-1] if isinstance(record, str) and record.endswith("\n") else record
    assert json.loads(env)["event"] == kept and b.skipped_empty == 0


def test_whitespace_written_as_escapes_is_blank_a_no_break_space_is_not() -> None:
    b = builder()
    body = b'[%s]' % b",".join(
        b'{"time":"2026-10-08T07:30:28.235Z","type":"function","record":%s}' % r
        for r in (b'"\\u0020\\u0009\\u000a"', b'"\\u00a0"', b'"add"'))
    assert [json.loads(e)["event"] for e in b.build(body)] == ["\u00a0", "add"]
    assert b.skipped_empty == 1
