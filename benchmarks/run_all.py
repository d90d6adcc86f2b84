"""Runs every benchmark, each in a fresh interpreter: `python -m benchmarks.run_all [--quick]`
(also `./dev bench`).

Each `benchmarks/bench_*.py` prints its table and writes results/<name>.json; after a full run
(not --quick) docs/benchmarks.md and docs/img/*.png are regenerated from those results.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
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
# A benchmark stopped at its limit gets this long to close what it started (its sandboxes, in
# sessions of their own, and HEC receivers) before its process group is killed.
STOP_GRACE_S = 30.0


def discover(only: Sequence[str] = ()) -> list[str]:
    """Module names of the benchmark scripts (all, or those whose name contains one of `only`)."""
    names = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    return [n for n in names if not only or any(o in n for o in only)]


def run_one(module: str, quick: bool) -> tuple[int, float]:
    """Runs one benchmark in a fresh subprocess; (exit code, seconds)."""
    argv = [sys.executable, "-m", f"benchmarks.{module}", *(["--quick"] if quick else [])]
    print(f"\n=== {module} {'(quick)' if quick else ''}", flush=True)
    started = time.monotonic()
    code = run_bounded(argv, RUN_TIMEOUT_S)
    return code, time.monotonic() - started


def run_bounded(argv: Sequence[str], timeout_s: float, grace_s: float = STOP_GRACE_S) -> int:
    """Runs `argv` in a process group of its own; its exit code, or -1 if it ran past
    `timeout_s`. A benchmark stopped (at its limit, or by Ctrl-C, which its own group does not
    receive from the terminal) is interrupted first (SIGINT: its `finally` blocks close the
    sandboxes and receivers it started), and after `grace_s` its whole group is killed:
    subprocess.run's timeout kills the direct child alone, and would leave its HEC receiver and
    workers running."""
    proc = subprocess.Popen(argv, cwd=common.REPO, process_group=0)
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"stopped after {timeout_s:.0f} s", file=sys.stderr, flush=True)
        _stop(proc, grace_s)
        return -1
    except KeyboardInterrupt:
        _stop(proc, grace_s)
        raise
    _signal_group(proc.pid, signal.SIGKILL)  # anything it left behind in its group
    return code


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    _signal_group(proc.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is empty: all of it exited
        os.killpg(pgid, sig)


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
