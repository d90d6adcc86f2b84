"""Spool benchmark: append latency (p50/p99) and throughput, drain throughput from the page cache,
and append latency with a reader committing right behind (every append may reclaim: close and
delete the delivered active segment, start a new one).

Usage: python -m benchmarks.bench_spool [--quick]. Prints two tables, writes results/spool.json.
Targets (issue 4): 256 KiB append <= 1 ms at p99; drain >= 300 MB/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ext.spool import SpoolReader, SpoolWriter

SIZES = {"1KiB": 1024, "256KiB": 256 * 1024}
FULL_COUNTS = {"1KiB": 50_000, "256KiB": 1_000}
QUICK_COUNTS = {"1KiB": 500, "256KiB": 20}
MIB = 2**20


def percentile(sorted_ns: list[int], pct: float) -> float:
    index = min(len(sorted_ns) - 1, round(pct / 100 * (len(sorted_ns) - 1)))
    return sorted_ns[index] / 1000


def bench_size(size: int, count: int, directory: Path) -> dict[str, float]:
    rng = random.Random(size)
    payloads = [rng.randbytes(size) for _ in range(8)]
    latencies: list[int] = []
    with SpoolWriter(directory, max_bytes=2**31, segment_bytes=4 * MIB) as writer:
        started = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter_ns()
            writer.append(payloads[i % 8], 100)
            latencies.append(time.perf_counter_ns() - t0)
        append_s = time.perf_counter() - started
    drained = 0
    with SpoolReader(directory) as reader:
        started = time.perf_counter()
        while batch := reader.read(1000, MIB):
            drained += len(batch)
            reader.commit(batch[-1].seq)
        drain_s = time.perf_counter() - started
    assert drained == count, f"drained {drained} of {count}"
    latencies.sort()
    total_mb = size * count / 1e6
    return {
        "records": count,
        "append_p50_us": percentile(latencies, 50),
        "append_p99_us": percentile(latencies, 99),
        "append_records_per_s": count / append_s,
        "append_mb_per_s": total_mb / append_s,
        "drain_records_per_s": count / drain_s,
        "drain_mb_per_s": total_mb / drain_s,
    }


def bench_with_reader(size: int, count: int, directory: Path) -> dict[str, float]:
    """Appends while a reader commits each record at once: the spool reclaims as it goes."""
    rng = random.Random(size + 1)
    payloads = [rng.randbytes(size) for _ in range(8)]
    latencies: list[int] = []
    most_bytes = 0
    with SpoolWriter(directory, max_bytes=2**31) as writer, SpoolReader(directory) as reader:
        for i in range(count):
            t0 = time.perf_counter_ns()
            writer.append(payloads[i % 8], 100)
            latencies.append(time.perf_counter_ns() - t0)
            batch = reader.read(10, 4 * MIB)
            reader.commit(batch[-1].seq)
            if i % 16 == 0:
                most_bytes = max(most_bytes, spool_bytes(directory))
        reclaimed = writer.reclaimed_segments
    latencies.sort()
    return {
        "records": count,
        "append_p50_us": percentile(latencies, 50),
        "append_p99_us": percentile(latencies, 99),
        "reclaimed_segments": reclaimed,
        "most_spool_kib": most_bytes / 1024,
    }


def spool_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("seg-*.log"))


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a CI smoke run")
    parser.add_argument("--out", default="results/spool.json")
    args = parser.parse_args(argv)
    counts = QUICK_COUNTS if args.quick else FULL_COUNTS
    results: dict[str, dict[str, float]] = {}
    with_reader: dict[str, dict[str, float]] = {}
    for name, size in SIZES.items():
        for table, bench in ((results, bench_size), (with_reader, bench_with_reader)):
            directory = Path(tempfile.mkdtemp(prefix="bench-spool-"))
            try:
                table[name] = bench(size, counts[name] // (1 if bench is bench_size else 5),
                                    directory)
            finally:
                shutil.rmtree(directory)
    header = f"{'batch':>7} {'n':>6} {'p50 us':>8} {'p99 us':>8} {'app rec/s':>10} "
    header += f"{'app MB/s':>9} {'drain rec/s':>11} {'drain MB/s':>10}"
    print(header)
    for name, r in results.items():
        print(
            f"{name:>7} {r['records']:>6.0f} {r['append_p50_us']:>8.1f} {r['append_p99_us']:>8.1f} "
            f"{r['append_records_per_s']:>10.0f} {r['append_mb_per_s']:>9.0f} "
            f"{r['drain_records_per_s']:>11.0f} {r['drain_mb_per_s']:>10.0f}"
        )
    print(f"\n{'batch':>7} {'n':>6} {'p50 us':>8} {'p99 us':>8} {'reclaims':>9} {'max KiB':>8}"
          "   (appends with a reader committing behind)")
    for name, r in with_reader.items():
        print(
            f"{name:>7} {r['records']:>6.0f} {r['append_p50_us']:>8.1f} {r['append_p99_us']:>8.1f} "
            f"{r['reclaimed_segments']:>9.0f} {r['most_spool_kib']:>8.0f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "commit": git_commit(), "quick": args.quick}
    out.write_text(
        json.dumps({"meta": meta, "results": results, "with_reader": with_reader}, indent=2)
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
