"""Metric events in the embedded HEC receiver: Splunk's checks, listing and aggregation."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ext.local.hec.body_parser import ParseContext, parse_event_body
from ext.local.hec.model import HecToken, ParsedEvent
from ext.local.hec.store import (
    EventStore,
    RequestRecord,
    aggregate,
    list_metrics,
    metric_stats,
)

TOKEN = HecToken(name="t", value="v", indexes=("main", "m2"), default_index="main",
                 metric_indexes=("m",))


def parse(*envelopes: dict[str, object], **ctx: object) -> tuple[int | None, int]:
    body = "\n".join(json.dumps(e) for e in envelopes).encode()
    outcome = parse_event_body(body, ParseContext(TOKEN, "h", 10_000, **ctx))  # type: ignore[arg-type]
    return outcome.error_code, len(outcome.events)


def metric(index: str = "m", fields: dict[str, object] | None = None) -> dict[str, object]:
    return {"event": "metric", "index": index, "fields": fields or {"metric_name:a.b_ms": 1.5}}


def test_metric_to_a_metrics_index_is_accepted() -> None:
    fields: dict[str, object] = {"metric_name:a": 1, "metric_name:b": "2.5", "fn": "f"}
    assert parse(metric(fields=fields)) == (None, 1)


def test_metric_to_an_events_index_is_rejected() -> None:
    assert parse({"event": "x"}, metric(index="main")) == (6, 1)


def test_event_to_a_metrics_index_is_rejected() -> None:
    assert parse({"event": "x", "index": "m"}) == (6, 0)


def test_receiver_level_metrics_index() -> None:
    assert parse(metric(index="m2"), metrics_indexes=frozenset({"m2"})) == (None, 1)
    assert parse({"event": "x", "index": "m2"}, metrics_indexes=frozenset({"m2"})) == (6, 0)


@pytest.mark.parametrize("fields", [
    {"fn": "no metric at all"},
    {"metric_name:a": "fast"},
    {"metric_name:a": True},
    {"metric_name:a": None},
    {"metric_name:a": [1, 2]},
    {"metric_name:": 1},
    {"metric_name:a": 1, "metric_name:b": "NaN"},
])
def test_metric_fields_must_be_named_numbers(fields: dict[str, object]) -> None:
    assert parse(metric(fields=fields)) == (6, 0)


@settings(suppress_health_check=[HealthCheck.too_slow])  # the session's first example
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=4),
                                                      st.floats(allow_nan=False)), max_size=4))
def test_accepted_iff_some_metric_name_and_all_numeric(fields: dict[str, object]) -> None:
    names = [k for k in fields if k.startswith("metric_name:")]
    valid = bool(names) and all(k != "metric_name:" and _numeric(fields[k]) for k in names)
    code, _ = parse({"event": "metric", "index": "m", "fields": fields})
    assert (code is None) == valid


def _numeric(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def store_with(tmp_path: Path, points: Sequence[tuple[float, Mapping[str, object]]]) -> EventStore:
    store = EventStore(tmp_path / "hec.db")
    events = [ParsedEvent(t, "h", "s", "st", "m", json.dumps(f), '"metric"', "metric")
              for t, f in points]
    events.append(ParsedEvent(1.0, "h", "s", "st", "main", '{"fn":"x"}', '"log"', "event"))
    store.record(RequestRecord(store.next_request_id(), 0.0, "POST", "/", 200, 0, 1, "t", None,
                               None), events)
    return store


def test_list_and_aggregate_metrics(tmp_path: Path) -> None:
    points = [(100.0 + n, {"function_name": "a" if n % 2 else "b",
                           "metric_name:aws.lambda.duration_ms": float(n),
                           "metric_name:aws.lambda.invocations": 1}) for n in range(1, 11)]
    store = store_with(tmp_path, points)
    listed = {m["metric"]: m for m in list_metrics(store)}
    assert listed["aws.lambda.duration_ms"] == {
        "metric": "aws.lambda.duration_ms", "points": 10, "indexes": ["m"],
        "dimensions": ["function_name"]}
    assert set(listed) == {"aws.lambda.duration_ms", "aws.lambda.invocations"}
    rows = metric_stats(store, "aws.lambda.duration_ms", ["count", "avg", "p50", "max"],
                        ["function_name"])
    assert rows == [
        {"function_name": "a", "count(aws.lambda.duration_ms)": 5.0,
         "avg(aws.lambda.duration_ms)": 5.0, "p50(aws.lambda.duration_ms)": 5.0,
         "max(aws.lambda.duration_ms)": 9.0},
        {"function_name": "b", "count(aws.lambda.duration_ms)": 5.0,
         "avg(aws.lambda.duration_ms)": 6.0, "p50(aws.lambda.duration_ms)": 6.0,
         "max(aws.lambda.duration_ms)": 10.0},
    ]
    spans = metric_stats(store, "aws.lambda.invocations", ["sum"], span_s=5.0)
    assert [(r["_time"], r["sum(aws.lambda.invocations)"]) for r in spans] == [
        (100.0, 4.0), (105.0, 5.0), (110.0, 1.0)]
    where = metric_stats(store, "aws.lambda.duration_ms", ["sum"], where={"function_name": "a"})
    assert where == [{"sum(aws.lambda.duration_ms)": 25.0}]
    store.close()


@settings(suppress_health_check=[HealthCheck.too_slow])  # the session's first example
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.sampled_from([50, 90, 95, 99]))
def test_percentile_is_nearest_rank(values: list[float], pct: int) -> None:
    got = aggregate(values, f"p{pct}")
    ordered = sorted(values)
    assert got in ordered
    at_most = sum(v <= got for v in ordered)
    assert at_most >= pct / 100 * len(ordered)
    assert sum(v < got for v in ordered) < pct / 100 * len(ordered)


def test_unknown_aggregate() -> None:
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate([1.0], "median")


def test_query_cli_lists_and_aggregates_metrics(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from ext.local.hec.cli import main

    points = [(100.0 + n, {"function_name": "f", "metric_name:aws.lambda.duration_ms": float(n)})
              for n in range(1, 5)]
    store_with(tmp_path, points).close()
    db = str(tmp_path / "hec.db")
    assert main(["query", "--db", db, "--json", "metrics"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["metric"] == "aws.lambda.duration_ms" and listed["points"] == 4
    assert main(["query", "--db", db, "--json", "mstats", "--metric", "aws.lambda.duration_ms",
                 "--agg", "sum,max", "--by", "function_name"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row == {"function_name": "f", "sum(aws.lambda.duration_ms)": 10.0,
                   "max(aws.lambda.duration_ms)": 4.0}
    assert main(["query", "--db", db, "mstats", "--metric", "x", "--agg", "median"]) == 2
