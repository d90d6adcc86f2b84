"""Mutation testing of the extension, one module at a time, with cosmic-ray.

    .venv/bin/python -m scripts.mutation ext/sender/hec.py ext/sender/batching.py
    .venv/bin/python -m scripts.mutation --preset delivery --jobs 2
    .venv/bin/python -m scripts.mutation ext/sender/quarantine.py \
        --tests tests/unit/test_quarantine.py

Each module runs in its own copy of the project under build/mutation/work/, because cosmic-ray
writes every mutant into the source file: the work tree is never touched, and an interrupted run
leaves nothing behind. A mutant is tested with only the tests that matter for its module (fast
unit tests first, `-x`), so most mutants die within a second. Hypothesis runs with the CI
profile (derandomized), so two runs of the same code give the same score.

Output: one Markdown table row per module on stdout (module, mutants, killed, survived, score,
time), build/mutation/summary.md with the table, and build/mutation/<module>.md with the diff of
every surviving mutant.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "mutation"
# bootstrap and function/: the emulator tests run the extension through its launcher (copied by
# ext/local/layer.py from the project's root) beside the sample function.
# README.md: test_config_table.py checks its settings table against ext/config.py SETTINGS.
COPIED = ("ext", "tests", "scripts", "setup.cfg", "pyproject.toml", "bootstrap", "function",
          "README.md")

# The tests that exercise each module, fastest first. Globs: files other work adds later are
# picked up by name; a pattern that matches nothing is skipped.
TESTS: dict[str, tuple[str, ...]] = {
    # The trust choice (`_choose_trust`, `_read_bundle`, `_trust_all`) is driven only by the
    # real chains of test_hec_trust.py (~1.4 s, the openssl CLI).
    "ext/sender/hec.py": (
        "tests/unit/test_hec_classify.py", "tests/unit/test_hec_compress.py",
        "tests/integration/test_hec_client.py", "tests/integration/test_hec_trust.py",
        "tests/integration/test_hec_restore.py", "tests/integration/test_hec_dropped_keepalive.py",
    ),
    # A kept-alive connection closed before a byte of an answer (ClosedUnansweredError), as the
    # client sees it: loopback sockets, 0.3 s.
    "ext/sender/hec_wire.py": (
        "tests/unit/test_hec_wire.py", "tests/integration/test_hec_client.py",
        "tests/integration/test_hec_dropped_keepalive.py",
    ),
    "ext/sender/batching.py": ("tests/unit/test_batching_edges.py", "tests/unit/test_batching*.py"),
    # The enrichment and metric tests read what the envelope builder makes of them (cold start,
    # fields learnt from an init, SPLUNK_PLATFORM_EVENTS=false); 0.7 s, after the envelope's own.
    "ext/sender/envelope.py": (
        "tests/unit/test_envelope_edges.py", "tests/unit/test_envelope_lines.py",
        "tests/unit/test_envelope_time.py", "tests/unit/test_envelope*.py",
        "tests/unit/test_enrichment.py", "tests/unit/test_metrics.py",
    ),
    "ext/sender/quarantine.py": ("tests/unit/test_quarantine*.py",),
    # The token read from AWS: answers and errors parsed (no network), then the refetch policy,
    # then the calls themselves against moto (~20 s: the store alone first, then the extension
    # in the emulator), where the request's shape and the answer's handling are checked.
    "ext/sender/secret_store.py": (
        "tests/unit/test_secret_store.py", "tests/unit/test_token_source.py",
        "tests/integration/test_container_credentials.py",
        "tests/integration/test_token_from_aws.py",
    ),
    # The signer against AWS's published suite and botocore's own signer (hypothesis), then the
    # store that sends it (no network), then moto, which checks every signature it is sent
    # (IAM enforced: a wrong one is refused), alone and in the emulator (~20 s).
    "ext/sender/sigv4.py": (
        "tests/unit/test_sigv4.py", "tests/unit/test_secret_store.py",
        "tests/integration/test_token_from_aws.py",
    ),
    # The refetch policy on a fake store and clock, then its callers: the credentials endpoint's
    # failures (~1 s), the HEC client that reports rejections (~8 s), the token read from moto.
    "ext/sender/token_source.py": (
        "tests/unit/test_token_source.py", "tests/integration/test_container_credentials.py",
        "tests/integration/test_hec_client.py", "tests/integration/test_token_from_aws.py",
    ),
    # The role's credentials under SnapStart: against a local credentials endpoint with a
    # stand-in clock (~1 s), then the token read with them from moto, alone and in the emulator.
    "ext/sender/container_credentials.py": (
        "tests/integration/test_container_credentials.py",
        "tests/integration/test_token_from_aws.py",
    ),
    # The platform records' metrics and alerts, through the envelope builder that calls it.
    "ext/sender/derived.py": (
        "tests/unit/test_metrics.py", "tests/unit/test_enrichment.py",
        "tests/unit/test_envelope*.py",
    ),
    # Its own tests, then where the sender loop emits it (in process, a stand-in clock), and
    # where the courier and the ledger count into it.
    "ext/sender/self_metrics.py": (
        "tests/unit/test_self_metrics.py", "tests/unit/test_sender_loop.py",
        "tests/unit/test_courier_delivery.py", "tests/unit/test_sender_lost_ends.py",
    ),
    # The breaker's rule (hypothesis, a replayed history), then the courier that reports to it.
    "ext/sender/breaker.py": (
        "tests/unit/test_breaker.py", "tests/unit/test_courier.py",
        "tests/unit/test_courier_delivery.py",
    ),
    # The alerts as the envelope builder emits them (with derived.py), then the fields they add.
    "ext/sender/alerts.py": ("tests/unit/test_metrics.py", "tests/unit/test_enrichment.py"),
    # The decoders' own promises, then the listener and the sender that decode with them; not
    # test_listener_process.py (it starts the listener from benchmarks/, which the mutation copy
    # does not hold) nor test_listener.py's threaded socket tests (~5 s of waits).
    "ext/schema.py": (
        "tests/unit/test_schema.py", "tests/unit/test_intake_edges.py",
        "tests/unit/test_envelope_edges.py", "tests/unit/test_envelope*.py",
        "tests/unit/test_intake*.py", "tests/unit/test_listener_batches.py",
    ),
    "ext/spool/frame.py": (
        "tests/unit/test_spool_frame_edges.py", "tests/unit/test_spool_frame_resync.py",
        "tests/unit/test_spool_frame*.py", "tests/unit/test_spool_recovery*.py",
    ),
    # test_spool_ci_examples.py is left out: it starts pytest in a subprocess that needs the
    # plugin autoload mutation runs switch off, and takes seconds. The frame codec's own tests
    # are left out too (they call ext/spool/frame.py alone), except for ackstate, whose slot
    # codec test_spool_frame.py covers.
    **{
        module: (
            f"tests/unit/test_spool_{name}.py", "tests/unit/test_spool_api.py",
            "tests/unit/test_spool_bound.py",
            *(("tests/unit/test_spool_frame.py",) if name == "ackstate" else ()),
            "tests/unit/test_spool_recovery.py", "tests/unit/test_spool_machine.py",
        )
        for name in ("layout", "ackstate", "reader", "writer", "refusals")
        for module in (f"ext/spool/{name}.py",)
    },
    # The courier's own thread against a scripted client; the sender's process tests
    # (tests/integration/test_sender.py, ~30 s) would make each survivor cost half a minute.
    "ext/sender/courier.py": (
        "tests/unit/test_courier*.py", "tests/unit/test_sender*.py",
        "tests/integration/test_hec_restore.py",  # a SnapStart restore: real sockets, 0.6 s
    ),
    # The ledger's own tests and the linger properties (the sender's answers under adaptive),
    # then the sender loop that feeds it.
    "ext/sender/invocations.py": (
        "tests/unit/test_invocations.py", "tests/unit/test_flush_linger.py",
        "tests/unit/test_sender*.py",
    ),
    "ext/sender/commit_order.py": (
        "tests/unit/test_commit_order*.py", "tests/unit/test_sender*.py",
    ),
    # As for the courier: the unit tests against a stand-in courier; the process tests are the
    # safety net, not the mutation oracle.
    "ext/sender/process.py": (
        "tests/unit/test_sender_dispatch.py", "tests/unit/test_sender*.py",
        "tests/unit/test_snap_start.py",
    ),
    # The listener's own tests, in-process; left out: test_listener_process.py (it starts the
    # listener as a process from benchmarks/, which the mutation copy does not hold) and the
    # threaded socket tests of test_listener.py (~5 s of waits; the in-process answers, server
    # and batch tests drive the same code without them).
    "ext/listener/intake.py": (
        "tests/unit/test_intake_edges.py", "tests/unit/test_intake*.py",
        "tests/unit/test_listener_batches.py",
    ),
    # The filters in process, then the masking property through a real listener and spool.
    "ext/listener/filters.py": (
        "tests/unit/test_filters.py", "tests/unit/test_masking_property.py",
        "tests/unit/test_listener_batches.py",
    ),
    "ext/listener/http_intake.py": (
        "tests/unit/test_listener_http.py", "tests/unit/test_listener_http_answers.py",
    ),
    "ext/listener/http_server.py": (
        "tests/unit/test_listener_http_answers.py", "tests/unit/test_listener_server.py",
    ),
    # test_snap_start.py: no held wake-up until an invocation ends, under SnapStart.
    "ext/listener/process.py": (
        "tests/unit/test_listener_batches.py", "tests/unit/test_listener_http_answers.py",
        "tests/unit/test_filters.py", "tests/unit/test_snap_start.py",
    ),
    # The main loop in process (stand-in children, clock and select), then Lambda Managed
    # Instances (SHUTDOWN only, children watched while main waits for it), then the timed flush
    # tests. Not the emulator tests: the mutation work copy has no function/ to run.
    "ext/main/lifecycle.py": (
        "tests/unit/test_lifecycle_main.py", "tests/unit/test_managed_instances.py",
        "tests/unit/test_snap_start.py", "tests/unit/test_lifecycle*.py",
    ),
    # The client against a scripted local API (framing, keep-alive, errors), the events each
    # environment registers for and the wait hook (Managed Instances), the entry point.
    "ext/main/extensions_api.py": (
        "tests/unit/test_extensions_api.py", "tests/unit/test_managed_instances.py",
        "tests/unit/test_snap_start.py", "tests/unit/test_lifecycle.py",
    ),
    # Each probe a fresh `python -S` with the layer's sys.path: what a process imported stays.
    "ext/main/preload.py": ("tests/unit/test_preload.py",),
    "ext/main/regex_cache.py": ("tests/unit/test_regex_cache.py",),
    # Real forked children (exit codes, pidfds, bounded waits, stop), then the main loop that
    # reaps and restarts them with stand-ins (in process, 0.3 s).
    "ext/main/supervisor.py": (
        "tests/unit/test_supervisor.py", "tests/unit/test_lifecycle_main.py",
    ),
    "ext/control.py": (
        "tests/unit/test_control*.py", "tests/unit/test_lifecycle_main.py",
        "tests/unit/test_snap_start.py",
        "tests/unit/test_lifecycle*.py",
    ),
    # The pure decisions first, then the main loop that asks them (in process, 0.3 s); not
    # the timed flush tests of test_lifecycle.py (4 s).
    "ext/flush_policy.py": (
        "tests/unit/test_flush_policy.py", "tests/unit/test_flush_linger.py",
        "tests/unit/test_sender_budget.py", "tests/unit/test_lifecycle_main.py",
    ),
    # The DER reading and the closure in pure Python, then the CA choice over real chains made
    # by the openssl CLI against a loopback TLS server (1.4 s: the bundle size threshold, the
    # probe's chain).
    "ext/sender/trust.py": ("tests/unit/test_trust.py", "tests/integration/test_hec_trust.py"),
    # main's JSON reader before msgspec: its edge cases (malformed input, escapes, numbers,
    # nesting), then the properties against the json module, then the Extensions API client
    # that reads its answers with it.
    "ext/main/minijson.py": (
        "tests/unit/test_minijson_edges.py", "tests/unit/test_minijson.py",
        "tests/unit/test_extensions_api.py",
    ),
    # The rules on their own, then through the config and the line filter (in process); not
    # test_masking_property.py (a listener and spool per example, ~1.5 s a test), nor
    # test_config_table.py (it reads README.md, which the mutation copy does not hold).
    "ext/rules.py": (
        "tests/unit/test_rules.py", "tests/unit/test_filters.py",
    ),
    # The event's fields and the parse (scanner or minijson) on their own; test_lifecycle.py
    # parses events too, among timed flush tests (~16 s).
    "ext/main/events.py": ("tests/unit/test_events.py",),
    # The body and the answers against a scripted local API, then the Extensions API client's
    # tests, which subscribe too.
    "ext/main/telemetry_api.py": (
        "tests/unit/test_telemetry_api.py", "tests/unit/test_extensions_api.py",
    ),
    # main's lines, the secret masking and the children's logging on their own (one test starts
    # a fresh interpreter for the default threshold, ~0.1 s).
    "ext/diagnostics.py": ("tests/unit/test_diagnostics.py",),
    # The fields through the envelope builder that carries them (only these tests run inside
    # a Lambda environment: AWS_LAMBDA_FUNCTION_VERSION set), the state file, the cold start.
    "ext/sender/enrichment.py": ("tests/unit/test_enrichment*.py",),
    # The platform records' metric events through the envelope builder, then the extension's
    # own metrics, which share the mapper, `encode` and `inner_fields`.
    "ext/sender/metrics.py": ("tests/unit/test_metrics*.py", "tests/unit/test_self_metrics.py"),
    # main() in process against a scripted Extensions API, then `python -m ext` itself (three
    # short subprocesses, ~0.5 s): the exit code Lambda sees and the `__main__` guard.
    "ext/__main__.py": ("tests/unit/test_entry.py", "tests/integration/test_entry_point.py"),
    # Each error's line and pickling on their own, then the config's problems; the smoke test
    # (tests/integration/test_mutation_script.py) passes its own --tests.
    "ext/errors.py": ("tests/unit/test_errors.py", "tests/unit/test_config.py"),
    # load() and its parsers, the role's credentials, the table (defaults, bounds and the
    # README's rendering of both), then any other test_config file. Not the other modules'
    # tests that load a Config (enrichment, filters, Managed Instances): each adds ~0.5-0.8 s
    # of collection to every mutant; what they check of config is checked here too.
    "ext/config.py": (
        "tests/unit/test_config.py", "tests/unit/test_config_credentials.py",
        "tests/unit/test_config_table.py", "tests/unit/test_config*.py",
    ),
}
PRESETS = {
    "delivery": (
        "ext/sender/hec.py", "ext/sender/hec_wire.py", "ext/sender/batching.py",
        "ext/sender/envelope.py", "ext/sender/quarantine.py",
        "ext/spool/frame.py", "ext/spool/layout.py", "ext/spool/ackstate.py",
        "ext/spool/reader.py", "ext/spool/writer.py", "ext/spool/refusals.py",
        "ext/sender/courier.py", "ext/sender/commit_order.py", "ext/sender/process.py",
        "ext/listener/intake.py", "ext/listener/http_intake.py", "ext/listener/http_server.py",
        "ext/listener/process.py", "ext/main/lifecycle.py",
    ),
    "smoke": ("ext/errors.py",),
}
# Replacing arithmetic by a power, a shift or a bitwise operator: on this code's ints and bytes
# such a mutant crashes or is far off on the first line run, so it costs a test run and tells
# nothing. `--all-operators` keeps them.
NOISE_OPERATORS = (r"core/ReplaceBinaryOperator_\w+_(Pow|RShift|LShift|BitOr|BitAnd|BitXor)$",)
# Hypothesis examples per property in a mutation run (tests/conftest.py caps every test's own
# setting to it): most mutants die in the example tests; the properties' first examples catch
# most of the rest.
EXAMPLES = 25
PYTEST = (
    "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
    # Entry-point scanning of every installed package costs ~1 s per mutant; load the two
    # plugins the suite needs by name instead.
    "-p", "_hypothesis_pytestplugin", "-p", "pytest_timeout",
    # A mutant that loops (a scan position that stops moving) fails its test here instead of
    # running into the whole run's timeout, 10x the clean run.
    "--timeout=15",
)


@dataclass
class Result:
    module: str
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    incompetent: int = 0  # the mutant cannot even import: killed by Python, not by a test
    equivalent: int = 0  # survived, and listed in mutation_equivalents.toml with the reason
    seconds: float = 0.0
    survivors: list[str] = field(default_factory=list)
    equivalents: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def score(self) -> float:
        """Killed over killed + survived: a mutant that behaves as the original is no test gap."""
        judged = self.killed + self.survived
        return 100.0 * self.killed / judged if judged else 100.0

    def row(self) -> str:
        if self.error:
            return f"| {self.module} | error: {self.error} | | | | | |"
        return (
            f"| {self.module} | {self.mutants} | {self.killed + self.incompetent} | "
            f"{self.survived} | {self.equivalent} | {self.score:.1f}% | "
            f"{_duration(self.seconds)} |"
        )


HEADER = (
    "| module | mutants | killed | survived | equivalent | score | time |\n"
    "|---|---:|---:|---:|---:|---:|---:|"
)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def test_files(module: str, override: list[str] | None) -> list[str]:
    patterns = override or TESTS.get(module, ("tests/unit",))
    found: list[str] = []
    for pattern in patterns:
        matches = sorted(ROOT.glob(pattern)) if "*" in pattern else [ROOT / pattern]
        for path in matches:
            rel = path.relative_to(ROOT).as_posix()
            if path.exists() and rel not in found:
                found.append(rel)
    return found


def _env() -> dict[str, str]:
    # CI=1 selects the derandomized hypothesis profile (tests/conftest.py): reproducible scores.
    return {**os.environ, "CI": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "MUTATION_EXAMPLES": str(EXAMPLES)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digest(work: Path) -> str:
    marker = work / "source.sha256"
    return marker.read_text() if marker.exists() else ""


def _copy_project(work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, work / name)


def _config(module: str, command: str, timeout: float, all_operators: bool) -> str:
    lines = [
        "[cosmic-ray]",
        f'module-path = "{module}"',
        f"timeout = {timeout:.0f}",
        "excluded-modules = []",
        f"test-command = {json.dumps(command)}",
        "",
        "[cosmic-ray.distributor]",
        'name = "local"',
        "",
        "[cosmic-ray.filters.operators-filter]",
        f"exclude-operators = {json.dumps([] if all_operators else list(NOISE_OPERATORS))}",
    ]
    return "\n".join(lines) + "\n"


_RUNNING: set[int] = set()  # process groups of the steps in flight


def _run(command: list[str], cwd: Path, env: dict[str, str], out: TextIO) -> int:
    """Runs one step in its own process group, so an interrupted run leaves no test behind."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out,
                            start_new_session=True)
    _RUNNING.add(proc.pid)
    try:
        return proc.wait()
    finally:
        _RUNNING.discard(proc.pid)


