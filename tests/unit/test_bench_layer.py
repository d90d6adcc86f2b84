"""benchmarks/bench_layer.py's CPU comparison: both interpreters alternate which runs first, and
the table sets each cell's medians side by side with their ratio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_cost, bench_layer
from benchmarks.rig import extension_rig


def test_cpu_rows_give_each_sides_median_and_the_ratio() -> None:
    cpu = {"128MB-2s": {"system": [3.0, 5.0, 4.0], "bundled": [2.0, 9.0, 3.0]}}
    [[cell, system, bundled, ratio, rounds]] = bench_layer.cpu_rows(cpu)
    assert (cell, system, bundled) == ("128MB-2s", 4.0, 3.0)
    assert ratio == pytest.approx(0.75)
    assert rounds == "3.00:2.00 / 5.00:9.00 / 4.00:3.00"


def test_cpu_per_invocation_alternates_the_first_side(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str]] = []
    sides = {extension_rig: "system"}

    def fake_run_cell(memory_mb: int, gap_s: float, strategy: str, invocations: int,
                      seed: int, rig_factory: Any) -> dict[str, Any]:
        side = sides.get(rig_factory, "bundled")
        calls.append((seed - bench_cost.SEED, side))
        assert (memory_mb, gap_s, strategy) == (128, 2.0, "sync")
        return {"lines_stored": 10, "lines_expected": 10,
                "cpu_ms_per_invocation": 1.0 if side == "system" else 2.0}

    monkeypatch.setattr(bench_cost, "run_cell", fake_run_cell)
    out = bench_layer.cpu_per_invocation(Path("/nonexistent"), [(128, 2.0)], rounds=3)
    assert calls == [(0, "system"), (0, "bundled"), (1, "bundled"), (1, "system"),
                     (2, "system"), (2, "bundled")]
    assert out == {"128MB-2s": {"system": [1.0] * 3, "bundled": [2.0] * 3}}


def test_a_side_that_loses_lines_is_no_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_cost, "run_cell", lambda *a, **k: {
        "lines_stored": 9, "lines_expected": 10, "cpu_ms_per_invocation": 1.0})
    with pytest.raises(RuntimeError, match="stored 9 of 10"):
        bench_layer.cpu_per_invocation(Path("/nonexistent"), [(1769, 2.0)], rounds=1)


def _results(cpu: bool) -> dict[str, Any]:
    stat = {"p50": 10.0, "p95": 12.0, "max": 13.0}
    results: dict[str, Any] = {
        "runs": 2, "invocations": 20, "lines": 1000,
        "stats": dict.fromkeys(("system_bare", "bundled_bare", "system_register_ms",
                                "bundled_register_ms", "system_first_next_ms",
                                "bundled_first_next_ms"), stat),
        "ratios": {"register_ratio_p50": 0.8, "register_ratio_p95": 0.9,
                   "first_next_ratio_p50": 1.2, "first_next_ratio_p95": 1.3},
        "sizes": {"x86_64": {"zipped_mb": 7.5, "unzipped_mb": 18.0}},
        "stdlib_layout_ms": {"directory": {"p50": 29.0, "p95": 40.0}},
        "memory": {"system_pss_mib": 23.9, "bundled_pss_mib": 25.5}}
    if cpu:
        results["cpu_ms_per_invocation"] = {"128MB-2s": {"system": [2.0], "bundled": [1.5]}}
    return results


def test_the_page_shows_the_cpu_table_and_chart_only_when_measured() -> None:
    from benchmarks import report

    with_cpu = "\n".join(report.layer({"results": _results(cpu=True)}))
    assert "| 128MB-2s | 2.00 | 1.50 | 0.75 | 2.00:1.50 |" in with_cpu
    assert "img/layer_cpu.png" in with_cpu
    assert "| first_next | 1.20 | 1.30 | 1.10 | MISSED |" in with_cpu
    without = "\n".join(report.layer({"results": _results(cpu=False)}))
    assert "CPU per 10-line invocation" not in without
    assert "layer_cpu.png" not in without
    assert "| system | 23.90 | - | - | - |" in without
    assert "after 20 invocations x 1,000 lines (MiB)" in without


def test_the_chart_is_drawn_only_when_the_cpu_was_measured(tmp_path: Path) -> None:
    bench_layer.chart(_results(cpu=False), tmp_path)
    assert not (tmp_path / "layer_cpu.png").exists()
    bench_layer.chart(_results(cpu=True), tmp_path)
    assert (tmp_path / "layer_cpu.png").stat().st_size > 0
