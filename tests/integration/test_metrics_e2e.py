"""Issue 13 acceptance, in the emulator: every platform.report arrives as a metric event with
the documented names and dimensions, accepted by the receiver's metrics index; a timeout and an
out-of-memory kill (reported by the emulator as Lambda does) each produce exactly one alert."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver, HecToken
from tests.integration.conftest import TOKEN
from tests.integration.extension_harness import extension_env, platform_events, sandbox

pytestmark = pytest.mark.integration

METRICS_INDEX = "lambda_metrics"
REPORT_METRICS = {  # docs/metrics.md: platform.report field -> metric name
    "durationMs": "aws.lambda.duration_ms",
    "billedDurationMs": "aws.lambda.billed_duration_ms",
    "memorySizeMB": "aws.lambda.memory_size_mb",
    "maxMemoryUsedMB": "aws.lambda.max_memory_used_mb",
    "initDurationMs": "aws.lambda.init_duration_ms",
}


@pytest.fixture
def metrics_hec(tmp_path: Path) -> Iterator[HecReceiver]:
    token = HecToken(name="lambda", value=TOKEN, indexes=("lambda", METRICS_INDEX))
    with HecReceiver(tmp_path / "hec.sqlite", (token,), metrics_indexes=(METRICS_INDEX,)) as rx:
        yield rx


def test_reports_become_metrics_and_timeout_and_oom_one_alert_each(
        metrics_hec: HecReceiver, local_opt: Path) -> None:
    hec = metrics_hec
    env = extension_env(hec, SPLUNK_INDEX="lambda", SPLUNK_METRICS_INDEX=METRICS_INDEX,
                        SPLUNK_FLUSH="sync")
    with sandbox(local_opt, env, timeout_s=2.0, memory_mb=128) as sb:
        sb.invoke({"lines": 2, "tag": "a"})
        timed_out = sb.invoke({"lines": 2, "tag": "t", "timeout": True})
        sb.invoke({"lines": 2, "tag": "b"})
        oom = sb.invoke({"lines": 2, "tag": "o", "oom": True})
        sb.invoke({"lines": 2, "tag": "c"})
        sb.shutdown()
    assert timed_out.status == "timeout"
    assert (oom.status, oom.error_type, oom.max_memory_used_mb) == (
        "failure", "Runtime.OutOfMemory", 128)

    # Nothing was refused: every metric event went to the metrics index and was accepted.
    assert set(hec.stats()["by_status"]) == {"200"}
    reports = [e["record"] for e in platform_events(hec) if e["type"] == "platform.report"]
    assert len(reports) == 5
    assert {r["errorType"] for r in reports if "errorType" in r} == {
        "Sandbox.Timeout", "Runtime.OutOfMemory"}
    metrics = hec.events(index=METRICS_INDEX, limit=10**6)
    assert all(e.kind == "metric" and e.sourcetype == "aws:lambda:metrics" for e in metrics)
    report_metrics = [e.fields for e in metrics
                      if e.fields.get("telemetry_type") == "platform.report"
                      and "metric_name:aws.lambda.alerts" not in e.fields]
    assert len(report_metrics) == len(reports)
    for fields in report_metrics:
        assert fields["function_name"] == "demo-function"
        assert fields["status"] in ("success", "timeout", "error")
        assert fields["metric_name:aws.lambda.invocations"] == 1
        assert "request_id" not in fields
    as_metrics = collections.Counter(
        tuple(f.get(f"metric_name:{name}") for name in REPORT_METRICS.values())
        for f in report_metrics)
    as_reports = collections.Counter(
        tuple(r["metrics"].get(field) for field in REPORT_METRICS)
        for r in reports)
    assert as_metrics == as_reports
    cold = [f for f in report_metrics if f["metric_name:aws.lambda.cold_starts"] == 1]
    assert len(cold) == 3  # the first init, and one after each reset

    alerts = [(json.loads(e.event), e.fields) for e in hec.events(sourcetype="aws:lambda:alert")]
    by_request = collections.Counter((b["alert"], b["request_id"]) for b, _ in alerts)
    assert by_request == {("timeout", timed_out.request_id): 1,
                          ("out-of-memory", oom.request_id): 1}
    for body, fields in alerts:
        assert fields["request_id"] == body["request_id"]
        assert fields["alert"] == body["alert"]
        assert body["memory_size_mb"] == 128 and body["duration_ms"] > 0
    counters = collections.Counter(e.fields["alert"] for e in metrics
                                   if "metric_name:aws.lambda.alerts" in e.fields)
    assert counters == {"timeout": 1, "out-of-memory": 1}
    self_metrics = [e.fields for e in metrics
                    if e.fields.get("telemetry_type") == "splunk-extension.self-metrics"]
    assert {f["reason"] for f in self_metrics} == {"invocation", "shutdown"}
    assert all(f["metric_name:splunk.extension.spool.dropped_events"] == 0 for f in self_metrics)
    assert sum(f["metric_name:splunk.extension.hec.requests"] for f in self_metrics) > 0
