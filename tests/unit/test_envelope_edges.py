"""Envelope edges: which lines count as the extension's own, where invocations end (the sender's
landmarks), numeric telemetry types, and timestamps that only look like Lambda's."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec
import pytest

from ext import config, schema
from ext.config import OWN_LOG_MARKER
from ext.sender import envelope
from ext.sender.envelope import EnvelopeBuilder

RID = "79b5e81f-9cdd-4145-b1f6-7c50ef8a2a36"
T = "2026-10-08T07:30:29.443Z"


def builder() -> EnvelopeBuilder:
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"})
    return EnvelopeBuilder(cfg, "my-fn")


def build(b: EnvelopeBuilder, *events: tuple[object, object]) -> list[dict[str, Any]]:
    """The envelopes sent, parsed (JSON: the tests index into them as they know their shape)."""
    body = json.dumps([{"time": T, "type": kind, "record": record} for kind, record in events])
    return [json.loads(raw) for raw in b.build(body.encode())]


def test_a_function_line_that_looks_like_the_extensions_own_is_forwarded() -> None:
    own_line = f"{OWN_LOG_MARKER} INFO sender started"
    b = builder()
    sent = build(b, ("function", own_line), ("extension", own_line))
    assert [e["event"] for e in sent] == [own_line]  # only the extension's own line is skipped
    assert b.skipped_own == 1


def test_invocation_bounds_are_landmarks_only_with_a_request_id() -> None:
    b = builder()
    build(
        b,
        ("platform.start", {"requestId": RID}),
        ("platform.runtimeDone", {"requestId": RID, "status": "success"}),
        ("platform.report", {"status": "success"}),  # no id: nothing the sender can answer
        ("platform.report", {"requestId": RID, "status": "success"}),
    )
    rid = json.dumps(RID).encode()
    assert b.landmarks == [("platform.start", rid, T), ("platform.runtimeDone", rid, T),
                           ("platform.report", rid, T)]


def test_a_drop_notice_is_a_landmark_counted_and_forwarded_as_it_came() -> None:
    b = builder()
    notice = {"droppedBytes": 900, "droppedRecords": 7, "reason": "fell behind"}
    sent = build(
        b,
        ("platform.logsDropped", notice),
        ("platform.logsDropped", {"droppedRecords": "many"}),  # no count: none taken, still one
        ("platform.logsDropped", {"droppedRecords": -3}),
    )
    assert b.landmarks == [("platform.logsDropped", b"", T)] * 3  # an end may be in it
    assert b.dropped_records == 7
    assert sent[0]["event"] == {"type": "platform.logsDropped", "record": notice}
    assert sent[0]["fields"]["telemetry_type"] == "platform.logsDropped"


@pytest.mark.parametrize(("stamp", "seconds"), [
    (T, datetime.fromisoformat(T.replace("Z", "+00:00")).timestamp()),
    ("2026-10-08T07:30:29.443+02:00",
     datetime.fromisoformat(T.replace("Z", "+00:00")).timestamp() - 7200),
    (1_791_000_000, 1_791_000_000.0),
    (1_791_000_000_500, 1_791_000_000.5),  # milliseconds
    ("not a time", None),
    (-1, None),
    # Before 1970 in any spelling, as a negative number: no time (HEC uses the index time);
    # Lambda's own shape read "-1" + ".500" as -1.5 where +00:00 gave -0.5.
    ("1969-12-31T23:59:59.500Z", None),
    ("1969-12-31T23:59:59.500+00:00", None),
    ("1969-12-31T23:59:59", None),
    ("1970-01-01T00:00:00.000Z", 0.0),
])
def test_an_event_time_in_epoch_seconds(stamp: str | int, seconds: float | None) -> None:
    assert builder().seconds(stamp) == (None if seconds is None else pytest.approx(seconds))


def test_a_numeric_type_keeps_its_fraction() -> None:
    sent = build(builder(), (5.5, "x"), (5.0, "y"), (7, "z"))
    kinds = [e["fields"]["telemetry_type"] for e in sent]
    assert kinds == ["5.5", "5", "7"]


def test_a_timestamp_with_an_unknown_zone_letter_gets_no_time() -> None:
    b = builder()
    for iso in ("2026-10-08T07:30:29.443x", "2026-10-08T07:30:29.443_"):
        assert b.epoch(iso) == b"null"  # HEC then stamps it at index time
    assert b.epoch(T) == b"1791444629.443"  # 2026-10-08T07:30:29Z in epoch seconds


def test_timestamps_of_lambdas_shape_only_take_the_fast_path() -> None:
    b = builder()
    for iso in ("2026-10-08T07:30:29-443Z", "2026-10-08T07:30:29.443Z0"):
        assert b.epoch(iso) == b"null", iso
    # ISO's comma decimal separator is read by the general parser, same instant
    assert b.epoch("2026-10-08T07:30:29,443Z") == b"1791444629.443"


def test_a_timestamp_seen_again_later_is_not_parsed_again() -> None:
    b = builder()
    parsed: list[str] = []
    real = b.epoch

    def counting(iso: str) -> bytes:
        parsed.append(iso)
        return real(iso)

    b.epoch = counting  # type: ignore[method-assign]
    other = "2026-10-08T07:30:30.001Z"
    sent = build(b, ("function", "a"), ("function", "b"))
    body = json.dumps([{"time": t, "type": "function", "record": "x"} for t in (other, T, other)])
    sent += [json.loads(raw) for raw in b.build(body.encode())]
    assert parsed == [T, other]
    assert [e["time"] for e in sent] == [1791444629.443, 1791444629.443001, 1791444630.001,
                                         1791444629.443, 1791444630.001]


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Makes the envelope module record each date-and-time text it parses; returns that record."""
    parsed: list[str] = []
    parse = envelope._utc_seconds

    def counting(text: str) -> int | None:
        parsed.append(text)
        return parse(text)

    monkeypatch.setattr(envelope, "_utc_seconds", counting)
    return parsed


