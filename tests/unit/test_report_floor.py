"""benchmarks/report.py: its reading of the floor benchmark (which cells it names as missing the
CPU target, where it says the floor itself is over it) and the machine's speed it states, for the
page and for each section."""

from __future__ import annotations

from typing import Any

from benchmarks import bench_floor, report


def _doc(cells: dict[str, dict[str, float]]) -> dict[str, Any]:
    cost = {key: {who: {"cpu_ms_per_invocation_median": ms[who]}
                  for who in bench_floor.CONTENDERS} for key, ms in cells.items()}
    return {"targets": {"cpu_ms_per_invocation": 1.5}, "results": {"cost": cost}}


def _cell(extension: float, floor_3: float) -> dict[str, float]:
    return {"extension": extension, "floor-1": 0.9, "floor-2": 1.0, "floor-3": floor_3}


def test_cells_the_extension_meets_are_left_out_and_a_floor_over_the_target_is_said() -> None:
    text = "".join(report._floor_finding({"floor": _doc({
        "128MB-200ms": _cell(1.4, 1.1), "128MB-2s": _cell(2.0, 1.25),
        "512MB-10s": _cell(3.5, 1.85)})}))
    assert "128MB-200ms" not in text
    assert "128MB-2s: extension 2.00 (1.60x floor-3), floor-3 1.25" in text
    assert "512MB-10s: extension 3.50 (1.89x floor-3), floor-3 1.85" in text
    assert text.endswith("In this run floor-3 itself is over the target in 512MB-10s: on this"
                         " machine at that speed no extension of three Python processes meets"
                         " it there, whatever it leaves out.")


def test_nothing_is_said_of_the_floor_itself_when_it_is_under_the_target() -> None:
    text = "".join(report._floor_finding({"floor": _doc({"128MB-2s": _cell(2.0, 1.25)})}))
    assert "128MB-2s: extension 2.00" in text
    assert "itself is over the target" not in text


def test_no_finding_when_every_cell_meets_the_target_or_there_is_no_floor_run() -> None:
    assert report._floor_finding({"floor": _doc({"128MB-2s": _cell(1.4, 1.2)})}) == []
    assert report._floor_finding({}) == []


def test_the_page_states_the_machines_speed_from_the_cold_start_run() -> None:
    doc = {"machine": {"cpu": "c", "cpus": 2, "mem_gib": 1, "kernel": "k"},
           "versions": {"python": "3", "msgspec": "m", "urllib3": "u", "awslambdaric": "a"},
           "git": {"commit": "abc", "dirty": False}, "created": "t", "quick": False,
           "results": {"stats": {"bare_no_site": {"p50": 31.81}}}}
    assert any("a bare `python -S -c pass` takes 31.8 ms" in line
               for line in report.provenance({"cold_start": doc}))
    assert not any("python -S" in line for line in report.provenance({"cost": doc}))


def test_the_finding_sets_the_memory_touched_against_floor_3s_when_measured() -> None:
    doc = _doc({"512MB-10s": _cell(3.4, 1.9)})
    kinds = ("anonymous", "libpython", "other files")
    doc["results"]["touched"] = {
        "extension": {"main": dict.fromkeys(kinds, 600.0), "sender": dict.fromkeys(kinds, 1200.0)},
        "floor-3": {"main": dict.fromkeys(kinds, 400.0), "sender": dict.fromkeys(kinds, 800.0)}}
    text = "".join(report._floor_finding({"floor": doc}))
    assert ("Per invocation the extension's processes touch 5,400 kB of memory, floor-3's"
            " 3,600 kB (1.50x)") in text
    del doc["results"]["touched"]
    assert "touch" not in "".join(report._floor_finding({"floor": doc}))


def test_each_section_states_its_commit_time_and_the_machines_speed_then() -> None:
    doc: dict[str, Any] = {"git": {"commit": "5946c8b0123456789", "dirty": False},
                           "created": "2026-12-01T06:00:00Z", "python_s_pass_ms": 22.36}
    assert report.run_stamp(doc) == [
        "_Measured at 5946c8b01234, 2026-12-01T06:00:00Z; a bare `python -S -c pass` took 22.4 ms"
        " (p50) as it ended._", ""]
    del doc["python_s_pass_ms"]  # written before the speed was recorded
    doc["git"]["dirty"] = True
    assert report.run_stamp(doc) == ["_Measured at 5946c8b01234 (dirty), 2026-12-01T06:00:00Z._",
                                     ""]
