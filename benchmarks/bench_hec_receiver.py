"""Ingest throughput of the embedded HEC receiver (ext.local.hec), run as a real process.

Pre-builds gzip bodies of ~1 MiB (uncompressed) holding ~200-byte events, posts them over
HTTP/1.1 keep-alive connections, checks that every event was stored, and prints events/s and
MB/s (uncompressed). Writes results/hec_receiver.json. `--quick` uses tiny sizes (CI smoke).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TOKEN = "00000000-0000-0000-0000-000000000000"
RESULTS = Path(__file__).resolve().parent.parent / "results"


def build_bodies(batches: int, batch_bytes: int, seed: int) -> tuple[list[bytes], int, int]:
    """Gzip bodies of concatenated events; returns (bodies, events, uncompressed bytes)."""
    rng = random.Random(seed)
    bodies: list[bytes] = []
    total_events = total_bytes = 0
    for _ in range(batches):
        lines: list[bytes] = []
        size = 0
        while size < batch_bytes:
            message = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=rng.randint(40, 90)))
            envelope = {
                "time": round(1_790_000_000 + rng.random() * 1000, 3),
                "host": "bench-fn",
                "source": "lambda:bench",
                "sourcetype": "aws:lambda:function",
                "event": {"type": "function", "record": message, "requestId": f"r{rng.random()}"},
            }
            line = json.dumps(envelope, separators=(",", ":")).encode()
            lines.append(line)
            size += len(line) + 1
        raw = b"\n".join(lines)
        bodies.append(gzip.compress(raw, compresslevel=6))
        total_events += len(lines)
        total_bytes += len(raw)
    return bodies, total_events, total_bytes


def start_receiver(db: Path) -> tuple[subprocess.Popen[str], str]:
    """Run `python -m ext.local.hec serve` and wait for its ready line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ext.local.hec", "serve", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    return proc, str(ready["url"])


def post_all(port: int, bodies: list[bytes], errors: list[str]) -> None:
    """Post each body on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {
        "Authorization": f"Splunk {TOKEN}",
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    try:
        for body in bodies:
            conn.request("POST", "/services/collector/event", body, headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                errors.append(f"{response.status} {payload!r}")
    finally:
        conn.close()


def run(batches: int, batch_bytes: int, connections: int) -> dict[str, Any]:
    """One measured run; returns the figures."""
    bodies, events, raw_bytes = build_bodies(batches, batch_bytes, seed=42)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_receiver(Path(tmp) / "bench.db")
        try:
            port = int(url.rsplit(":", 1)[1])
            errors: list[str] = []
            shares = [bodies[i::connections] for i in range(connections)]
            threads = [threading.Thread(target=post_all, args=(port, s, errors)) for s in shares]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/_admin/count")
            stored = json.loads(conn.getresponse().read())["count"]
            conn.close()
        finally:
            proc.terminate()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    return {
        "batches": batches,
        "batch_bytes": batch_bytes,
        "connections": connections,
        "events": events,
        "stored": stored,
        "errors": errors[:5],
        "raw_mb": raw_bytes / 1e6,
        "gzip_mb": sum(map(len, bodies)) / 1e6,
        "seconds": elapsed,
        "events_per_s": events / elapsed,
        "mb_per_s": raw_bytes / 1e6 / elapsed,
    }


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print a table, write results/hec_receiver.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI smoke")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-bytes", type=int, default=1 << 20)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.batch_bytes, args.connections = 4, 64 << 10, [1]
    rows = [run(args.batches, args.batch_bytes, c) for c in args.connections]
    print(
        f"{'conns':>5} {'events':>8} {'stored':>8} {'raw MB':>7} {'gz MB':>6} "
        f"{'sec':>6} {'events/s':>10} {'MB/s':>6}"
    )
    for row in rows:
        print(
            f"{row['connections']:>5} {row['events']:>8} {row['stored']:>8} "
            f"{row['raw_mb']:>7.1f} {row['gzip_mb']:>6.1f} {row['seconds']:>6.2f} "
            f"{row['events_per_s']:>10,.0f} {row['mb_per_s']:>6.1f}"
        )
        if row["errors"]:
            print("  errors:", row["errors"])
    RESULTS.mkdir(exist_ok=True)
    out = {
        "benchmark": "hec_receiver",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "commit": _commit(),
        "runs": rows,
    }
    (RESULTS / "hec_receiver.json").write_text(json.dumps(out, indent=2))
    ok = all(r["stored"] == r["events"] and not r["errors"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
