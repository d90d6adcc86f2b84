"""The floor under issue 12's cost targets: the extension against the least a Python extension
can do for the same work (benchmarks/floor_extension.py: raw sockets, msgspec, a Telemetry body
appended to a file before its 200, one gzipped HEC request per invocation within the
invocation), in one process (`floor-1`), in the extension's three (`floor-3`: main, a
listener and a sender process, pipes between them), and in two (`floor-2`: main sends itself).

All run bench_cost's cell (the emulator's CPU share and memory limit, 10-line invocations,
Poisson gaps, CPU from schedstat of every process and thread while frozen), interleaved round by
round so that the machine's drift falls on all alike; the extension runs `sync`, the flush that
sends every invocation within it, as the floors do. Then the PSS of each after 20 such
invocations (the fixed footprint; bench_memory measures the 1,000-line plan), floor-3 also with
the extension's required libraries (urllib3, ssl) imported before its fork; and the memory each
process touches per invocation (pages accessed between two frozen states), which the CPU of a
thaw follows: after a freeze every one of them is a cache miss.

floor-3 - floor-1 is what three processes cost (floor-2: what the sender process costs);
extension - floor-3 is what the extension does beyond the least (the spool's framing and
recovery, retries and their bookkeeping, enrichment, the flush policy, self-metrics).
Run: `.venv/bin/python -m benchmarks.bench_floor [--quick] [--rounds 3]` -> results/floor.json.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from benchmarks import bench_cost, common
from benchmarks.bench_memory import extension_memory
from benchmarks.rig import (
    HecProcess,
    Rig,
    clear_referenced,
    extension_processes,
    extension_rig,
    referenced_kb,
)
from ext.local.layer import EXTENSION_NAME
from ext.local.sandbox import Sandbox

FLOOR = Path(__file__).with_name("floor_extension.py")
# memory MB, mean gap s; the last is bench_cost's worst `sync` cell for the extension: after
# 10 s frozen every process starts its thaw with cold caches, which costs the floors too.
CELLS = ((128, 2.0), (128, 0.2), (1769, 2.0), (512, 10.0))
INVOCATIONS = {0.2: 30, 2.0: 12, 10.0: 8}
# Cells this sparse spend nearly all their time frozen: a round runs its contenders side by side
# (staggered starts, as bench_cost runs its sparse cells) rather than for 4 x 80 s in a row.
SIDE_BY_SIDE_GAP_S = 5.0
QUICK_CELLS = ((1769, 0.2),)
QUICK_INVOCATIONS = {0.2: 4}
# Memory after 10-line invocations, the cells' own: the fixed footprint (interpreter, libraries,
# code, what each process copies of them). At bench_memory's 1,000-line plan the floors' naive
# buffers (every line a Python object until its runtimeDone) weigh as much as the libraries,
# and by an amount that changes from run to run: no floor there.
MEMORY_PLAN = (20, 10)
QUICK_MEMORY_PLAN = (3, 10)
# Memory touched per invocation: warm-up invocations, measured ones, seconds frozen before each.
TOUCHED_PLAN = (4, 8, 1.0)
QUICK_TOUCHED_PLAN = (2, 2, 0.2)


@contextlib.contextmanager
def floor_rig(processes: int = 1, libraries: bool = False) -> Iterator[Rig]:
    """A fresh HEC receiver and an /opt folder whose only extension is the floor, in
    `processes` processes (1, 2 or 3), with the extension's libraries imported if `libraries`."""
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        work = Path(tmp)
        opt = work / "opt"
        folder = opt / EXTENSION_NAME
        folder.mkdir(parents=True)
        shutil.copyfile(FLOOR, folder / FLOOR.name)
        for module in ("msgspec", "urllib3"):
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise RuntimeError(f"{module} is not installed in this environment")
            (folder / module).symlink_to(Path(spec.origin).parent, target_is_directory=True)
        launcher = opt / "extensions" / EXTENSION_NAME
        launcher.parent.mkdir()
        launcher.write_text(f'#!/bin/sh\nFLOOR_PROCESSES={processes} FLOOR_LIBRARIES='
                            f'{int(libraries)} PYTHONPATH="{folder}" exec'
                            f' "$SPLUNK_EXTENSION_PYTHON" -S -OO "{folder / FLOOR.name}"'
                            ' "${0##*/}"\n')
        launcher.chmod(0o755)
        hec = HecProcess(work / "hec.sqlite")
        try:
            yield Rig(hec, opt, work)
        finally:
            hec.stop()


CONTENDERS: dict[str, Callable[[], AbstractContextManager[Rig]]] = {
    "extension": extension_rig, "floor-1": floor_rig, "floor-2": lambda: floor_rig(2),
    "floor-3": lambda: floor_rig(3)}
# Memory only: their CPU per invocation is floor-3's (the libraries are imported, not used).
MEMORY_ONLY: dict[str, Callable[[], AbstractContextManager[Rig]]] = {
    "floor-3 + urllib3, ssl": lambda: floor_rig(3, libraries=True)}


