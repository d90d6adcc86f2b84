"""Command line of the emulator: `python -m ext.local.sandbox run ...` (a CLI, so it prints).

Runs a function (and the extensions of --opt-dir) for a few invocations and prints what happened:
per-invocation status and durations, init time, telemetry events per type, shutdown outcome.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ext.local.sandbox.model import SandboxConfig
from ext.local.sandbox.sandbox import Sandbox


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the `run` command."""
    parser = argparse.ArgumentParser(prog="python -m ext.local.sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a function in the emulator")
    run.add_argument("--function-dir", type=Path, default=Path("function"))
    run.add_argument("--handler", default="handler.handler")
    run.add_argument("--opt-dir", type=Path, default=None)
    run.add_argument("--invokes", type=int, default=3)
    run.add_argument("--payload", default='{"lines": 3, "tag": "cli"}')
    run.add_argument("--timeout", type=float, default=3.0)
    run.add_argument("--memory", type=int, default=128)
    run.add_argument("--log-format", choices=["Text", "JSON"], default="Text")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--no-limits", action="store_true",
                     help="run on whole cores, without Lambda's CPU share and memory limit")
    run.add_argument("--snap-start", action="store_true",
                     help="SnapStart: init ends in a snapshot, the first invoke restores it")
    run.add_argument("--exchange-log", type=Path, default=None)
    run.add_argument("--json", action="store_true", help="print inspect() as JSON at the end")
    return parser


def summarise(report: dict[str, Any]) -> list[str]:
    """Human-readable lines for an inspect() dict."""
    lines = []
    for init in report["inits"]:
        lines.append(
            f"init phase={init['phase']} status={init['status']} "
            f"duration={init['duration_ms']:.1f} ms error={init['error_type']}"
        )
        for name, ext in init["extensions"].items():
            lines.append(
                f"  extension {name}: register {ext['register_ms']} ms, first next "
                f"{ext['first_next_ms']} ms"
            )
    for restore in report.get("restores", []):
        lines.append(
            f"restore status={restore['status']} duration={restore['duration_ms']:.1f} ms "
            f"error={restore['error_type']}"
        )
    for n, inv in enumerate(report["invocations"], 1):
        lines.append(
            f"invoke {n}: {inv['status']} duration={inv['duration_ms']} ms "
            f"runtime={inv['runtime_duration_ms']} ms post-runtime={inv['post_runtime_ms']} ms "
            f"maxMemoryUsedMB={inv['max_memory_used_mb']}"
        )
    lines.append("telemetry events emitted per type:")
    lines.extend(f"  {k:32s} {v}" for k, v in sorted(report["event_counts"].items()))
    for name, stats in report["delivery"].items():
        lines.append(
            f"delivered to {name}: {int(stats['events'])} events in {int(stats['batches'])} batches"
        )
    for shut in report["shutdowns"]:
        procs = ", ".join(
            f"{p['name']}={'exited' if p['exited'] else 'killed'}" for p in shut["processes"]
        )
        lines.append(f"shutdown {shut['reason']}: {shut['duration_ms']} ms ({procs})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    cfg = SandboxConfig(
        function_dir=args.function_dir.resolve(),
        handler=args.handler,
        opt_dir=args.opt_dir.resolve() if args.opt_dir else None,
        env=env,
        timeout_s=args.timeout,
        memory_mb=args.memory,
        log_format=args.log_format,
        exchange_log=args.exchange_log,
        limits=not args.no_limits,
        snap_start=args.snap_start,
    )
    with Sandbox(cfg) as sb:
        for _ in range(args.invokes):
            result = sb.invoke(args.payload.encode())
            print(f"-> {result.status}: {result.response.decode('utf-8', 'replace')[:200]}")
        sb.shutdown()
        report = sb.inspect()
    for line in summarise(report):
        print(line)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0
