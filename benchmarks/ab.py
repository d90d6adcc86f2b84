"""A/B: one benchmark's figures for two versions of the extension, `base` and `change`, run
alternately on this machine, so that a claim "change X saves Y" can be reproduced.

The benchmarks (each run the code of a checkout's `ext` under this checkout's emulator and HEC
receiver, benchmarks/rig.py):
- `cost`: one cell of bench_cost (memory, mean gap, flush strategy; the emulator's CPU share):
  extension CPU ms per invocation, in all and per process, and HEC requests per invocation;
- `memory`: bench_memory's figures for one flush strategy: anonymous PSS, PSS total and the
  USS of each process (MiB);
- `throughput`: bench_throughput into the counting sink and/or the receiver: CPU us per event,
  in all and of the sender and the listener;
- `invocation`: bench_invocation_cost: CPU us per invocation, in all and per process, and HEC
  requests per invocation;
- `init`: bench_cold_start's cold inits (fresh sandbox each; whole cores, or a function memory's
  CPU share with `--memory`; with `--layer`, each side built into an x86_64 layer and run by its
  own interpreter): the medians of start -> first event/next, of the init's duration and of the
  CPU each process used until the init ended (ms); with `--function`, of the sample function's
  whole init instead;
- `preload`: the main process's imports and preload on the layer's own interpreter (each side
  built into an x86_64 layer; benchmarks/preload_probe.py): the median CPU ms of `--starts`
  fresh starts per side and round.

Why alternate: on this shared 2-core machine a CPU figure drifts by up to 30% between runs of
the same code (other work comes and goes), more than most changes save, so two runs of two
checkouts minutes apart compare the machine's load as much as the code. Here each round runs
both sides, each in a fresh state (its own receiver, /opt folder and sandbox), base first in odd
rounds and change first in even ones, so that a drift within a round and the order's own effect
(here the second run of a round was measured 5-8% slower, whichever side it was) fall on both
sides alike. Per figure: the median of each side, the median of the per-round ratios change/base
(each ratio compares runs minutes apart), that median over the rounds where base ran first and
over those where change did (their gap is the order's effect), and in how many rounds change was
below base. Use an even number of rounds.

`--base` and `--change` name a directory holding a checkout (used as is) or a commit-ish of this
repository (checked out with `git worktree add --detach` into a temporary directory, removed at
the end); without `--change`, the change is this checkout's own `ext`. `--env NAME=VALUE` sets an
extension variable for both sides; `--base-env` / `--change-env` for one side only, so that with
the same checkout on both sides (`--base .`) the A/B measures what a setting costs, e.g.
`cost --base . --change-env SPLUNK_GZIP_LEVEL=0`.
Run: `.venv/bin/python -m benchmarks.ab {cost,memory,throughput,invocation,init,preload} --base REF
[--change REF] [--rounds 6] [--env | --base-env | --change-env NAME=VALUE ...]
[bench options, see --help of each]` -> results/ab-<bench>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_cold_start,
    bench_cost,
    bench_invocation_cost,
    bench_layer,
    bench_memory,
    bench_throughput,
    common,
    preload_probe,
)
from benchmarks.rig import SinkProcess, extension_rig

SIDES = ("base", "change")
ROLES = ("main", "listener", "sender")
DEFAULT_ROUNDS = 6

Figures = dict[str, float]  # label -> value, the main figure first
# (the side's `ext`, the options, the round, the side's extension variables)
Run = Callable[[Path | None, argparse.Namespace, int, Mapping[str, str]],
               tuple[Figures, dict[str, Any]]]


def order(round_no: int) -> tuple[str, str]:
    """Which side runs first in round `round_no` (from 1): base in odd rounds, change in even."""
    return SIDES if round_no % 2 else (SIDES[1], SIDES[0])


def ratio(base: float, change: float) -> float:
    """change / base; NaN when base is 0 or either is NaN."""
    return change / base if base and not math.isnan(base) else math.nan


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(statistics.median(finite)) if finite else math.nan


def summarise(rounds: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per figure (in the order the rounds give them): the median of each side, the median of
    the per-round ratios change/base, that median over the rounds each side ran first (a gap
    between the two is the order's effect, which alternation cancels in the overall median),
    and the rounds in which change < base."""
    labels = dict.fromkeys(label for r in rounds for side in SIDES for label in r[side])
    out: dict[str, dict[str, Any]] = {}
    for label in labels:
        base = [float(r["base"].get(label, math.nan)) for r in rounds]
        change = [float(r["change"].get(label, math.nan)) for r in rounds]
        ratios = [ratio(b, c) for b, c in zip(base, change, strict=True)]
        out[label] = {
            "base_median": _median(base), "change_median": _median(change),
            "ratio_median": _median(ratios),
            **{f"ratio_median_{first}_first": _median(
                [q for q, r in zip(ratios, rounds, strict=True) if r["order"][0] == first])
               for first in SIDES},
            "change_lower_rounds": sum(c < b for b, c in zip(base, change, strict=True)),
            "rounds": len(rounds),
        }
    return out


