"""HEC time from telemetry time: the per-millisecond tiebreak, zone-less and odd timestamps, and
request ids across platform events that do not start an invocation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from ext import config
from ext.sender.envelope import EnvelopeBuilder

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
    assert times[1000] == times[1001] == f"{EPOCH}.235"  # never .2351000


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
