"""Shutdown drain (issue 7, item 5): events delivered within the shutdown window with 10k and
100k events spooled.

HEC answers 503 (busy, until cleared) while the function writes the lines, so they accumulate
in the spool; then the fault is cleared and the sandbox shut down at once (SHUTDOWN with
deadline now + 2,000 ms). Counted: lines stored in HEC within 1.5 s of the shutdown start and
by its end, and when the last one arrived.
Run: `.venv/bin/python -m benchmarks.bench_shutdown_drain [--quick]` -> results/shutdown_drain.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.rig import Rig, extension_rig
from ext.local.layer import EXTENSION_NAME

LINES_PER_INVOKE = 10_000
LINE_BYTES = 100
TARGET_WINDOW_S = 1.5
TARGETS = {"delivered_within_1_5_s_of_100k": 100_000}
FULL_SIZES = (10_000, 100_000)
QUICK_SIZES = (1_000, 3_000)


def run_size(rig: Rig, spooled: int) -> dict[str, Any]:
    tag = f"D{spooled}-"
    env = rig.env(SPLUNK_FLUSH="background")
    sb = rig.sandbox(env, timeout_s=30.0)
    try:
        sb.init()
        rig.hec.set_fault("busy")
        invokes = 0
        while invokes * LINES_PER_INVOKE < spooled:
            lines = min(LINES_PER_INVOKE, spooled - invokes * LINES_PER_INVOKE)
            result = sb.invoke({"lines": lines, "size": LINE_BYTES, "tag": f"{tag}{invokes}"})
            if result.status != "success":
                raise RuntimeError(f"invoke failed: {result}")
            invokes += 1
        before = rig.hec.count(contains=tag)
        rig.hec.clear_faults()
        started = time.time()
        shutdown = sb.shutdown()
        ended = time.time()
    finally:
        sb.close()
        rig.hec.clear_faults()
    arrivals = sorted(e.received_at - started
                      for e in rig.hec.events(sourcetype="aws:lambda:function", contains=tag))
    ext = shutdown.extensions[EXTENSION_NAME]
    return {
        "spooled_lines": spooled, "stored_before_shutdown": before,
        "delivered_total": len(arrivals),
        "delivered_within_1_5_s": sum(1 for a in arrivals if a <= TARGET_WINDOW_S),
        "last_arrival_s": arrivals[-1] if arrivals else None,
        "first_arrival_s": arrivals[0] if arrivals else None,
        "shutdown_call_s": ended - started, "deadline_budget_ms": 2000,
        "extension_exit_ms": ext.exit_ms, "extension_exited": ext.exited,
        "extension_killed": ext.killed,
    }


def measure(sizes: Sequence[int]) -> dict[str, Any]:
    with extension_rig() as rig:
        return {"line_bytes": LINE_BYTES, "runs": [run_size(rig, size) for size in sizes]}


def report(results: dict[str, Any]) -> None:
    rows = []
    for r in results["runs"]:
        rows.append([r["spooled_lines"], r["stored_before_shutdown"], r["delivered_within_1_5_s"],
                     r["delivered_total"], r["last_arrival_s"], r["extension_exit_ms"],
                     "killed" if r["extension_killed"] else "exited"])
    common.print_table("Shutdown drain (seconds from the SHUTDOWN call)",
                       ["spooled", "stored before", "within 1.5 s", "by the end",
                        "last arrival s", "ext exit ms", "ext"], rows)


def chart(results: dict[str, Any], folder: Path) -> None:
    runs = results["runs"]
    common.bar_chart(
        folder / "shutdown_drain.png", "Events delivered in the shutdown window",
        [f"{r['spooled_lines']:,} spooled" for r in runs],
        {"within 1.5 s": [r["delivered_within_1_5_s"] for r in runs],
         "by the deadline": [r["delivered_total"] for r in runs]}, "events")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_shutdown_drain", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    args = parser.parse_args(argv)
    results = measure(QUICK_SIZES if args.quick else FULL_SIZES)
    return common.publish("shutdown_drain", results, quick=args.quick, targets=TARGETS,
                          report=report, chart=chart)


if __name__ == "__main__":
    raise SystemExit(main())