def round_rows(rounds: Sequence[Mapping[str, Any]], main: str) -> list[list[object]]:
    """One row per round: its number, which side ran first, the main figure of each, the ratio."""
    return [[r["round"], f"{r['order'][0]} first", r["base"].get(main, math.nan),
             r["change"].get(main, math.nan),
             _ratio_text(ratio(r["base"].get(main, math.nan), r["change"].get(main, math.nan)))]
            for r in rounds]


def summary_rows(summary: Mapping[str, Mapping[str, Any]]) -> list[list[object]]:
    return [[label, s["base_median"], s["change_median"], _ratio_text(s["ratio_median"]),
             f"{_ratio_text(s['ratio_median_base_first'])} / "
             f"{_ratio_text(s['ratio_median_change_first'])}",
             f"{s['change_lower_rounds']} of {s['rounds']}"] for label, s in summary.items()]


def _ratio_text(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


# --- checkouts -------------------------------------------------------------------------------

@contextlib.contextmanager
def checkout(ref: str, repo: Path = common.REPO) -> Iterator[Path]:
    """The checkout `ref` names: a directory holding one (with its `ext` package), as is, or a
    commit-ish of `repo` checked out into a temporary directory, removed afterwards (also on an
    error or Ctrl-C)."""
    folder = Path(ref).expanduser()
    if folder.is_dir():
        if not (folder / "ext" / "__init__.py").is_file():
            raise SystemExit(f"ab: {ref} is a directory but not a checkout (no ext/ package)")
        yield folder.resolve()
        return
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                           cwd=repo, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise SystemExit(f"ab: {ref} is neither a directory nor a commit of {repo}")
    tmp = Path(tempfile.mkdtemp(prefix="ab-"))
    tree = tmp / "checkout"
    try:
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree),
                        found.stdout.strip()], cwd=repo, check=True)
        yield tree
    finally:
        removed = subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo,
                                 capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        if removed.returncode != 0:  # interrupted half-way: git's record of it stays behind
            subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True,
                           check=False)


def describe(ref: str | None, path: Path) -> dict[str, Any]:
    """What a side ran: the ref given, the directory, its HEAD and whether its tree differs."""
    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True,
                              check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"ref": ref, "path": str(path), "commit": git("rev-parse", "HEAD"),
            "dirty": bool(status) if status is not None else None}


# --- the benchmarks --------------------------------------------------------------------------

