"""Cost of one small invocation (issue 12 item 2): HEC requests and extension CPU per invocation.

Runs the sample function in the emulator, 10 log lines per invocation, back to back: a warm-up,
then the measured invocations. CPU is read from /proc/<pid>/task/*/schedstat (ns on CPU, every
thread: the sender's courier thread too) of the main, listener and sender processes before and
after the measured invocations; HEC requests from the receiver's request counter. With
`--profile DIR`, every extension process runs under cProfile (benchmarks/profiled_extension.py)
and the top functions per process are printed; with `--phases DIR`, a CPU counter wraps each of
a few named functions per child instead (benchmarks/phased_extension.py), printed per invocation.
With `--run-ms`, each invocation runs that long after its lines: what the extension's waits cost
while a function works (issue 12: an idle wait that polls is paid per second of invocation).
Run: `.venv/bin/python -m benchmarks.bench_invocation_cost [--quick] [--flush sync]
[--gap-ms 200] [--run-ms 2000] [--profile DIR | --phases DIR]`.
"""

from __future__ import annotations

import argparse
import json
import pstats
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.rig import cpu_ns, extension_processes, extension_rig

LINES = 10
WARMUP = 20
WRAPPER = Path(__file__).with_name("profiled_extension.py")
PHASED = Path(__file__).with_name("phased_extension.py")  # --phases: counters, not cProfile


def measure(flush: str, invocations: int, profile_dir: Path | None,
            gap_s: float = 0.0, code: Path | None = None,
            wrapper: Path = WRAPPER, run_ms: float = 0.0,
            extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One fresh sandbox: WARMUP invocations, then `invocations` measured ones, each running
    `run_ms` after its lines (what the extension does while a function works: its waits);
    `code`: the `ext` package the extension runs, when not this checkout's (benchmarks/ab.py);
    `extra`: more extension variables (benchmarks/ab.py: what a setting costs)."""
    with extension_rig(code) as rig:
        env = rig.env(**{"SPLUNK_FLUSH": flush, **(extra or {})})
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            script = rig.work / "python-profiled"
            script.write_text(f'#!/bin/sh\nEXT_PROFILE_DIR="{profile_dir}" exec "{sys.executable}"'
                              f' "{wrapper}" "$@"\n')
            script.chmod(0o755)
            env["SPLUNK_EXTENSION_PYTHON"] = str(script)
        sb = rig.sandbox(env, timeout_s=30.0)
        try:
            for n in range(WARMUP):
                sb.invoke({"lines": LINES, "tag": f"w{n}"})
            roles = extension_processes(sb)
            before = {role: cpu_ns([pid]) for role, pid in roles.items()}
            requests_before = rig.hec.admin("GET", "/_admin/stats")["requests"]
            post_runtime = []
            for n in range(invocations):
                result = sb.invoke({"lines": LINES, "tag": f"m{n}", "sleep_ms": run_ms})
                post_runtime.append(result.post_runtime_ms or 0.0)
                time.sleep(gap_s)  # frozen between invocations, as Lambda keeps it
            after = {role: cpu_ns([pid]) for role, pid in roles.items()}
            requests = rig.hec.admin("GET", "/_admin/stats")["requests"] - requests_before
            sb.shutdown()
        finally:
            sb.close()
    per_role_us = {role: (after[role] - before[role]) / invocations / 1000 for role in roles}
    return {
        "flush": flush, "lines": LINES, "invocations": invocations, "run_ms": run_ms,
        "hec_requests_per_invocation": requests / invocations,
        "cpu_us_per_invocation": sum(per_role_us.values()),
        "cpu_us_per_invocation_by_process": per_role_us,
        "post_runtime_ms": common.summary(post_runtime),
    }


def print_profiles(profile_dir: Path, top: int) -> None:
    for path in sorted(profile_dir.glob("*.prof")):
        print(f"\n== {path.name} ==")
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(top)


def phase_rows(phase_dir: Path, invocations: int) -> list[list[str]]:
    """(role, function, us per invocation, calls per invocation, us per call) of every counter
    the children wrote, by role, the costliest first; `invocations`: all the sandbox ran."""
    rows = []
    for path in sorted(phase_dir.glob("*.json")):
        role = path.stem.rsplit("-", 1)[0]
        counters = json.loads(path.read_text())
        for label, (ns, calls) in sorted(counters.items(), key=lambda kv: -kv[1][0]):
            rows.append([role, label, f"{ns / 1000 / invocations:.1f}",
                         f"{calls / invocations:.2f}", f"{ns / 1000 / max(calls, 1):.1f}"])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--flush", default="adaptive")
    parser.add_argument("--invocations", type=int, default=None)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--phases", type=Path, default=None,
                        help="count the CPU of named functions per child into this folder")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="frozen time between invocations (default: back to back)")
    parser.add_argument("--run-ms", type=float, default=0.0,
                        help="how long each invocation runs after its lines (default: at once)")
    args = parser.parse_args(argv)
    invocations = args.invocations or (10 if args.quick else 100)
    if args.profile is not None and args.phases is not None:
        parser.error("--profile and --phases each wrap the interpreter: one at a time")
    if args.phases is not None:
        result = measure(args.flush, invocations, args.phases, args.gap_ms / 1000,
                         wrapper=PHASED, run_ms=args.run_ms)
    else:
        result = measure(args.flush, invocations, args.profile, args.gap_ms / 1000,
                         run_ms=args.run_ms)
    by_role = result["cpu_us_per_invocation_by_process"]
    print(common.format_table(
        ["flush", "invocations", "HEC requests/inv", "CPU us/inv", "main", "listener", "sender",
         "post-runtime p50 ms"],
        [[result["flush"], invocations, f"{result['hec_requests_per_invocation']:.2f}",
          f"{result['cpu_us_per_invocation']:.0f}", f"{by_role.get('main', 0):.0f}",
          f"{by_role.get('listener', 0):.0f}", f"{by_role.get('sender', 0):.0f}",
          f"{result['post_runtime_ms']['p50']:.1f}"]]))
    if args.profile is not None:
        print_profiles(args.profile, 25)
    if args.phases is not None:
        print(f"\nCPU of named functions (each includes what it calls), over all"
              f" {invocations + WARMUP} invocations of the run:")
        print(common.format_table(["process", "function", "us/inv", "calls/inv", "us/call"],
                                  phase_rows(args.phases, invocations + WARMUP)))
    common.write_result("invocation_cost", result, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