def cost_rounds(cells: Sequence[tuple[int, float]], invocations: dict[float, int],
                rounds: int) -> dict[str, Any]:
    """CPU per invocation and post-runtime of both, cell by cell, round by round."""
    out: dict[str, Any] = {}
    for memory_mb, gap_s in cells:
        key = _key(memory_mb, gap_s)
        runs: dict[str, list[dict[str, Any]]] = {who: [] for who in CONTENDERS}
        for n in range(rounds):
            for who, cell in _round(memory_mb, gap_s, invocations[gap_s], bench_cost.SEED + n):
                if cell["lines_stored"] != cell["lines_expected"]:
                    # A yardstick that skips work is no floor (nor a contender that loses lines).
                    raise RuntimeError(f"{who} stored {cell['lines_stored']} of"
                                       f" {cell['lines_expected']} lines in {key}")
                runs[who].append(cell)
                print(f"{key} round {n + 1} {who}: CPU {cell['cpu_ms_per_invocation']:.2f} ms"
                      f"/invocation {_rounded(cell['cpu_ms_per_invocation_by_process'])}, lines"
                      f" {cell['lines_stored']}/{cell['lines_expected']}, post-runtime mean"
                      f" {cell['post_runtime_ms']['mean']:.1f} ms", flush=True)
        out[key] = {who: _summary(cells_run) for who, cells_run in runs.items()}
        medians = {who: out[key][who]["cpu_ms_per_invocation_median"] for who in CONTENDERS}
        print(f"{key}: " + ", ".join(f"{who} {ms:.2f}" for who, ms in medians.items())
              + f" ms per invocation (medians of {rounds})", flush=True)
    return out


def _key(memory_mb: int, gap_s: float) -> str:
    return f"{memory_mb}MB-{bench_cost.gap_label(gap_s)}"


