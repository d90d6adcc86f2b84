"""Shared helpers of the benchmark scripts: results folder, JSON with provenance, tables,
percentiles and PNG charts.

Runs in the benchmark process only; never imported by the extension. Results go to `results/`
(gitignored) unless BENCH_RESULTS_DIR names another folder (the CI smoke test uses that).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import select
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_ENV = "BENCH_RESULTS_DIR"
_PACKAGES = ("msgspec", "urllib3", "awslambdaric", "matplotlib")


def results_dir() -> Path:
    """The folder results are written to (created if missing)."""
    folder = Path(os.environ.get(RESULTS_ENV) or REPO / "results")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def percentile(values: Sequence[float], q: float) -> float:
    """q-th percentile (0 < q <= 100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def summary(values: Sequence[float]) -> dict[str, float]:
    """count, p50, p95, p99, max and mean of `values` (NaN when empty)."""
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
        "mean": sum(values) / len(values) if values else math.nan,
    }


def git_commit() -> dict[str, Any]:
    """HEAD of the checkout and whether the working tree differs from it."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  check=True, cwd=REPO)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None
            else None}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return {"cpu": model, "cpus": os.cpu_count(), "mem_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "system": platform.system()}


SPEED_RUNS = 11


def machine_speed_ms(runs: int = SPEED_RUNS) -> float:
    """The machine's speed as a figure: the median `bare_start_ms` of `python -S -c pass` of this
    interpreter (bench_cold_start's reference, measured the same way). This shared machine's
    speed moves a lot (on 2026-12-01: 21-23 ms in the morning, 5.7-5.9 ms before noon, ~4x); a
    result stamped with it can be set against one from another time."""
    times = [bare_start_ms(["-S", "-c", "pass"]) for _ in range(runs)]
    return sorted(times)[len(times) // 2]


BARE_TIMEOUT_S = 30.0


def bare_start_ms(args: list[str], python: str = sys.executable) -> float:
    """Popen return -> exit of `<python> <args>`, spawned like the emulator spawns.

    The exit is seen through a pidfd, the moment it happens. `Popen.wait(timeout)` polls with
    sleeps that double up to 50 ms: it saw any 16-31 ms start at 31.5 ms (the sleeps' sum), and
    one just under 15.5 ms at 15.5, so this reference read 2x apart on two days that were not."""
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen([python, *args], stdin=subprocess.DEVNULL, stdout=write_fd,
                                stderr=write_fd, start_new_session=True, close_fds=True)
        started = time.monotonic()
        os.close(write_fd)
        write_fd = -1
        ended = _exited_at(proc, BARE_TIMEOUT_S)
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
    return (ended - started) * 1000


def _exited_at(proc: subprocess.Popen[bytes], timeout_s: float) -> float:
    """The monotonic time `proc` exited (reaped); TimeoutExpired past `timeout_s`."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (kernel < 5.3): the blocking wait, exact but unbounded
        proc.wait()
        return time.monotonic()
    try:
        if not select.select([pidfd], [], [], timeout_s)[0]:
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        ended = time.monotonic()
    finally:
        os.close(pidfd)
    proc.wait()
    return ended



def versions() -> dict[str, str | None]:
    """Interpreter and dependency versions."""
    found: dict[str, str | None] = {"python": platform.python_version(),
                                    "implementation": sys.implementation.name}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def write_result(name: str, results: Mapping[str, Any], *, quick: bool,
                 targets: Mapping[str, Any] | None = None) -> Path:
    """Writes results/<name>.json with provenance (versions, commit, machine); returns its path."""
    doc = {
        "benchmark": name,
        "quick": quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(),
        "git": git_commit(),
        "machine": machine(),
        "python_s_pass_ms": machine_speed_ms(),  # the machine's speed as the run ended
        "targets": dict(targets or {}),
        "results": dict(results),
    }
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    return path


def publish(name: str, results: Mapping[str, Any], *, quick: bool,
            targets: Mapping[str, Any] | None,
            report: Callable[[Any], None], chart: Callable[[Any, Path], None]) -> int:
    """The end of every benchmark's main: prints the table(s), writes results/<name>.json and
    draws its charts next to it; the exit status (0: the figures are printed, not judged)."""
    report(results)
    write_result(name, results, quick=quick, targets=targets)
    chart(results, results_dir())
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned numbers."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    for row in cells:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Prints a titled table to stdout (benchmarks are CLIs)."""
    print(f"\n{title}")
    print(format_table(headers, rows))


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    """'met' or 'MISSED' for a figure against its target."""
    if math.isnan(value):
        return "n/a"
    met = value <= target if lower_is_better else value >= target
    return "met" if met else "MISSED"


def bar_chart(path: Path, title: str, groups: Sequence[str], series: Mapping[str, Sequence[float]],
              ylabel: str, targets: Mapping[str, float] | None = None, log_y: bool = False) -> Path:
    """Grouped bar chart (one bar per series in each group), dashed lines for targets; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.0), dpi=100)
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, list(values), width, label=label)
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=1)
    for label, value in (targets or {}).items():
        ax.axhline(value, linestyle="--", linewidth=1, color="tab:red")
        ax.annotate(label, (1.0, value), xycoords=("axes fraction", "data"), fontsize=7,
                    ha="right", va="bottom", color="tab:red")
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log_y:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
