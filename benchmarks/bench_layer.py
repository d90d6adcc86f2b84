"""The layer with its own Python (issue 10): cold start against the system Python, layer sizes.

Cold start: extension process start -> register and -> first event/next, in fresh sandboxes,
interleaved: the unzipped x86_64 layer (its bundled CPython 3.13, nothing of the host's Python)
versus the same extension code on this machine's Python (`python -S`, the local /opt of
ext.local.layer), and a bare `python -S -c pass` of each interpreter. Sizes: zipped and
unzipped, per architecture. Memory: PSS and footprint of the extension's three processes after
bench_memory's plan (100 invocations x 1,000 lines, the default flush), bundled versus system
Python: issue 12's memory figure as the layer runs it. CPU: the extension's CPU per 10-line
invocation (`sync`) in cells of bench_floor (Lambda's CPU share, Poisson gaps), the two
interpreters alternating round by round: the issue 12 figure as the layer runs it, where the
other benchmarks run this machine's Python 3.11.

Run: `.venv/bin/python -m benchmarks.bench_layer [--quick]`. Needs the layers built
(`scripts/build_layer.py --arch x86_64|arm64`, cached); without them it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks import bench_cost, bench_memory, common
from benchmarks.bench_cold_start import cold_init
from benchmarks.common import bare_start_ms
from benchmarks.rig import Rig, extension_rig
from ext.local.layer import EXTENSION_NAME, unpack_layer

TARGETS = {"first_next_ratio_p50": 1.1, "zipped_mb": 20.0}
ARCHES = ("x86_64", "arm64")


def cached_layer_ready() -> bool:
    """True when the from-source interpreters are in the cache (a build then takes seconds)."""
    path = common.REPO / "scripts" / "build_python.py"
    spec = importlib.util.spec_from_file_location("build_python", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_python", module)
    spec.loader.exec_module(module)
    return all(module.cached_runtime(arch) is not None for arch in ARCHES)


def build(arch: str, out: Path) -> Path:
    """The layer zip of `arch`: the one `./dev test` just built for this checkout (it names its
    folder in SPLUNK_LAYER_PREBUILT), else a fresh build into `out`."""
    prebuilt = os.environ.get("SPLUNK_LAYER_PREBUILT")
    if prebuilt and (Path(prebuilt) / f"{EXTENSION_NAME}-{arch}.zip").is_file():
        return Path(prebuilt) / f"{EXTENSION_NAME}-{arch}.zip"
    zip_path = out / f"{arch}.zip"
    subprocess.run([sys.executable, str(common.REPO / "scripts" / "build_layer.py"), "--arch",
                    arch, "--out", str(zip_path)], check=True, capture_output=True)  # fmt: skip
    return zip_path


def sizes(zip_path: Path) -> dict[str, float]:
    with zipfile.ZipFile(zip_path) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    return {"zipped_mb": zip_path.stat().st_size / 1e6, "unzipped_mb": unzipped / 1e6}


class BundledRig(Rig):
    """The rig with the unzipped layer as /opt and no SPLUNK_EXTENSION_PYTHON: the launcher
    execs the layer's own interpreter."""

    def env(self, **extra: str) -> dict[str, str]:
        env = super().env(**extra)
        del env["SPLUNK_EXTENSION_PYTHON"]
        return env


@contextlib.contextmanager
def bundled_rig(opt: Path) -> Iterator[Rig]:
    """A fresh rig (its own HEC receiver and scratch folder) running the unzipped layer `opt`."""
    with extension_rig() as rig:
        yield BundledRig(rig.hec, opt, rig.work)


# bench_floor's cells (Lambda's CPU share, mean Poisson gap) and invocations per gap.
CPU_CELLS = ((128, 2.0), (1769, 2.0))
CPU_INVOCATIONS = {2.0: 12, 0.2: 4}
QUICK_CPU_CELLS = ((1769, 0.2),)


def cpu_per_invocation(opt: Path, cells: Sequence[tuple[int, float]],
                       rounds: int) -> dict[str, Any]:
    """The extension's CPU per 10-line invocation (`sync`) per cell, system then bundled Python
    in odd rounds and the other way round in even ones; each figure is a list over rounds."""
    factories = {"system": extension_rig, "bundled": lambda: bundled_rig(opt)}
    out: dict[str, Any] = {}
    for memory_mb, gap_s in cells:
        key = f"{memory_mb}MB-{bench_cost.gap_label(gap_s)}"
        out[key] = {side: [] for side in factories}
        for n in range(rounds):
            order = list(factories) if n % 2 == 0 else list(reversed(factories))
            for side in order:
                cell = bench_cost.run_cell(memory_mb, gap_s, "sync", CPU_INVOCATIONS[gap_s],
                                           bench_cost.SEED + n, rig_factory=factories[side])
                if cell["lines_stored"] != cell["lines_expected"]:
                    raise RuntimeError(f"{side} Python stored {cell['lines_stored']} of "
                                       f"{cell['lines_expected']} lines in {key}")
                out[key][side].append(cell["cpu_ms_per_invocation"])
                print(f"{key} round {n + 1} {side}: CPU {cell['cpu_ms_per_invocation']:.2f} ms"
                      " per invocation", flush=True)
    return out


