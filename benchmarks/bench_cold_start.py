"""Cold start (issue 7, item 1): extension process start -> register and -> first event/next,
next to a bare `python -c pass` of the same interpreter measured in the same run; and what the
extension adds to the whole init phase of the sample function at Lambda's CPU shares (the
runtime's init and the extension's share the sandbox's CPU, and AWS bills the init phase).

Run: `.venv/bin/python -m benchmarks.bench_cold_start [--quick]`; prints a table, writes
results/cold_start.json and results/cold_start.png. The emulator's clock starts when Popen of the
extension launcher returns (docs/emulator.md); the bare start is timed the same way: from the
return of an identical Popen (new session, piped output) to the reaped exit. Runs interleave.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks import common
from benchmarks.common import bare_start_ms
from benchmarks.rig import Rig, cpu_ns, extension_processes, extension_rig
from ext.local.layer import EXTENSION_NAME

TARGETS = {"register_ratio_p50": 2.0, "first_next_ratio_p50": 3.0}
# Function memory sizes whose init is timed with and without the extension: the smallest, a
# common one, and one full core.
FUNCTION_MEMORY_MB = (128, 512, 1769)
BARE_COMMANDS = {"bare": ["-c", "pass"], "bare_no_site": ["-S", "-c", "pass"]}
def cold_init(rig: Rig, env: dict[str, str] | None = None,
              without: tuple[str, ...] = (), cpu: bool = False,
              memory_mb: int | None = None) -> dict[str, float]:
    """One cold init in a fresh sandbox: register_ms and first_next_ms from process start;
    with `cpu`, also the CPU each extension process used until the init ended (ms, scheduler
    time of all its threads), read while the sandbox is frozen after it. With `memory_mb`, the
    sandbox has that function memory and Lambda's CPU share for it (else whole cores).

    `env` adds to the rig's environment, `without` names variables taken out of it."""
    full = rig.env(**(env or {}))
    limits = {} if memory_mb is None else {"memory_mb": memory_mb, "limits": True,
                                           "init_timeout_s": 60.0}
    sb = rig.sandbox({k: v for k, v in full.items() if k not in without}, **limits)
    used: dict[str, float] = {}
    try:
        record = sb.init()
        if record.get("status") != "success":
            raise RuntimeError(f"init failed: {record}")
        ext = record["extensions"][EXTENSION_NAME]
        if cpu:
            used = {f"cpu_ms_{role}": cpu_ns([pid]) / 1e6
                    for role, pid in extension_processes(sb).items()}
        sb.shutdown()
    finally:
        sb.close()
    return {"register_ms": float(ext["register_ms"]), "first_next_ms": float(ext["first_next_ms"]),
            "init_ms": float(record["duration_ms"]), **used}


def function_init_ms(rig: Rig, memory_mb: int, extension: bool) -> float:
    """The init phase of the sample function (ms, as the emulator reports it: until the runtime
    and every extension are ready) in a fresh sandbox with Lambda's CPU share and memory limit
    for `memory_mb`, with the extension or with none."""
    sb = rig.sandbox(rig.env() if extension else {}, memory_mb=memory_mb, limits=True,
                     init_timeout_s=60.0, **({} if extension else {"opt_dir": None}))
    try:
        record = sb.init()
        if record.get("status") != "success":
            raise RuntimeError(f"init failed: {record}")
        sb.shutdown()
    finally:
        sb.close()
    return float(record["duration_ms"])


def measure_function_init(rig: Rig, rounds: int,
                          sizes: Sequence[int] = FUNCTION_MEMORY_MB) -> dict[str, Any]:
    """Per memory size, the function's init without and with the extension, alternating which
    goes first round by round (the machine's speed drifts); medians and the time added."""
    out: dict[str, Any] = {}
    for memory_mb in sizes:
        samples: dict[str, list[float]] = {"without": [], "with": []}
        for round_no in range(rounds):
            order = (False, True) if round_no % 2 == 0 else (True, False)
            for extension in order:
                samples["with" if extension else "without"].append(
                    function_init_ms(rig, memory_mb, extension))
        without, with_ = (statistics.median(samples[k]) for k in ("without", "with"))
        out[str(memory_mb)] = {"without_ms": without, "with_ms": with_,
                               "added_ms": with_ - without, "samples": samples}
    return out


