"""CI smoke run of every benchmark script: `--quick` in a fresh interpreter, exit 0, JSON written;
then the results page generated from those JSON files.

Benchmarks that honour BENCH_RESULTS_DIR write into a temporary folder; the others write to
results/, whose previous files are put back afterwards so a smoke run never replaces figures.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from benchmarks import common, run_all
from benchmarks.rig import TOKEN, SinkProcess

pytestmark = pytest.mark.integration

# bench_fleet has its own test below (it also checks loss and duplicates).
BENCHMARKS = [name for name in run_all.discover() if name != "bench_fleet"]
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
        assert 0 < doc["python_s_pass_ms"] < 5000  # the machine's speed, a real start's time
        assert (results_folder / f"{name}.json").exists()
        assert list(results_folder.glob("*.png")), "a benchmark draws its chart"


def test_counting_sink_counts_requests_bytes_and_dumps_bodies(tmp_path: Path) -> None:
    dump = tmp_path / "bodies.jsonl"
    sink = SinkProcess(str(dump))
    try:
        raw = b'{"event":"a"}\n{"event":"b"}'
        body = gzip.compress(raw)
        conn = http.client.HTTPConnection(urlsplit(sink.url).netloc, timeout=10)
        headers = {"Authorization": f"Splunk {TOKEN}", "Content-Encoding": "gzip"}
        for _ in range(2):
            conn.request("POST", "/services/collector/event", body, headers)
            assert conn.getresponse().read() == b'{"text":"Success","code":0}'
        conn.close()
        counted = sink.counters()
    finally:
        sink.stop()
    assert (counted["events"], counted["requests"]) == (4, 2)
    assert (counted["body_bytes"], counted["raw_bytes"]) == (2 * len(body), 2 * len(raw))
    # "POST /services/collector/event HTTP/1.1\r\n", Host, Accept-Encoding, Content-Length,
    # the two headers above and the blank line, as http.client sends them.
    head = (len("POST /services/collector/event HTTP/1.1\r\n")
            + len(f"Host: {urlsplit(sink.url).netloc}\r\n") + len("Accept-Encoding: identity\r\n")
            + len(f"Content-Length: {len(body)}\r\n")
            + len(f"Authorization: Splunk {TOKEN}\r\n") + len("Content-Encoding: gzip\r\n") + 2)
    assert counted["head_bytes"] == 2 * head
    assert dump.read_bytes() == (raw + b"\n") * 2


def test_fleet_quick_run_loses_and_duplicates_nothing(results_folder: Path) -> None:
    # Two environments, one HEC receiver, a 1 s window: every line id stored exactly once.
    env = {**os.environ, common.RESULTS_ENV: str(results_folder)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_fleet", "--quick"],
                          cwd=common.REPO, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Fleet: N environments" in done.stdout
    assert "loss 0 / duplicates 0 (must be 0): met" in done.stdout
    doc = json.loads((results_folder / "fleet.json").read_text())
    assert doc["quick"] is True
    (cell,) = doc["results"]["cells"]
    assert cell["envs"] == 2
    assert cell["lines_expected"] > 0
    assert cell["lines_stored"] == cell["lines_expected"]
    assert (cell["loss"], cell["duplicates"], cell["unexpected"]) == (0, 0, 0)
    assert cell["events_per_s"] > 0 and cell["hec_requests_per_s"] > 0
    assert cell["connections_per_env_max"] >= 1
    assert (results_folder / "fleet.png").stat().st_size > 1000


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
    assert (f"a bare `python -S -c pass` took {memory['python_s_pass_ms']:,.1f} ms (p50) as it"
            " ended") in page
    for image in ("cold_start", "flush_latency", "post_runtime", "throughput_cpu",
                  "shutdown_drain", "memory"):
        assert (out.parent / "img" / f"{image}.png").stat().st_size > 1000
    if (results_folder / "fleet.json").exists():
        assert "Many environments into one HEC" in page
        assert (out.parent / "img" / "fleet.png").stat().st_size > 1000


def test_ab_runs_both_sides_alternately_and_writes_both_figures(results_folder: Path) -> None:
    # --base: this checkout's directory, so no git worktree; two rounds of three invocations.
    env = {**os.environ, common.RESULTS_ENV: str(results_folder)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.ab", "invocation", "--base",
                           str(common.REPO), "--rounds", "2", "--invocations", "3"],
                          cwd=common.REPO, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines()]
    main = "CPU us/invocation, all"
    assert [row[:3] for row in rows if row[:1] in (["1"], ["2"])] == [
        ["1", "base", "first"], ["2", "change", "first"]]
    figures = [main, *(f"CPU us/invocation, {role}" for role in ("main", "listener", "sender")),
               "HEC requests/invocation"]
    for figure in figures:
        assert any(" ".join(row[:len(figure.split())]) == figure and row[-2:] == ["of", "2"]
                   for row in rows), figure
    doc = json.loads((results_folder / "ab-invocation.json").read_text())
    assert doc["benchmark"] == "ab-invocation"
    results = doc["results"]
    assert [r["order"] for r in results["rounds"]] == [["base", "change"], ["change", "base"]]
    for r in results["rounds"]:
        for side in ("base", "change"):
            assert list(r[side]) == figures
            assert r[side][main] > 0
            assert r["raw"][side]["invocations"] == 3
    assert results["sides"]["base"]["path"] == str(common.REPO)
    assert results["sides"]["change"]["ref"] is None
    assert list(results["summary"]) == figures
    assert results["summary"][main]["base_median"] > 0
    assert results["summary"][main]["change_median"] > 0


def test_phases_count_the_cpu_of_named_functions_in_each_child(
    results_folder: Path, tmp_path: Path,
) -> None:
    env = {**os.environ, common.RESULTS_ENV: str(results_folder)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_invocation_cost", "--quick",
                           "--flush", "sync", "--invocations", "3", "--phases", str(tmp_path)],
                          cwd=common.REPO, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    counters = {path.stem.rsplit("-", 1)[0]: json.loads(path.read_text())
                for path in tmp_path.glob("*.json")}
    assert set(counters) == {"listener", "sender"}
    # Every invocation's batch was appended by the listener and sent by the sender, once each.
    assert counters["listener"]["SpoolWriter.append"][1] >= 3
    assert counters["sender"]["HecClient.post"][1] >= 3
    assert all(ns > 0 for ns, calls in counters["sender"].values() if calls)
    assert "HecClient.post" in done.stdout and "SpoolWriter.append" in done.stdout
