"""Runs every benchmark, each in a fresh interpreter: `python -m benchmarks.run_all [--quick]`
(also `./dev bench`).

Each `benchmarks/bench_*.py` prints its table and writes results/<name>.json; after a full run
(not --quick) docs/benchmarks.md and docs/img/*.png are regenerated from those results.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import common

BENCH_DIR = Path(__file__).resolve().parent
# bench_floor, the longest, takes ~22 min on a slow day (four cells x four contenders x three
# rounds, then memory); a stuck benchmark is still stopped.
RUN_TIMEOUT_S = 2400


def discover(only: Sequence[str] = ()) -> list[str]:
    """Module names of the benchmark scripts (all, or those whose name contains one of `only`)."""
    names = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    return [n for n in names if not only or any(o in n for o in only)]


def run_one(module: str, quick: bool) -> tuple[int, float]:
    """Runs one benchmark in a fresh subprocess; (exit code, seconds)."""
    argv = [sys.executable, "-m", f"benchmarks.{module}", *(["--quick"] if quick else [])]
    print(f"\n=== {module} {'(quick)' if quick else ''}", flush=True)
    started = time.monotonic()
    try:
        code = subprocess.run(argv, cwd=common.REPO, timeout=RUN_TIMEOUT_S, check=False).returncode
    except subprocess.TimeoutExpired:
        code = -1
    return code, time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_all", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--only", nargs="*", default=(), help="substrings of benchmark names")
    parser.add_argument("--no-report", action="store_true",
                        help="do not regenerate docs/benchmarks.md after a full run")
    args = parser.parse_args(argv)
    outcomes = [(m, *run_one(m, args.quick)) for m in discover(args.only)]
    common.print_table("Benchmarks run", ["benchmark", "exit", "seconds"],
                       [[m, code, seconds] for m, code, seconds in outcomes])
    failed = [m for m, code, _ in outcomes if code != 0]
    if not args.quick and not args.no_report and not failed:
        from benchmarks import report

        report.main([])
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
