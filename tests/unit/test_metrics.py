"""Platform records to metric events and alerts (ext/sender/metrics.py, ext/sender/alerts.py,
ext/sender/derived.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ext import config
from ext.errors import ConfigError
from ext.sender.envelope import EnvelopeBuilder

RID = "79b5e81f-9cdd-4145-b1f6-7c50ef8a2a36"
T = "2026-10-08T07:30:29.470Z"
REPORT = {"requestId": RID, "status": "success",
          "metrics": {"durationMs": 1233.96, "billedDurationMs": 1698, "memorySizeMB": 256,
                      "maxMemoryUsedMB": 123, "initDurationMs": 463.512},
          "spans": [{"name": "extensionOverhead", "start": T, "durationMs": 1.5}]}


def builder(**extra: str) -> EnvelopeBuilder:
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t", **extra})
    return EnvelopeBuilder(cfg, "my-fn")


def build(b: EnvelopeBuilder, *events: tuple[str, Any]) -> list[dict[str, Any]]:
    body = json.dumps([{"time": T, "type": k, "record": r} for k, r in events]).encode()
    return [json.loads(e) for e in b.build(body)]


def metric_events(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in out if e["event"] == "metric"]


def test_report_becomes_one_metric_event_with_names_units_and_dimensions() -> None:
    out = build(builder(SPLUNK_METRICS_INDEX="lambda_metrics", SPLUNK_INDEX="lambda"),
                ("platform.report", REPORT))
    assert [e["sourcetype"] for e in out] == ["aws:lambda:platform", "aws:lambda:metrics"]
    metric = out[1]
    assert metric["index"] == "lambda_metrics"
    assert out[0]["index"] == "lambda"
    assert metric["time"] == out[0]["time"]
    assert metric["fields"] == {
        "function_name": "my-fn", "telemetry_type": "platform.report", "status": "success",
        "metric_name:aws.lambda.duration_ms": 1233.96,
        "metric_name:aws.lambda.billed_duration_ms": 1698,
        "metric_name:aws.lambda.memory_size_mb": 256,
        "metric_name:aws.lambda.max_memory_used_mb": 123,
        "metric_name:aws.lambda.init_duration_ms": 463.512,
        "metric_name:aws.lambda.extension_overhead_ms": 1.5,
        "metric_name:aws.lambda.invocations": 1,
        "metric_name:aws.lambda.errors": 0,
        "metric_name:aws.lambda.cold_starts": 1,
        "metric_name:aws.lambda.memory_used_pct": 48.05,
    }
    assert "request_id" not in metric["fields"]  # a dimension per request would explode


def test_runtime_done_init_and_restore_reports() -> None:
    b = builder(SPLUNK_METRICS_INDEX="m")
    out = metric_events(build(
        b,
        ("platform.runtimeDone", {"requestId": RID, "status": "success",
                                  "metrics": {"durationMs": 41.7, "producedBytes": 8},
                                  "spans": [{"name": "responseLatency", "durationMs": 40.0}]}),
        ("platform.initReport", {"initializationType": "on-demand", "phase": "init",
                                 "status": "success", "metrics": {"durationMs": 463.5}}),
        ("platform.restoreReport", {"status": "success", "metrics": {"durationMs": 12.5}}),
    ))
    assert out[0]["fields"]["metric_name:aws.lambda.runtime_duration_ms"] == 41.7
    assert out[0]["fields"]["metric_name:aws.lambda.produced_bytes"] == 8
    assert out[0]["fields"]["metric_name:aws.lambda.response_latency_ms"] == 40.0
    assert out[1]["fields"]["metric_name:aws.lambda.init_report_duration_ms"] == 463.5
    assert out[1]["fields"]["init_type"] == "on-demand"
    assert out[1]["fields"]["phase"] == "init"
    assert out[2]["fields"]["metric_name:aws.lambda.restore_report_duration_ms"] == 12.5


def test_no_metrics_index_no_metric_events_and_log_lines_unchanged() -> None:
    b = builder()
    out = build(b, ("platform.report", REPORT), ("function", "hello\n"))
    assert [e["sourcetype"] for e in out] == ["aws:lambda:platform", "aws:lambda:function"]


def test_platform_events_false_sends_figures_only_as_metrics_and_keeps_landmarks() -> None:
    b = builder(SPLUNK_METRICS_INDEX="m", SPLUNK_PLATFORM_EVENTS="false")
    out = build(b, ("platform.start", {"requestId": RID}), ("platform.report", REPORT))
    assert [e["sourcetype"] for e in out] == ["aws:lambda:platform", "aws:lambda:metrics"]
    rid = json.dumps(RID).encode()
    assert [(k, r) for k, r, _ in b.landmarks] == [("platform.start", rid),
                                                   ("platform.report", rid)]


def test_platform_events_false_keeps_a_record_no_metric_could_carry() -> None:
    b = builder(SPLUNK_METRICS_INDEX="m", SPLUNK_PLATFORM_EVENTS="false")
    out = build(b, ("platform.report", "REPORT RequestId: x"), ("platform.report", {"x": 1}))
    assert [e["sourcetype"] for e in out] == ["aws:lambda:platform", "aws:lambda:platform"]


def test_platform_events_false_needs_a_metrics_index() -> None:
    with pytest.raises(ConfigError, match="SPLUNK_PLATFORM_EVENTS"):
        builder(SPLUNK_PLATFORM_EVENTS="false")
    with pytest.raises(ConfigError, match="SPLUNK_METRICS_INDEX"):
        builder(SPLUNK_METRICS_INDEX="Bad Index")
    with pytest.raises(ConfigError, match="SPLUNK_SELF_METRICS"):
        builder(SPLUNK_SELF_METRICS="maybe")


def test_non_numeric_figures_are_left_out() -> None:
    record = {"requestId": RID, "status": "success",
              "metrics": {"durationMs": "fast", "billedDurationMs": True, "memorySizeMB": 128,
                          "maxMemoryUsedMB": None}}
    fields = metric_events(build(builder(SPLUNK_METRICS_INDEX="m"),
                                 ("platform.report", record)))[0]["fields"]
    values = {k for k in fields if k.startswith("metric_name:")}
    assert values == {"metric_name:aws.lambda.memory_size_mb", "metric_name:aws.lambda.invocations",
                      "metric_name:aws.lambda.errors", "metric_name:aws.lambda.cold_starts"}


def test_string_record_still_goes_as_an_event() -> None:
    out = build(builder(SPLUNK_METRICS_INDEX="m"), ("platform.report", "REPORT RequestId: x"))
    assert [e["sourcetype"] for e in out] == ["aws:lambda:platform"]


def report(status: str, error_type: str | None = None, used: int = 50) -> dict[str, Any]:
    record: dict[str, Any] = {"requestId": RID, "status": status, "metrics": {
        "durationMs": 3000.2, "billedDurationMs": 3001, "memorySizeMB": 128,
        "maxMemoryUsedMB": used}}
    if error_type:
        record["errorType"] = error_type
    return record


def alerts_of(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in out if e["sourcetype"] == "aws:lambda:alert"]


@pytest.mark.parametrize(("record", "alert"), [
    (report("timeout", "Sandbox.Timeout"), "timeout"),
    (report("error", "Runtime.OutOfMemory", used=128), "out-of-memory"),
    (report("timeout", "Runtime.OutOfMemory"), "out-of-memory"),
    (report("success", used=128), "out-of-memory"),
    (report("error", "Runtime.ExitError"), "environment-reset"),
    (report("failure", "Sandbox.Failure"), "environment-reset"),
])
def test_each_cause_raises_exactly_one_alert_with_request_id_and_figures(
        record: dict[str, Any], alert: str) -> None:
    b = builder(SPLUNK_METRICS_INDEX="m", SPLUNK_INDEX="lambda")
    out = build(b, ("platform.report", record))
    found = alerts_of(out)
    assert len(found) == 1
    event = found[0]
    assert event["index"] == "lambda"
    assert event["fields"]["alert"] == alert
    assert event["fields"]["request_id"] == RID
    assert event["fields"]["function_name"] == "my-fn"
    assert event["event"]["alert"] == alert
    assert event["event"]["request_id"] == RID
    assert event["event"]["duration_ms"] == 3000.2
    assert event["event"]["memory_size_mb"] == 128
    assert RID in event["event"]["message"]
    counters = [e for e in metric_events(out) if "metric_name:aws.lambda.alerts" in e["fields"]]
    assert len(counters) == 1
    assert counters[0]["fields"]["alert"] == alert
    assert counters[0]["fields"]["metric_name:aws.lambda.alerts"] == 1  # one alert: summed
    assert counters[0]["index"] == "m"


@pytest.mark.parametrize("record", [report("success"), report("error", "Runtime.Unknown"),
                                    report("error", "ValueError")])
def test_ordinary_invocations_and_handled_errors_raise_none(record: dict[str, Any]) -> None:
    assert alerts_of(build(builder(), ("platform.report", record))) == []


def test_init_failure_alert_without_metrics_index_has_no_counter() -> None:
    out = build(builder(), ("platform.initReport", {
        "initializationType": "on-demand", "phase": "init", "status": "error",
        "errorType": "Extension.InitError", "metrics": {"durationMs": 120.0}}))
    found = alerts_of(out)
    assert len(found) == 1 and found[0]["event"]["alert"] == "init-failure"
    assert "Extension.InitError" in found[0]["event"]["message"]
    assert metric_events(out) == []


# The first example of a session waits for Hypothesis to collect its constants (seconds).
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["durationMs", "billedDurationMs", "memorySizeMB",
                                        "maxMemoryUsedMB", "initDurationMs", "x"]),
                       st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                                 st.text(max_size=3), st.none(), st.booleans())),
       st.sampled_from(["success", "error", "timeout", "failure", None]))
def test_any_report_gives_valid_metric_fields(metrics: dict[str, Any], status: str | None) -> None:
    record: dict[str, Any] = {"requestId": RID, "metrics": metrics}
    if status:
        record["status"] = status
    for event in metric_events(build(builder(SPLUNK_METRICS_INDEX="m"),
                                     ("platform.report", record))):
        for key, value in event["fields"].items():
            if key.startswith("metric_name:"):
                assert isinstance(value, int | float) and not isinstance(value, bool)
            else:
                assert isinstance(value, str)


def test_a_memory_ratio_that_overflows_is_left_out() -> None:
    record = {"requestId": RID, "metrics": {"memorySizeMB": 0.5, "maxMemoryUsedMB": 1.797e306}}
    events = metric_events(build(builder(SPLUNK_METRICS_INDEX="m"), ("platform.report", record)))
    fields = {k: v for event in events for k, v in event["fields"].items()}
    assert "metric_name:aws.lambda.memory_used_pct" not in fields
    assert fields["metric_name:aws.lambda.max_memory_used_mb"] == 1.797e306


def test_a_dimension_the_common_fields_carry_is_not_repeated() -> None:
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t",
                       "SPLUNK_METRICS_INDEX": "m"})
    from ext.sender.metrics import MetricMapper

    event = MetricMapper(cfg, "h", "s").metric_event(
        b"1.000", b'"function_name":"f","init_type":"on-demand"',
        {"init_type": "snap-start", "status": "success"}, {"aws.lambda.x_ms": 1.5})
    assert event is not None
    assert event.count(b'"init_type"') == 1
    assert json.loads(event)["fields"] == {"function_name": "f", "init_type": "on-demand",
                                           "status": "success", "metric_name:aws.lambda.x_ms": 1.5}


@pytest.mark.parametrize("time", [1759908629470, 1759908629.47])
def test_a_numeric_time_gives_derived_events_the_platform_event_s_time(time: float) -> None:
    # A time in milliseconds passed on verbatim would be 1,000 times too late for Splunk.
    b = builder(SPLUNK_METRICS_INDEX="lambda_metrics")
    body = json.dumps([{"time": time, "type": "platform.report",
                        "record": report("timeout", "Sandbox.Timeout")}]).encode()
    out = [json.loads(e) for e in b.build(body)]
    assert len(out) == 4  # the event, its metrics, its alert and the alert's counter
    assert {e["time"] for e in out} == {1759908629.47}


@pytest.mark.parametrize(("kind", "record", "body"), [
    ("platform.report", report("timeout", "Sandbox.Timeout"), {
        "alert": "timeout", "status": "timeout", "error_type": "Sandbox.Timeout",
        "max_memory_used_mb": 50, "message": f"invocation {RID} timed out after 3000.2 ms"}),
    ("platform.report", report("error", "Runtime.OutOfMemory", used=128), {
        "alert": "out-of-memory", "status": "error", "error_type": "Runtime.OutOfMemory",
        "max_memory_used_mb": 128,
        "message": f"invocation {RID} ran out of memory: 128 of 128 MB"}),
    ("platform.report", report("error", "Runtime.ExitError"), {
        "alert": "environment-reset", "status": "error", "error_type": "Runtime.ExitError",
        "max_memory_used_mb": 50,
        "message": f"invocation {RID} ended with Runtime.ExitError: the environment is reset"}),
    ("platform.initReport", {"phase": "init", "status": "error",
                             "errorType": "Extension.InitError", "metrics": {"durationMs": 9}}, {
        "alert": "init-failure", "status": "error", "error_type": "Extension.InitError",
        "phase": "init", "duration_ms": 9,
        "message": "init (init) failed with status error: Extension.InitError"}),
    ("platform.initReport", {"status": "timeout"}, {
        "alert": "init-failure", "status": "timeout",
        "message": "init (?) failed with status timeout: no error type"}),
])
def test_each_alert_says_what_happened_in_its_own_words(
        kind: str, record: dict[str, Any], body: dict[str, Any]) -> None:
    (alert,) = alerts_of(build(builder(), (kind, record)))
    expected = {"source_type": kind, **body}
    if kind == "platform.report":
        expected |= {"request_id": RID, "duration_ms": 3000.2, "billed_duration_ms": 3001,
                     "memory_size_mb": 128}
    assert alert["event"] == expected


def test_an_out_of_memory_report_without_a_status_has_none_in_its_alert() -> None:
    record = {"requestId": RID, "metrics": {"memorySizeMB": 128, "maxMemoryUsedMB": 128}}
    (alert,) = alerts_of(build(builder(), ("platform.report", record)))
    assert alert["event"] == {
        "alert": "out-of-memory", "source_type": "platform.report", "request_id": RID,
        "memory_size_mb": 128, "max_memory_used_mb": 128,
        "message": f"invocation {RID} ran out of memory: 128 of 128 MB"}


@pytest.mark.parametrize(("size", "used", "oom"), [
    (3008, 3008, True),  # at the size: ints past those CPython shares (decoded, not constants)
    (128, 130, True),  # reported above the size
    (1, 1, True),  # any positive size
    (128, 127, False),
    (0, 0, False),  # no size: no figure to be at
    (-1, 0, False),
])
def test_a_report_whose_memory_used_reaches_its_size_is_out_of_memory(
        size: int, used: int, oom: bool) -> None:
    record = {"requestId": RID, "status": "success",
              "metrics": {"memorySizeMB": size, "maxMemoryUsedMB": used}}
    found = alerts_of(build(builder(), ("platform.report", record)))
    assert [a["event"]["alert"] for a in found] == (["out-of-memory"] if oom else [])


def test_only_the_report_of_an_invocation_raises_its_alert() -> None:
    # The runtimeDone and a restore's report carry a status too; with a metrics index they reach
    # the derivation as well, and must not raise the alert a second time.
    for status, error_type in (("timeout", None), ("failure", "Sandbox.Failure")):
        done = {"requestId": RID, "status": status, "metrics": {"durationMs": 3000.2}}
        restore = {"status": status, "metrics": {"durationMs": 12.5}}
        if error_type:
            done["errorType"] = restore["errorType"] = error_type
        out = build(builder(SPLUNK_METRICS_INDEX="m"), ("platform.runtimeDone", done),
                    ("platform.restoreReport", restore),
                    ("platform.report", report(status, error_type)))
        assert [a["event"]["source_type"] for a in alerts_of(out)] == ["platform.report"]
