"""Many environments into one HEC (issue 14, item 4): N emulated execution environments at once,
each running the real extension with the sample function at a steady invocation rate.

Each environment is its own worker process (`--worker`, one emulator `Sandbox`, as Lambda keeps
environments apart): it inits and runs WARMUP invocations, then per window invokes RATE times a
second (10 lines of 100 bytes each, default flush strategy) on a fixed schedule, the
environments' phases spread evenly so the total arrival rate is steady. Per target the fleet
grows (N = 1, then 4, 16, 32: only the new environments init) and every live environment runs
each window; after the last window all shut down (draining what the last invocations left).
Every line carries an id (`F<cell>-<env>-<invocation>:<line>:`). Targets:

- `hec`: one embedded HEC receiver (`ext/local/hec`, a separate process, SQLite);
- `sink`: the counting sink (`benchmarks/hec_sink.py`), which only counts and appends the
  decompressed bodies to a file: the receiver's own cost is taken out of the machine;
- then one environment into the sink at each `--sweep` rate (1, 10, 100/s): how requests per
  invocation fall as invocations get denser, the input of the sizing table (`sizing()`).

Figures, per window (from the start of the first invocations to the start of the first
environment's last one, so every environment runs throughout):
- total events/s and HEC requests/s accepted by the target (its counters, before and after);
- open connections to the target per environment (ESTABLISHED sockets on its port, from
  /proc/net/tcp, sampled every 0.5 s, this process's own excluded: mean and max);
- bytes per event: request body as sent (gzip), and on the wire (request line, headers and body;
  headers measured by the sink), and the uncompressed body (what a peer without gzip sends);
- Telemetry API batches per invocation (what a peer posting one request per batch would send);
- loss and duplicates, exactly: every line id of every successful invocation must be stored
  exactly once (looked up after the shutdowns); for duplicates, the requests and channels that
  carried them and the extension's own warnings are kept in the results;
- extension CPU per event: scheduler CPU (ns) of every extension process between the frozen
  states before the first and after the last invocation of the window, over the Telemetry events
  the emulator delivered to it meanwhile. It must not grow with N.

CPU limits: off by default (`--limits` turns on the emulator's cgroup CPU share and memory
limit). The figure compared across N is CPU *time* per event, which a CFS quota does not change;
32 environments at 128 MB would be promised 32 x 7.2% = 2.3 cores on a 2-core machine, so the
quotas would not emulate Lambda's isolation anyway and would only slow inits (~1 s each at 7%)
past the 5-minute budget.
Run: `nice -n 10 .venv/bin/python -m benchmarks.bench_fleet [--quick] [--envs 1 4] [--rate 1]
[--window 10] [--modes hec sink] [--sweep 1 10 100] [--limits]` -> results/fleet.json + fleet.png
(about 3.5 minutes on this shared 2-core machine; exit status 1 if a line was lost or duplicated).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import select
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from benchmarks import common
from benchmarks.rig import REPO, TOKEN, HecProcess, SinkProcess, cpu_ns, cpu_seconds, extension_tree
from ext.local.layer import EXTENSION_NAME, make_local_opt

ENVS = (1, 4, 16, 32)
MODES = ("hec", "sink")
# Invocations per second per environment. At 2/s, 32 environments (64 invocations/s, ~8 ms of
# CPU each for emulator, runtime, extension and receiver) saturated this shared 2-core machine:
# the schedule fell seconds behind and CPU time per unit of work inflated with the contention.
RATE_PER_ENV = 1.0
WINDOW_S = 10.0
SWEEP_RATES = (1.0, 10.0, 100.0)  # asked; the emulator's own invoke time caps what is reached
QUICK_ENVS = (2,)
QUICK_MODES = ("hec",)
QUICK_WINDOW_S = 1.5
LINES = 10
LINE_BYTES = 100
MEMORY_MB = 128
WARMUP = 2  # invocations per environment before its first window (loss-checked, not measured)
WARMUP_CELL = 0  # the cell id in the warm-up invocations' line ids
READY_TIMEOUT_S = 120.0
RESULT_TIMEOUT_S = 120.0
CONN_SAMPLE_S = 0.5
START_DELAY_S = 0.5
LINE_ID = re.compile(r"^F(\d+)-(\d+)-(\d+):(\d+):")
FLEET_SIZE = 1000  # concurrent environments in the sizing table (docs/scaling.md)
TARGETS = {"loss": 0, "duplicates": 0, "cpu_growth_max_ratio": 1.5}


# -- the worker: one environment ---------------------------------------------------------------


def worker(spec: dict[str, Any]) -> int:
    """Runs one environment: init and warm-up, then a ready line; then, per command read from
    stdin, one window of invocations (`{"cell", "t0", "count", "offset", "rate"}`) answered with
    its figures, until `{"stop": true}`: shutdown, answered with how the extension exited."""
    from ext.local.sandbox import Sandbox, SandboxConfig

    env = {"SPLUNK_HOST": spec["url"], "SPLUNK_HEC_TOKEN": TOKEN,
           "SPLUNK_EXTENSION_PYTHON": sys.executable}
    cfg = SandboxConfig(function_dir=REPO / "function", handler="handler.handler",
                        opt_dir=Path(spec["opt"]), env=env, function_name=spec["name"],
                        memory_mb=MEMORY_MB, timeout_s=30.0, init_timeout_s=READY_TIMEOUT_S,
                        limits=bool(spec["limits"]))
    sb = Sandbox(cfg).start()
    try:
        init = sb.init()
        # The first invocations are flushed as they end (the default strategy's warm-up) and
        # pay for first-use work; they run before any window, so windows show the steady state.
        warm = [k for k in range(WARMUP)
                if sb.invoke(_payload(WARMUP_CELL, spec["env"], k)).status == "success"]
        _say({"ready": init.get("status") == "success", "init_ms": init.get("duration_ms"),
              "warm_succeeded": warm})
        for line in sys.stdin:
            command = json.loads(line)
            if command.get("stop"):
                spool = _spool_repeats(Path(sb.tmp_dir))  # frozen: the spool is at rest
                # Over the whole life, between windows too (a POST in flight at a freeze
                # longer than the emulator's POST timeout fails and is repeated at the thaw).
                spool["telemetry_failed_attempts"] = _delivered(sb)["failed_attempts"]
                shutdown = sb.shutdown()
                ext = shutdown.extensions.get(EXTENSION_NAME)
                _say({"exit_ms": ext.exit_ms if ext else None,
                      "killed": bool(ext.killed) if ext else None, "spool": spool})
                return 0
            _say(_run_schedule(sb, spec["env"], command))
    finally:
        sb.close()
    return 1


def _run_schedule(sb: Any, env: int, command: dict[str, Any]) -> dict[str, Any]:
    cell, t0 = int(command["cell"]), float(command["t0"])
    rate, count, offset = float(command["rate"]), int(command["count"]), float(command["offset"])
    pids = extension_tree(sb)
    runtime_pid = sb.runtime_pid
    delivered0 = _delivered(sb)
    cpu0, runtime0, self0 = cpu_ns(pids), cpu_ns([runtime_pid]), cpu_ns([os.getpid()])
    done: list[int] = []
    attempted = 0
    late_ms = 0.0
    stop_at = t0 + offset + count / rate  # a machine that cannot keep up ends the window anyway
    for k in range(count):
        due = t0 + offset + k / rate
        if time.monotonic() >= stop_at:
            break
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            late_ms = max(late_ms, -wait * 1000)
        attempted += 1
        if sb.invoke(_payload(cell, env, k)).status == "success":
            done.append(k)
    delivered = _delivered(sb)
    return {
        "env": env, "invocations": count, "attempted": attempted, "succeeded": done,
        "max_late_ms": late_ms,
        "extension_cpu_ms": (cpu_ns(pids) - cpu0) / 1e6,
        "runtime_cpu_ms": (cpu_ns([runtime_pid]) - runtime0) / 1e6,
        "emulator_cpu_ms": (cpu_ns([os.getpid()]) - self0) / 1e6,
        "telemetry_events": delivered["events"] - delivered0["events"],
        "telemetry_batches": delivered["batches"] - delivered0["batches"],
        "telemetry_bytes": delivered["bytes"] - delivered0["bytes"],
        "telemetry_dropped": delivered["dropped_records"],
        "telemetry_failed_attempts": delivered["failed_attempts"] - delivered0["failed_attempts"],
    }


def _spool_repeats(tmp_dir: Path) -> dict[str, Any]:
    """Frames still in the environment's spool, and those whose payload repeats an earlier one
    (a Telemetry batch appended twice): tells a duplicate made at intake from one made by the
    sender. Delivered segments may already be deleted; diagnostic only."""
    from ext.spool import frame

    seen: set[bytes] = set()
    frames, repeats, samples = 0, [], []
    for path in sorted(tmp_dir.glob("**/seg-*.log")):
        data = path.read_bytes()
        pos = frame.SEGMENT_HEADER_BYTES
        while True:
            head = frame.decode_frame_header(data, pos)
            if not isinstance(head, frame.FrameHeader):
                break
            start = pos + frame.FRAME_HEADER_BYTES
            payload = data[start:start + head.payload_len]
            frames += 1
            if payload in seen:
                repeats.append(head.seq)
                samples.append(payload[:300].decode("utf-8", "replace"))
            seen.add(payload)
            pos = start + head.payload_len
    return {"frames": frames, "repeated_seqs": repeats[:20], "repeated_samples": samples[:3]}


def _payload(cell: int, env: int, k: int) -> dict[str, Any]:
    return {"lines": LINES, "size": LINE_BYTES, "tag": f"F{cell}-{env}-{k}"}


def _delivered(sb: Any) -> dict[str, float]:
    stats = sb.inspect()["delivery"].get(EXTENSION_NAME, {})
    keys = ("events", "batches", "bytes", "dropped_records", "failed_attempts")
    return {k: float(stats.get(k, 0)) for k in keys}


def _say(doc: dict[str, Any]) -> None:
    sys.stdout.write("FLEET " + json.dumps(doc) + "\n")
    sys.stdout.flush()


# -- the parent: targets, workers, counters ----------------------------------------------------


class Target:
    """The HEC receiver or the counting sink, with counters read the same way for both."""

    def __init__(self, mode: str, work: Path) -> None:
        self.mode = mode
        self.dump = work / "sink.jsonl"
        if mode == "hec":
            self.hec: HecProcess | None = HecProcess(work / "hec.sqlite")
            self.sink: SinkProcess | None = None
            self.url = self.hec.url
        else:
            self.hec = None
            self.sink = SinkProcess(str(self.dump))
            self.url = self.sink.url
        self.port = int(self.url.rsplit(":", 1)[1])
        self.pid = (self.hec or self.sink).proc.pid  # type: ignore[union-attr]

    def counters(self) -> dict[str, float]:
        """events, requests and body bytes accepted so far (head and raw bytes: sink only)."""
        if self.sink is not None:
            c = self.sink.counters()
            return {k: float(c[k]) for k in ("events", "requests", "body_bytes", "raw_bytes",
                                              "head_bytes")}
        assert self.hec is not None
        conn = sqlite3.connect(f"file:{self.hec.db}?mode=ro", uri=True, timeout=30)
        try:
            events = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
            requests, body = conn.execute(
                "SELECT count(*), coalesce(sum(body_bytes), 0) FROM requests WHERE status = 200 "
                "AND path LIKE '/services/collector%' AND path NOT LIKE '%health%'").fetchone()
        finally:
            conn.close()
        return {"events": float(events), "requests": float(requests), "body_bytes": float(body),
                "raw_bytes": math.nan, "head_bytes": math.nan}

    def line_texts(self) -> Iterator[str]:
        """Every stored function line of this benchmark (duplicates included)."""
        prefix = "F"
        if self.hec is not None:
            for event in self.hec.events(sourcetype="aws:lambda:function", contains=prefix):
                text = json.loads(event.event)
                if isinstance(text, str):
                    yield text
            return
        with open(self.dump, "rb") as fh:
            for raw in fh:
                if prefix.encode() in raw:
                    text = json.loads(raw).get("event")
                    if isinstance(text, str):
                        yield text

    def extension_notes(self) -> list[str]:
        """The extension's own warnings and errors that reached the target (it forwards them)."""
        if self.hec is not None:
            texts = [e.event for e in self.hec.events(sourcetype="aws:lambda:extension")]
        else:
            with open(self.dump, "rb") as fh:
                texts = [json.dumps(json.loads(raw).get("event")) for raw in fh
                         if b'"aws:lambda:extension"' in raw]
        return [t for t in texts if "WARNING" in t or "ERROR" in t]

    def origins(self, keys: Sequence[tuple[int, int, int, int]]) -> list[dict[str, Any]]:
        """Receiver only: the request and channel (one per sender process) of each stored copy
        of the lines `keys`, to tell a resend on one channel from two senders."""
        if self.hec is None:
            return []
        out = []
        for cell, env, k, line in keys:
            prefix = f"F{cell}-{env}-{k}:{line}:"
            for e in self.hec.events(sourcetype="aws:lambda:function", contains=prefix):
                out.append({"line": prefix, "request_id": e.request_id, "channel": e.channel,
                            "received_at": e.received_at, "request": self._request(e.request_id)})
        return out

    def _request(self, request_id: int) -> list[str]:
        """What one request carried: sourcetype and the start of each event."""
        assert self.hec is not None
        return [f"{e.sourcetype} {e.event[:60]}"
                for e in self.hec.events(request_id=request_id)]

    def stop(self) -> None:
        if self.hec is not None:
            self.hec.stop()
        if self.sink is not None:
            self.sink.stop()


