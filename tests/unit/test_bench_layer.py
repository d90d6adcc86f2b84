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
