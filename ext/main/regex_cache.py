"""The regular expressions the preload's modules compile, taken from the layer instead.

urllib3 (its URL grammar above all), logging, email, json and http.client compile ~50 regular
expressions as they are imported: ~9 ms of CPU on a whole core, 13% of the preload, ~0.1 s of a
cold start at a 128 MB CPU share (docs/cost.md). The build of the bundled layer runs the
preload once with the layer's own interpreter, keeps what its regex compiler produced for each
pattern (scripts/regex_snapshot.py), and ships it as `FILE_NAME` in the `ext` package. Main puts
those patterns in `re`'s cache before the preload (`_sre.compile`, the step `re` itself ends
with), so the imports find them compiled. This is what `re` would have made: a Pattern
compares equal to another only if its code is the same, and the build checks each one against
a fresh compile.

The compiled form belongs to one interpreter: a snapshot is used only by the very version and
regex engine that wrote it (`identity`), else, or without the file, or if any of it is not as
written, every pattern is compiled as usual. Nothing else reads it.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

FILE_NAME = "regex-cache.marshal"
# marshal version 2 writes no back-references, whose use depends on reference counts: the same
# patterns give the same bytes, so the layer stays reproducible.
MARSHAL_VERSION = 2

# One compiled pattern, as `re._compiler.compile` hands it to `_sre.compile`:
# (pattern, flags asked, flags compiled, code, groups, group index, index group).
Entry = tuple[str | bytes, int, int, list[int], int, dict[str, int], tuple[str | None, ...]]


def identity() -> tuple[str | int, ...]:
    """What the compiled form depends on: the interpreter's exact build and its regex engine."""
    import _sre  # type: ignore[import-not-found]

    return (sys.version, sys.hexversion, sys.maxunicode, _sre.MAGIC, _sre.CODESIZE,
            _sre.MAXREPEAT, _sre.MAXGROUPS)  # fmt: skip


def dump(entries: Iterable[Entry]) -> bytes:
    return marshal.dumps((identity(), tuple(entries)), MARSHAL_VERSION)


def restore(data: bytes) -> int:
    """Puts the patterns of `data` in `re`'s cache if this interpreter wrote them; how many.

    All or none: every entry is rebuilt before any is cached, and one that is not as written
    (or an engine that refuses its code) leaves the cache as it was."""
    import re

    try:
        ident, entries = marshal.loads(data)  # noqa: S302 - the layer's own file
        if ident != identity():
            return 0
        import _sre

        patterns = {(type(entry[0]), entry[0], entry[1]): _sre.compile(entry[0], *entry[2:])
                    for entry in entries}  # fmt: skip
    except Exception:  # a damaged file costs only the compiles it would have saved
        return 0
    cache = getattr(re, "_cache", None)
    if not isinstance(cache, dict):
        return 0
    for key, pattern in patterns.items():
        cache.setdefault(key, pattern)
    return len(patterns)


def restore_shipped(folder: str | None = None) -> int:
    """`restore` with the snapshot in `folder` (by default the `ext` package's, where the layer
    ships it); 0 when there is none (a checkout, or a layer built for the function's python3)."""
    if folder is None:
        folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        with open(os.path.join(folder, FILE_NAME), "rb") as snapshot:
            data = snapshot.read()
    except OSError:
        return 0
    return restore(data)