def established(port: int) -> int:
    """ESTABLISHED TCP connections to local `port` (counted on the server's side), except this
    process's own (the sink's counter queries)."""
    rows = _tcp_rows()
    own_inodes = _socket_inodes(os.getpid())
    own_ports = {local for local, _, _, inode in rows if inode in own_inodes}
    return sum(1 for local, peer, state, _ in rows
               if state == "01" and local == port and peer not in own_ports)


def _tcp_rows() -> list[tuple[int, int, str, str]]:
    """(local port, peer port, state, inode) of every TCP socket in /proc/net/tcp{,6}."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    rows.append((int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16),
                                 f[3], f[9]))
        except OSError:
            continue
    return rows


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _read_said(proc: subprocess.Popen[str], deadline: float) -> dict[str, Any]:
    """The next `FLEET {...}` line of a worker, or RuntimeError at the deadline or its exit."""
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("a fleet worker did not answer in time")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a fleet worker exited ({proc.poll()})")
        if line.startswith("FLEET "):
            doc: dict[str, Any] = json.loads(line[6:])
            return doc


class Fleet:
    """Worker processes (one environment each) started against one target; grows on demand."""

    def __init__(self, target: Target, work: Path, limits: bool) -> None:
        self.target, self.work, self.limits = target, work, limits
        self.opt = make_local_opt(work / "opt")
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[IO[str]] = []
        self.warm: dict[int, list[int]] = {}

    def grow(self, n: int) -> None:
        """Starts environments until there are `n`, and waits for their init and warm-up."""
        first = len(self.procs)
        for i in range(first, n):
            spec = {"url": self.target.url, "opt": str(self.opt), "name": f"fleet-{i}", "env": i,
                    "limits": self.limits}
            self.logs.append(open(self.work / f"worker-{i}.log", "w+"))  # noqa: SIM115
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_fleet", "--worker", json.dumps(spec)],
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.logs[-1],
                text=True))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for i in range(first, n):
            ready = _read_said(self.procs[i], deadline)
            if not ready["ready"]:
                raise RuntimeError(f"environment {i} failed its init: {ready}")
            self.warm[i] = ready["warm_succeeded"]

    def tell(self, i: int, command: dict[str, Any]) -> None:
        stdin = self.procs[i].stdin
        assert stdin is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()

    def answers(self) -> list[dict[str, Any]]:
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        return [_read_said(p, deadline) for p in self.procs]

    def stop(self) -> list[dict[str, Any]]:
        """Shuts every environment down (each drains its spool); how each extension exited."""
        for i in range(len(self.procs)):
            self.tell(i, {"stop": True})
        exits = self.answers()
        for p in self.procs:
            p.wait(30)
        return exits

    def dump_logs(self) -> None:
        for p, log in zip(self.procs, self.logs, strict=True):
            if p.poll() is None:
                p.kill()
            log.seek(0)
            sys.stderr.write(log.read()[-2000:])

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for log in self.logs:
            log.close()


def run_group(first_cell: int, mode: str, steps: Sequence[tuple[int, float]], window_s: float,
              limits: bool) -> list[dict[str, Any]]:
    """One target and one growing fleet: per (N, rate) step, the fleet grows to N environments
    and every one of them runs one window; after the last step all shut down (draining what the
    last invocations left), then every line id of every window is looked up."""
    cells: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        target = Target(mode, work)
        fleet = Fleet(target, work, limits)
        try:
            for step, (n, rate) in enumerate(steps):
                cell, count = first_cell + step, max(2, round(window_s * rate))
                began = time.monotonic()
                fleet.grow(n)
                ready = time.monotonic()
                t0 = ready + START_DELAY_S
                for i in range(n):
                    fleet.tell(i, {"cell": cell, "t0": t0, "count": count, "rate": rate,
                                   "offset": i / (n * rate)})
                # Until the first environment's last invocation starts: all of them run for
                # the whole window.
                window = _watch(target, t0, (count - 1) / rate)
                results = fleet.answers()
                cells.append(_figures(cell, n, mode, rate, count, limits, results, window))
                cells[-1]["phase_s"] = {"grow": round(ready - began, 1),
                                        "window": round(time.monotonic() - ready, 1)}
                _progress(cells[-1])
            stopped = time.monotonic()
            exits = fleet.stop()
            stored = Counter(_ids(target.line_texts()))
            _check_lines(cells, fleet.warm, stored)
            notes = target.extension_notes()
            for c in cells:
                c["shutdown_killed"] = sum(1 for e in exits if e.get("killed"))
                # Per target, not per cell: why a retry (and so a duplicate) happened.
                c["extension_warnings"] = len(notes)
                c["extension_warning_samples"] = sorted(set(notes))[:10]
                c["duplicate_origins"] = target.origins(c["duplicate_samples"][:3])
                c["spool_frames"] = sum(e.get("spool", {}).get("frames", 0) for e in exits)
                c["telemetry_failed_attempts_total"] = sum(
                    e.get("spool", {}).get("telemetry_failed_attempts", 0) for e in exits)
                c["spool_repeated_frames"] = {
                    i: e["spool"] for i, e in enumerate(exits)
                    if e.get("spool", {}).get("repeated_seqs")}
                c["phase_s"]["shutdown_and_check"] = round(time.monotonic() - stopped, 1)
        except BaseException:
            fleet.dump_logs()
            raise
        finally:
            fleet.close()
            target.stop()
    return cells


def _progress(cell: dict[str, Any]) -> None:
    print(f"  {cell['mode']} N={cell['envs']} at {cell['rate_per_env']:g}/s: "
          f"{cell['events_per_s']:.0f} events/s, {cell['hec_requests_per_s']:.1f} requests/s, "
          f"phases {cell['phase_s']}", file=sys.stderr, flush=True)


def _check_lines(cells: list[dict[str, Any]], warm: dict[int, list[int]],
                 stored: Counter[tuple[int, int, int, int]]) -> None:
    """Loss, duplicates and strays per cell, exactly, by line id; the warm-up invocations'
    lines are checked with the first cell each environment ran in."""
    joined: dict[int, int] = {}
    for c in cells:
        for env in range(c["envs"]):
            joined.setdefault(env, c["cell"])
    for c in cells:
        expected = {(c["cell"], env, k, line) for env, ks in c.pop("succeeded").items()
                    for k in ks for line in range(LINES)}
        expected |= {(WARMUP_CELL, env, k, line) for env, first in joined.items()
                     if first == c["cell"] for k in warm.get(env, []) for line in range(LINES)}
        mine = {key: n for key, n in stored.items() if key in expected
                or (key[0] == c["cell"])}
        c["lines_expected"] = len(expected)
        c["lines_stored"] = sum(n for key, n in mine.items() if key in expected)
        c["loss"] = len(expected - mine.keys())
        c["duplicates"] = sum(n - 1 for n in mine.values() if n > 1)
        c["duplicate_samples"] = sorted(key for key, n in mine.items() if n > 1)[:10]
        c["unexpected"] = sum(1 for key in mine if key not in expected)


def _watch(target: Target, t0: float, window_s: float) -> dict[str, Any]:
    """Counters at the window's start and end, and connection samples in between."""
    time.sleep(max(0.0, t0 - time.monotonic()))
    before, hec_cpu0 = target.counters(), cpu_seconds(target.pid)
    samples: list[int] = []
    end = t0 + window_s
    while time.monotonic() < end:
        samples.append(established(target.port))
        time.sleep(min(CONN_SAMPLE_S, max(0.0, end - time.monotonic())))
    after, hec_cpu = target.counters(), cpu_seconds(target.pid) - hec_cpu0
    seconds = time.monotonic() - t0
    return {"seconds": seconds, "delta": {k: after[k] - before[k] for k in after},
            "connections": samples, "target_cpu_ms": hec_cpu * 1000}


