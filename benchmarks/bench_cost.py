"""Cost at real Lambda sizes (issue 12): the extension under Lambda's CPU share (memory / 1,769
of a core, enforced by the emulator's cgroup), 10-line invocations arriving at random.

Cells: memory 128, 512 and 1,769 MB x mean idle gap 20 ms, 200 ms, 2 s and 10 s between
invocations (exponentially distributed, so arrivals are Poisson; the gap is the frozen time
between one invocation's end and the next one's start) x flush strategy (`sync`, `background`,
and `adaptive` when the extension's configuration accepts it). Each cell is a fresh sandbox and
a fresh HEC receiver process. Per cell:

- init: extension spawn -> its first `event/next` (the emulator's clock);
- post-runtime of the first invocation, and mean / p99 over all (runtime response -> the
  extension's `next`: billed);
- line -> HEC latency p50 / p99 (each line carries its write time; HEC stores `received_at`);
- lines before freeze: lines HEC stored before their invocation's freeze, in %;
- extension CPU per invocation: scheduler CPU time (ns, /proc/<pid>/task/*/schedstat) of every
  extension process, read while the sandbox is frozen before and after each invocation; the
  steady state is the mean after the first WARMUP invocations;
- HEC requests per invocation: event requests HEC received until the last invocation's freeze.

Short-gap cells run one after the other; cells with gaps >= CONCURRENT_GAP_S spend nearly all
their time frozen, so they run side by side (staggered starts) to bound the run time.
Run: `.venv/bin/python -m benchmarks.bench_cost [--quick] [--memory 128] [--gaps 0.2 2]
[--strategy sync]` -> results/cost.json + cost_*.png (a subset writes the same file).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.rig import Rig, cpu_ns, extension_processes, extension_rig, extension_tree
from ext.local.layer import EXTENSION_NAME

MEMORY_MB = (128, 512, 1769)
GAPS_S = (0.02, 0.2, 2.0, 10.0)
INVOCATIONS = {0.02: 40, 0.2: 30, 2.0: 12, 10.0: 5}
QUICK_MEMORY_MB = (1769,)
QUICK_GAPS_S = (0.02,)
QUICK_INVOCATIONS = {0.02: 3}
LINES = 10
LINE_BYTES = 100
WARMUP = 2  # invocations not counted in the steady-state CPU figure
CONCURRENT_GAP_S = 1.0
STAGGER_S = 1.5
SEED = 12
TARGETS = {"cpu_ms_per_invocation": 1.5, "hec_requests_per_invocation": 1.2,
           "first_post_runtime_ms_128": 150.0, "adaptive_post_runtime_mean_ms_short_gaps": 2.0,
           "adaptive_lines_before_freeze_pct_long_gaps": 95.0}


def _config(strategy: str) -> Any:
    """This checkout's configuration with SPLUNK_FLUSH=`strategy`, or None if it refuses it."""
    from ext import config, errors

    environ = {"SPLUNK_HOST": "http://127.0.0.1:1", "SPLUNK_HEC_TOKEN": "t",
               "SPLUNK_FLUSH": strategy}
    try:
        return config.load(environ)
    except errors.ConfigError:
        return None


def strategies() -> tuple[str, ...]:
    """`sync`, `background`, and `adaptive` if this checkout's configuration accepts it."""
    return tuple(s for s in ("sync", "background", "adaptive") if _config(s) is not None)


def latency_bound_ms() -> float | None:
    """The default SPLUNK_MAX_LATENCY_MS of `adaptive`, when the configuration has one."""
    cfg = _config("adaptive")
    bound = getattr(cfg, "max_latency_ms", None) if cfg is not None else None
    return float(bound) if isinstance(bound, int | float) else None


def gap_label(gap_s: float) -> str:
    return f"{gap_s * 1000:.0f}ms" if gap_s < 1 else f"{gap_s:.0f}s"


