"""Throughput and CPU (issue 7, item 4): sustained events/s through listener -> spool -> sender ->
HEC (gzip), and CPU microseconds per event summed over the extension's processes.

The real extension runs in the emulator; while an invocation is in progress (the function
sleeps, so the extension is thawed) this process POSTs synthetic Telemetry batches -- JSON
arrays of 1,000 `function` events, as Lambda sends them, one request in flight -- straight to
the extension's listener port, and times until HEC stored the last event. CPU is utime+stime
from /proc/<pid>/stat of the main, listener and sender processes, before and after. It runs
twice: into the embedded receiver (which parses and stores every event, on the same two cores)
and into a counting sink (benchmarks/hec_sink.py), which shows the extension's own rate.
Run: `.venv/bin/python -m benchmarks.bench_throughput [--quick] [--env NAME=VALUE] [--ext-from DIR]`
-> results/throughput.json. Like for like against an older commit: `git worktree add /tmp/base
<commit>`, then `--ext-from /tmp/base` (and `--env SPLUNK_ENRICH=false` for a commit from before
the enrichment fields).
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.rig import (
    CLK_TCK,
    HecProcess,
    Rig,
    SinkProcess,
    cpu_seconds,
    extension_processes,
    extension_rig,
    listener_port,
    wait_for,
)
from ext.local.sandbox import Sandbox

EVENTS_PER_BATCH = 1_000
DISTINCT_BODIES = 16
TARGETS = {"events_per_s": 150_000.0, "cpu_us_per_event": 6.0}
FULL_BATCHES = 400
QUICK_BATCHES = 8
INVOKE_SLEEP_S = 120.0
STORE_TIMEOUT_S = 150.0
BACKLOG_EVENTS = 100_000


def telemetry_bodies(count: int, seed: int = 7) -> list[bytes]:
    """`count` distinct Telemetry API bodies of EVENTS_PER_BATCH function events each."""
    rng = random.Random(seed)
    bodies = []
    for b in range(count):
        events = []
        for n in range(EVENTS_PER_BATCH):
            ms = rng.randrange(1000)
            line = (f"2026-11-26T17:00:00.{ms:03d}Z\t{rng.getrandbits(64):016x}\tINFO\t"
                    f"request handled batch={b} n={n} path=/orders/{rng.randrange(10**6)} "
                    f"status=200 took_ms={rng.randrange(500)}")
            events.append({"time": f"2026-11-26T17:00:00.{ms:03d}Z", "type": "function",
                           "record": line})
        bodies.append(json.dumps(events, separators=(",", ":")).encode())
    return bodies


def post_batches(port: int, bodies: list[bytes], batches: int,
                 stored: Callable[[], int]) -> None:
    """POSTs `batches` bodies (cycling) on one keep-alive connection, like the Telemetry API,
    keeping at most BACKLOG_EVENTS posted but not yet stored (`stored()` counts them)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": f"sandbox.localdomain:{port}", "Content-Type": "application/json"}
    try:
        for i in range(batches):
            # The listener takes batches far faster than HEC stores them; unbounded, the
            # backlog would outgrow the spool bound (SPLUNK_SPOOL_MAX_MB) and be dropped.
            posted = i * EVENTS_PER_BATCH
            # Polled every 20 ms: each probe opens the SQLite store, and probing every 5 ms
            # took enough of the 2 cores from the extension and receiver to cut the rate ~5%.
            if not wait_for(lambda p=posted: p - stored() <= BACKLOG_EVENTS,
                            STORE_TIMEOUT_S, 0.02):
                raise RuntimeError("HEC stopped storing events")
            conn.request("POST", "/", bodies[i % len(bodies)], headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"listener answered {response.status}")
    finally:
        conn.close()


def measure(rig: Rig, batches: int, target: HecProcess | SinkProcess,
            env: Mapping[str, str] | None = None,
            bodies: list[bytes] | None = None) -> dict[str, Any]:
    """One run; `env` adds extension variables (bench_enrich_mask's variants)."""
    bodies = bodies or telemetry_bodies(min(DISTINCT_BODIES, batches))
    sb = rig.sandbox(rig.env(**{"SPLUNK_FLUSH": "background", **(env or {})}),
                     timeout_s=INVOKE_SLEEP_S + 30)
    try:
        sb.init()
        invoker = threading.Thread(target=sb.invoke, args=({"sleep_ms": INVOKE_SLEEP_S * 1000},),
                                   daemon=True)
        invoker.start()
        try:
            return _measure_thawed(target, sb, bodies, batches)
        finally:
            sb.faults.crash_runtime()  # ends the sleeping invocation early
            invoker.join(30)
    finally:
        sb.close()


