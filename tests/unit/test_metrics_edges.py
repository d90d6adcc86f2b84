"""Platform metrics' edges (ext/sender/metrics.py): which record counts what, the counters'
values, spans, and figures HEC would refuse."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from ext import config
from ext.sender import metrics
from tests.unit.test_metrics import RID, T, build, builder, metric_events

COUNTERS = {"metric_name:aws.lambda.invocations", "metric_name:aws.lambda.errors",
            "metric_name:aws.lambda.cold_starts", "metric_name:aws.lambda.memory_used_pct"}


def figures_events(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metric events of the records' figures (not an alert's counter)."""
    return [e for e in metric_events(out) if "metric_name:aws.lambda.alerts" not in e["fields"]]


def values(record_kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """The metric values of one platform record's metric event (none: {})."""
    events = figures_events(build(builder(SPLUNK_METRICS_INDEX="m"), (record_kind, record)))
    assert len(events) <= 1
    return {k: v for e in events for k, v in e["fields"].items() if k.startswith("metric_name:")}


@pytest.mark.parametrize(("kind", "record", "expected"), [
    ("platform.runtimeDone",
     {"requestId": RID, "status": "success", "metrics": {"durationMs": 41.7, "producedBytes": 8}},
     {"metric_name:aws.lambda.runtime_duration_ms": 41.7,
      "metric_name:aws.lambda.produced_bytes": 8}),
    ("platform.initReport",
     {"initializationType": "on-demand", "phase": "init", "status": "success",
      "metrics": {"durationMs": 463.5}},
     {"metric_name:aws.lambda.init_report_duration_ms": 463.5}),
    ("platform.restoreReport", {"status": "success", "metrics": {"durationMs": 12.5}},
     {"metric_name:aws.lambda.restore_report_duration_ms": 12.5}),
])
def test_only_the_report_counts_an_invocation(kind: str, record: dict[str, Any],
                                              expected: dict[str, Any]) -> None:
    # Dashboards sum the counters per function: one from runtimeDone as well would count every
    # invocation (and every error) twice, one from an init report an invocation that was not.
    assert values(kind, record) == expected


@pytest.mark.parametrize(("status", "errors"), [
    ("success", 0), (None, 0), ("error", 1), ("timeout", 1), ("failure", 1)])
def test_errors_count_each_invocation_that_did_not_succeed(status: str | None,
                                                           errors: int) -> None:
    record: dict[str, Any] = {"requestId": RID, "metrics": {"durationMs": 3.5}}
    if status is not None:
        record["status"] = status
    got = values("platform.report", record)
    assert got["metric_name:aws.lambda.errors"] == errors
    assert got["metric_name:aws.lambda.invocations"] == 1


def test_cold_starts_count_only_reports_with_an_init_duration() -> None:
    warm = values("platform.report", {"requestId": RID, "status": "success",
                                      "metrics": {"durationMs": 3.5, "billedDurationMs": 4}})
    cold = values("platform.report", {"requestId": RID, "status": "success",
                                      "metrics": {"durationMs": 3.5, "initDurationMs": 120.0}})
    assert warm["metric_name:aws.lambda.cold_starts"] == 0
    assert cold["metric_name:aws.lambda.cold_starts"] == 1


def test_spans_of_other_names_or_without_a_number_are_left_out() -> None:
    got = values("platform.runtimeDone", {"requestId": RID, "status": "success", "spans": [
        {"name": "initOverhead", "start": T, "durationMs": 1.0},
        {"name": "responseLatency", "start": T, "durationMs": "fast"},
        {"name": "responseDuration", "start": T, "durationMs": 2.5},
        {"durationMs": 3.0}, "extensionOverhead", None]})
    assert got == {"metric_name:aws.lambda.response_duration_ms": 2.5}


def test_the_three_spans_of_a_real_runtime_done_each_become_a_metric() -> None:
    # As Lambda sends them for a Node.js function (runtimeOverhead: its work after the response).
    got = values("platform.runtimeDone", {"requestId": RID, "status": "success", "spans": [
        {"durationMs": 1.613, "name": "responseLatency", "start": T},
        {"durationMs": 0.064, "name": "responseDuration", "start": T},
        {"durationMs": 15.246, "name": "runtimeOverhead", "start": T}]})
    assert got == {"metric_name:aws.lambda.response_latency_ms": 1.613,
                   "metric_name:aws.lambda.response_duration_ms": 0.064,
                   "metric_name:aws.lambda.runtime_overhead_ms": 15.246}


def test_an_integer_figure_beyond_a_double_is_left_out_not_the_batch() -> None:
    # Splunk holds metrics as doubles. Such a figure once raised OverflowError in the memory
    # ratio, and the sender quarantined the whole batch: the log lines in it with the report.
    report = {"requestId": RID, "status": "success",
              "metrics": {"durationMs": "HUGE", "memorySizeMB": 128, "maxMemoryUsedMB": "HUGE"}}
    body = json.dumps([{"time": T, "type": "platform.report", "record": report},
                       {"time": T, "type": "function", "record": "a line"}])
    body = body.replace('"HUGE"', "1" + "0" * 400)  # json.dumps would not write it as digits
    out = [json.loads(e) for e in builder(SPLUNK_METRICS_INDEX="m").build(body.encode())]
    assert [e["event"] for e in out if e["sourcetype"] == "aws:lambda:function"] == ["a line"]
    [metric] = figures_events(out)
    got = {k for k in metric["fields"] if k.startswith("metric_name:")}
    assert got == {"metric_name:aws.lambda.memory_size_mb", *COUNTERS} - {
        "metric_name:aws.lambda.memory_used_pct"}


def repr_short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 24 else f"{text[:8]}...({len(text)} chars)"


@pytest.mark.parametrize(("value", "expected"), [
    (1.5, 1.5), (0, 0), (-3, -3), (2**64, 2**64), (1.7976931348623157e308, 1.7976931348623157e308),
    (10**308, 10**308), (10**309, None), (-(10**400), None), (math.inf, None), (-math.inf, None),
    (True, None), (False, None), ("1", None), (None, None)], ids=repr_short)
def test_a_metric_value_is_a_finite_number_a_double_holds(value: object,
                                                          expected: float | None) -> None:
    assert metrics.number(value) == expected
    assert metrics.number(math.nan) is None


def test_the_mapper_is_enabled_only_with_a_metrics_index() -> None:
    # The derivation reads `enabled` to spare decoding a record no metric comes from.
    base = {"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"}
    off = metrics.MetricMapper(config.load(base), "h", "s")
    on = metrics.MetricMapper(config.load({**base, "SPLUNK_METRICS_INDEX": "m"}), "h", "s")
    assert off.enabled is False and on.enabled is True
    assert off.metric_event(b"1.000", b"", {}, {"aws.lambda.x_ms": 1}) is None
