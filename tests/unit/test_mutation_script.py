"""scripts/mutation.py: which surviving mutant an entry of mutation_equivalents.toml excuses.

An entry used to match every copy of its line in the module; the reader's `self._adopt = False`
entry, written for `__init__`, so excused a real survivor in `_enter_segment`. No cosmic-ray
run here: the matching and the checks are pure functions of the source and the entries.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts import mutation

SOURCE = '''\
class Reader:
    def __init__(self) -> None:
        self._adopt = False
        self._fd = -1

    def _enter(self) -> None:
        if self._adopt:
            self._adopt = False
        self._fd = -1
        self._fd = -1

    def close(self) -> None:
        os.close(self._fd)
'''
INIT_ADOPT, ENTER_ADOPT, FD_INIT, FD_FIRST, FD_SECOND = 3, 8, 4, 9, 10
ADOPT = "self._adopt = False"


def _entry(line: str, mutant: str, reason: str, **where: object) -> dict[str, object]:
    return {"line": line, "mutants": [mutant], "reason": reason, **where}


def _diff(before: str, after: str) -> str:
    return f"@@ -3,7 +3,7 @@\n-        {before}\n+        {after}"


def _reason(entries: list[dict[str, object]], line: int, before: str, after: str) -> str:
    return mutation.equivalence("ext/x.py", _diff(before, after), line,
                                mutation.line_places(SOURCE), entries)


def test_each_line_is_placed_in_its_innermost_def_or_class() -> None:
    source = (
        "import os\n"
        "class A:\n"
        "    size = 1\n"
        "    @staticmethod\n"
        "    def f() -> None:\n"
        "        def inner() -> None:\n"
        "            pass\n"
        "        pass\n"
        "def g() -> None:\n"
        "    pass\n"
        "    pass\n"
    )
    assert mutation.line_places(source)[:11] == (
        ("<module>", 1), ("A", 1), ("A", 1), ("A", 1),  # a decorator runs in the class body
        ("A.f", 1), ("A.f.<locals>.inner", 1), ("A.f.<locals>.inner", 1), ("A.f", 1),
        ("g", 1), ("g", 1), ("g", 2),  # the second `pass` of g
    )


def test_an_entry_naming_a_function_excuses_the_mutant_only_inside_it() -> None:
    entries = [_entry(ADOPT, "self._adopt = True", "set again", function="Reader.__init__")]
    assert _reason(entries, INIT_ADOPT, ADOPT, "self._adopt = True") == "set again"
    assert _reason(entries, ENTER_ADOPT, ADOPT, "self._adopt = True") == ""
    # A caller that cannot say where the mutant is gets no excuse from a scoped entry.
    assert mutation.equivalence("ext/x.py", _diff(ADOPT, "self._adopt = True"),
                                entries=entries) == ""


def test_an_occurrence_picks_one_copy_of_a_line_within_its_function() -> None:
    entries = [_entry("self._fd = -1", "self._fd = -2", "the second copy",
                      function="Reader._enter", occurrence=2)]
    assert _reason(entries, FD_SECOND, "self._fd = -1", "self._fd = -2") == "the second copy"
    assert _reason(entries, FD_FIRST, "self._fd = -1", "self._fd = -2") == ""
    assert _reason(entries, FD_INIT, "self._fd = -1", "self._fd = -2") == ""


def test_a_line_that_stands_once_matches_without_a_function() -> None:
    entries = [_entry("os.close(self._fd)", "os.close(None)", "closing is best effort")]
    assert mutation.audit("ext/x.py", SOURCE, entries) == ([], [])
    assert _reason(entries, 13, "os.close(self._fd)", "os.close(None)") == (
        "closing is best effort")
    assert mutation.equivalence("ext/x.py", _diff("os.close(self._fd)", "os.close(None)"),
                                entries=entries) == "closing is best effort"  # old callers
    assert _reason(entries, 13, "os.close(self._fd)", "os.close(1)") == ""  # not listed


def test_an_entry_for_a_line_that_stands_twice_must_name_its_function() -> None:
    entry = _entry(ADOPT, "self._adopt = True", "set again before it is read")
    errors, _ = mutation.audit("ext/x.py", SOURCE, [entry])
    assert len(errors) == 1
    assert errors[0].startswith(f"ext/x.py: `{ADOPT}` stands on 2 lines")
    assert "Reader.__init__ (line 3), Reader._enter (line 8)" in errors[0]
    assert mutation.audit("ext/x.py", SOURCE, [{**entry, "function": "Reader._enter"}]) == (
        [], [])


def test_an_entry_for_a_line_that_stands_twice_in_its_function_must_name_the_copy() -> None:
    entry = _entry("self._fd = -1", "self._fd = -2", "r", function="Reader._enter")
    errors, _ = mutation.audit("ext/x.py", SOURCE, [entry])
    assert len(errors) == 1 and "stands 2 times in Reader._enter (lines 9, 10)" in errors[0]
    assert mutation.audit("ext/x.py", SOURCE, [{**entry, "occurrence": 1}]) == ([], [])


@pytest.mark.parametrize(("where", "message"), [
    ({"function": "Reader.close"}, "is not in Reader.close (it stands in Reader.__init__ "
                                   "(line 3), Reader._enter (line 8)): the entry is stale"),
    ({"function": "Reader.__init__", "occurrence": 2}, "stands 1 time(s) in Reader.__init__, "
                                                       "not 2: the entry is stale"),
    ({"occurrence": 1}, "an `occurrence` without `function`"),
    ({"funtion": "Reader.__init__"}, "unknown or mistyped keys ['funtion']"),
])
def test_an_entry_whose_function_does_not_hold_its_line_is_refused(
    where: dict[str, object], message: str,
) -> None:
    errors, _ = mutation.audit("ext/x.py", SOURCE, [_entry(ADOPT, "self._adopt = True", "r",
                                                           **where)])
    assert len(errors) == 1 and message in errors[0], errors


def test_an_entry_whose_line_is_gone_is_only_noted() -> None:
    entries = [_entry("self._gone = 0", "self._gone = 1", "r")]
    assert mutation.audit("ext/x.py", SOURCE, entries) == (
        [], ["ext/x.py: `self._gone = 0` stands nowhere in the module: remove its entry"])
    errors, _ = mutation.audit("ext/x.py", SOURCE, [{**entries[0], "function": "Reader.close"}])
    assert errors == ["ext/x.py: `self._gone = 0` is not in Reader.close (it stands nowhere): "
                      "the entry is stale"]


def test_a_run_with_an_ambiguous_entry_stops_before_mutating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "x.py").write_text(SOURCE)
    monkeypatch.setattr(mutation, "ROOT", tmp_path)
    monkeypatch.setattr(mutation, "OUT", tmp_path / "out")
    monkeypatch.setattr(mutation, "_equivalents", lambda: {
        "ext/x.py": [_entry(ADOPT, "self._adopt = True", "r")]})

    def run_module(*_: object, **__: object) -> mutation.Result:
        raise AssertionError("mutated despite an ambiguous entry")

    monkeypatch.setattr(mutation, "run_module", run_module)
    assert mutation.main(["ext/x.py"]) == 2
    err = capsys.readouterr().err
    assert "fix before mutating" in err and f"`{ADOPT}` stands on 2 lines" in err
    assert not (tmp_path / "out").exists()


def test_the_reader_entry_for_adopt_excuses_init_and_not_enter_segment() -> None:
    # The survivor that the line-only matching hid, on the real file and the real reader.
    module = "ext/spool/reader.py"
    source = (mutation.ROOT / module).read_text()
    places = mutation.line_places(source)
    lines = [n for n, text in enumerate(source.split("\n"), 1) if text.strip() == ADOPT]
    init = next(n for n in lines if places[n - 1][0] == "SpoolReader.__init__")
    enter = next(n for n in lines if places[n - 1][0] == "SpoolReader._enter_segment")

    def dump(line: int) -> str:
        return json.dumps([{"mutations": [{"start_pos": [line, 8], "operator_name": "core/X"}]},
                           {"worker_outcome": "normal", "test_outcome": "survived",
                            "diff": f"--- a\n+++ b\n@@ -{line} +{line} @@\n"
                                    f"-        {ADOPT}\n+        self._adopt = True"}])

    result = mutation.Result(module)
    mutation._tally(result, dump(init) + "\n" + dump(enter), places)
    assert (result.mutants, result.equivalent, result.survived) == (2, 1, 1)
    assert result.equivalents[0].startswith(f"- line {init}, core/X: ")
    assert result.survivors[0].startswith(f"#### line {enter}, core/X")


def test_the_equivalents_file_holds_against_the_current_modules() -> None:
    # A code change that copies a listed line elsewhere, or moves it out of its function,
    # fails here: say which copy the entry is for, or look at it again.
    errors, _ = mutation.check_equivalents()
    assert errors == []


def test_the_work_copy_holds_what_the_moto_test_reads_and_the_moto_test_is_mapped(
    tmp_path: Path,
) -> None:
    # tests/integration/test_token_from_aws.py runs the extension in the emulator, which copies
    # the launcher (ext/local/layer.py: <root>/bootstrap) and starts <root>/function: without
    # them in the copy the test failed unmutated, and secret_store.py was scored without it.
    work = tmp_path / "work"
    mutation._copy_project(work)
    assert (work / "bootstrap").is_file()
    assert (work / "function" / "handler.py").is_file()
    tests = mutation.test_files("ext/sender/secret_store.py", None)
    assert tests[-1] == "tests/integration/test_token_from_aws.py"  # the slow one last


def test_a_clean_run_that_fails_is_run_again_with_its_output_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Through the fork server a run's output goes nowhere: the log said nothing of the failure.
    import contextlib
    import sys
    from collections.abc import Iterator

    runs: list[list[str]] = []

    def run(command: list[str], cwd: Path, env: dict[str, str], out: object) -> int:
        runs.append(command)
        return 1

    @contextlib.contextmanager
    def fork_server(work: Path, env: dict[str, str], out: object) -> Iterator[Path]:
        yield work / "pytest.sock"

    monkeypatch.setattr(mutation, "OUT", tmp_path)
    monkeypatch.setattr(mutation, "_run", run)
    monkeypatch.setattr(mutation, "_fork_server", fork_server)
    log = tmp_path / "x.log"
    result = mutation.run_module("ext/errors.py", ["tests/unit/test_errors.py"], False, log)
    assert "fail unmutated" in result.error and log.name in result.error
    client, direct = runs
    assert client[-1] == direct[-1] == "tests/unit/test_errors.py"
    assert "mutation_client.py" in client[3] and direct[:3] == [sys.executable, "-m", "pytest"]
    assert "run again without the fork server" in log.read_text()
