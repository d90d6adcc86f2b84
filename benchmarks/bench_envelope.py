"""Per-event CPU of the sender's envelope mapping (issue 13): what metrics and alerts cost.

The sender's main thread maps every spool record to HEC envelopes (ext/sender/envelope.py); that is
where platform records now also become metric and alert events. This times EnvelopeBuilder.build
alone, in this process, on the throughput benchmark's Telemetry bodies (1,000 function log lines
each, docs/benchmarks.md §4) and on invocation-shaped bodies (log lines plus platform.start,
runtimeDone and report), with and without SPLUNK_METRICS_INDEX. CPU time (process_time), best
of several rounds, so other load on the machine inflates it least. Run from a checkout to
compare two versions of ext/: `.venv/bin/python -m benchmarks.bench_envelope [--quick]`
-> results/envelope.json.
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks import common
from benchmarks.bench_throughput import EVENTS_PER_BATCH, telemetry_bodies
from ext import config
from ext.sender.envelope import EnvelopeBuilder

RID = "79b5e81f-9cdd-4145-b1f6-7c50ef8a2a36"


def invocation_bodies(count: int, lines: int = 20) -> list[bytes]:
    """Bodies as one small invocation sends them: start, `lines` log lines, runtimeDone, report."""
    bodies = []
    for n in range(count):
        t = f"2026-11-26T17:00:{n % 60:02d}.{n % 1000:03d}Z"
        events: list[dict[str, object]] = [
            {"time": t, "type": "platform.start", "record": {"requestId": RID}}]
        events += [{"time": t, "type": "function", "record": f"line {i} of invocation {n}\n"}
                   for i in range(lines)]
        events.append({"time": t, "type": "platform.runtimeDone", "record": {
            "requestId": RID, "status": "success",
            "metrics": {"durationMs": 41.7, "producedBytes": 8},
            "spans": [{"name": "responseLatency", "start": t, "durationMs": 40.1}]}})
        events.append({"time": t, "type": "platform.report", "record": {
            "requestId": RID, "status": "success",
            "metrics": {"durationMs": 45.2, "billedDurationMs": 46, "memorySizeMB": 128,
                        "maxMemoryUsedMB": 61}}})
        bodies.append(json.dumps(events, separators=(",", ":")).encode())
    return bodies


def us_per_event(bodies: list[bytes], events: int, env: dict[str, str], rounds: int) -> float:
    """Best CPU microseconds per event over `rounds` passes of a fresh builder over `bodies`."""
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t", **env})
    best = float("inf")
    for _ in range(rounds):
        builder = EnvelopeBuilder(cfg, "bench-fn")
        start = time.process_time()
        for body in bodies:
            builder.build(body)
        best = min(best, time.process_time() - start)
    return best / events * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench_envelope", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 3 if args.quick else 9
    logs = telemetry_bodies(4 if args.quick else 16)
    small = invocation_bodies(200 if args.quick else 2000)
    small_events = len(small) * 23
    metrics_env = {"SPLUNK_METRICS_INDEX": "lambda_metrics"}
    has_metrics = "metrics_index" in config.Config.__annotations__  # ext/ after issue 13
    rows: list[tuple[str, list[bytes], int, dict[str, str]]] = [
        ("function lines (1,000 per body)", logs, len(logs) * EVENTS_PER_BATCH, {}),
        ("invocations (20 lines + start/runtimeDone/report)", small, small_events, {})]
    if has_metrics:
        rows.append(("invocations, SPLUNK_METRICS_INDEX set", small, small_events, metrics_env))
    print(f"{'bodies':<52}{'CPU us/event':>14}")
    results: dict[str, float] = {}
    for label, bodies, events, env in rows:
        results[label] = round(us_per_event(bodies, events, env, rounds), 3)
        print(f"{label:<52}{results[label]:>14.3f}")
    common.write_result("envelope", {"cpu_us_per_event": results}, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
