"""Write the regex cache the bundled layer ships (ext/main/regex_cache.py): run main's imports and
the preload as a cold start does, keep what the regex compiler produced for each pattern they
compiled, and check that each one, rebuilt from the file, is the pattern compiled here.

Run by scripts/build_layer.py with the layer's own interpreter, as the launcher runs it:
`python3 -E -S -OO scripts/regex_snapshot.py [--out FILE] PATH...`, PATH the folders holding
`ext` and its dependencies (first wins); FILE is by default `regex_cache.FILE_NAME` in the `ext`
package recorded. Exits 1, writing nothing, if a pattern does not come back equal.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from re import Pattern
    from typing import Any

    from ext.main.regex_cache import Entry

# What a cold start runs before the children fork and the sender's first pool: the same as
# benchmarks/preload_probe.py times.
COLD_START = (
    "import ext.__main__, ext.main.extensions_api, ext.main.lifecycle\n"
    "from ext.main import preload\n"
    "preload.import_children_modules()\n"
    "import urllib3\n"
    "urllib3.HTTPSConnectionPool('hec.example.com', 443)\n"
)


def record(run: Callable[[], object]) -> list[tuple[Entry, Pattern[Any]]]:
    """Runs `run`, and returns each pattern it had compiled (by `re`, from a str or bytes
    pattern) with what the compiler handed the engine for it."""
    import _sre  # type: ignore[import-not-found]
    from re import _compiler  # type: ignore[attr-defined]

    compile_pattern, engine_compile = _compiler.compile, _sre.compile
    made: list[tuple[Entry, Pattern[Any]]] = []
    handed: list[tuple[Any, ...]] = []

    def engine(*args: Any) -> Any:
        handed.append(args)
        return engine_compile(*args)

    def compiler(pattern: Any, flags: int = 0) -> Any:
        del handed[:]
        compiled = compile_pattern(pattern, flags)
        if isinstance(pattern, (str, bytes)) and len(handed) == 1:
            _, compiled_flags, code, groups, groupindex, indexgroup = handed[0]
            # Plain ints: the compiler's opcodes are an int subclass marshal does not write.
            entry: Entry = (pattern, int(flags), int(compiled_flags), [int(w) for w in code],
                            int(groups), dict(groupindex), tuple(indexgroup))  # fmt: skip
            made.append((entry, compiled))
        return compiled

    _compiler.compile, _sre.compile = compiler, engine
    try:
        run()
    finally:
        _compiler.compile, _sre.compile = compile_pattern, engine_compile
    return made


def unequal(data: bytes, made: list[tuple[Entry, Pattern[Any]]]) -> list[str]:
    """The patterns that `data` does not give back equal to those compiled (code, flags,
    groups); every one of them, or all, if it gives back none."""
    import _sre
    import marshal

    _, entries = marshal.loads(data)  # noqa: S302 - written just now
    if len(entries) != len(made):
        return [repr(entry[0]) for entry, _ in made]
    wrong = []
    for stored, (_entry, compiled) in zip(entries, made, strict=True):
        rebuilt = _sre.compile(stored[0], *stored[2:])
        if rebuilt != compiled or rebuilt.groupindex != compiled.groupindex:
            wrong.append(repr(stored[0]))
    return wrong


def main(argv: list[str] | None = None) -> int:
    # By hand: argparse (and gettext under it) would compile patterns of their own before the
    # recording, and a module they import would not be imported again inside it.
    args = sys.argv[1:] if argv is None else argv
    out_path = None
    if args[:1] == ["--out"] and len(args) > 1:
        out_path, args = args[1], args[2:]
    if not args or args[0].startswith("-"):
        print("usage: regex_snapshot.py [--out FILE] PATH...", file=sys.stderr)
        return 2
    paths = args
    sys.path[:0] = paths
    from ext.main import regex_cache

    # A snapshot already there would leave nothing to compile, hence nothing to record.
    shipped = regex_cache.restore_shipped
    setattr(regex_cache, "restore_shipped", lambda folder=None: 0)  # noqa: B010
    try:
        made = record(lambda: exec(COLD_START, {}))  # noqa: S102 - our own fixed code
    finally:
        setattr(regex_cache, "restore_shipped", shipped)  # noqa: B010

    data = regex_cache.dump(entry for entry, _ in made)
    wrong = unequal(data, made)
    if wrong:
        print(f"regex_snapshot: not given back equal: {', '.join(wrong)}", file=sys.stderr)
        return 1
    if out_path is None:  # where the layer ships it: in the package recorded
        import ext

        out_path = os.path.join(os.path.dirname(ext.__file__), regex_cache.FILE_NAME)
    with open(out_path, "wb") as out:
        out.write(data)
    print(f"{len(made)} patterns, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