def _round(memory_mb: int, gap_s: float, invocations: int,
           seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each contender's run of one cell, in CONTENDERS' order (side by side when sparse)."""
    cell = (memory_mb, gap_s, "sync", invocations, seed)
    if gap_s < SIDE_BY_SIDE_GAP_S:
        for who, factory in CONTENDERS.items():
            yield who, bench_cost.run_cell(*cell, rig_factory=factory)
        return
    with ThreadPoolExecutor(max_workers=len(CONTENDERS)) as pool:
        futures = [pool.submit(bench_cost._staggered, i * bench_cost.STAGGER_S, *cell, factory)
                   for i, factory in enumerate(CONTENDERS.values())]
        yield from zip(CONTENDERS, (f.result() for f in futures), strict=True)


def _median_index(values: Sequence[float]) -> int:
    """The round whose figure is the median (the upper one of an even count)."""
    return sorted(range(len(values)), key=values.__getitem__)[len(values) // 2]


def _summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = [c["cpu_ms_per_invocation"] for c in cells]
    return {"cpu_ms_per_invocation": cpu,
            "cpu_ms_per_invocation_median": cpu[_median_index(cpu)],
            "cpu_ms_per_invocation_by_process": [c["cpu_ms_per_invocation_by_process"]
                                                 for c in cells],
            "post_runtime_mean_ms": [c["post_runtime_ms"]["mean"] for c in cells],
            "lines_stored": [c["lines_stored"] for c in cells],
            "lines_expected": cells[0]["lines_expected"]}


def _rounded(by_process: dict[str, float]) -> dict[str, float]:
    return {role: round(ms, 2) for role, ms in by_process.items()}


def memory(plan: tuple[int, int]) -> dict[str, Any]:
    """PSS of every process of each, after the plan, each in a fresh sandbox."""
    out: dict[str, Any] = {}
    for who, factory in {**CONTENDERS, **MEMORY_ONLY}.items():
        with factory() as rig:
            processes, _ = extension_memory(rig, *plan, {"SPLUNK_FLUSH": "sync"})
        pss = sum(p["pss_kb"] for p in processes.values()) / 1024
        anonymous = sum(p["pss_by_backing_kb"]["anonymous"] for p in processes.values()) / 1024
        out[who] = {"pss_total_mib": pss, "anonymous_pss_mib": anonymous,
                    "processes": len(processes)}
        print(f"memory {who}: PSS {pss:.2f} MiB (anonymous {anonymous:.2f}),"
              f" {len(processes)} process(es)", flush=True)
    return out


def touched(plan: tuple[int, int, float]) -> dict[str, Any]:
    """kB of memory each process of each contender touches per 10-line invocation (`sync`, whole
    cores): the pages accessed from one frozen state to the next, cleared before each gap.

    The CPU a thaw costs follows it: after a freeze every page touched misses the caches (and
    the TLB), so CPU per invocation is set by the breadth of code and data a pass goes through
    more than by the work itself (docs/benchmarks.md 7b). The gap is short on purpose: the
    counts grow with the window (10 s frozen instead of 1 s: 9-39% more per process, though
    strace shows the same system calls per invocation), most likely through this machine's
    page aging (DAMON, on here), which marks a page as accessed for every process that maps it
    when one of them touched it; main, which shares the most, grows the most."""
    warmup, measured, gap_s = plan
    out: dict[str, Any] = {}
    for who, factory in {**CONTENDERS, **MEMORY_ONLY}.items():
        with factory() as rig:
            sb = rig.sandbox(rig.env(SPLUNK_FLUSH="sync"), timeout_s=30.0)
            try:
                for n in range(warmup):
                    _invoke(sb, who, f"W{n}")
                roles = extension_processes(sb)
                sums = {role: dict.fromkeys(("anonymous", "libpython", "other files"), 0)
                        for role in roles}
                for n in range(measured):
                    clear_referenced(list(roles.values()))
                    time.sleep(gap_s)
                    _invoke(sb, who, f"T{n}")
                    for role, pid in roles.items():  # frozen now: nothing moves while read
                        for kind, kb in referenced_kb(pid).items():
                            sums[role][kind] += kb
                sb.shutdown()
            finally:
                sb.close()
        out[who] = {role: {kind: kb / measured for kind, kb in kinds.items()}
                    for role, kinds in sums.items()}
        print(f"touched {who}: " + ", ".join(f"{role} {sum(k.values()):.0f} kB"
                                             for role, k in out[who].items())
              + " per invocation", flush=True)
    return out


def _invoke(sb: Sandbox, who: str, tag: str) -> None:
    result = sb.invoke({"lines": bench_cost.LINES, "size": bench_cost.LINE_BYTES, "tag": tag})
    if result.status != "success":
        raise RuntimeError(f"{who}: invoke failed: {result}")


HEADERS = ["cell", "contender", "CPU ms/invocation (median)", "main", "listener", "sender",
           "rounds (ms)"]


def rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per cell and contender: the median, its processes' shares in the median round."""
    out = []
    for key, cell in results["cost"].items():
        for who, figures in cell.items():
            rounds = figures["cpu_ms_per_invocation"]
            middle = figures["cpu_ms_per_invocation_by_process"][_median_index(rounds)]
            out.append([key, who, figures["cpu_ms_per_invocation_median"],
                        *(middle.get(role, "-") for role in ("main", "listener", "sender")),
                        " / ".join(f"{ms:.2f}" for ms in rounds)])
    return out


TOUCHED_HEADERS = ["contender", "main kB", "listener kB", "sender kB", "total kB",
                   "of it anonymous kB"]


def touched_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per contender: kB touched per invocation by each process, and by all."""
    out = []
    for who, processes in results.get("touched", {}).items():
        per_role = {role: sum(kinds.values()) for role, kinds in processes.items()}
        out.append([who, *(per_role.get(role, "-") for role in ("main", "listener", "sender")),
                    sum(per_role.values()),
                    sum(kinds["anonymous"] for kinds in processes.values())])
    return out


def report(results: dict[str, Any]) -> None:
    common.print_table("CPU per 10-line invocation, `sync`", HEADERS, rows(results))
    common.print_table("Memory touched per 10-line invocation", TOUCHED_HEADERS,
                       touched_rows(results))
    common.print_table("PSS after the ten-line invocations",
                       ["contender", "PSS MiB", "anonymous MiB", "processes"],
                       [[who, m["pss_total_mib"], m["anonymous_pss_mib"], m["processes"]]
                        for who, m in results["memory"].items()])


def chart(results: dict[str, Any], folder: Path) -> None:
    cells = list(results["cost"])
    series = {who: [results["cost"][c][who]["cpu_ms_per_invocation_median"] for c in cells]
              for who in CONTENDERS}
    target = bench_cost.TARGETS["cpu_ms_per_invocation"]
    common.bar_chart(folder / "floor.png", "CPU per invocation: the extension and its floors",
                     cells, series, "ms", {f"target {target:g} ms": target})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cells", nargs="+", default=None, metavar="CELL",
                        choices=[_key(m, g) for m, g in CELLS],
                        help="only these cells (e.g. 512MB-10s); writes the same results file")
    args = parser.parse_args(argv)
    cells: Sequence[tuple[int, float]] = QUICK_CELLS if args.quick else CELLS
    invocations = QUICK_INVOCATIONS if args.quick else INVOCATIONS
    if args.cells:
        cells = tuple(cell for cell in cells if _key(*cell) in args.cells)
    rounds = 1 if args.quick else args.rounds
    results = {"cost": cost_rounds(cells, invocations, rounds),
               "memory": memory(QUICK_MEMORY_PLAN if args.quick else MEMORY_PLAN),
               "touched": touched(QUICK_TOUCHED_PLAN if args.quick else TOUCHED_PLAN),
               "rounds": rounds}
    return common.publish("floor", results, quick=args.quick,
                          targets={"cpu_ms_per_invocation": bench_cost.TARGETS[
                              "cpu_ms_per_invocation"], "pss_total_mib": 22.0},
                          report=report, chart=chart)


if __name__ == "__main__":
    sys.exit(main())