def _env(items: Sequence[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def _cost(code: Path | None, args: argparse.Namespace, round_no: int, env: Mapping[str, str]
          ) -> tuple[Figures, dict[str, Any]]:
    # The same seed for both sides of a round (the same gaps), another one each round.
    cell = bench_cost.run_cell(args.memory, args.gap, args.flush, args.invocations,
                               bench_cost.SEED + round_no,
                               rig_factory=lambda: extension_rig(code), env=env)
    if cell["lines_stored"] != cell["lines_expected"]:
        print(f"WARNING: HEC stored {cell['lines_stored']} of {cell['lines_expected']} lines",
              file=sys.stderr)
    by_role = cell["cpu_ms_per_invocation_by_process"]
    figures = {"CPU ms/invocation, all": cell["cpu_ms_per_invocation"],
               **{f"CPU ms/invocation, {role}": by_role.get(role, math.nan) for role in ROLES},
               "HEC requests/invocation": cell["hec_requests_per_invocation"]}
    return figures, cell


def _memory(code: Path | None, args: argparse.Namespace, round_no: int, env: Mapping[str, str]
            ) -> tuple[Figures, dict[str, Any]]:
    del round_no
    with extension_rig(code) as rig:
        processes, footprint = bench_memory.extension_memory(
            rig, args.invocations, args.lines, {"SPLUNK_FLUSH": args.flush, **env})
    mib = 1024
    figures = {
        "anonymous PSS MiB": sum(p["pss_by_backing_kb"]["anonymous"]
                                 for p in processes.values()) / mib,
        "PSS total MiB": sum(p["pss_kb"] for p in processes.values()) / mib,
        **{f"USS MiB, {role}": processes[role]["uss_kb"] / mib if role in processes
           else math.nan for role in ROLES},
    }
    return figures, {"processes": processes, "footprint": footprint}


def _throughput(code: Path | None, args: argparse.Namespace, round_no: int,
                env: Mapping[str, str]) -> tuple[Figures, dict[str, Any]]:
    del round_no
    targets = ("sink", "hec") if args.into == "both" else (args.into,)
    raw: dict[str, Any] = {}
    with extension_rig(code) as rig:
        for target in targets:
            if target == "hec":
                raw[target] = bench_throughput.measure(rig, args.batches, rig.hec, env)
                continue
            sink = SinkProcess()
            try:
                raw[target] = bench_throughput.measure(
                    dataclasses.replace(rig, target_url=sink.url), args.batches, sink, env)
            finally:
                sink.stop()
    figures: Figures = {}
    for target in targets:
        where = f" ({target})" if len(targets) > 1 else ""
        by_role = raw[target]["cpu_us_per_event_by_process"]
        figures[f"CPU us/event, all{where}"] = raw[target]["cpu_us_per_event"]
        for role in ("sender", "listener"):
            figures[f"CPU us/event, {role}{where}"] = by_role.get(role, math.nan)
    return figures, raw


def _invocation(code: Path | None, args: argparse.Namespace, round_no: int,
                env: Mapping[str, str]) -> tuple[Figures, dict[str, Any]]:
    del round_no
    result = bench_invocation_cost.measure(args.flush, args.invocations, None,
                                           args.gap_ms / 1000, code=code, run_ms=args.run_ms,
                                           extra=env)
    by_role = result["cpu_us_per_invocation_by_process"]
    figures = {"CPU us/invocation, all": result["cpu_us_per_invocation"],
               **{f"CPU us/invocation, {role}": by_role.get(role, math.nan) for role in ROLES},
               "HEC requests/invocation": result["hec_requests_per_invocation"]}
    return figures, result


def _init(code: Path | None, args: argparse.Namespace, round_no: int,
          env: Mapping[str, str]) -> tuple[Figures, dict[str, Any]]:
    del round_no
    if args.layer:  # the side's x86_64 layer, unzipped as /opt: its own interpreter and bytecode
        tree = (code or common.REPO / "ext").parent
        rig_of: Any = bench_layer.bundled_rig(preload_probe.layer_code(tree).parent)
    else:
        rig_of = extension_rig(code)
    with rig_of as rig:
        bench_cold_start.cold_init(rig, dict(env))  # the page cache warm, as every later one
        if args.function:
            whole = [bench_cold_start.function_init_ms(rig, args.memory, extension=True)
                     for _ in range(args.inits)]
            return {"function init ms": _median(whole)}, {"function_init_ms": whole}
        inits = [bench_cold_start.cold_init(rig, dict(env), cpu=True, memory_mb=args.memory)
                 for _ in range(args.inits)]
    cpu = {role: _median([i.get(f"cpu_ms_{role}", math.nan) for i in inits]) for role in ROLES}
    figures = {"first event/next ms": _median([i["first_next_ms"] for i in inits]),
               "init ms": _median([i["init_ms"] for i in inits]),
               "init CPU ms, all": _median([sum(i.get(f"cpu_ms_{role}", 0.0) for role in ROLES)
                                            for i in inits]),
               **{f"init CPU ms, {role}": value for role, value in cpu.items()}}
    return figures, {"inits": inits}


def _preload(code: Path | None, args: argparse.Namespace, round_no: int,
             env: Mapping[str, str]) -> tuple[Figures, dict[str, Any]]:
    del round_no, env  # the probe imports; it reads no extension variable
    layer = preload_probe.layer_code((code or common.REPO / "ext").parent)
    starts = [preload_probe.preload_ms(layer) for _ in range(args.starts)]
    figures = {"preload CPU ms": _median([ms for ms, _ in starts]),
               "modules loaded": float(starts[-1][1])}
    return figures, {"cpu_ms": [ms for ms, _ in starts]}


def _cost_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory", type=int, default=128, help="function memory, MB")
    parser.add_argument("--gap", type=float, default=1.0,
                        help="mean idle (frozen) gap between invocations, s")
    parser.add_argument("--flush", default="sync", help="SPLUNK_FLUSH")
    parser.add_argument("--invocations", type=_more_than(bench_cost.WARMUP), default=60,
                        help=f"invocations per run (the first {bench_cost.WARMUP} not counted)")


def _memory_options(parser: argparse.ArgumentParser) -> None:
    invocations, lines = bench_memory.FULL_PLAN
    parser.add_argument("--flush", default="adaptive", help="SPLUNK_FLUSH")
    parser.add_argument("--invocations", type=_more_than(0), default=invocations)
    parser.add_argument("--lines", type=_more_than(0), default=lines,
                        help="function lines per invocation")


def _throughput_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batches", type=_more_than(0), default=bench_throughput.FULL_BATCHES,
                        help=f"Telemetry batches of {bench_throughput.EVENTS_PER_BATCH:,} events")
    parser.add_argument("--into", choices=("sink", "hec", "both"), default="sink",
                        help="the counting sink (the extension's own cost), the receiver, or "
                             "both (the sink's figure is the main one)")


def _invocation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flush", default="adaptive", help="SPLUNK_FLUSH")
    parser.add_argument("--invocations", type=_more_than(0), default=100,
                        help=f"measured invocations per run (after "
                             f"{bench_invocation_cost.WARMUP} of warm-up)")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="frozen time between invocations (default: back to back)")
    parser.add_argument("--run-ms", type=float, default=0.0,
                        help="how long each invocation runs after its lines (default: at once)")