def run_cell(memory_mb: int, gap_s: float, strategy: str, invocations: int,
             seed: int, rig_factory: Callable[[], AbstractContextManager[Rig]] = extension_rig,
             env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One fresh sandbox (with its own HEC) through `invocations` Poisson arrivals;
    `rig_factory`: where the extension comes from (bench_floor passes its yardstick's); `env`:
    more extension variables (benchmarks/ab.py: what a setting costs)."""
    rng = random.Random(seed)
    prefix = f"C{memory_mb}-{gap_label(gap_s)}-{strategy}-"
    with rig_factory() as rig:
        sb = rig.sandbox(rig.env(**{"SPLUNK_FLUSH": strategy, **(env or {})}), memory_mb=memory_mb,
                         limits=True, timeout_s=60.0, init_timeout_s=60.0)
        post: list[float] = []
        cpu: list[float] = []
        try:
            init = sb.init()
            limits = sb.inspect()["limits"]
            pids = extension_tree(sb)
            roles = extension_processes(sb)
            before = cpu_ns(pids)
            role_before = {role: cpu_ns([pid]) for role, pid in roles.items()}
            by_role: dict[str, float] = dict.fromkeys(roles, 0.0)
            for n in range(invocations):
                result = sb.invoke({"lines": LINES, "size": LINE_BYTES, "tag": f"{prefix}{n}",
                                    "stamp": True})
                if result.status != "success" or result.post_runtime_ms is None:
                    raise RuntimeError(f"invoke failed: {result}")
                post.append(result.post_runtime_ms)
                now = cpu_ns(pids)
                cpu.append((now - before) / 1e6)
                before = now
                for role, pid in roles.items():
                    used = cpu_ns([pid])
                    if n >= WARMUP:
                        by_role[role] += (used - role_before[role]) / 1e6
                    role_before[role] = used
                time.sleep(rng.expovariate(1 / gap_s))  # frozen: Lambda's idle time
            requests = rig.hec.data_requests()
            frozen = [inv["frozen_at"] for inv in sb.inspect()["invocations"]]
            sb.shutdown()
        finally:
            sb.close()
        epoch_offset = time.time() - time.monotonic()
        events = rig.hec.events(sourcetype="aws:lambda:function", contains=prefix)
    latencies, in_time = _line_figures(events, prefix, [f + epoch_offset for f in frozen])
    steady = cpu[WARMUP:] if len(cpu) > WARMUP else cpu
    ext_init = init.get("extensions", {}).get(EXTENSION_NAME, {})
    return {
        "memory_mb": memory_mb, "gap_s": gap_s, "strategy": strategy,
        "invocations": invocations, "limits": limits,
        "init_ms": ext_init.get("first_next_ms"),
        "first_post_runtime_ms": post[0],
        "post_runtime_ms": common.summary(post),
        "latency_ms": common.summary(latencies),
        "lines_expected": LINES * invocations, "lines_stored": len(latencies),
        "lines_before_freeze_pct": 100.0 * in_time / (LINES * invocations),
        "cpu_ms_per_invocation": sum(steady) / len(steady),
        "cpu_ms_first_invocation": cpu[0],
        "cpu_ms_per_invocation_by_process": {
            role: used / max(1, invocations - WARMUP) for role, used in by_role.items()},
        "post_runtime_warm_mean_ms": (sum(post[WARMUP + 1:]) / len(post[WARMUP + 1:])
                                      if len(post) > WARMUP + 1 else math.nan),
        "hec_requests_per_invocation": requests / invocations,
        "post_runtime_samples": post, "cpu_ms_samples": cpu,
    }


def _line_figures(events: list[Any], prefix: str,
                  frozen_epoch: list[float]) -> tuple[list[float], int]:
    """Latency (ms) of every stored line, and how many were stored before their freeze."""
    latencies: list[float] = []
    in_time = 0
    for event in events:
        text = json.loads(event.event)
        if not isinstance(text, str) or not text.startswith(prefix):
            continue
        tag, _, rest = text.partition(":")
        written = float(rest.partition(":@")[2].partition(":")[0])
        latencies.append((event.received_at - written) * 1000)
        n = int(tag.removeprefix(prefix))
        if n < len(frozen_epoch) and event.received_at <= frozen_epoch[n]:
            in_time += 1
    return latencies, in_time


def measure(memory: Sequence[int], gaps: Sequence[float], invocations: dict[float, int],
            only: Sequence[str] = ()) -> dict[str, Any]:
    chosen = [s for s in strategies() if not only or s in only]
    plan = [(m, g, s) for m in memory for g in gaps for s in chosen]
    seeds = {cell: SEED + i for i, cell in enumerate(plan)}
    cells: list[dict[str, Any]] = []
    for m, g, s in plan:
        if g < CONCURRENT_GAP_S:
            cells.append(run_cell(m, g, s, invocations[g], seeds[(m, g, s)]))
            print(f"  {m} MB, gap {gap_label(g)}, {s}: done", file=sys.stderr, flush=True)
    side_by_side = [cell for cell in plan if cell[1] >= CONCURRENT_GAP_S]
    if side_by_side:
        with ThreadPoolExecutor(max_workers=len(side_by_side)) as pool:
            futures = [pool.submit(_staggered, i * STAGGER_S, m, g, s, invocations[g],
                                   seeds[(m, g, s)])
                       for i, (m, g, s) in enumerate(side_by_side)]
            cells += [f.result() for f in futures]
    order = {cell: i for i, cell in enumerate(plan)}
    cells.sort(key=lambda c: order[(c["memory_mb"], c["gap_s"], c["strategy"])])
    skipped = [] if "adaptive" in strategies() else ["adaptive (not accepted by ext.config)"]
    return {"lines_per_invocation": LINES, "line_bytes": LINE_BYTES, "warmup": WARMUP,
            "strategies": chosen, "skipped": skipped,
            "adaptive_latency_bound_ms": latency_bound_ms(), "cells": cells}


def _staggered(delay_s: float, *args: Any) -> dict[str, Any]:
    time.sleep(delay_s)
    return run_cell(*args)


def rows(results: dict[str, Any]) -> list[list[object]]:
    out: list[list[object]] = []
    for c in results["cells"]:
        post, lat = c["post_runtime_ms"], c["latency_ms"]
        out.append([c["memory_mb"], gap_label(c["gap_s"]), c["strategy"], c["invocations"],
                    c["init_ms"] or math.nan, c["first_post_runtime_ms"], post["mean"],
                    c.get("post_runtime_warm_mean_ms", math.nan), post["p99"], lat["p50"],
                    lat["p99"], c["lines_before_freeze_pct"],
                    c["cpu_ms_per_invocation"], c["hec_requests_per_invocation"]])
    return out


HEADERS = ["MB", "gap", "strategy", "inv", "init ms", "1st post ms", "post mean", "warm mean",
           "post p99",
           "lat p50", "lat p99", "before freeze %", "CPU ms/inv", "HEC req/inv"]


def report(results: dict[str, Any]) -> None:
    common.print_table(
        f"Cost per {LINES}-line invocation under Lambda's CPU share (ms unless noted)",
        HEADERS, rows(results))
    for c in results["cells"]:
        split = c.get("cpu_ms_per_invocation_by_process", {})
        print(f"CPU ms/inv by process, {c['memory_mb']} MB {gap_label(c['gap_s'])} "
              f"{c['strategy']}: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))
    print(f"warm mean: post-runtime mean leaving out the first {WARMUP + 1} invocations "
          "(adaptive waits while it learns the rhythm)")
    for note in results["skipped"]:
        print(f"skipped: {note}")
    limited = {bool(c["limits"].get("applied")) for c in results["cells"]}
    if limited != {True}:
        print("WARNING: some cells ran without the cgroup CPU share (not root?): not Lambda's "
              "figures")


def chart(results: dict[str, Any], folder: Path) -> None:
    cells = results["cells"]
    groups = sorted({(c["memory_mb"], c["gap_s"]) for c in cells})
    labels = [f"{m}\n{gap_label(g)}" for m, g in groups]  # MB, mean gap
    by = {(c["memory_mb"], c["gap_s"], c["strategy"]): c for c in cells}
    for name, title, key, targets in (
        ("cost_post_runtime.png", "Mean post-runtime (billed) per invocation, by MB and mean gap",
         ("post_runtime_ms", "mean"), {"adaptive target 2 ms": 2.0}),
        ("cost_cpu.png", "Extension CPU per 10-line invocation, by MB and mean gap",
         ("cpu_ms_per_invocation", ""), {"target 1.5 ms": 1.5}),
    ):
        def pick(cell: dict[str, Any], key: tuple[str, str] = key) -> float:
            value = cell[key[0]]
            return float(value[key[1]] if key[1] else value)

        series = {s: [max(1e-3, pick(by[(m, g, s)])) if (m, g, s) in by else math.nan
                      for m, g in groups] for s in results["strategies"]}
        common.bar_chart(folder / name, title, labels, series, "ms (log scale)", targets,
                         log_y=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_cost", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--memory", type=int, nargs="*", choices=MEMORY_MB, default=MEMORY_MB,
                        help="a subset of the memory sizes (MB)")
    parser.add_argument("--gaps", type=float, nargs="*", choices=GAPS_S, default=GAPS_S,
                        help="a subset of the mean gaps (s)")
    parser.add_argument("--strategy", nargs="*", default=(),
                        help="a subset of the strategies (default: every accepted one)")
    args = parser.parse_args(argv)
    if args.quick:
        results = measure(QUICK_MEMORY_MB, QUICK_GAPS_S, QUICK_INVOCATIONS, args.strategy)
    else:
        results = measure(args.memory, args.gaps, INVOCATIONS, args.strategy)
    return common.publish("cost", results, quick=args.quick, targets=TARGETS,
                          report=report, chart=chart)


if __name__ == "__main__":
    raise SystemExit(main())