def test_each_second_is_parsed_once_for_all_its_milliseconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = count_parses(monkeypatch)
    b = builder()
    stamps = [b.epoch(f"2026-10-08T07:30:29.{ms:03d}Z") for ms in (1, 2, 3)]
    stamps.append(b.epoch("2026-10-08T07:30:30.000Z"))
    assert stamps == [b"1791444629.001", b"1791444629.002", b"1791444629.003", b"1791444630.000"]
    assert parsed == ["2026-10-08T07:30:29", "2026-10-08T07:30:30"]


def test_numeric_times_in_seconds_and_milliseconds() -> None:
    b = builder()
    body = json.dumps([{"time": t, "type": "function", "record": "x"}
                       for t in (0, 0.5, 99_999_999_999, 1e11, 1_791_444_629_443, -1)])
    times = [json.loads(raw)["time"] for raw in b.build(body.encode())]
    # from 1e11 on (year 5138 in seconds) a number is taken as milliseconds
    assert times == [0.0, 0.5, 99_999_999_999.0, 100_000_000.0, 1_791_444_629.443, None]


def test_a_numeric_time_between_events_of_one_millisecond_keeps_their_order() -> None:
    b = builder()
    iso = "2026-10-08T07:30:29.443Z"
    body = json.dumps([{"time": t, "type": "function", "record": "x"}
                       for t in (iso, 1_791_444_629_443, iso, 5, iso)])
    stamps = [raw.split(b",", 1)[0] for raw in b.build(body.encode())]
    assert stamps == [b'{"time":1791444629.443', b'{"time":1791444629.443',
                      b'{"time":1791444629.443001', b'{"time":5.000',
                      b'{"time":1791444629.443002']


def test_events_after_one_nested_too_deep_are_kept() -> None:
    b = builder()
    deep = "[" * 5000 + "]" * 5000
    event = '{"time":"2026-10-08T07:30:28.235Z","type":"function","record":%s}'
    body = "[" + ",".join((event % '"before"', event % deep, event % '"after"')) + "]"
    events = [json.loads(e)["event"] for e in b.build(body.encode())]
    assert events[:2] == ["before", "after"]
    assert b.malformed == 1


def test_an_impossible_date_in_lambdas_shape_gets_no_time() -> None:
    assert builder().epoch("2026-13-45T07:30:29.443Z") == b"null"


def test_a_bracketed_word_longer_than_any_level_is_text() -> None:
    record = f"[ABCDEFGHIJ]\t{T}\t{RID}\tmessage\n"
    (sent,) = build(builder(), ("function", record))
    assert "level" not in sent["fields"] and "request_id" not in sent["fields"]
    (sent,) = build(builder(), ("function", f"[ABCDEFGHI]\t{T}\t{RID}\tmessage\n"))
    assert sent["fields"] == {  # nine letters: read as a level
        "function_name": "my-fn", "telemetry_type": "function", "request_id": RID,
        "level": "ABCDEFGHI"}


def test_the_envelope_fields_of_odd_kinds_are_cached_up_to_a_bound() -> None:
    b = builder()
    sent = build(b, *[(float(n) + 0.5, "x") for n in range(300)])
    assert [e["fields"]["telemetry_type"] for e in sent] == [
        f"{n}.5" for n in range(300)]
    assert len(b._kind_fields) == 256  # memory stays bounded whatever types arrive


