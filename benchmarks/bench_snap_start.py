"""The first invocations after a SnapStart restore, under Lambda's CPU share: how long the first
one's flush holds the environment (post-runtime, billed), and whether its lines are in HEC
before it ends.

Each run is a fresh sandbox in the emulator's SnapStart mode and a fresh HEC receiver: init
(the function logs 3 lines and loads for INIT_MS; the extension connects to HEC and sends the
init's lines), the snapshot, then HEC abandons every
connection open at it (as a restored environment finds them: never answered, never closed),
the restore, and INVOCATIONS invocations of 10 lines, GAP_S apart. Per invocation: post-runtime
(runtime response -> the extension's `next`), the share of its lines stored in HEC when it
ended, and the CPU of each extension process (all threads); and how many of the init's events
(its lines, the platform's init records) were not in HEC at the snapshot: those every
environment restored from it sends again. `--tls`: the receiver speaks TLS
(self-signed certificate, trusted through a bundle of the system's CAs plus it), so that the
reconnection after the restore pays a handshake at the CPU share.
Needs root for the cgroup CPU limit (without it the sandbox runs on whole cores; it says so).
Run: `.venv/bin/python -m benchmarks.bench_snap_start [--quick] [--memory 128] [--runs 5]
[--flush sync|adaptive] [--tls]` -> results/snap_start.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import common
from benchmarks.bench_first_invocation import rig
from benchmarks.rig import cpu_ns, extension_processes

INVOCATIONS = 3
GAP_S = 0.3
LINES = 10
INIT_MS = 300
INIT_RECORDS = ('"platform.initStart"', '"platform.initRuntimeDone"', '"platform.extension"',
                '"platform.initReport"')


def _init_events(made: Any) -> int:
    """The init's events in HEC: its lines and the platform's init records."""
    lines = sum(1 for e in made.hec.events(sourcetype="aws:lambda:function")
                if "init:" in e.event)
    records = sum(1 for e in made.hec.events(sourcetype="aws:lambda:platform")
                  if any(kind in e.event for kind in INIT_RECORDS))
    return lines + records


def run(memory_mb: int, flush: str, tls: bool, n: int) -> dict[str, Any]:
    with rig(tls) as (made, base_env):
        # A function whose init logs and loads for a while (imports, clients), as most do: the
        # extension is connected to HEC and has sent the init's lines when Lambda snapshots.
        env = {**base_env, "SPLUNK_FLUSH": flush, "SAMPLE_INIT_LINES": "3",
               "SAMPLE_INIT_MS": str(INIT_MS)}
        sb = made.sandbox(env, memory_mb=memory_mb, limits=True, timeout_s=60.0,
                          init_timeout_s=60.0, snap_start=True)
        rows = []
        try:
            init = sb.init()
            limits = sb.inspect()["limits"]
            if init["status"] != "success":
                raise RuntimeError(f"init failed: {init}")
            in_hec_at_snapshot = _init_events(made)
            abandoned = made.hec.admin("POST", "/_admin/connections/abandon", {})
            restore = sb.restore()
            roles = extension_processes(sb)
            for k in range(INVOCATIONS):
                tag = f"S{n}-{k}-"
                before = {role: cpu_ns([pid]) for role, pid in roles.items()}
                result = sb.invoke({"lines": LINES, "size": 100, "tag": tag})
                stored = sum(1 for e in made.hec.events(sourcetype="aws:lambda:function")
                             if tag in e.event)
                after = {role: cpu_ns([pid]) for role, pid in roles.items()}
                if result.status != "success" or result.post_runtime_ms is None:
                    raise RuntimeError(f"invoke failed: {result}")
                rows.append({"post_runtime_ms": result.post_runtime_ms,
                             "in_hec_at_end": stored / LINES,
                             "cpu_ms": {r: (after[r] - before[r]) / 1e6 for r in roles}})
                time.sleep(GAP_S)
            sb.shutdown()
        finally:
            sb.close()
        init_events = _init_events(made)
    return {"limits": limits, "abandoned": abandoned["abandoned"],
            "init_events": init_events, "init_events_at_snapshot": in_hec_at_snapshot,
            "restore_ms": restore["duration_ms"], "invocations": rows}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run at 1,769 MB")
    parser.add_argument("--memory", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--flush", choices=("sync", "adaptive"), default="sync")
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args(argv)
    memory, runs = (1769, 1) if args.quick else (args.memory, args.runs)
    transport = "TLS" if args.tls else "plain HTTP"
    results = []
    for n in range(runs):
        result = run(memory, args.flush, args.tls, n)
        if n == 0:
            print(f"memory {memory} MB, {transport}, SPLUNK_FLUSH={args.flush}, "
                  f"limits: {result['limits']}")
        cells = "  ".join(
            f"{inv['post_runtime_ms']:7.1f} ms {inv['in_hec_at_end']:4.0%} ("
            + " ".join(f"{r} {c:.1f}" for r, c in inv["cpu_ms"].items()) + ")"
            for inv in result["invocations"])
        print(f"run {n}: abandoned {result['abandoned']}, init events in HEC at the snapshot "
              f"{result['init_events_at_snapshot']} of {result['init_events']} | post-runtime, "
              f"lines in HEC at its end (CPU ms): {cells}", flush=True)
        results.append(result)
    firsts = [r["invocations"][0]["post_runtime_ms"] for r in results]
    delivered = [r["invocations"][0]["in_hec_at_end"] for r in results]
    later = [inv["post_runtime_ms"] for r in results for inv in r["invocations"][1:]]
    again = [r["init_events"] - r["init_events_at_snapshot"] for r in results]
    print(f"{transport}, {args.flush}: first invocation after the restore: post-runtime ms "
          f"median {statistics.median(firsts):.1f}, max {max(firsts):.1f}; its lines in HEC at "
          f"its end: median {statistics.median(delivered):.0%}, min {min(delivered):.0%}; "
          f"later invocations: median {statistics.median(later):.1f}, max {max(later):.1f}; "
          f"the init's events sent after the snapshot (again by every restored environment): "
          f"median {statistics.median(again):.0f}, max {max(again)} of {results[0]['init_events']}")
    common.write_result("snap_start", {
        "memory_mb": memory, "flush": args.flush, "tls": args.tls, "runs": results,
        "first_post_runtime_ms": common.summary(firsts),
        "first_in_hec_at_end": common.summary(delivered),
        "later_post_runtime_ms": common.summary(later),
        "init_events_after_snapshot": common.summary(again),
    }, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