def cpu_rows(cpu: dict[str, Any]) -> list[list[Any]]:
    """Per cell: each interpreter's median CPU per invocation, their ratio, and the rounds."""
    rows = []
    for key, sides in cpu.items():
        system, bundled = (common.summary(sides[s])["p50"] for s in ("system", "bundled"))
        rounds = " / ".join(f"{a:.2f}:{b:.2f}" for a, b in zip(sides["system"],
                                                                 sides["bundled"], strict=True))
        rows.append([key, system, bundled, bundled / system, rounds])
    return rows


# What the extension's processes import from the stdlib, in one interpreter start.
IMPORTS = "import ssl, json, zlib, http.client, email.parser, socket, selectors, uuid, hashlib"


def zipped_stdlib_copy(python_dir: Path, dest: Path) -> Path:
    """A copy of the bundled interpreter tree with the stdlib in lib/python313.zip (first on
    sys.path) and only the landmarks left in lib/python3.13; returns its python3."""
    shutil.copytree(python_dir, dest, symlinks=True)
    stdlib = dest / "lib" / "python3.13"
    with zipfile.ZipFile(dest / "lib" / "python313.zip", "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(stdlib.rglob("*.pyc")):
            archive.write(path, path.relative_to(stdlib).as_posix())
    for path in stdlib.iterdir():
        if path.name not in ("os.pyc", "lib-dynload"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return dest / "bin" / "python3"


def import_start_ms(python: str, runs: int) -> dict[str, float]:
    """Wall time of `python -S -c <IMPORTS>` (start, imports, exit), p50/p95 over `runs`."""
    samples = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([python, "-S", "-c", IMPORTS], check=True, env={"PATH": "/usr/bin:/bin"})
        samples.append((time.monotonic() - started) * 1000)
    return common.summary(samples)


def memory_mib(rig: Rig, plan: tuple[int, int]) -> dict[str, float]:
    """PSS of main + listener + sender after `plan` (invocations, lines each; the default
    flush), and their footprint (file pages counted once: the fair comparison, see
    rig.footprint_kb)."""
    flush = {"SPLUNK_FLUSH": bench_memory.DEFAULT_FLUSH}
    processes, footprint = bench_memory.extension_memory(rig, *plan, flush)
    return {"pss": sum(p["pss_kb"] for p in processes.values()) / 1024,
            "footprint": footprint["footprint_kb"] / 1024,
            "anonymous": footprint["anonymous_pss_kb"] / 1024,
            "file_once": footprint["file_once_kb"] / 1024}


def measure(runs: int, plan: tuple[int, int], folder: Path, arches: Sequence[str],
            cpu_cells: Sequence[tuple[int, float]] = CPU_CELLS,
            cpu_rounds: int = 3) -> dict[str, Any]:
    layers = {arch: build(arch, folder) for arch in arches}
    opt = unpack_layer(layers["x86_64"], folder / "opt")
    bundled_python = str(opt / EXTENSION_NAME / "python" / "bin" / "python3")
    series: dict[str, list[float]] = {k: [] for k in (
        "system_bare", "bundled_bare", "system_register_ms", "system_first_next_ms",
        "bundled_register_ms", "bundled_first_next_ms")}  # fmt: skip
    with extension_rig() as system_rig:
        bundled_rig = BundledRig(system_rig.hec, opt, system_rig.work)
        cold_init(system_rig)  # warm the page cache of both; not counted
        cold_init(bundled_rig)
        for _ in range(runs):
            series["system_bare"].append(bare_start_ms(["-S", "-c", "pass"], sys.executable))
            series["bundled_bare"].append(bare_start_ms(["-S", "-c", "pass"], bundled_python))
            for side, rig in (("system", system_rig), ("bundled", bundled_rig)):
                record = cold_init(rig)
                series[f"{side}_register_ms"].append(record["register_ms"])
                series[f"{side}_first_next_ms"].append(record["first_next_ms"])
        system, bundled = memory_mib(system_rig, plan), memory_mib(bundled_rig, plan)
        memory = {"system_pss_mib": system["pss"], "bundled_pss_mib": bundled["pss"],
                  "system": system, "bundled": bundled}
    cpu = cpu_per_invocation(opt, cpu_cells, cpu_rounds)
    zipped = str(zipped_stdlib_copy(opt / EXTENSION_NAME / "python", folder / "zipped"))
    stdlib_layout = {"directory": import_start_ms(bundled_python, runs * 3),
                     "zip": import_start_ms(zipped, runs * 3)}  # fmt: skip
    stats = {name: common.summary(values) for name, values in series.items()}
    ratios = {f"{figure}_ratio_{q}": stats[f"bundled_{figure}_ms"][q]
              / stats[f"system_{figure}_ms"][q]
              for figure in ("register", "first_next") for q in ("p50", "p95")}  # fmt: skip
    return {"runs": runs, "invocations": plan[0], "lines": plan[1], "stats": stats,
            "ratios": ratios,
            "sizes": {arch: sizes(path) for arch, path in layers.items()}, "memory": memory,
            "cpu_ms_per_invocation": cpu,
            "stdlib_layout_ms": stdlib_layout,
            "samples": series}  # fmt: skip


def tables(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, headers, rows) of every table of a run: printed by report(), and on the
    benchmarks page (benchmarks/report.py)."""
    stats, ratios = results["stats"], results["ratios"]
    labels = {"system_bare": "system `python -S -c pass`",
              "bundled_bare": "bundled `python3 -S -c pass`",
              "system_register_ms": "system Python: start -> register",
              "bundled_register_ms": "bundled Python: start -> register",
              "system_first_next_ms": "system Python: start -> first next",
              "bundled_first_next_ms": "bundled Python: start -> first next"}  # fmt: skip
    target = TARGETS["first_next_ratio_p50"]
    layout = results["stdlib_layout_ms"]
    memory = results["memory"]
    sides = [side for side in ("system", "bundled") if side in memory]
    out = [
        (f"Cold start over {results['runs']} cold inits (ms)", ["series", "p50", "p95", "max"],
         [[label, stats[k]["p50"], stats[k]["p95"], stats[k]["max"]]
          for k, label in labels.items()]),
        ("Bundled / system Python", ["figure", "p50 x", "p95 x", "target x", "verdict"], [
            ["register", ratios["register_ratio_p50"], ratios["register_ratio_p95"], "-", "-"],
            ["first_next", ratios["first_next_ratio_p50"], ratios["first_next_ratio_p95"],
             target, common.verdict(ratios["first_next_ratio_p50"], target)]]),
        ("Layer size (MB)", ["arch", "zipped", "unzipped", "verdict"],
         [[arch, s["zipped_mb"], s["unzipped_mb"],
           common.verdict(s["zipped_mb"], TARGETS["zipped_mb"])]
          for arch, s in results["sizes"].items()]),
        ("Bundled interpreter start + the extension's stdlib imports (ms)",
         ["stdlib", "p50", "p95"], [[k, v["p50"], v["p95"]] for k, v in layout.items()]),
        (f"Extension memory after {results['invocations']} invocations x "
         f"{results.get('lines', 50):,} lines (MiB): PSS, "
         "and the footprint with each file's pages counted once (on this machine the system "
         "Python's libraries are also mapped by the benchmark's own Python processes, which "
         "PSS charges with part of them)",
         ["interpreter", "PSS", "footprint", "anonymous", "file pages"],
         [[side, memory[side]["pss"], memory[side]["footprint"], memory[side]["anonymous"],
           memory[side]["file_once"]] for side in sides]
         or [["system", memory["system_pss_mib"], "-", "-", "-"],
             ["bundled", memory["bundled_pss_mib"], "-", "-", "-"]]),
    ]  # fmt: skip
    if "cpu_ms_per_invocation" in results:
        out.append((
            "Extension CPU per 10-line invocation (`sync`, Lambda's CPU share; ms, median of the"
            " rounds; rounds as system:bundled)",
            ["cell", "system Python", "bundled Python", "bundled / system", "rounds"],
            cpu_rows(results["cpu_ms_per_invocation"])))
    return out


def report(results: dict[str, Any]) -> None:
    for title, headers, rows in tables(results):
        common.print_table(title, headers, rows)


def chart(results: dict[str, Any], folder: Path) -> None:
    """CPU per invocation of both interpreters, cell by cell (nothing without that part)."""
    cpu = results.get("cpu_ms_per_invocation")
    if not cpu:
        return
    cells = list(cpu)
    series = {f"{side} Python": [common.summary(cpu[c][side])["p50"] for c in cells]
              for side in ("system", "bundled")}
    common.bar_chart(folder / "layer_cpu.png", "CPU per invocation: bundled vs system Python",
                     cells, series, "ms")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_layer", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--runs", type=int, default=None, help="cold inits per side (default 30)")
    args = parser.parse_args(argv)
    if not cached_layer_ready():
        print("bench_layer: the bundled interpreters are not built yet (run "
              "scripts/build_layer.py --arch x86_64 and --arch arm64 first); nothing measured")
        return 0
    runs = args.runs or (2 if args.quick else 30)
    with tempfile.TemporaryDirectory(prefix="bench-layer-") as tmp:
        # --quick (CI smoke, 60 s): x86_64 only, few runs.
        arches = ("x86_64",) if args.quick else ARCHES
        plan = bench_memory.QUICK_PLAN if args.quick else bench_memory.FULL_PLAN
        results = measure(runs, plan, Path(tmp), arches,
                          QUICK_CPU_CELLS if args.quick else CPU_CELLS, 1 if args.quick else 3)
    return common.publish("layer", results, quick=args.quick, targets=TARGETS, report=report,
                          chart=chart)


if __name__ == "__main__":
    raise SystemExit(main())