def _stop(signum: int, _frame: object) -> None:
    for group in list(_RUNNING):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    print(f"\ninterrupted; partial sessions stay in {_shown(OUT)}/work/", flush=True)
    os._exit(128 + signum)


_SERVERS: dict[Path, subprocess.Popen[bytes]] = {}


@contextlib.contextmanager
def _fork_server(work: Path, env: dict[str, str], out: TextIO) -> Iterator[Path]:
    sock = work / "pytest.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.mutation_server", str(sock)], cwd=work, env=env,
        stdout=subprocess.PIPE, stderr=out, start_new_session=True,
    )
    _RUNNING.add(proc.pid)
    _SERVERS[sock] = proc
    try:
        assert proc.stdout is not None
        if proc.stdout.readline() != b"ready\n":
            raise RuntimeError(f"the fork server did not start (see {out.name})")
        yield sock
    finally:
        proc.terminate()
        proc.wait()
        _RUNNING.discard(proc.pid)
        del _SERVERS[sock]


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def run_module(
    module: str, tests: list[str], all_operators: bool, log: Path, *,
    survivors_only: bool = False, resume: bool = False,
) -> Result:
    started = time.monotonic()
    result = Result(module)
    if not tests:
        result.error = "no tests mapped (pass --tests)"
        return result
    work = OUT / "work" / module.replace("/", "_").removesuffix(".py")
    # From the source as it is before any mutant: the entries' `function`s are looked up in it.
    places = line_places((ROOT / module).read_text())
    session = work / "session.sqlite"
    again = survivors_only or resume
    if again:
        # Tests were added since the last run, or it was interrupted: killed mutants stay
        # killed, so only the survivors (and the mutants never run) run again. Sound only
        # while the module itself is unchanged.
        source = ROOT / module
        if not session.exists() or _digest(work) != _sha256(source):
            flag = "--survivors-only" if survivors_only else "--resume"
            result.error = f"{flag} needs an earlier run of this very source"
            return result
        shutil.copy2(source, work / module)  # an interrupted run leaves a mutant in place
        shutil.rmtree(work / "tests")
        shutil.copytree(ROOT / "tests", work / "tests",
                        ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        if survivors_only:
            with sqlite3.connect(session) as db:
                db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
    else:
        _copy_project(work)
        (work / "source.sha256").write_text(_sha256(ROOT / module))
    env = _env()
    with log.open("a" if again else "w") as out, _fork_server(work, env, out) as sock:
        # Each mutant's tests run in a fork of a process that has pytest and hypothesis
        # imported already (scripts/mutation_server.py): ~1 s less per mutant.
        test = [sys.executable, "-S", "-I", str(work / "scripts" / "mutation_client.py"),
                str(sock), *PYTEST[2:], *tests]
        baseline_start = time.monotonic()
        clean = _run(test, work, env, out)
        baseline = time.monotonic() - baseline_start
        if clean != 0:
            # The fork server discards a run's output: run them again so the log says why.
            out.write("\nthe tests fail unmutated: run again without the fork server\n")
            out.flush()
            _run([sys.executable, *PYTEST, *tests], work, env, out)
            result.error = f"the tests fail unmutated (see {_shown(log)})"
            return result
        # A mutant that loops is stopped at 10x the clean run (and never under 20 s: the
        # machine may be busy), and counted as killed, as cosmic-ray does.
        (work / "cr.toml").write_text(_config(module, " ".join(test), max(20.0, 10 * baseline),
                                              all_operators))
        steps = [
            [_tool("cosmic-ray"), "init", "cr.toml", "session.sqlite"],
            [_tool("cr-filter-operators"), "session.sqlite", "cr.toml"],
            [sys.executable, "-m", "scripts.mutation", "--skip-type-only", str(work / module),
             str(session)],
        ]
        for step in [*([] if again else steps),
                     [_tool("cosmic-ray"), "exec", "cr.toml", "session.sqlite"]]:
            if _run(step, work, env, out) != 0:
                result.error = f"{Path(step[0]).name} {step[1]} failed (see {log.name})"
                return result
        if _SERVERS[sock].poll() is not None:  # every run after its death counted as killed
            result.error = f"the fork server died (see {log.name})"
            return result
        dump = subprocess.run(
            [_tool("cosmic-ray"), "dump", "session.sqlite"], cwd=work, env=env,
            capture_output=True, text=True, check=True,
        ).stdout
    _tally(result, dump, places)
    result.seconds = time.monotonic() - started
    return result


def type_only_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Annotations and `if TYPE_CHECKING:` blocks: never run (the modules use `from __future__
    import annotations`), so a mutant there is equivalent by construction."""
    spans: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def add(node: ast.AST | None) -> None:
        if node is not None:
            end = (node.end_lineno or node.lineno, node.end_col_offset or 0)  # type: ignore[attr-defined]
            spans.append(((node.lineno, node.col_offset), end))  # type: ignore[attr-defined]

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                add(arg.annotation if arg is not None else None)
            add(node.returns)
        elif isinstance(node, ast.AnnAssign):
            add(node.annotation)
        elif (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
              and node.test.id == "TYPE_CHECKING"):
            add(node)
    return spans


def skip_type_only(module: Path, session: Path) -> int:
    """Marks the pending mutants of `session` that sit in type-only code as skipped."""
    from cosmic_ray.work_db import WorkDB, use_db  # type: ignore[import-untyped]
    from cosmic_ray.work_item import WorkerOutcome, WorkResult  # type: ignore[import-untyped]

    spans = type_only_spans(module.read_text())
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            start = tuple(item.mutations[0].start_pos)
            if any(first <= start < last for first, last in spans):
                db.set_result(item.job_id, WorkResult(
                    output="type-only code", worker_outcome=WorkerOutcome.SKIPPED))
                skipped += 1
    print(f"skipped {skipped} mutants in annotations or TYPE_CHECKING blocks")
    return 0


def _tally(result: Result, dump: str, places: Sequence[Place] | None = None) -> None:
    """Counts the outcomes of `dump`; `places` (line_places of the module as it was mutated)
    lets the entries that name a `function` match."""
    for line in dump.splitlines():
        item, outcome = json.loads(line)
        if outcome is None or outcome.get("worker_outcome") == "skipped":
            continue  # filtered out by the operator filter
        result.mutants += 1
        verdict = outcome.get("test_outcome")
        if verdict == "survived":
            mutation = item["mutations"][0]
            where = f"line {mutation['start_pos'][0]}, {mutation['operator_name']}"
            diff = _diff(outcome)
            reason = equivalence(result.module, diff, mutation["start_pos"][0], places)
            if reason:
                result.equivalent += 1
                change = " → ".join(
                    f"`{line[1:].strip()}`" for line in diff.splitlines() if line[:1] in "-+"
                )
                result.equivalents.append(f"- {where}: {change}: {reason}")
                continue
            result.survived += 1
            result.survivors.append(f"#### {where}\n\n```diff\n{diff}\n```\n")
        elif verdict == "incompetent":
            result.incompetent += 1
        else:
            result.killed += 1


MODULE_SCOPE = "<module>"
ENTRY_KEYS: dict[str, type] = {
    "line": str, "mutants": list, "reason": str, "function": str, "occurrence": int,
}
# Where a line stands: the `__qualname__` of the innermost def or class around it (MODULE_SCOPE
# outside any), and which copy of its stripped text it is in that scope, from 1 in source order.
Place = tuple[str, int]


def line_places(source: str) -> tuple[Place, ...]:
    """The Place of each line of `source` (index 0 is line 1): what an entry's `function` and
    `occurrence` name. A def's decorators belong to the scope around it, as they run there."""
    texts = [text.strip() for text in source.split("\n")]
    scopes = [MODULE_SCOPE] * len(texts)

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                last = child.end_lineno or child.lineno
                # After the outer scope, before the inner ones: the innermost one wins.
                scopes[child.lineno - 1:last] = [name] * (last - child.lineno + 1)
                inner = "." if isinstance(child, ast.ClassDef) else ".<locals>."
                visit(child, name + inner)
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    seen: dict[tuple[str, str], int] = {}
    places = []
    for text, scope in zip(texts, scopes, strict=True):
        seen[scope, text] = seen.get((scope, text), 0) + 1
        places.append((scope, seen[scope, text]))
    return tuple(places)


def equivalence(
    module: str, diff: str, line: int | None = None, places: Sequence[Place] | None = None,
    entries: Sequence[Mapping[str, object]] | None = None,
) -> str:
    """The recorded reason a surviving mutant behaves as the original, or "" if none is.

    A mutant matches by its source line and its replacement, not by line number: an entry
    stops matching (and the mutant counts as a survivor again) as soon as that line changes.
    An entry that names a `function` (and maybe an `occurrence` in it) matches only the mutant
    whose start `line` stands there by `places` (line_places of the module as mutated); without
    them it matches nothing. An entry without one is for a line that stands once in its module
    (audit refuses the others). `entries`: the module's in scripts/mutation_equivalents.toml.
    """
    # A mutant of a module's last line also shows its final newline as removed and added again.
    before = [text[1:].strip() for text in diff.splitlines() if text.startswith("-") and text[1:]]
    after = [text[1:].strip() for text in diff.splitlines() if text.startswith("+") and text[1:]]
    if len(before) != 1 or len(after) != 1:
        return ""
    place = (places[line - 1] if places is not None and line is not None
             and 0 < line <= len(places) else None)
    for entry in _equivalents().get(module, ()) if entries is None else entries:
        mutants = entry["mutants"]
        if entry["line"] != before[0] or not isinstance(mutants, list) or after[0] not in mutants:
            continue
        if "function" not in entry or (
            place is not None and entry["function"] == place[0]
            and entry.get("occurrence", place[1]) == place[1]
        ):
            return str(entry["reason"])
    return ""


def audit(
    module: str, source: str, entries: Sequence[Mapping[str, object]],
) -> tuple[list[str], list[str]]:
    """What is wrong with `module`'s entries against its `source`, and which ones have lapsed.

    Wrong: an entry whose line stands more than once in the module (or in its `function`) and
    that does not say which copy it is for: it would excuse the mutant in every copy, though
    its reason was written for one; an entry whose `function` or `occurrence` does not hold its
    line (stale: the code moved under it); a malformed one. Lapsed: an entry without `function`
    whose line is gone; it matches nothing, so it is only noted.
    """
    found: dict[str, list[tuple[int, str]]] = {}
    texts = source.split("\n")
    for number, (code, (scope, _)) in enumerate(zip(texts, line_places(source), strict=True), 1):
        found.setdefault(code.strip(), []).append((number, scope))
    errors, lapsed = [], []
    for entry in entries:
        text = entry.get("line")
        wrong = [key for key in entry if key not in ENTRY_KEYS or isinstance(entry[key], bool)
                 or not isinstance(entry[key], ENTRY_KEYS[key])]
        missing = [key for key in ("line", "mutants", "reason") if key not in entry]
        function, occurrence = entry.get("function"), entry.get("occurrence")
        if wrong or missing or not isinstance(text, str) or (occurrence and not function):
            errors.append(f"{module}: the entry for {text!r}: unknown or mistyped keys "
                          f"{wrong}, missing {missing}, or an `occurrence` without `function`")
            continue
        places = found.get(text, [])
        where = ", ".join(f"{scope} (line {number})" for number, scope in places)
        ours = [number for number, scope in places if scope == function]
        if function is None and not places:
            lapsed.append(f"{module}: `{text}` stands nowhere in the module: remove its entry")
        elif function is None and len(places) > 1:
            errors.append(f"{module}: `{text}` stands on {len(places)} lines, in {where}: name "
                          f"the function the reason holds for with `function` (one entry per "
                          f"function if it holds in more than one)")
        elif function is not None and not ours:
            errors.append(f"{module}: `{text}` is not in {function} (it stands "
                          f"{'in ' + where if where else 'nowhere'}): the entry is stale")
        elif occurrence is None and len(ours) > 1:
            errors.append(f"{module}: `{text}` stands {len(ours)} times in {function} (lines "
                          f"{', '.join(map(str, ours))}): name the copy the reason holds for "
                          f"with `occurrence` (1 for the first; one entry per copy)")
        elif occurrence is not None and occurrence not in range(1, len(ours) + 1):
            errors.append(f"{module}: `{text}` stands {len(ours)} time(s) in {function}, not "
                          f"{occurrence}: the entry is stale")
    return errors, lapsed


def check_equivalents(modules: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
    """audit of each module's entries (of `modules`, or of all in the file) against its source
    in the repository: the errors and the lapsed entries."""
    table = _equivalents()
    errors, lapsed = [], []
    for module in table if modules is None else modules:
        path = ROOT / module
        if not path.is_file():
            errors.append(f"{module}: no such module")
        elif module in table:
            wrong, gone = audit(module, path.read_text(), table[module])
            errors += wrong
            lapsed += gone
    return errors, lapsed


@functools.cache
def _equivalents() -> dict[str, list[dict[str, object]]]:
    """scripts/mutation_equivalents.toml: per module, `line`, `mutants`, `reason` and maybe
    `function`. Read once: a run checks it before it mutates anything."""
    with (ROOT / "scripts" / "mutation_equivalents.toml").open("rb") as file:
        return tomllib.load(file)


def _diff(outcome: dict[str, str]) -> str:
    lines = outcome.get("diff", "").splitlines()
    return "\n".join(line for line in lines if line.startswith(("-", "+", "@@"))
                     and not line.startswith(("---", "+++")))


def write_module_report(result: Result) -> None:
    name = result.module.replace("/", "_").removesuffix(".py")
    survivors = "\n".join(result.survivors) or "None.\n"
    equivalents = "\n".join(result.equivalents) or "None."
    (OUT / f"{name}.md").write_text(
        f"{HEADER}\n{result.row()}\n\n### Survivors\n\n{survivors}\n"
        f"### Equivalent (scripts/mutation_equivalents.toml)\n\n{equivalents}\n"
    )


def write_summary(results: list[Result]) -> None:
    """summary.md keeps the rows of earlier runs; a module run again replaces its row."""
    path = OUT / "summary.md"
    rows = {}
    if path.exists():
        for line in path.read_text().splitlines()[2:]:
            if line.startswith("| "):
                rows[line.split(" | ")[0][2:]] = line
    rows.update({r.module: r.row() for r in results})
    path.write_text(HEADER + "\n" + "\n".join(rows[m] for m in sorted(rows)) + "\n")


def main(argv: list[str] | None = None) -> int:
    global OUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("modules", nargs="*", help="source files, e.g. ext/sender/hec.py")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named list of modules")
    parser.add_argument("--tests", nargs="+", help="test files for every module given")
    parser.add_argument("--jobs", type=int, default=1, help="modules run side by side")
    parser.add_argument("--all-operators", action="store_true",
                        help="keep the power/shift/bitwise replacements (slower)")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="exit 1 when a module scores below this percentage")
    parser.add_argument("--survivors-only", action="store_true",
                        help="rerun only the last run's survivors (after adding tests)")
    parser.add_argument("--resume", action="store_true",
                        help="finish an interrupted run: only the mutants it never ran")
    parser.add_argument("--out", type=Path, default=OUT, help="reports and work copies")
    parser.add_argument("--skip-type-only", nargs=2, metavar=("MODULE", "SESSION"),
                        help=argparse.SUPPRESS)  # a step of each module's run
    args = parser.parse_args(argv)
    if args.skip_type_only:
        return skip_type_only(Path(args.skip_type_only[0]), Path(args.skip_type_only[1]))
    OUT = args.out.resolve()
    modules = list(args.modules) + list(PRESETS.get(args.preset or "", ()))
    if not modules:
        parser.error("name at least one module or a --preset")
    for module in modules:
        if not (ROOT / module).is_file() or module.startswith("ext/local/"):
            parser.error(f"{module}: not a module of the shipped extension")
    # An ambiguous or stale entry would excuse a mutant its reason was not written for: no
    # run until the file says which function each entry is for.
    problems, lapsed = check_equivalents(modules)
    if lapsed:
        print("scripts/mutation_equivalents.toml, entries that match nothing:", *lapsed,
              sep="\n  ", file=sys.stderr)
    if problems:
        print("scripts/mutation_equivalents.toml, fix before mutating:", *problems,
              sep="\n  ", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(HEADER, flush=True)

    def one(module: str) -> Result:
        log = OUT / (module.replace("/", "_").removesuffix(".py") + ".log")
        result = run_module(module, test_files(module, args.tests), args.all_operators, log,
                            survivors_only=args.survivors_only, resume=args.resume)
        write_module_report(result)
        print(result.row(), flush=True)
        return result

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, modules))
    write_summary(results)
    print(f"\ntotal {_duration(time.monotonic() - started)}; survivors in "
          f"{_shown(OUT)}/<module>.md", flush=True)
    failed = [r for r in results if r.error or r.score < args.min_score]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
