"""scripts/mutation.py: a real cosmic-ray run on a tiny module, and its report arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import mutation

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_a_run_on_a_tiny_module_prints_a_row_and_writes_its_reports(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.mutation", "ext/errors.py",
         "--tests", "tests/unit/test_config.py", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| ext/errors.py"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    mutants, killed, survived = int(cells[1]), int(cells[2]), int(cells[3])
    assert mutants >= 2 and killed + survived == mutants  # `body[:300]` gives two at least
    assert (tmp_path / "summary.md").read_text().splitlines()[2] == row
    report = (tmp_path / "ext_errors.md").read_text()
    assert row in report and report.count("#### line") == survived
    assert "annotations or TYPE_CHECKING" in (tmp_path / "ext_errors.log").read_text()


def test_type_only_code_is_found() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import os\n"
        "x: int | None = 1 + 2\n"
        "def f(a: int | None, *b: str, c: bytes = b'', **d: float) -> list[int]:\n"
        "    return [a or 0]\n"
    )
    spans = mutation.type_only_spans(source)
    assert ((2, 0), (3, 13)) in spans  # the TYPE_CHECKING block
    assert ((4, 3), (4, 13)) in spans  # the variable's annotation, not its value
    inside = [(5, 9), (5, 25), (5, 33), (5, 51), (5, 61)]  # each parameter and the return
    assert all(any(a <= p < b for a, b in spans) for p in inside)
    outside = [(4, 16), (6, 11), (5, 41)]  # values and the body are mutated as usual
    assert not any(a <= p < b for p in outside for a, b in spans)


def test_outcomes_are_tallied_and_the_score_ignores_skips() -> None:
    def line(outcome: dict[str, str] | None) -> str:
        item = {"mutations": [{"start_pos": [7, 4], "operator_name": "core/AddNot"}]}
        return json.dumps([item, outcome])

    dump = "\n".join([
        line({"worker_outcome": "normal", "test_outcome": "killed"}),
        line({"worker_outcome": "normal", "test_outcome": "killed"}),
        line({"worker_outcome": "normal", "test_outcome": "killed"}),
        line({"worker_outcome": "exception", "test_outcome": "incompetent"}),
        line({"worker_outcome": "normal", "test_outcome": "survived",
              "diff": "--- a/x\n+++ b/x\n@@ -7 +7 @@\n-    if a:\n+    if not a:"}),
        line({"worker_outcome": "skipped", "output": "type-only code"}),
        line(None),
    ])
    result = mutation.Result("ext/x.py", seconds=75)
    mutation._tally(result, dump)
    assert (result.mutants, result.killed, result.survived, result.incompetent) == (5, 3, 1, 1)
    assert result.score == 75.0
    assert result.row() == "| ext/x.py | 5 | 4 | 1 | 0 | 75.0% | 1m15s |"
    assert result.survivors == [
        "#### line 7, core/AddNot\n\n```diff\n@@ -7 +7 @@\n-    if a:\n+    if not a:\n```\n"
    ]


def test_tests_are_mapped_fast_first_and_missing_patterns_skipped() -> None:
    files = mutation.test_files("ext/sender/batching.py", None)
    assert files[0] == "tests/unit/test_batching_edges.py"
    assert "tests/unit/test_batching.py" in files and len(files) == len(set(files))
    assert mutation.test_files("ext/x.py", ["tests/unit/test_nothing_*.py"]) == []


def test_a_listed_equivalent_mutant_matches_by_its_lines_not_its_line_number() -> None:
    def diff(before: str, after: str) -> str:
        return f"@@ -999,7 +999,7 @@\n-        {before}\n+        {after}"

    listed = diff("return run % 2 == 1", "return run % 2 >= 1")
    assert "0 or 1" in mutation.equivalence("ext/sender/envelope.py", listed)
    assert mutation.equivalence("ext/sender/envelope.py", diff("return run % 2 == 1",
                                                        "return run % 2 != 1")) == ""
    assert mutation.equivalence("ext/sender/hec.py", listed) == ""  # per module
    dump = json.dumps([{"mutations": [{"start_pos": [999, 4], "operator_name": "core/X"}]},
                       {"worker_outcome": "normal", "test_outcome": "survived",
                        "diff": "--- a\n+++ b\n" + listed}])
    result = mutation.Result("ext/sender/envelope.py")
    mutation._tally(result, dump)
    assert (result.mutants, result.survived, result.equivalent, result.score) == (1, 0, 1, 100.0)
    assert result.equivalents[0].startswith("- line 999, core/X: `return run % 2 == 1` → ")
