"""HEC time from telemetry time: the per-millisecond tiebreak, zone-less and odd timestamps, and
request ids across platform events that do not start an invocation."""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Iterator
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext import config
from ext.sender.envelope import EnvelopeBuilder
from ext.sender.envelope import _naive_utc_seconds as naive_utc_seconds
from ext.sender.envelope import _slow_epoch as slow_epoch

RID = "79b5e81f-9cdd-4145-b1f6-7c50ef8a2a36"
T = "2026-10-08T07:30:28.235Z"
EPOCH = "1791444628"  # 2026-10-08T07:30:28Z


def builder() -> EnvelopeBuilder:
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"})
    return EnvelopeBuilder(cfg, "my-fn")


def raw_times(b: EnvelopeBuilder, times: list[str], kind: str = "function") -> list[str]:
    batch = [{"time": t, "type": kind, "record": f"line {n}"} for n, t in enumerate(times)]
    out = b.build(json.dumps(batch).encode())
    assert len(out) == len(times)
    # The time as written (decimal text), not as a float would round it.
    return [raw.split(b'"time":', 1)[1].split(b",", 1)[0].decode() for raw in out]


def test_events_of_one_millisecond_get_microsecond_tiebreaks_in_order() -> None:
    assert raw_times(builder(), [T, T, T, "2026-10-08T07:30:28.236Z", T]) == [
        f"{EPOCH}.235", f"{EPOCH}.235001", f"{EPOCH}.235002", f"{EPOCH}.236", f"{EPOCH}.235",
    ]


def test_the_tiebreak_stops_at_999_rather_than_change_the_millisecond() -> None:
    times = raw_times(builder(), [T] * 1002)
    assert times[999] == f"{EPOCH}.235999"
    # Never .2351000, nor back to .235, before the events of the same millisecond preceding.
    assert times[1000] == times[1001] == f"{EPOCH}.235999"
    assert times == sorted(times, key=float)


def test_unreadable_times_are_null_and_never_get_a_tiebreak() -> None:
    b = builder()
    out = b.build(json.dumps(
        [{"time": "soon", "type": "function", "record": f"l{n}"} for n in range(3)]
    ).encode())
    assert [json.loads(raw)["time"] for raw in out] == [None, None, None]


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    previous = time.tzname
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "America/New_York")
        time.tzset()
        yield
    time.tzset()
    assert time.tzname == previous


@pytest.mark.usefixtures("far_from_utc")
def test_a_time_without_a_zone_is_utc_whatever_the_local_zone() -> None:
    assert raw_times(builder(), ["2026-10-08T07:30:28.5", "2026-10-08T07:30:28"]) == [
        f"{EPOCH}.500", f"{EPOCH}.000",
    ]
    assert raw_times(builder(), ["2026-10-08T09:30:28.5+02:00"]) == [f"{EPOCH}.500"]


def test_a_24_character_time_that_is_not_zulu_milliseconds_is_parsed_in_full() -> None:
    # Same length as "...28.235Z" but four fraction digits and no zone: rounded, not cut.
    assert raw_times(builder(), ["2026-10-08T07:30:28.9996"]) == ["1791444629.000"]
    assert raw_times(builder(), ["2026-10-08T07:30:28.123+"]) == ["null"]
    assert raw_times(builder(), ["2026-10-08T07:30:28x123Z"]) == ["null"]  # not half-read


def test_platform_events_that_are_not_a_start_keep_the_invocations_id() -> None:
    b = builder()
    for kind, record in (
        ("platform.start", {"requestId": RID}),
        ("platform.logsDropped", {"reason": "x", "droppedRecords": 1, "droppedBytes": 9}),
        ("platform.telemetrySubscription", {"name": "ext", "state": "Subscribed"}),
        ("platform.restoreStart", {}),
    ):
        b.build(json.dumps([{"time": T, "type": kind, "record": record}]).encode())
    (raw,) = b.build(json.dumps([{"time": T, "type": "function", "record": "x"}]).encode())
    assert json.loads(raw)["fields"]["request_id"] == RID


def test_an_unknown_kind_is_filed_as_a_platform_event() -> None:
    (raw,) = builder().build(
        json.dumps([{"time": T, "type": "custom.kind", "record": {"a": 1}}]).encode()
    )
    env = json.loads(raw)
    assert env["sourcetype"] == "aws:lambda:platform"
    assert env["event"] == {"type": "custom.kind", "record": {"a": 1}}


def strptime_epoch(iso: str) -> bytes:
    """The former implementation (strptime per new second), the oracle for the digit arithmetic:
    same result for every input, invalid ones included (its milliseconds now checked too), but
    before 1970, where it glued the milliseconds onto a negative second (-1 and .999 made
    -1.999, not -0.001): no time there now, as for a negative number."""
    ms = iso[20:23]
    if len(iso) == 24 and iso[19] == "." and iso[23] == "Z" and ms.isdigit() and ms.isascii():
        try:
            parsed = datetime.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return slow_epoch(iso)
        whole = calendar.timegm(parsed.timetuple())
        return b"null" if whole < 0 else str(whole).encode() + b"." + iso[20:23].encode()
    return slow_epoch(iso)


