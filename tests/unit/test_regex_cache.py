"""The regex cache the bundled layer ships (ext/main/regex_cache.py, scripts/regex_snapshot.py):
what it gives back is what `re` compiles, and only to the interpreter that wrote it; anything
else leaves `re` to compile as usual. The layer's own file: tests/integration/test_bundled_layer.py.
"""

from __future__ import annotations

import ast
import marshal
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from re import _compiler  # type: ignore[attr-defined]

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.main import regex_cache
from scripts import regex_snapshot
from tests.unit.test_preload import PATHS

# Pieces of patterns, each valid alone and in any sequence.
ATOMS = (r"a", r"[a-c]", r"\d", r"\w+", r"(x|yz)", r"(?P<n{}>q)", r"[^ ]*?", r"b{1,3}", r"\.",
         r"(?:ab)+", r"\s?", r"é", r"[\u0100-\u017f]", r"(?=c)", r"$", r"^")  # fmt: skip
FLAGS = (0, re.IGNORECASE, re.MULTILINE, re.DOTALL, re.ASCII, re.IGNORECASE | re.ASCII,
         re.VERBOSE)  # fmt: skip
SUBJECTS = ("", "a", "abc 123", "xyz qqq", "ÉÀé Āā", "bbb.ab ab\nc", "A\nB c", "q x yz")


@st.composite
def patterns(draw: st.DrawFn) -> tuple[str, int]:
    pieces = draw(st.lists(st.sampled_from(ATOMS), min_size=1, max_size=6))
    text = "".join(piece.replace("{}", str(i)) for i, piece in enumerate(pieces))
    return text, int(draw(st.sampled_from(FLAGS)))


@pytest.fixture
def clean_cache() -> Iterator[None]:
    """`re`'s caches emptied before and after: what a test finds there, it put there."""
    re.purge()
    yield
    re.purge()


def snapshot_of(cases: list[tuple[str | bytes, int]]) -> bytes:
    re.purge()
    made = regex_snapshot.record(lambda: [re.compile(p, f) for p, f in cases])
    re.purge()
    return regex_cache.dump(entry for entry, _ in made)


@settings(max_examples=60, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=5, unique=True))
def test_restored_patterns_are_those_re_compiles_and_match_alike(
    cases: list[tuple[str, int]],
) -> None:
    data = snapshot_of(list(cases))
    try:
        assert regex_cache.restore(data) == len(cases)
        for text, flags in cases:
            restored = re.compile(text, flags)  # from the cache: no compile
            fresh = _compiler.compile(text, flags)
            assert restored == fresh
            assert restored.groupindex == fresh.groupindex
            assert restored.groups == fresh.groups
            for subject in SUBJECTS:
                got, want = restored.search(subject), fresh.search(subject)
                assert (got and (got.span(), got.groups())) == (
                    want and (want.span(), want.groups())
                )
    finally:
        re.purge()


def test_a_restored_pattern_is_what_re_compile_returns_without_compiling(
    clean_cache: None,
) -> None:
    data = snapshot_of([(r"(?P<host>[a-z.]+):(\d+)", 0), (rb"\r?\n\r?\n", 0),
                        (r"token", re.IGNORECASE)])  # fmt: skip
    assert regex_cache.restore(data) == 3
    compiled = regex_snapshot.record(
        lambda: [re.compile(r"(?P<host>[a-z.]+):(\d+)"), re.compile(rb"\r?\n\r?\n"),
                 re.compile("token", re.I), re.match("token", "TOKEN", re.I)])  # fmt: skip
    assert compiled == []
    match = re.compile(r"(?P<host>[a-z.]+):(\d+)").match("hec.example.com:8088")
    assert match is not None and match.group("host", 2) == ("hec.example.com", "8088")


@pytest.mark.parametrize("step", [-1, 1])
def test_a_snapshot_of_another_interpreter_is_not_used(clean_cache: None, step: int) -> None:
    data = snapshot_of([("a+b", 0)])
    ident, entries = marshal.loads(data)
    for i, part in enumerate(ident):
        # Each part of the identity either side of this interpreter's.
        other = part[:-1] + chr(ord(part[-1]) + step) if isinstance(part, str) else part + step
        changed = (*ident[:i], other, *ident[i + 1 :])
        assert regex_cache.restore(marshal.dumps((changed, entries))) == 0
    assert re._cache == {}  # type: ignore[attr-defined]
    assert regex_cache.restore(data) == 1


