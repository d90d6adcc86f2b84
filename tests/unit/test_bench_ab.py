"""benchmarks/ab.py without running a benchmark: the order of the sides round by round, the
summary of the rounds, the checkouts it runs (a directory as is, a commit in a temporary
worktree removed afterwards) and the round plan main() carries out."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from benchmarks import ab, bench_cold_start, bench_cost, bench_layer, common, preload_probe

ALL = "CPU us/invocation, all"
SENDER = "CPU us/invocation, sender"


def test_base_runs_first_in_odd_rounds_and_change_in_even_ones() -> None:
    assert [ab.order(n) for n in range(1, 6)] == [
        ("base", "change"), ("change", "base"), ("base", "change"), ("change", "base"),
        ("base", "change")]


def _round(n: int, base: dict[str, float], change: dict[str, float]) -> dict[str, Any]:
    return {"round": n, "order": list(ab.order(n)), "base": base, "change": change}


def test_summary_takes_medians_of_each_side_and_of_the_per_round_ratios() -> None:
    rounds = [_round(1, {ALL: 100.0, SENDER: 10.0}, {ALL: 90.0, SENDER: 12.0}),
              _round(2, {ALL: 200.0, SENDER: 10.0}, {ALL: 160.0, SENDER: 10.0}),
              _round(3, {ALL: 110.0, SENDER: 10.0}, {ALL: 121.0, SENDER: 9.0})]
    summary = ab.summarise(rounds)
    assert list(summary) == [ALL, SENDER]  # the main figure stays first
    # Ratios 0.9, 0.8, 1.1: their median (0.9) is not the ratio of the medians (121 / 110).
    assert summary[ALL] == {"base_median": 110.0, "change_median": 121.0,
                            "ratio_median": pytest.approx(0.9),
                            "ratio_median_base_first": pytest.approx(1.0),  # of 0.9 and 1.1
                            "ratio_median_change_first": pytest.approx(0.8),
                            "change_lower_rounds": 2, "rounds": 3}
    # Equal is not lower.
    assert summary[SENDER]["change_lower_rounds"] == 1
    assert summary[SENDER]["ratio_median"] == pytest.approx(1.0)


def test_summary_of_an_even_count_and_of_missing_or_zero_figures() -> None:
    rounds = [_round(1, {ALL: 1.0, "HEC requests/invocation": 0.0}, {ALL: 3.0}),
              _round(2, {ALL: 2.0, "HEC requests/invocation": 0.0},
                     {ALL: 5.0, "HEC requests/invocation": 0.0})]
    summary = ab.summarise(rounds)
    assert summary[ALL]["base_median"] == 1.5
    assert summary[ALL]["change_median"] == 4.0
    assert summary[ALL]["ratio_median"] == pytest.approx(2.75)  # of 3.0 and 2.5
    requests = summary["HEC requests/invocation"]
    assert (requests["base_median"], requests["change_median"]) == (0.0, 0.0)
    assert math.isnan(requests["ratio_median"])  # no ratio of a zero base
    assert requests["change_lower_rounds"] == 0


def test_round_rows_show_the_order_and_the_main_figures_ratio() -> None:
    rounds = [_round(1, {ALL: 100.0}, {ALL: 90.0}), _round(2, {ALL: 0.0}, {ALL: 80.0})]
    assert ab.round_rows(rounds, ALL) == [[1, "base first", 100.0, 90.0, "0.900"],
                                          [2, "change first", 0.0, 80.0, "-"]]
    summary = ab.summarise(rounds)
    assert ab.summary_rows(summary) == [[ALL, 50.0, 85.0, "0.900", "0.900 / -", "1 of 2"]]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c",
                           "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository of two commits whose ext/__init__.py says which one it is."""
    repo = tmp_path / "repo"
    (repo / "ext").mkdir(parents=True)
    _git(repo, "init", "--quiet")
    for version in ("one", "two"):
        (repo / "ext" / "__init__.py").write_text(f"VERSION = {version!r}\n")
        _git(repo, "add", "ext")
        _git(repo, "commit", "--quiet", "-m", version)
    return repo