def _field(width: int) -> st.SearchStrategy[str]:
    """A date or clock field: in and out of range, and forms strptime also reads (" 5", "+5",
    Arabic-Indic or full-width digits) or rejects (a superscript two)."""
    return st.one_of(
        st.integers(0, 10**width - 1).map(lambda n: f"{n:0{width}d}"),
        st.sampled_from([" 5", "+5", "5 ", "\u0663", "\u0662\u0660\u0662\u0666",
                         "\uff12\uff10\uff12\uff16", "\uff11\uff12", "\u00b2", "-1", "0x"]),
        st.text(alphabet="0123456789 +-:T.", min_size=width, max_size=width),
    )


_separators = st.sampled_from(["-", "-", "-", "T", "t", ":", " ", "/"])


@st.composite
def zulu_like_times(draw: st.DrawFn) -> str:
    """Mostly `YYYY-MM-DDTHH:MM:SS.mmmZ` with every part varied; 24 characters or not."""
    parts = [draw(_field(4)), draw(st.sampled_from(["-", "-", "/", "t"])), draw(_field(2)),
             draw(st.sampled_from(["-", "-", ":"])), draw(_field(2)),
             draw(st.sampled_from(["T", "T", "t", " "])), draw(_field(2)),
             draw(st.sampled_from([":", ":", "-"])), draw(_field(2)),
             draw(_separators), draw(_field(2)),
             draw(st.sampled_from([".", ".", ","])), draw(_field(3)),
             draw(st.sampled_from(["Z", "Z", "z", "+"]))]
    return "".join(parts)


@given(st.one_of(
    zulu_like_times(),
    st.dates(min_value=date(1, 1, 1)).map(lambda d: f"{d.isoformat():0>10}T23:59:59.999Z"),
    st.datetimes().map(lambda d: f"{d:%Y-%m-%dT%H:%M:%S}.{d.microsecond // 1000:03d}Z"),
))
@settings(max_examples=200)
def test_hec_time_from_a_telemetry_time_is_what_strptime_gave(iso: str) -> None:
    assert SHARED.epoch(iso) == strptime_epoch(iso)
    assert SHARED.epoch(iso) == strptime_epoch(iso)  # again, from the per-second cache


SHARED = builder()  # one for every example: its per-second cache is part of what is tested


def test_the_edges_of_the_calendar_match_strptime() -> None:
    b = builder()
    for iso in ("1970-01-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z", "2024-02-29T12:00:00.000Z",
                "2023-02-29T12:00:00.000Z", "2026-04-31T00:00:00.000Z", "0000-01-01T00:00:00.000Z",
                "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "2026-10-08T24:00:00.000Z",
                "2026-10-08T23:60:00.000Z", "2026-10-08T23:59:60.000Z", "2026-10-08T23:59:61.000Z",
                "2026-13-08T07:30:28.235Z", "2026-00-08T07:30:28.235Z", "2026-10-00T07:30:28.235Z",
                "2026-10-08t07:30:28.235Z", "2026-10- 8T07:30:28.235Z", "2026-10-08T0²:30:28.235Z",
                "٢٠٢٦-10-08T07:30:28.235Z", "2026-10-08T07:30:+8.235Z"):
        assert b.epoch(iso) == strptime_epoch(iso), iso
    assert b.epoch(T) == f"{EPOCH}.235".encode()
    assert b.epoch("2026-10-08t07:30:28.235Z") == f"{EPOCH}.235".encode()  # strptime's reading
    assert b.epoch("2023-02-29T12:00:00.000Z") == b"null"


@pytest.mark.parametrize("stamp", ["2026-10-08T07:30:28.abcZ", "2026-10-08T07:30:28.2 5Z",
                                   "2026-10-08T07:30:28.\u0662\u0663\u0665Z",
                                   "2026-10-08T07:30:28.23xZ", "2026-10-08T07:30:28.23\u0665Z",
                                   "2026-10-08T07:30:28.x35Z"])
def test_milliseconds_that_are_not_digits_leave_the_envelope_valid_json(stamp: str) -> None:
    b = builder()
    b.epoch(T)  # the second is known: the per-event shortcut is taken
    for _ in range(2):
        (raw,) = b.build(json.dumps([{"time": stamp, "type": "function", "record": "x"}]).encode())
        assert json.loads(raw)["time"] is None  # HEC uses the index time; the line is kept


@pytest.mark.parametrize("iso", ["2026/10/08T07:30:28.235Z", "2026-10-08T07-30-28.235Z",
                                 "2026-10-08T07:30.28.235Z", "2026-10:08T07:30:28.235Z",
                                 "2026,10,08T07:30:28.235Z", "2026-10-08T07:30,28.235Z"])
def test_a_time_with_other_separators_is_not_a_time(iso: str) -> None:
    b = builder()
    b.epoch(T)  # the second is known: the per-event shortcut must not take it either
    assert b.epoch(iso) == b"null" == strptime_epoch(iso)
    (raw,) = b.build(json.dumps([{"time": iso, "type": "function", "record": "x"}]).encode())
    assert json.loads(raw)["time"] is None


@settings(max_examples=500)
@given(st.datetimes())
def test_a_zone_less_time_is_read_as_utc_seconds_as_calendar_timegm_reads_it(
    moment: datetime,
) -> None:
    assert naive_utc_seconds(moment) == calendar.timegm(moment.timetuple())
