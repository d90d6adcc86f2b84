"""Chaos and fuzz table (issue 16): `python -m benchmarks.bench_chaos [--quick] [--only NAME...]`.

Runs each hostile case against the real extension in the emulator with the embedded HEC and
prints one row per case: lines sent, answered 2xx, lost (2xx but never in HEC), duplicated,
refused and not delivered, counted as dropped by the extension, post-runtime max, listener peak
RSS, child restarts, and the targets missed ("open:" marks a miss the case names as an open
finding, `Case.open` in chaos_cases.py; the test reports those as xfail). Writes
results/chaos.json. Exits 0 whatever the figures say (the assertions live in
tests/integration/test_chaos.py); --quick runs four cases.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from benchmarks import common
from benchmarks.chaos_cases import CASES, QUICK, describe
from benchmarks.chaos_rig import (
    FLUSH_BUDGET_MS,
    LISTENER_RSS_LIMIT_MIB,
    TABLE_HEADERS,
    Figures,
    run_case,
)
from ext.local.layer import make_local_opt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--only", nargs="*", default=(), help="substrings of case names")
    args = parser.parse_args(argv)
    names = [n for n in CASES if (not args.quick or n in QUICK)
             and (not args.only or any(o in n for o in args.only))]
    figures: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="chaos-opt-") as folder:
        opt = make_local_opt(Path(folder))
        for name in names:
            print(f"... {name}: {describe(name)}", flush=True)
            figures.append(run_case(name, CASES[name], opt))
    title = (f"Chaos and fuzz cases (post-runtime within the flush budget, {FLUSH_BUDGET_MS} ms; "
             f"listener RSS limit "
             f"{LISTENER_RSS_LIMIT_MIB:.0f} MiB, euid {os.geteuid()})")
    common.print_table(title, TABLE_HEADERS, [row(f) for f in figures])
    for f in figures:
        details = [*f.violations(), *f.notes, *([f"skipped: {f.skipped}"] if f.skipped else [])]
        if CASES[f.case].tolerated(f):
            details.append(f"open finding: {CASES[f.case].why}")
        if details:
            print(f"  {f.case}: {'; '.join(details)}")
    results = {f.case: {**asdict(f), "violations": f.violations(),
                        "open": CASES[f.case].tolerated(f)} for f in figures}
    common.write_result("chaos", results, quick=args.quick)
    return 0


def row(figures: Figures) -> list[object]:
    """The table row; the targets column says which misses are open findings of the case."""
    cells = figures.row()
    if not figures.skipped:
        case = CASES[figures.case]
        names = dict.fromkeys(name for name, _ in figures.misses())
        cells[-1] = ",".join(n if n not in case.open else f"open:{n}" for n in names) or "ok"
    return cells


if __name__ == "__main__":
    raise SystemExit(main())