def _worktrees(repo: Path) -> list[str]:
    return [line for line in _git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def test_a_commit_is_checked_out_into_a_worktree_removed_afterwards(repo: Path) -> None:
    with ab.checkout("HEAD~1", repo) as tree:
        assert (tree / "ext" / "__init__.py").read_text() == "VERSION = 'one'\n"
        assert len(_worktrees(repo)) == 2
    assert not tree.exists()
    assert not tree.parent.exists()
    assert len(_worktrees(repo)) == 1


def test_the_worktree_is_removed_when_the_run_fails(repo: Path) -> None:
    with pytest.raises(KeyboardInterrupt), ab.checkout("HEAD", repo) as tree:
        raise KeyboardInterrupt
    assert not tree.parent.exists()
    assert len(_worktrees(repo)) == 1


def test_a_directory_is_used_as_is_and_kept(repo: Path) -> None:
    with ab.checkout(str(repo), repo / "elsewhere") as tree:
        assert tree == repo.resolve()
    assert (repo / "ext" / "__init__.py").read_text() == "VERSION = 'two'\n"
    assert len(_worktrees(repo)) == 1


@pytest.mark.parametrize("ref", ["no-such-ref", "ext"])
def test_neither_a_checkout_nor_a_commit_is_refused(repo: Path, ref: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)  # "ext" is a directory there, but not a checkout
    with pytest.raises(SystemExit, match=ref), ab.checkout(ref, repo):
        pass
    assert len(_worktrees(repo)) == 1


def test_main_alternates_the_sides_round_by_round_and_writes_both(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[Path | None, int]] = []

    def run(code: Path | None, args: argparse.Namespace, round_no: int, env: Mapping[str, str]
            ) -> tuple[dict[str, float], dict[str, Any]]:
        assert env == {}
        calls.append((code, round_no))
        value = 100.0 + round_no if code is not None else 90.0  # the change is cheaper
        return {ALL: value, SENDER: value / 2}, {"invocations": args.invocations}

    monkeypatch.setitem(ab.BENCHES, "invocation",
                        dataclasses.replace(ab.BENCHES["invocation"], run=run))
    monkeypatch.setenv(common.RESULTS_ENV, str(tmp_path / "results"))
    assert ab.main(["invocation", "--base", str(repo), "--rounds", "3",
                    "--invocations", "7"]) == 0
    base = repo.resolve() / "ext"
    assert calls == [(base, 1), (None, 1), (None, 2), (base, 2), (base, 3), (None, 3)]
    doc = json.loads((tmp_path / "results" / "ab-invocation.json").read_text())["results"]
    assert [r["order"] for r in doc["rounds"]] == [["base", "change"], ["change", "base"],
                                                   ["base", "change"]]
    assert [r["base"][ALL] for r in doc["rounds"]] == [101.0, 102.0, 103.0]
    assert [r["change"][ALL] for r in doc["rounds"]] == [90.0, 90.0, 90.0]
    assert doc["rounds"][0]["raw"] == {"base": {"invocations": 7},
                                       "change": {"invocations": 7}}
    assert doc["summary"][ALL]["change_lower_rounds"] == 3
    assert doc["sides"]["base"]["commit"] == _git(repo, "rev-parse", "HEAD").strip()
    assert doc["options"]["rounds"] == 3
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["2", "change", "first", "102.0", "90.00", "0.882"] in lines
    assert [*ALL.split(), "102.0", "90.00", "0.882", "0.882", "/", "0.882", "3", "of", "3"] in lines


def test_cost_gives_both_sides_of_a_round_the_same_seed_and_each_round_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seeds: list[int] = []

    def run_cell(memory_mb: int, gap_s: float, strategy: str, invocations: int, seed: int,
                 rig_factory: Any, env: dict[str, str]) -> dict[str, Any]:
        seeds.append(seed)
        return {"lines_stored": 1, "lines_expected": 1, "cpu_ms_per_invocation": 1.0,
                "cpu_ms_per_invocation_by_process": {"main": 0.2, "listener": 0.3,
                                                     "sender": 0.5},
                "hec_requests_per_invocation": 1.0}

    monkeypatch.setattr(bench_cost, "run_cell", run_cell)
    args = ab.parser().parse_args(["cost", "--base", "."])
    rounds = ab.run_rounds(ab.BENCHES["cost"].run, {"base": Path("b"), "change": None}, args, 2)
    assert seeds[0] == seeds[1] != seeds[2] == seeds[3]
    assert list(rounds[0]["base"]) == ["CPU ms/invocation, all", "CPU ms/invocation, main",
                                       "CPU ms/invocation, listener",
                                       "CPU ms/invocation, sender", "HEC requests/invocation"]


def test_a_setting_is_compared_on_one_checkout_with_per_side_variables(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[int, dict[str, str]]] = []

    def run_cell(memory_mb: int, gap_s: float, strategy: str, invocations: int, seed: int,
                 rig_factory: Any, env: dict[str, str]) -> dict[str, Any]:
        seen.append((seed, dict(env)))
        cpu = 0.8 if env.get("SPLUNK_GZIP_LEVEL") == "0" else 1.0
        return {"lines_stored": 1, "lines_expected": 1, "cpu_ms_per_invocation": cpu,
                "cpu_ms_per_invocation_by_process": {"main": 0.2, "listener": 0.3,
                                                     "sender": cpu - 0.5},
                "hec_requests_per_invocation": 1.0}

    monkeypatch.setattr(bench_cost, "run_cell", run_cell)
    monkeypatch.setenv(common.RESULTS_ENV, str(tmp_path / "results"))
    assert ab.main(["cost", "--base", str(repo), "--change", str(repo), "--rounds", "2",
                    "--env", "SPLUNK_ENRICH=false", "--change-env", "SPLUNK_GZIP_LEVEL=0",
                    "--env", "SPLUNK_FIELDS=team=a"]) == 0
    both = {"SPLUNK_ENRICH": "false", "SPLUNK_FIELDS": "team=a"}
    changed = {**both, "SPLUNK_GZIP_LEVEL": "0"}
    assert [env for _, env in seen] == [both, changed, changed, both]
    doc = json.loads((tmp_path / "results" / "ab-cost.json").read_text())["results"]
    assert doc["sides"]["base"]["env"] == both
    assert doc["sides"]["change"]["env"] == changed
    assert doc["summary"]["CPU ms/invocation, all"]["ratio_median"] == pytest.approx(0.8)
    assert "SPLUNK_GZIP_LEVEL=0" in capsys.readouterr().out


def test_a_variable_without_a_value_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ab.parser().parse_args(["cost", "--base", ".", "--change-env", "SPLUNK_GZIP_LEVEL"])
    assert "is not NAME=VALUE" in capsys.readouterr().err


def test_summary_shows_the_orders_effect_apart() -> None:
    # Whichever side runs second is 10% slower: the ratio flips with the order, not the change.
    rounds = [_round(n, {ALL: 100.0 if n % 2 else 110.0}, {ALL: 110.0 if n % 2 else 100.0})
              for n in range(1, 5)]
    summary = ab.summarise(rounds)[ALL]
    assert summary["ratio_median_base_first"] == pytest.approx(1.1)
    assert summary["ratio_median_change_first"] == pytest.approx(100 / 110)
    assert summary["ratio_median"] == pytest.approx((1.1 + 100 / 110) / 2)


def test_init_takes_the_medians_of_its_cold_inits_at_the_memory_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[dict[str, str], bool, int | None]] = []
    figures = iter([(100.0, 10.0), (140.0, 30.0), (120.0, 20.0)])  # first next, main CPU

    def cold_init(rig: Any, env: dict[str, str] | None = None, without: tuple[str, ...] = (),
                  cpu: bool = False, memory_mb: int | None = None) -> dict[str, float]:
        calls.append((dict(env or {}), cpu, memory_mb))
        if not cpu:  # the warm-up
            return {"register_ms": 1.0, "first_next_ms": 999.0, "init_ms": 999.0}
        first_next, main = next(figures)
        return {"register_ms": 1.0, "first_next_ms": first_next, "init_ms": first_next + 5,
                "cpu_ms_main": main, "cpu_ms_listener": 1.0, "cpu_ms_sender": 2.0}

    monkeypatch.setattr(bench_cold_start, "cold_init", cold_init)
    args = ab.parser().parse_args(["init", "--base", ".", "--inits", "3", "--memory", "128"])
    got, raw = ab._init(None, args, 1, {"SPLUNK_FLUSH": "sync"})
    assert calls[0] == ({"SPLUNK_FLUSH": "sync"}, False, None)  # the warm-up, not counted
    assert [c[1:] for c in calls[1:]] == [(True, 128)] * 3
    assert got == {"first event/next ms": 120.0, "init ms": 125.0, "init CPU ms, all": 23.0,
                   "init CPU ms, main": 20.0, "init CPU ms, listener": 1.0,
                   "init CPU ms, sender": 2.0}
    assert len(raw["inits"]) == 3