def measure(runs: int, function_rounds: int = 0,
            sizes: Sequence[int] = FUNCTION_MEMORY_MB) -> dict[str, Any]:
    """Interleaved bare starts and cold inits; per-series summaries and the ratios."""
    series: dict[str, list[float]] = {"bare": [], "bare_no_site": [], "register_ms": [],
                                      "first_next_ms": [], "init_ms": []}
    with extension_rig() as rig:
        cold_init(rig)  # warm the page cache; not counted
        for _ in range(runs):
            for name, args in BARE_COMMANDS.items():
                series[name].append(bare_start_ms(args))
            for key, value in cold_init(rig).items():
                series[key].append(value)
        function_init = (measure_function_init(rig, function_rounds, sizes)
                         if function_rounds else {})
    stats = {name: common.summary(values) for name, values in series.items()}
    ratios = {}
    for figure in ("register", "first_next"):
        for q in ("p50", "p95"):
            ratios[f"{figure}_ratio_{q}"] = stats[f"{figure}_ms"][q] / stats["bare"][q]
    return {"runs": runs, "stats": stats, "ratios": ratios, "samples": series,
            "function_init": function_init, "function_rounds": function_rounds}


def report(results: dict[str, Any]) -> None:
    stats, ratios = results["stats"], results["ratios"]
    rows = []
    labels = {"bare": "bare `python -c pass`", "bare_no_site": "bare `python -S -c pass`",
              "register_ms": "extension: start -> register",
              "first_next_ms": "extension: start -> first next",
              "init_ms": "whole init phase (emulator)"}
    for key, label in labels.items():
        rows.append([label, stats[key]["p50"], stats[key]["p95"], stats[key]["max"]])
    common.print_table(f"Cold start over {results['runs']} cold inits (ms)",
                       ["series", "p50", "p95", "max"], rows)
    ratio_rows = []
    for figure in ("register", "first_next"):
        target = TARGETS[f"{figure}_ratio_p50"]
        ratio_rows.append([figure, ratios[f"{figure}_ratio_p50"], ratios[f"{figure}_ratio_p95"],
                           target, common.verdict(ratios[f"{figure}_ratio_p50"], target)])
    common.print_table("Ratio to the bare start", ["figure", "p50 x", "p95 x", "target x",
                                                   "verdict"], ratio_rows)
    if results.get("function_init"):
        common.print_table(
            f"The sample function's init phase at Lambda's CPU share (ms, median of "
            f"{results['function_rounds']} each)", ["memory MB", "without", "with", "added"],
            [[int(mb), f["without_ms"], f["with_ms"], f["added_ms"]]
             for mb, f in results["function_init"].items()])


def chart(results: dict[str, Any], folder: Any) -> None:
    """Bar chart of p50/p95 per series."""
    stats = results["stats"]
    keys = ["bare", "bare_no_site", "register_ms", "first_next_ms"]
    common.bar_chart(
        folder / "cold_start.png", "Cold start: process start -> register / first next",
        ["python -c pass", "python -S -c pass", "-> register", "-> first next"],
        {"p50": [stats[k]["p50"] for k in keys], "p95": [stats[k]["p95"] for k in keys]},
        "ms",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_cold_start", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--runs", type=int, default=None, help="cold inits (default 30)")
    parser.add_argument("--function-rounds", type=int, default=None,
                        help="function inits per side and memory size (default 4; 0: none)")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 30)
    function_rounds = (args.function_rounds if args.function_rounds is not None
                       else 1 if args.quick else 4)
    # --quick: the full core alone (its init is the shortest), to check the path.
    results = measure(runs, function_rounds, FUNCTION_MEMORY_MB[-1:] if args.quick
                      else FUNCTION_MEMORY_MB)
    return common.publish("cold_start", results, quick=args.quick, targets=TARGETS,
                          report=report, chart=chart)


if __name__ == "__main__":
    raise SystemExit(main())