def _ids(texts: Iterator[str]) -> Iterator[tuple[int, int, int, int]]:
    """(cell, environment, invocation, line) of every line written by this benchmark."""
    for text in texts:
        match = LINE_ID.match(text)
        if match:
            yield int(match[1]), int(match[2]), int(match[3]), int(match[4])


def _figures(cell: int, n: int, mode: str, rate: float, count: int, limits: bool,
             results: list[dict[str, Any]], window: dict[str, Any]) -> dict[str, Any]:
    """The window's figures (loss and duplicates are filled in after the shutdown)."""
    d, seconds = window["delta"], window["seconds"]
    events = d["events"]
    telemetry_events = sum(r["telemetry_events"] for r in results)
    invocations = sum(len(r["succeeded"]) for r in results)
    conns = window["connections"] or [0]
    # Invocations run over count/rate seconds; the counters' window is one interval shorter.
    inv_rate = invocations / (count / rate)
    req_rate = d["requests"] / seconds
    head_per_request = d["head_bytes"] / d["requests"] if d["requests"] else math.nan
    return {
        "cell": cell, "envs": n, "mode": mode, "rate_per_env": rate, "limits": limits,
        "invocations_per_env": count, "invocations": invocations,
        "failed_invocations": sum(r["attempted"] for r in results) - invocations,
        "not_started_invocations": n * count - sum(r["attempted"] for r in results),
        "window_s": seconds, "max_late_ms": max(r["max_late_ms"] for r in results),
        "events": events, "events_per_s": events / seconds,
        "invocations_per_s": inv_rate,
        "hec_requests": d["requests"], "hec_requests_per_s": req_rate,
        "hec_requests_per_invocation": req_rate / inv_rate if invocations else math.nan,
        "events_per_request": events / d["requests"] if d["requests"] else math.nan,
        "connections_per_env_mean": sum(conns) / len(conns) / n,
        "connections_per_env_max": max(conns) / n,
        "body_bytes_per_event": d["body_bytes"] / events if events else math.nan,
        "raw_bytes_per_event": d["raw_bytes"] / events if events else math.nan,
        "head_bytes_per_request": head_per_request,
        "wire_bytes_per_event": ((d["body_bytes"] + d["head_bytes"]) / events
                                 if events else math.nan),
        "telemetry_batches_per_invocation":
            sum(r["telemetry_batches"] for r in results) / invocations if invocations
            else math.nan,
        "telemetry_bytes_per_event":
            sum(r["telemetry_bytes"] for r in results) / telemetry_events if telemetry_events
            else math.nan,
        "telemetry_events_per_invocation": telemetry_events / invocations if invocations
        else math.nan,
        "telemetry_dropped": sum(r["telemetry_dropped"] for r in results),
        # Telemetry POSTs the emulator had to repeat (a listener too slow to answer): each may
        # spool a batch twice, like Lambda's own retries.
        "telemetry_failed_attempts": sum(r["telemetry_failed_attempts"] for r in results),
        "succeeded": {r["env"]: r["succeeded"] for r in results},
        "extension_cpu_us_per_event": (sum(r["extension_cpu_ms"] for r in results) * 1000
                                       / telemetry_events if telemetry_events else math.nan),
        "extension_cpu_ms_per_invocation": (sum(r["extension_cpu_ms"] for r in results)
                                            / invocations if invocations else math.nan),
        "runtime_cpu_ms_per_invocation": (sum(r["runtime_cpu_ms"] for r in results)
                                          / invocations if invocations else math.nan),
        "emulator_cpu_ms_per_invocation": (sum(r["emulator_cpu_ms"] for r in results)
                                           / invocations if invocations else math.nan),
        "target_cpu_us_per_event": window["target_cpu_ms"] * 1000 / events if events
        else math.nan,
        "connection_samples": window["connections"],
    }


