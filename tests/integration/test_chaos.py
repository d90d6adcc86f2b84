"""Chaos and fuzz suite (issue 16): each hostile case against the real extension in the emulator.

The cases and the rig live in benchmarks/chaos_cases.py and benchmarks/chaos_rig.py, shared
with `python -m benchmarks.bench_chaos`, which prints the same figures as a table. Each test
asserts the targets of docs/reliability.md on one case: nothing answered 2xx is lost, every
refused line is counted in HEC, post-runtime stays within the flush budget, at most one batch
is duplicated per crash, the listener stays under 40 MiB, and no child process crashes
unprompted; plus what the case itself promises (e.g. an init error naming the variable).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
from pathlib import Path

import pytest

from benchmarks.chaos_cases import CASES
from benchmarks.chaos_rig import (
    FLUSH_BUDGET_MS,
    POST_RUNTIME_SLACK_MS,
    TOKEN,
    Delivery,
    Figures,
    function_keys,
    line_key,
    run_case,
    telemetry_batch,
)
from ext.local.layer import make_local_opt

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chaos_opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_local_opt(tmp_path_factory.mktemp("chaos-opt"))


@pytest.mark.timing  # post-runtime within the flush budget: one such test at a time
@pytest.mark.parametrize("name", list(CASES))
def test_case_meets_the_reliability_targets(name: str, chaos_opt: Path) -> None:
    case = CASES[name]
    figures = run_case(name, case, chaos_opt)
    figures.slack_ms = POST_RUNTIME_SLACK_MS
    if figures.skipped:
        pytest.skip(f"{name}: {figures.skipped}")
    missed = case.untolerated(figures)
    if missed:
        # Real processes, kills at random moments and a 2-core machine: a case misses a
        # timing-bound target now and then (docs/reliability.md lists the ones seen). A miss must
        # repeat in the next run to fail; the first one is printed, not hidden.
        print(f"chaos {name}: first run missed {missed}; running the case again")
        figures = run_case(name, case, chaos_opt)
        figures.slack_ms = POST_RUNTIME_SLACK_MS
    missed = case.untolerated(figures)
    assert not missed, f"{name}: " + "; ".join(missed) + f"\nfigures: {figures}"
    if not name.startswith("config_"):
        assert figures.accepted > 0, "the case delivered nothing at all: it did not really run"
    tolerated = case.tolerated(figures)
    if tolerated:
        pytest.xfail(f"{name}: open finding ({case.why}): " + "; ".join(tolerated))


# -- the rig's own judgement (fast, no processes) ----------------------------------------------


def test_tracked_lines_are_read_from_telemetry_bodies() -> None:
    body = telemetry_batch(["c-x:0:aaa", "c-x:1:", "other line"])
    body = body[:-1] + b',{"time":"t","type":"platform.start","record":{"requestId":"r"}}]'
    assert function_keys(body) == ["c-x:0", "c-x:1"]
    assert function_keys(b"[" + b"[" * 5000 + b"]" * 5001) == []  # too deep: ignored, no crash
    assert line_key("c-x:12:pad") == "c-x:12"
    assert line_key("x:12:pad") is None


def test_each_target_is_judged() -> None:
    good = Figures("g", sent=10, accepted=10, batch_lines=10, post_runtime_max_ms=FLUSH_BUDGET_MS,
                   listener_peak_mib=39.0)
    assert good.violations() == []
    assert good.missed() == "ok"
    limit = FLUSH_BUDGET_MS + POST_RUNTIME_SLACK_MS
    bad = Figures("b", sent=10, accepted=10, lost=1, refused=3, counted=2, duplicated=11,
                  crashes=1, batch_lines=10, post_runtime_max_ms=limit + 1,
                  listener_peak_mib=40.5, restarts=2, problems=["case says no"])
    assert bad.missed() == "case,lost,uncounted,post-runtime,dup,rss,restart"
    assert len(bad.violations()) == 7
    assert Figures("s", lost=5, skipped="no root").violations() == []
    late = Figures("l", sent=1, accepted=1, batch_lines=1, post_runtime_max_ms=FLUSH_BUDGET_MS + 1)
    assert late.missed() == "post-runtime"  # the benchmark: the budget itself
    late.slack_ms = POST_RUNTIME_SLACK_MS
    assert late.missed() == "ok"  # the tests, beside others on a shared machine


def test_a_case_tolerates_only_the_targets_it_names_as_open() -> None:
    from benchmarks.chaos_cases import Case

    case = Case(lambda run: None, ("post-runtime",), "known")
    limit = FLUSH_BUDGET_MS + POST_RUNTIME_SLACK_MS
    slow = Figures("x", sent=1, accepted=1, batch_lines=1, post_runtime_max_ms=limit + 1)
    assert case.untolerated(slow) == []
    assert len(case.tolerated(slow)) == 1
    slow_and_lost = Figures("x", sent=1, accepted=1, lost=1, batch_lines=1,
                            post_runtime_max_ms=limit + 1)
    assert case.untolerated(slow_and_lost) == ["1 line(s) answered 2xx never reached HEC"]
    assert Case(lambda run: None).untolerated(slow) == slow.violations()


def test_delivery_keeps_refused_and_accepted_apart() -> None:
    delivery = Delivery()
    delivery.note(["a", "b"], ok=False)
    delivery.note(["b"], ok=True)
    assert delivery.accepted == {"b"}
    assert delivery.refused == {"a", "b"}


def test_benchmark_prints_one_row_per_case(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    from benchmarks import bench_chaos, chaos_cases

    ran = []

    def fake_run(name: str, case: object, opt: Path | None = None) -> Figures:
        ran.append(name)
        return Figures(name, sent=1, accepted=1, batch_lines=1, skipped="x" if ran[1:] else None)

    monkeypatch.setattr(bench_chaos, "run_case", fake_run)
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench_chaos.main(["--quick"]) == 0
    assert ran == list(chaos_cases.QUICK)
    for name in ran:
        assert name in out.getvalue()
    assert (tmp_path / "chaos.json").exists()


def test_counts_are_read_from_notices_at_either_level(tmp_path: Path) -> None:
    from benchmarks.chaos_rig import CaseRun

    run = CaseRun("count", tmp_path, tmp_path)
    with run:
        notices: list[dict[str, object]] = [
            {"type": "splunk-extension.spool-loss", "dropped_events": 3, "dropped_records": 1},
            {"type": "splunk-extension.intake-dropped", "record": {"dropped_events": 2}},
        ]
        envelopes = [{"sourcetype": "aws:lambda:extension",
                      "fields": {"telemetry_type": n["type"]}, "event": n} for n in notices]
        envelopes.append({"sourcetype": "aws:lambda:platform", "event": {
            "type": "platform.logsDropped", "record": {"droppedRecords": 4, "droppedBytes": 9}}})
        # Not a notice of the extension's (no telemetry_type): not counted.
        envelopes.append({"sourcetype": "aws:lambda:extension", "event": {"other_events": 100}})
        body = "".join(json.dumps(e) for e in envelopes)
        conn = http.client.HTTPConnection("127.0.0.1", run.hec.port, timeout=5)
        conn.request("POST", "/services/collector/event", body.encode(),
                     {"Authorization": f"Splunk {TOKEN}"})
        assert conn.getresponse().status == 200
        conn.close()
        assert run.counted() == 3 + 2 + 4


def test_small_disk_case_is_skipped_with_its_reason_without_root(
    monkeypatch: pytest.MonkeyPatch, chaos_opt: Path
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    figures = run_case("small_tmpfs_spool", CASES["small_tmpfs_spool"], chaos_opt)
    assert figures.skipped == "mounting a tmpfs needs root"
    assert figures.row()[-1] == "skipped"