def test_preload_times_the_sides_checkout_and_takes_the_median_start(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    built: list[Path] = []
    starts = iter([(90.0, 218), (80.0, 218), (100.0, 218)])

    def layer_code(tree: Path) -> Path:
        built.append(tree)
        return tmp_path / "code"

    monkeypatch.setattr(preload_probe, "layer_code", layer_code)
    monkeypatch.setattr(preload_probe, "preload_ms", lambda code: next(starts))
    args = ab.parser().parse_args(["preload", "--base", ".", "--starts", "3"])
    got, raw = ab._preload(tmp_path / "checkout" / "ext", args, 1, {})
    assert built == [tmp_path / "checkout"]
    assert got == {"preload CPU ms": 90.0, "modules loaded": 218.0}
    assert raw == {"cpu_ms": [90.0, 80.0, 100.0]}


def test_init_of_the_layer_times_the_functions_whole_init_in_the_sides_layer(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    built: list[Path] = []
    opened: list[Path] = []
    asked: list[tuple[int, bool]] = []
    wholes = iter([2000.0, 1800.0, 2100.0])

    def layer_code(tree: Path) -> Path:
        built.append(tree)
        return tmp_path / "opt" / "splunk-hec-extension"

    @contextlib.contextmanager
    def bundled_rig(opt: Path) -> Iterator[str]:
        opened.append(opt)
        yield "rig"

    def function_init_ms(rig: Any, memory_mb: int, extension: bool) -> float:
        asked.append((memory_mb, extension))
        return next(wholes)

    monkeypatch.setattr(preload_probe, "layer_code", layer_code)
    monkeypatch.setattr(bench_layer, "bundled_rig", bundled_rig)
    monkeypatch.setattr(bench_cold_start, "cold_init", lambda rig, env: {})
    monkeypatch.setattr(bench_cold_start, "function_init_ms", function_init_ms)
    args = ab.parser().parse_args(["init", "--base", ".", "--inits", "3", "--memory", "128",
                                   "--layer", "--function"])  # fmt: skip
    got, raw = ab._init(tmp_path / "checkout" / "ext", args, 1, {})
    assert (built, opened) == ([tmp_path / "checkout"], [tmp_path / "opt"])
    assert asked == [(128, True)] * 3
    assert got == {"function init ms": 2000.0}
    assert raw == {"function_init_ms": [2000.0, 1800.0, 2100.0]}


def test_init_of_the_functions_whole_init_needs_a_memory(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ab.main(["init", "--base", ".", "--function"])
    assert "init --function needs --memory" in capsys.readouterr().err