def measure(envs: Sequence[int], modes: Sequence[str], rate: float, window_s: float,
            limits: bool, sweep: Sequence[float] = ()) -> dict[str, Any]:
    """The N sweep at `rate` per environment in each mode, then one environment into the sink
    at each rate of `sweep` (requests per invocation as the per-environment rate grows)."""
    groups = [(mode, [(n, rate) for n in sorted(envs)], False) for mode in modes]
    if sweep:
        groups.append(("sink", [(1, r) for r in sweep], True))
    cells: list[dict[str, Any]] = []
    started = time.monotonic()
    for mode, steps, is_sweep in groups:
        for cell in run_group(len(cells) + 1, mode, steps, window_s, limits):
            cell["sweep"] = is_sweep
            cells.append(cell)
        print(f"  {mode}: loss {sum(c['loss'] for c in cells)}, duplicates "
              f"{sum(c['duplicates'] for c in cells)} so far "
              f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    _attach_heads(cells)
    results = {"lines_per_invocation": LINES, "line_bytes": LINE_BYTES, "memory_mb": MEMORY_MB,
               "rate_per_env": rate, "window_s": window_s, "limits": limits,
               "seconds_total": time.monotonic() - started, "cells": cells}
    results["sizing"] = sizing(cells)
    return results


GZIP_HEADER = len("Content-Encoding: gzip\r\n")  # what a peer without gzip does not send


def sizing(cells: list[dict[str, Any]], fleet_size: int = FLEET_SIZE) -> list[dict[str, Any]]:
    """HEC load of `fleet_size` concurrent environments at each rate of the sweep, from the
    one-environment cell at that rate, for this extension and for a peer that posts one
    uncompressed request per Telemetry API batch (same envelopes, same headers minus gzip):

        ours:  requests/s = F x r x q          MB/s = F x r x e x w / 1e6
        peer:  requests/s = F x r x B          MB/s = F x r x (e x u + B x (h - g)) / 1e6

    F environments, r invocations/s each, q HEC requests per invocation, e events per
    invocation, w wire bytes per event (gzip body + request head), B Telemetry batches per
    invocation, u uncompressed body bytes per event, h request-head bytes, g the gzip header."""
    out = []
    for c in sorted((c for c in cells if c.get("sweep")), key=lambda c: c["rate_per_env"]):
        r, e = c["rate_per_env"], c["events_per_s"] / c["invocations_per_s"]
        q, w, b = c["hec_requests_per_invocation"], c["wire_bytes_per_event"], \
            c["telemetry_batches_per_invocation"]
        u, h = c["raw_bytes_per_event"], c["head_bytes_per_request"]
        out.append({
            "environments": fleet_size, "rate_per_env": r, "events_per_invocation": e,
            "requests_per_invocation": q, "wire_bytes_per_event": w,
            "telemetry_batches_per_invocation": b, "raw_bytes_per_event": u,
            "head_bytes_per_request": h, "events_per_s": fleet_size * r * e,
            "ours_requests_per_s": fleet_size * r * q,
            "ours_mb_per_s": fleet_size * r * e * w / 1e6,
            "peer_requests_per_s": fleet_size * r * b,
            "peer_mb_per_s": fleet_size * r * (e * u + b * (h - GZIP_HEADER)) / 1e6,
        })
    return out


def _attach_heads(cells: list[dict[str, Any]]) -> None:
    """The receiver's request log has body sizes only: its wire bytes take the head size the
    sink measured for the same N (the same extension sends the same headers)."""
    heads = {c["envs"]: c["head_bytes_per_request"] for c in cells if c["mode"] == "sink"}
    every = [h for h in heads.values() if not math.isnan(h)]
    fallback = sum(every) / len(every) if every else math.nan
    for c in cells:
        if c["mode"] == "hec":
            head = heads.get(c["envs"], fallback)
            c["head_bytes_per_request"] = head
            c["wire_bytes_per_event"] = (c["body_bytes_per_event"]
                                         + head / c["events_per_request"])


HEADERS = ["mode", "N", "inv/s/env", "inv/s", "events/s", "HEC req/s", "req/inv", "conn/env",
           "gzip B/ev", "wire B/ev", "raw B/ev", "TAPI batch/inv", "loss", "dup", "ext CPU us/ev",
           "ext CPU ms/inv", "target CPU us/ev", "late ms"]


def rows(results: dict[str, Any]) -> list[list[object]]:
    out: list[list[object]] = []
    for c in results["cells"]:
        out.append([c["mode"], c["envs"], c["rate_per_env"], c["invocations_per_s"],
                    c["events_per_s"],
                    c["hec_requests_per_s"], c["hec_requests_per_invocation"],
                    f"{c['connections_per_env_mean']:.2f} (max {c['connections_per_env_max']:.2f})",
                    c["body_bytes_per_event"], c["wire_bytes_per_event"],
                    c["raw_bytes_per_event"], c["telemetry_batches_per_invocation"], c["loss"],
                    c["duplicates"], c["extension_cpu_us_per_event"],
                    c["extension_cpu_ms_per_invocation"], c["target_cpu_us_per_event"],
                    c["max_late_ms"]])
    return out


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """Loss and duplicates must be 0; CPU per event at the largest N against the smallest."""
    loss = sum(c["loss"] for c in results["cells"])
    dup = sum(c["duplicates"] for c in results["cells"])
    cells = n_sweep(results)
    growth: dict[str, float] = {}
    for mode in {c["mode"] for c in cells}:
        mine = sorted((c for c in cells if c["mode"] == mode), key=lambda c: c["envs"])
        if len(mine) > 1:
            growth[mode] = (mine[-1]["extension_cpu_us_per_event"]
                            / mine[0]["extension_cpu_us_per_event"])
    return {"loss": loss, "duplicates": dup, "cpu_growth": growth}


def report(results: dict[str, Any]) -> None:
    common.print_table(
        f"Fleet: N environments x {results['rate_per_env']:g} invocations/s of "
        f"{results['lines_per_invocation']} lines, {results['window_s']:g} s window, "
        f"CPU limits {'on' if results['limits'] else 'off'}", HEADERS, rows(results))
    if results.get("sizing"):
        common.print_table(
            f"HEC load of {FLEET_SIZE:,} concurrent environments, {results['lines_per_invocation']}"
            " lines per invocation (from the one-environment sweep; formulas: sizing())",
            ["inv/s/env", "events/inv", "events/s", "ours req/s", "ours MB/s",
             "peer req/s", "peer MB/s"],
            [[z["rate_per_env"], z["events_per_invocation"], z["events_per_s"],
              z["ours_requests_per_s"], z["ours_mb_per_s"], z["peer_requests_per_s"],
              z["peer_mb_per_s"]] for z in results["sizing"]])
    v = verdicts(results)
    growth = ", ".join(f"{m} {g:.2f}x" for m, g in sorted(v["cpu_growth"].items())) or "-"
    groups = {(c["mode"], bool(c.get("sweep"))): c.get("telemetry_failed_attempts_total", 0)
              for c in results["cells"]}
    print(f"Telemetry POSTs repeated by the emulator (each may spool a batch twice): "
          f"{sum(groups.values()):.0f}")
    print(f"loss {v['loss']} / duplicates {v['duplicates']} (must be 0): "
          f"{'met' if v['loss'] == 0 and v['duplicates'] == 0 else 'MISSED'}; "
          f"extension CPU per event, largest N / smallest N: {growth}; "
          f"{results['seconds_total']:.0f} s in all")


def n_sweep(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells of the N sweep (not the per-environment rate sweep)."""
    return [c for c in results["cells"] if not c.get("sweep")]


def chart(results: dict[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = n_sweep(results)
    modes = [m for m in MODES if any(c["mode"] == m for c in cells)]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), dpi=100)
    # Log-log for the totals: growth in proportion to N is a straight line of slope 1.
    panels = (("events_per_s", "events/s (total, log)", True),
              ("hec_requests_per_s", "HEC requests/s (total, log)", True),
              ("extension_cpu_us_per_event", "extension CPU us/event", False))
    for ax, (key, label, log_y) in zip(axes, panels, strict=True):
        for mode in modes:
            mine = sorted((c for c in cells if c["mode"] == mode), key=lambda c: c["envs"])
            ax.plot([c["envs"] for c in mine], [c[key] for c in mine], marker="o",
                    label="HEC receiver" if mode == "hec" else "counting sink")
        ax.set_xlabel("environments (N)")
        ax.set_title(label, fontsize=10)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({c["envs"] for c in cells}),
                      [str(n) for n in sorted({c["envs"] for c in cells})])
        if log_y:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"N environments, each invoked {results['rate_per_env']:g}/s with "
                 f"{results['lines_per_invocation']} lines, into one HEC", fontsize=10)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / "fleet.png", metadata={"Software": None})
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--envs", type=int, nargs="*", default=None)
    parser.add_argument("--modes", nargs="*", choices=MODES, default=None)
    parser.add_argument("--rate", type=float, default=RATE_PER_ENV,
                        help="invocations per second per environment")
    parser.add_argument("--window", type=float, default=None, help="seconds of invocations")
    parser.add_argument("--sweep", type=float, nargs="*", default=None,
                        help="per-environment rates for one environment into the sink")
    parser.add_argument("--limits", action="store_true",
                        help="the emulator's cgroup CPU share and memory limit (root)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    envs = args.envs or (QUICK_ENVS if args.quick else ENVS)
    modes = args.modes or (QUICK_MODES if args.quick else MODES)
    window = args.window or (QUICK_WINDOW_S if args.quick else WINDOW_S)
    sweep = args.sweep if args.sweep is not None else (() if args.quick else SWEEP_RATES)
    results = measure(envs, modes, args.rate, window, args.limits, sweep)
    report(results)
    common.write_result("fleet", results, quick=args.quick, targets=TARGETS)
    chart(results, common.results_dir())
    v = verdicts(results)
    return 0 if v["loss"] == 0 and v["duplicates"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