def _measure_thawed(target: HecProcess | SinkProcess, sb: Sandbox, bodies: list[bytes],
                    batches: int) -> dict[str, Any]:
    if not wait_for(lambda: not sb.inspect()["frozen"], 10):
        raise RuntimeError("the sandbox did not thaw")
    pids = extension_processes(sb)
    port = listener_port(sb)
    wait_for(lambda: target.last_event()[0] > 0, 5)  # init's platform events, then quiet
    time.sleep(0.2)
    base_id = target.last_event()[0]
    hec_cpu_before = cpu_seconds(target.proc.pid)
    cpu_before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    started = time.time()
    post_batches(port, bodies, batches, lambda: target.last_event()[0] - base_id)
    posted = time.time()
    expected = base_id + batches * EVENTS_PER_BATCH
    if not wait_for(lambda: target.last_event()[0] >= expected, STORE_TIMEOUT_S, 0.05):
        raise RuntimeError(f"HEC stored {target.last_event()[0] - base_id} of "
                           f"{batches * EVENTS_PER_BATCH} events")
    cpu_after = {role: cpu_seconds(pid) for role, pid in pids.items()}
    hec_cpu = cpu_seconds(target.proc.pid) - hec_cpu_before
    last_id, last_at = target.last_event()
    events = batches * EVENTS_PER_BATCH
    elapsed = last_at - started
    cpu = {role: cpu_after[role] - cpu_before[role] for role in pids}
    return {
        "batches": batches, "events_per_batch": EVENTS_PER_BATCH, "events": events,
        "stored": last_id - base_id,  # platform events of the invocation may add a few
        "body_bytes_avg": sum(map(len, bodies)) / len(bodies),
        "backlog_bound_events": BACKLOG_EVENTS,
        "post_seconds": posted - started, "seconds": elapsed,
        "events_per_s": events / elapsed,
        "cpu_seconds": cpu, "cpu_us_per_event": sum(cpu.values()) / events * 1e6,
        "cpu_us_per_event_by_process": {r: s / events * 1e6 for r, s in cpu.items()},
        # The receiver's share shows whether it, not the extension, bounds the rate.
        "hec_receiver_cpu_seconds": hec_cpu, "hec_receiver_cpu_us_per_event": hec_cpu / events
        * 1e6, "hec_receiver_busy_fraction": hec_cpu / elapsed,
        "clock_tick_s": 1 / CLK_TCK,
    }


def report(results: dict[str, Any]) -> None:
    rows = [["events/s (post -> stored in HEC)", results["events_per_s"],
             TARGETS["events_per_s"],
             common.verdict(results["events_per_s"], TARGETS["events_per_s"], False)],
            ["CPU us/event, all processes", results["cpu_us_per_event"],
             TARGETS["cpu_us_per_event"],
             common.verdict(results["cpu_us_per_event"], TARGETS["cpu_us_per_event"])]]
    for role, value in results["cpu_us_per_event_by_process"].items():
        rows.append([f"  CPU us/event, {role}", value, "", ""])
    rows.append(["HEC receiver CPU us/event", results["hec_receiver_cpu_us_per_event"], "", ""])
    sink = results.get("sink")
    if sink:
        rows.append(["events/s into a counting sink", sink["events_per_s"],
                     TARGETS["events_per_s"],
                     common.verdict(sink["events_per_s"], TARGETS["events_per_s"], False)])
        rows.append(["  CPU us/event, all processes", sink["cpu_us_per_event"], "", ""])
    rows.append(["HEC receiver busy (cores)", results["hec_receiver_busy_fraction"], "", ""])
    common.print_table(f"Throughput: {results['events']:,} events in {results['batches']} "
                       f"batches, {results['seconds']:.2f} s", ["figure", "value", "target",
                                                               "verdict"], rows)


def chart(results: dict[str, Any], folder: Path) -> None:
    by_process = results["cpu_us_per_event_by_process"]
    common.bar_chart(folder / "throughput_cpu.png", "CPU per event by extension process",
                     [*by_process, "total"], {"us/event": [*by_process.values(),
                                                           results["cpu_us_per_event"]]},
                     "CPU microseconds per event", {"target 6 us": TARGETS["cpu_us_per_event"]})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_throughput", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--batches", type=int, default=None)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extension variable, e.g. SPLUNK_ENRICH=false (repeatable)")
    parser.add_argument("--ext-from", type=Path, default=None, metavar="CHECKOUT",
                        help="run another checkout's extension code (e.g. a `git worktree` of an "
                             "older commit) with this checkout's emulator, receiver and load")
    args = parser.parse_args(argv)
    batches = args.batches or (QUICK_BATCHES if args.quick else FULL_BATCHES)
    extra = dict(item.split("=", 1) for item in args.env)
    with extension_rig(args.ext_from / "ext" if args.ext_from else None) as rig:
        results = measure(rig, batches, rig.hec, extra)
        results["env"] = extra
        results["ext_from"] = str(args.ext_from or "")
        sink = SinkProcess()
        try:
            results["sink"] = measure(dataclasses.replace(rig, target_url=sink.url), batches, sink,
                                      extra)
        finally:
            sink.stop()
    return common.publish("throughput", results, quick=args.quick, targets=TARGETS,
                          report=report, chart=chart)


if __name__ == "__main__":
    raise SystemExit(main())
