"""Emulator overhead: cold init, no-op invokes/s (with a no-op extension), telemetry throughput.

Run: `.venv/bin/python -m benchmarks.bench_emulator [--quick]`; prints a table and writes
results/emulator.json. Later figures of the project are read against these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ext.local.sandbox import Sandbox, SandboxConfig

REPO = Path(__file__).resolve().parents[1]
# A no-op extension a third party would write: register for INVOKE, then just call next.
NOOP_EXTENSION = """#!/usr/bin/env python3
import http.client, json, os
conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
conn.request("POST", "/2020-01-01/extension/register", json.dumps({"events": ["INVOKE"]}),
             {"Lambda-Extension-Name": "noop"})
resp = conn.getresponse(); resp.read()
ext_id = resp.getheader("Lambda-Extension-Identifier")
while True:
    conn.request("GET", "/2020-01-01/extension/event/next",
                 headers={"Lambda-Extension-Identifier": ext_id})
    conn.getresponse().read()
"""


def make_layer(root: Path) -> Path:
    """Layer folder with the no-op extension."""
    ext = root / "extensions" / "noop"
    ext.parent.mkdir(parents=True)
    ext.write_text(NOOP_EXTENSION)
    os.chmod(ext, 0o755)
    return root


def percentile(values: list[float], q: float) -> float:
    """q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_cold_init(opt: Path | None, runs: int) -> list[float]:
    """Init duration (ms) of fresh sandboxes."""
    # Whole cores: this measures the emulator's own overhead, not Lambda's CPU share.
    cfg = SandboxConfig(function_dir=REPO / "function", handler="handler.handler", opt_dir=opt,
                        limits=False)
    out = []
    for _ in range(runs):
        with Sandbox(cfg) as sb:
            out.append(float(sb.init()["duration_ms"]))
    return out


def bench_invokes(opt: Path | None, count: int, payload: dict[str, Any]) -> dict[str, float]:
    """Invoke round trips (ms, wall clock in the caller) and invokes/s."""
    # Whole cores: this measures the emulator's own overhead, not Lambda's CPU share.
    cfg = SandboxConfig(function_dir=REPO / "function", handler="handler.handler", opt_dir=opt,
                        limits=False)
    with Sandbox(cfg) as sb:
        sb.invoke(payload)
        times = []
        start = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter()
            sb.invoke(payload)
            times.append((time.perf_counter() - t0) * 1000)
        total = time.perf_counter() - start
        events = sum(sb.inspect()["event_counts"].values())
    return {
        "invokes_per_s": count / total,
        "p50_ms": statistics.median(times),
        "p99_ms": percentile(times, 0.99),
        "events_per_s": events / total,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints a table, writes results/emulator.json."""
    parser = argparse.ArgumentParser(prog="bench_emulator")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    args = parser.parse_args(argv)
    invokes, inits, lines = (20, 2, 200) if args.quick else (1000, 10, 10000)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        opt = make_layer(Path(tmp) / "opt")
        rows["cold_init_ms_no_ext"] = statistics.median(bench_cold_init(None, inits))
        rows["cold_init_ms_noop_ext"] = statistics.median(bench_cold_init(opt, inits))
        rows["noop_no_ext"] = bench_invokes(None, invokes, {})
        rows["noop_with_noop_ext"] = bench_invokes(opt, invokes, {})
        rows["log_lines_per_invoke"] = lines
        rows["logs_with_noop_ext"] = bench_invokes(
            opt, max(3, invokes // 100), {"lines": lines, "size": 100}
        )
    print(f"{'cold init, no extension':40s} {rows['cold_init_ms_no_ext']:9.1f} ms")
    print(f"{'cold init, no-op extension':40s} {rows['cold_init_ms_noop_ext']:9.1f} ms")
    for key in ("noop_no_ext", "noop_with_noop_ext", "logs_with_noop_ext"):
        r = rows[key]
        print(
            f"{key:40s} {r['invokes_per_s']:9.1f} inv/s  p50 {r['p50_ms']:.2f} ms  "
            f"p99 {r['p99_ms']:.2f} ms  {r['events_per_s']:.0f} events/s"
        )
    results = REPO / "results"
    results.mkdir(exist_ok=True)
    rows["python"] = sys.version.split()[0]
    rows["quick"] = args.quick
    (results / "emulator.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