def _init_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inits", type=_more_than(0), default=10,
                        help="cold inits per side and round (their medians are the figures)")
    parser.add_argument("--memory", type=int, default=None,
                        help="function memory, MB: the sandbox gets Lambda's CPU share for it "
                             "(default: whole cores)")
    parser.add_argument("--function", action="store_true",
                        help="time the sample function's whole init instead (its runtime and "
                             "the extension, as bench_cold_start --function-rounds does); needs "
                             "--memory")
    parser.add_argument("--layer", action="store_true",
                        help="run each side as its bundled x86_64 layer (built once per run), "
                             "as Lambda does, instead of its `ext` on this machine's Python")


def _preload_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--starts", type=_more_than(0), default=10,
                        help="fresh starts per side and round (their median is the figure)")


def _env_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", action="append", default=[], type=_variable,
                        metavar="NAME=VALUE",
                        help="an extension variable for both sides, e.g. SPLUNK_ENRICH=false "
                             "(repeatable; applied after --flush, so it may override it)")
    for side in SIDES:
        parser.add_argument(f"--{side}-env", action="append", default=[], type=_variable,
                            metavar="NAME=VALUE",
                            help=f"an extension variable for the {side} side only, after --env "
                                 f"(repeatable): with the same checkout on both sides, what a "
                                 f"setting costs")


def _variable(text: str) -> str:
    name, equals, _ = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return text


def side_env(args: argparse.Namespace, side: str) -> dict[str, str]:
    """The extension variables `side` runs with: --env, then its own."""
    return {**_env(args.env), **_env(getattr(args, f"{side}_env"))}


