"""CI smoke run of every benchmark script: `--quick` in a fresh interpreter, exit 0, JSON written;
then the results page generated from those JSON files.

Benchmarks that honour BENCH_RESULTS_DIR write into a temporary folder; the others write to
results/, whose previous files are put back afterwards so a smoke run never replaces figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import common, run_all

pytestmark = pytest.mark.integration

BENCHMARKS = run_all.discover()
RUN_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def results_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary BENCH_RESULTS_DIR; results/ as it was is restored at the end."""
    repo_results = common.REPO / "results"
    saved = {p.name: p.read_bytes() for p in repo_results.glob("*.json")}
    try:
        yield tmp_path_factory.mktemp("bench-results")
    finally:
        for path in repo_results.glob("*.json"):
            if path.name not in saved:
                path.unlink()
        for name, data in saved.items():
            (repo_results / name).write_bytes(data)


def test_every_issue_benchmark_is_present() -> None:
    for name in ("cold_start", "flush_latency", "throughput", "shutdown_drain", "memory"):
        assert f"bench_{name}" in BENCHMARKS


@pytest.mark.parametrize("module", BENCHMARKS)
def test_quick_run_exits_zero_and_writes_json(module: str, results_folder: Path) -> None:
    name = module.removeprefix("bench_")
    started = time.time()
    env = {**os.environ, common.RESULTS_ENV: str(results_folder)}
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--quick"],
                          cwd=common.REPO, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "a benchmark prints its table"
    written = [p for p in (results_folder / f"{name}.json",
                           common.REPO / "results" / f"{name}.json")
               if p.exists() and p.stat().st_mtime >= started - 1]
    assert written, f"{module} wrote no results JSON"
    doc = json.loads(written[0].read_text())
    assert doc
    if name in {"cold_start", "flush_latency", "throughput", "shutdown_drain", "memory"}:
        assert doc["benchmark"] == name
        assert doc["quick"] is True
        assert doc["versions"]["python"]
        assert (results_folder / f"{name}.json").exists()
        assert list(results_folder.glob("*.png")), "a benchmark draws its chart"


def test_report_is_generated_from_the_results(results_folder: Path, tmp_path: Path) -> None:
    if not (results_folder / "memory.json").exists():
        pytest.skip("needs the quick results of the benchmarks above")
    out = tmp_path / "docs" / "benchmarks.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks.report", "--results",
                           str(results_folder), "--out", str(out)], cwd=common.REPO,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    page = out.read_text()
    for title in ("Cold start", "Flush latency", "Throughput", "Shutdown drain", "Memory"):
        assert title in page
    assert "--quick smoke results" in page
    memory = json.loads((results_folder / "memory.json").read_text())
    assert f"{memory['results']['total']['pss_kb'] / 1024:,.1f}" in page
    for image in ("cold_start", "flush_latency", "post_runtime", "throughput_cpu",
                  "shutdown_drain", "memory"):
        assert (out.parent / "img" / f"{image}.png").stat().st_size > 1000
