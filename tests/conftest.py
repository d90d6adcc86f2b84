"""Hypothesis profiles: `dev` explores new examples on every run; `ci` (when CI is set) replays a
fixed, seed-derived set, so a merge is never blocked by an example found by chance that day.
New failures are found by developers' runs, which keep their database in .hypothesis/.

`derandomize` alone does not make the CI examples fixed: Hypothesis also draws (5% of the time)
from the literal constants of every *local* module in `sys.modules`, and that pool grows with
whatever else pytest collected (a subset run and the full run imported different modules, so the
same test saw different examples). In CI the pool is pinned to the constants of the code under
test, `ext/`, read from the sources: every run explores the same examples, whatever is collected.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]


def pin_local_constants(sources: list[Path]) -> None:
    """Make Hypothesis draw its "local constants" from ``sources`` only, in a fixed order."""
    from hypothesis.internal.conjecture import providers

    if not hasattr(providers, "_get_local_constants"):
        return  # a Hypothesis without local constants: nothing depends on what is imported
    from hypothesis.internal.constants_ast import _constants_from_source

    pool = providers._local_constants  # empty until the first example is drawn
    for path in sorted(sources):
        pool |= _constants_from_source(path.read_bytes(), limit=True)
    providers._get_local_constants = lambda: pool
    providers.CONSTANTS_CACHE.cache.clear()


settings.register_profile("dev")
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
    pin_local_constants(list((ROOT / "ext").rglob("*.py")))
else:
    settings.load_profile("dev")
