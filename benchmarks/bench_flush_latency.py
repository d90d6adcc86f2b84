"""Flush latency and billed overhead (issue 7, items 2 and 3), per flush strategy (SPLUNK_FLUSH)
and lines per invocation.

Latency: each function line carries the epoch time of its write (payload "stamp"); the HEC
receiver stores `received_at` per event, so latency = received_at - write time, for every line.
Billed overhead: InvokeResult.post_runtime_ms (runtime response -> the extension's next).
Invocations run back to back (no idle gap), the best case for `background`, whose tail lines
wait for the next thaw; the last invocation's tail arrives in the shutdown window and counts too.
Run: `.venv/bin/python -m benchmarks.bench_flush_latency [--quick]` -> results/flush_latency.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.rig import Rig, extension_rig, stamped_latencies_ms

STRATEGIES = ("sync", "background")
# lines per invocation -> measured invocations (full, quick)
PLAN_FULL = {10: 200, 1_000: 50, 10_000: 10}
PLAN_QUICK = {10: 3, 1_000: 2, 10_000: 1}
LINE_BYTES = 100
TARGETS = {"sync_latency_p50_ms": 60.0, "sync_latency_p99_ms": 200.0,
           "sync_post_runtime_p50_ms_upto_1000_lines": 40.0,
           "background_post_runtime_p50_ms": 2.0}


def run_config(rig: Rig, strategy: str, lines: int, invocations: int) -> dict[str, Any]:
    """One fresh sandbox: a warm-up invoke, `invocations` measured ones, shutdown."""
    prefix = f"L{strategy}-{lines}-"
    post_runtime: list[float] = []
    sb = rig.sandbox(rig.env(SPLUNK_FLUSH=strategy), timeout_s=30.0)
    try:
        sb.invoke({"lines": lines, "size": LINE_BYTES, "tag": f"W{strategy}-{lines}"})
        for n in range(invocations):
            result = sb.invoke({"lines": lines, "size": LINE_BYTES, "tag": f"{prefix}{n}",
                                "stamp": True})
            if result.status != "success" or result.post_runtime_ms is None:
                raise RuntimeError(f"invoke failed: {result}")
            post_runtime.append(result.post_runtime_ms)
        sb.shutdown()
    finally:
        sb.close()
    by_tag = stamped_latencies_ms(rig.hec.events(sourcetype="aws:lambda:function",
                                                 contains=prefix), prefix)
    latencies = [v for values in by_tag.values() for v in values]
    return {
        "strategy": strategy, "lines": lines, "invocations": invocations,
        "lines_expected": lines * invocations, "lines_stored": len(latencies),
        "latency_ms": common.summary(latencies), "post_runtime_ms": common.summary(post_runtime),
        "post_runtime_samples": post_runtime,
    }


def measure(plan: dict[int, int]) -> dict[str, Any]:
    configs = []
    with extension_rig() as rig:
        for strategy in STRATEGIES:
            for lines, invocations in plan.items():
                configs.append(run_config(rig, strategy, lines, invocations))
    return {"line_bytes": LINE_BYTES, "gap_between_invocations_ms": 0, "configs": configs}


def report(results: dict[str, Any]) -> None:
    rows = []
    for c in results["configs"]:
        lat, post = c["latency_ms"], c["post_runtime_ms"]
        rows.append([c["strategy"], c["lines"], c["invocations"],
                     f"{c['lines_stored']}/{c['lines_expected']}", lat["p50"], lat["p99"],
                     post["p50"], post["p99"]])
    common.print_table("Log line -> stored in HEC, and post-runtime duration (ms)",
                       ["strategy", "lines/inv", "invocations", "stored", "latency p50",
                        "latency p99", "post-runtime p50", "post-runtime p99"], rows)


def chart(results: dict[str, Any], folder: Path) -> None:
    configs = results["configs"]
    groups = [f"{c['lines']:,} lines" for c in configs if c["strategy"] == STRATEGIES[0]]
    for figure, title, name, targets in (
        ("latency_ms", "Log line -> stored in HEC, p50 / p99", "flush_latency.png",
         {"sync p50 target 60 ms": 60.0, "sync p99 target 200 ms": 200.0}),
        ("post_runtime_ms", "Post-runtime duration (billed overhead), p50 / p99",
         "post_runtime.png", {"sync p50 target 40 ms": 40.0, "background p50 target 2 ms": 2.0}),
    ):
        series = {}
        for strategy in STRATEGIES:
            for q in ("p50", "p99"):
                series[f"{strategy} {q}"] = [c[figure][q] for c in configs
                                             if c["strategy"] == strategy]
        common.bar_chart(folder / name, title, groups, series, "ms", targets)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_flush_latency", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    args = parser.parse_args(argv)
    results = measure(PLAN_QUICK if args.quick else PLAN_FULL)
    return common.publish("flush_latency", results, quick=args.quick, targets=TARGETS,
                          report=report, chart=chart)


if __name__ == "__main__":
    raise SystemExit(main())