def _more_than(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value <= least:
            raise argparse.ArgumentTypeError(f"must be more than {least}")
        return value

    return parse


@dataclasses.dataclass(frozen=True)
class Bench:
    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Run


BENCHES = {
    "cost": Bench("one bench_cost cell: CPU ms/invocation, HEC requests/invocation",
                  _cost_options, _cost),
    "memory": Bench("bench_memory for one flush strategy: PSS and USS, MiB",
                    _memory_options, _memory),
    "throughput": Bench("bench_throughput: CPU us/event", _throughput_options, _throughput),
    "invocation": Bench("bench_invocation_cost: CPU us/invocation", _invocation_options,
                        _invocation),
    "init": Bench("bench_cold_start's cold inits: first event/next, CPU until the init ended",
                  _init_options, _init),
    "preload": Bench("main's imports and preload on the bundled interpreter: CPU ms",
                     _preload_options, _preload),
}


# --- the rounds ------------------------------------------------------------------------------

def run_rounds(run: Run, codes: Mapping[str, Path | None], args: argparse.Namespace,
               rounds: int) -> list[dict[str, Any]]:
    """`rounds` rounds of one run per side, in the order `order` gives."""
    out: list[dict[str, Any]] = []
    for n in range(1, rounds + 1):
        row: dict[str, Any] = {"round": n, "order": list(order(n)), "raw": {}}
        for side in order(n):
            figures, raw = run(codes[side], args, n, side_env(args, side))
            row[side], row["raw"][side] = figures, raw
            print(f"round {n}/{rounds} {side}: "
                  + ", ".join(f"{label} {value:.4g}" for label, value in figures.items()),
                  file=sys.stderr, flush=True)
        out.append(row)
    return out


def report(results: Mapping[str, Any]) -> None:
    main = next(iter(results["summary"]))
    sides = results["sides"]
    common.print_table(
        f"A/B {results['bench']}: base {_name(sides['base'])}, change {_name(sides['change'])}; "
        f"{main} per round",
        ["round", "order", "base", "change", "change/base"],
        round_rows(results["rounds"], main))
    common.print_table(f"Medians over {len(results['rounds'])} rounds",
                       ["figure", "base", "change", "change/base",
                        "base first / change first", "change < base"],
                       summary_rows(results["summary"]))


def _name(side: Mapping[str, Any]) -> str:
    commit = str(side["commit"] or "?")[:12] + (" (dirty)" if side["dirty"] else "")
    name = f"{side['ref']} = {commit}" if side["ref"] else f"this checkout {commit}"
    env = side.get("env") or {}
    return name + "".join(f" {key}={value}" for key, value in env.items())


def parser() -> argparse.ArgumentParser:
    common_options = argparse.ArgumentParser(add_help=False)
    common_options.add_argument("--base", required=True, metavar="REF",
                                help="a checkout directory, or a commit-ish of this repository")
    common_options.add_argument("--change", default=None, metavar="REF",
                                help="the same; default: this checkout")
    common_options.add_argument("--rounds", type=_more_than(0), default=DEFAULT_ROUNDS,
                                help="rounds of one run per side (even: each side first as "
                                     "often)")
    _env_options(common_options)
    top = argparse.ArgumentParser(prog="benchmarks.ab", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    benches = top.add_subparsers(dest="bench", required=True)
    for name, bench in BENCHES.items():
        bench.options(benches.add_parser(name, help=bench.help, parents=[common_options]))
    return top


def main(argv: Sequence[str] | None = None) -> int:
    command = parser()
    args = command.parse_args(argv)
    if getattr(args, "function", False) and args.memory is None:
        command.error("init --function needs --memory (the function's share of a core)")
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(checkout(args.base))
        change = stack.enter_context(checkout(args.change)) if args.change else None
        codes = {"base": base / "ext", "change": change / "ext" if change else None}
        sides = {"base": {**describe(args.base, base), "env": side_env(args, "base")},
                 "change": {**describe(args.change, change or common.REPO),
                            "env": side_env(args, "change")}}
        rounds = run_rounds(BENCHES[args.bench].run, codes, args, args.rounds)
    options = {k: v for k, v in vars(args).items()
               if k not in {"bench", "base", "change", "base_env", "change_env"}}
    results = {"bench": args.bench, "sides": sides, "options": options, "rounds": rounds,
               "summary": summarise(rounds)}
    report(results)
    common.write_result(f"ab-{args.bench}", results, quick=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