def test_only_an_init_start_forgets_the_invocation_in_progress() -> None:
    b = builder()
    kinds = ["platform.extension", "platform.fault", "platform.initReport", "platform.initStart"]
    events: list[tuple[object, object]] = [("platform.start", {"requestId": RID})]
    for kind in kinds:
        events += [(kind, {"name": "x"}), ("function", "line")]
    sent = build(b, *events)
    lines = [e["fields"].get("request_id") for e in sent if e["event"] == "line"]
    assert lines == [RID, RID, RID, None]


def test_a_time_too_large_for_a_float_gets_no_time() -> None:
    body = b'[{"time":1' + b"0" * 400 + b',"type":"function","record":"x"}]'
    (raw,) = builder().build(body)
    assert json.loads(raw)["time"] is None


def test_a_request_id_must_be_followed_by_a_tab() -> None:
    b = builder()
    sent = build(b, ("function", f"[INFO]\t{T}\t{RID} message\n"),
                 ("function", f"[INFO]\t{T}\t{RID}\tmessage\n"))
    assert [e["fields"].get("request_id") for e in sent] == [None, RID]


def test_numeric_types_negative() -> None:
    body = b'[' + b",".join(
        b'{"time":"%s","type":%s,"record":"x"}' % (T.encode(), kind)
        for kind in (b"-5.5", b"-3", b"-3.0")) + b"]"
    kinds = [json.loads(e)["fields"]["telemetry_type"] for e in builder().build(body)]
    assert kinds == ["-5.5", "-3", "-3"]


def test_times_past_the_year_5138_even_in_milliseconds_get_no_time() -> None:
    body = json.dumps([{"time": t, "type": "function", "record": "x"}
                       for t in (1e14 - 1, 1e14, 1e15)])
    times = [json.loads(raw)["time"] for raw in builder().build(body.encode())]
    assert times == [99_999_999_999.999, None, None]


def test_the_per_second_cache_keeps_earlier_seconds_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = count_parses(monkeypatch)
    b = builder()
    b.epoch("2026-10-08T07:30:29.001Z")
    b.epoch("2026-10-08T07:30:30.001Z")
    b.epoch("2026-10-08T07:30:29.002Z")  # an earlier second, still cached
    assert len(parsed) == 2
    for n in range(4096):  # 4,098 seconds in all: one more than the cache holds
        b.epoch(f"2026-10-08T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z")
    assert len(b._second_cache) <= 4097


def test_the_timestamp_cache_stays_bounded() -> None:
    b = builder()
    body = json.dumps([{"time": f"2026-10-08T07:{n // 60000:02d}:{n // 1000 % 60:02d}."
                        f"{n % 1000:03d}Z", "type": "function", "record": "x"}
                       for n in range(8193)])  # one more than the cache holds
    assert len(b.build(body.encode())) == 8193
    assert len(b._stamps) <= 8192


def test_only_a_drop_notice_among_other_platform_kinds_is_a_drop_landmark() -> None:
    # Kinds either side of platform.logsDropped in sort order, neither bounding an invocation.
    b = builder()
    sent = build(b, ("platform.extension", {"name": "x", "state": "Ready"}),
                 ("platform.telemetrySubscription", {"name": "x", "state": "Subscribed"}))
    assert len(sent) == 2 and b.landmarks == [] and b.dropped_records == 0


def test_a_request_id_needs_its_dash_after_eight_hex_digits() -> None:
    dashless = "0123456789abcdef0123456789abcdef0123"  # as long as an id, all hex
    b = builder()
    sent = build(b, ("function", f"[INFO]\t{T}\t{dashless}\tmessage\n"),
                 ("function", f"[INFO]\t{T}\t{RID}\tmessage\n"))
    assert [e["fields"].get("request_id") for e in sent] == [None, RID]


def test_a_list_of_blank_bytes_that_is_not_empty_is_sent() -> None:
    # Every byte of `[ 1 ]` may belong to a blank record (escapes hold digits), yet it holds 1.
    body = json.dumps([{"time": T, "type": "function", "record": "x"}]).encode()
    body = body.replace(b'"record": "x"', b'"record": [ 1 ]')
    (raw,) = builder().build(body)
    assert json.loads(raw)["event"] == [1]


def test_a_record_of_blank_bytes_too_deep_to_decode_is_sent_not_taken_for_blank() -> None:
    deep = b"[ " + b"[" * 100_000 + b"]" * 100_000 + b" ]"
    b = builder()
    raw = b.envelope(schema.TelemetryEvent(T, "function", msgspec.Raw(deep)))
    assert raw is not None and raw.endswith(deep + b"}") and b.skipped_empty == 0
