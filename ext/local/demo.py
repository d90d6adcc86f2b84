"""Local demo (`python -m ext.local.demo`, `./dev demo`): the sample function in the emulator.

A CLI, so it prints. Today: a few invocations of function/handler.py with a tiny built-in
subscriber (an in-process observer of platform events) and a readable summary. Later steps plug
the real extension (opt_dir) and the HEC receiver into `build_config` / `run_demo`.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ext.local.sandbox import Sandbox, SandboxConfig
from ext.local.sandbox.cli import summarise

REPO = Path(__file__).resolve().parents[2]


def build_config(opt_dir: Path | None = None) -> SandboxConfig:
    """Sandbox for the sample function; `opt_dir` adds a layer with extensions."""
    return SandboxConfig(function_dir=REPO / "function", handler="handler.handler", opt_dir=opt_dir)


def demo_payloads(invokes: int) -> list[dict[str, Any]]:
    """One payload per invocation, cycling through the sample function's log modes."""
    modes = ["print", "logging", "json"]
    return [
        {"lines": 5, "size": 48, "mode": modes[n % len(modes)], "tag": f"demo{n}"}
        for n in range(invokes)
    ]


def run_demo(invokes: int) -> dict[str, Any]:
    """Run the demo; returns inspect() of the sandbox plus the platform events observed."""
    observed: Counter[str] = Counter()
    with Sandbox(build_config()) as sb:
        sb.on_platform_event(lambda event_type, _record: observed.update([event_type]))
        for payload in demo_payloads(invokes):
            result = sb.invoke(payload)
            print(f"invoke {payload['tag']}: {result.status} in {result.duration_ms} ms")
        sb.shutdown()
        report = sb.inspect()
    report["observed_platform_events"] = dict(observed)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m ext.local.demo")
    parser.add_argument("--invokes", type=int, default=3)
    args = parser.parse_args(argv)
    report = run_demo(args.invokes)
    print()
    for line in summarise(report):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