def test_a_re_without_its_cache_dict_is_left_to_compile(
    clean_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = snapshot_of([("a+b", 0)])
    monkeypatch.delattr(re, "_cache")
    assert regex_cache.restore(data) == 0


@pytest.mark.parametrize("damage", [
    "truncated", "not marshal", "not a pair", "an entry short", "code the engine refuses",
    "flags not an int",
])  # fmt: skip
def test_a_damaged_snapshot_restores_nothing_not_even_its_good_entries(
    clean_cache: None,
    damage: str,
) -> None:
    data = snapshot_of([("good", 0), ("(also) good", 0)])
    ident, entries = marshal.loads(data)
    good, second = entries
    if damage == "truncated":
        data = data[:-7]
    elif damage == "not marshal":
        data = b"\x00\xffnot marshal"
    elif damage == "not a pair":
        data = marshal.dumps((ident,))
    elif damage == "an entry short":
        data = marshal.dumps((ident, (good, second[:-1])))
    elif damage == "code the engine refuses":
        data = marshal.dumps((ident, (good, (*second[:3], [99999, 1, 2], *second[4:]))))
    else:
        data = marshal.dumps((ident, (good, (*second[:2], "0", *second[3:]))))
    assert regex_cache.restore(data) == 0
    assert re._cache == {}  # type: ignore[attr-defined]


def test_a_pattern_already_cached_is_kept(clean_cache: None) -> None:
    data = snapshot_of([("kept", 0)])
    already = re.compile("kept")
    assert regex_cache.restore(data) == 1
    assert re.compile("kept") is already


def test_the_same_patterns_give_the_same_bytes() -> None:
    cases: list[tuple[str | bytes, int]] = [(r"(?P<a>x)(?P<b>y)", 0), ("shared", re.I),
                                            ("shared", 0)]  # fmt: skip
    data = snapshot_of(cases)
    assert snapshot_of(list(cases)) == data
    # Written anew from copies that share no object: no back-reference (marshal version 2),
    # whose use follows objects' reference counts, changed a byte.
    assert marshal.dumps(marshal.loads(data), regex_cache.MARSHAL_VERSION) == data


def test_restore_shipped_reads_the_file_in_the_folder_or_finds_none(
    tmp_path: Path,
    clean_cache: None,
) -> None:
    assert regex_cache.restore_shipped(str(tmp_path)) == 0
    (tmp_path / regex_cache.FILE_NAME).write_bytes(snapshot_of([("one", 0), ("two", 0)]))
    assert regex_cache.restore_shipped(str(tmp_path)) == 2
    # A checkout ships none: the package's own folder has no file.
    assert not (Path(regex_cache.__file__).parents[1] / regex_cache.FILE_NAME).exists()


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-S", "-B", "-OO", *args], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_the_recorded_cache_leaves_the_preload_nothing_to_compile(tmp_path: Path) -> None:
    # As the layer's build runs it, on this interpreter and the checkout's code.
    out = tmp_path / regex_cache.FILE_NAME
    script = str(Path(regex_snapshot.__file__))
    done = run_python(script, "--out", str(out), *PATHS)
    assert done.returncode == 0, done.stderr
    count = int(done.stdout.split()[0])
    assert count >= 20  # urllib3's URL grammar alone compiles more than ten
    probe = (
        f"import sys\nsys.path[:0] = {PATHS!r}\n"
        "from scripts import regex_snapshot\n"
        "from ext.main import regex_cache\n"
        f"restored = regex_cache.restore_shipped({str(tmp_path)!r})\n"
        "setattr(regex_cache, 'restore_shipped', lambda folder=None: 0)\n"
        f"made = regex_snapshot.record(lambda: exec(regex_snapshot.COLD_START, {{}}))\n"
        "import re\n"
        "from re import _compiler\n"
        "unequal = [k[1] for k, p in re._cache.items() if _compiler.compile(k[1], k[2]) != p]\n"
        "print(repr([restored, [e[0] for e, _ in made], unequal]))\n"
    )  # fmt: skip
    done = run_python("-c", probe)
    assert done.returncode == 0, done.stderr
    restored, compiled, unequal = ast.literal_eval(done.stdout)
    assert (restored, compiled, unequal) == (count, [], [])


def test_the_recording_fails_rather_than_write_a_pattern_that_comes_back_unequal(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / regex_cache.FILE_NAME

    def reordered(entries: object) -> bytes:
        listed = list(entries)  # type: ignore[call-overload]
        return marshal.dumps((regex_cache.identity(), tuple(reversed(listed))), 2)

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(regex_cache, "dump", reordered)
    monkeypatch.setattr(regex_snapshot, "COLD_START", "import re\nre.compile('a+')\n"
                                                      "re.compile('b+')\n")  # fmt: skip
    re.purge()
    assert regex_snapshot.main(["--out", str(out), *PATHS]) == 1
    assert not out.exists()
