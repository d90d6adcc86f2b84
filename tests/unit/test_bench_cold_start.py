"""The reference start of bench_cold_start (benchmarks/common.py; also the speed every result
records) is timed to the exit itself, not to a polling wait's next look (Popen.wait(timeout)
sleeps 0.5, 1, 2 ... 50 ms between looks: a 64 ms process is seen at 113.5 ms). The bounds leave
room for a loaded machine: the clock starts once Popen returns, which may be a little after the
child began."""

from __future__ import annotations

import subprocess
import time

import pytest

from benchmarks import bench_cold_start, common


def test_the_exit_is_seen_when_it_happens() -> None:
    proc = subprocess.Popen(["sleep", "0.064"])
    started = time.monotonic()
    ended = common._exited_at(proc, 5.0)
    assert 0.04 <= ended - started < 0.105
    assert proc.returncode == 0  # reaped


def test_a_process_past_the_timeout_is_killed() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    with pytest.raises(subprocess.TimeoutExpired):
        common._exited_at(proc, 0.2)
    assert proc.returncode is not None


def test_a_bare_start_is_timed_from_the_spawn_to_the_exit() -> None:
    ms = common.bare_start_ms(["-S", "-c", "import time; time.sleep(0.2)"])
    assert 150 <= ms < 2000


def test_the_function_init_alternates_the_sides_and_takes_each_sides_median(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, bool]] = []
    figures = {False: iter([400.0, 300.0, 500.0]), True: iter([1900.0, 1700.0, 1800.0])}

    def function_init_ms(rig: object, memory_mb: int, extension: bool) -> float:
        calls.append((memory_mb, extension))
        return next(figures[extension])

    monkeypatch.setattr(bench_cold_start, "function_init_ms", function_init_ms)
    got = bench_cold_start.measure_function_init(None, 3, sizes=(128,))  # type: ignore[arg-type]
    # Which side goes first alternates: a drift of the machine's speed weighs on both alike.
    assert calls == [(128, False), (128, True), (128, True), (128, False), (128, False),
                     (128, True)]
    assert got["128"]["without_ms"] == 400.0
    assert got["128"]["with_ms"] == 1800.0
    assert got["128"]["added_ms"] == 1400.0
