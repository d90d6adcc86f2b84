"""Hypothesis profiles: `dev` explores new examples on every run; `ci` (when CI is set) replays a
fixed, seed-derived set, so a merge is never blocked by an example found by chance that day.
New failures are found by developers' runs, which keep their database in .hypothesis/."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dev")
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
