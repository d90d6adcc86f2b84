"""Hypothesis profiles, and how the suite is shared between pytest-xdist workers.

Hypothesis profiles: `dev` explores new examples on every run; `ci` (when CI is set) replays a
fixed, seed-derived set, so a merge is never blocked by an example found by chance that day.
New failures are found by developers' runs, which keep their database in .hypothesis/.

`derandomize` alone does not make the CI examples fixed: Hypothesis also draws (5% of the time)
from the literal constants of every *local* module in `sys.modules`, and that pool grows with
whatever else pytest collected (a subset run and the full run imported different modules, so the
same test saw different examples). In CI the pool is pinned to the constants of the code under
test, `ext/`, read from the sources: every run explores the same examples, whatever is collected.
Each xdist worker loads this file, so each worker pins the same pool.

`./dev test` runs the suite on pytest-xdist workers with `--dist loadgroup`; the groups are set
here (see `pytest_collection_modifyitems`), so a test file only says what it needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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


# No example deadline and no too-slow health check: the properties are about results, and a
# loaded machine (xdist workers, a mutation run beside) made them fail on the clock alone.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", RELAXED)
settings.register_profile("ci", RELAXED, derandomize=True, database=None)
# Mutation runs (scripts/mutation.py) run the tests once per mutant: the CI seeds, at most
# MUTATION_EXAMPLES examples per property (also for tests that ask for more, see below).
MUTATION_EXAMPLES = int(os.environ.get("MUTATION_EXAMPLES", "0"))
settings.register_profile(
    "mutation", RELAXED, derandomize=True, database=None, max_examples=MUTATION_EXAMPLES or 100
)
if MUTATION_EXAMPLES:
    settings.load_profile("mutation")
    pin_local_constants(list((ROOT / "ext").rglob("*.py")))
elif os.environ.get("CI"):
    settings.load_profile("ci")
    pin_local_constants(list((ROOT / "ext").rglob("*.py")))
else:
    settings.load_profile("dev")


def pytest_configure(config: pytest.Config) -> None:
    # Mutation runs load their plugins by name, without pytest-xdist; the groups set below must
    # still pass --strict-markers there.
    config.addinivalue_line("markers", "xdist_group(name): run by one xdist worker, in turn")


# One xdist worker runs every test of this group, one after the other: tests that bound wall-clock
# time (post-runtime within the flush budget, lines in HEC before the freeze) never share the
# machine with another such test, whatever the number of workers.
TIMING_GROUP = "timing"


# The timing tests share the machine with the other workers' CPU-bound tests (`./dev test` runs one
# worker more than there are cores, because the timing group mostly waits): they and every process
# they start run this much nicer-than-default, where the OS allows it (root; CI runs as root), so
# what they measure is the extension, not the neighbours.
TIMING_PRIORITY = -5


@pytest.fixture(autouse=True)
def _timing_priority(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("timing") is None:
        yield
        return
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, before + TIMING_PRIORITY)
    except PermissionError:
        yield  # not root: the timing tests run at the same priority as the rest
        return
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Assign each test its xdist group (only `--dist loadgroup` reads them; harmless otherwise).

    - `@pytest.mark.timing`: the one timing group (above).
    - a test that uses a module-scoped fixture: its module's group, so the fixture (a layer
      build, a checkov venv, a moto server, the benchmarks' results/ folder it restores) is set
      up once, by one worker, and never by two workers at the same time.
    - any other test goes wherever a worker is free.

    In mutation runs it also caps the examples of tests whose own settings ask for more.
    """
    _cap_mutation_examples(items)
    if not config.pluginmanager.hasplugin("xdist"):
        return  # nothing reads the groups without xdist (mutation runs load no plugins)
    for item in items:
        if item.get_closest_marker("timing") is not None:
            group = TIMING_GROUP
        elif _uses_module_fixture(item):
            group = item.nodeid.split("::", 1)[0]
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)


def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker with `--dist loadgroup`: fail when the groups did not reach the node ids.

    xdist sends a group to one worker by suffixing its tests' node ids with `@<group>`; a pytest
    or xdist version that stops doing so would spread the groups silently (setup.cfg pins why).
    """
    if not hasattr(session.config, "workerinput") or not session.config.getvalue("loadgroup"):
        return
    lost = [item.nodeid for item in session.items
            if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(f"xdist groups not applied (pytest/xdist versions?): {lost[:3]}")


def _cap_mutation_examples(items: list[pytest.Item]) -> None:
    """In mutation runs, caps the examples of tests whose own settings ask for more."""
    if not MUTATION_EXAMPLES:
        return
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if isinstance(own, settings) and own.max_examples > MUTATION_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(  # type: ignore[union-attr]
                own, max_examples=MUTATION_EXAMPLES
            )
        machine = getattr(item, "cls", None)
        own = getattr(machine, "settings", None)
        if isinstance(own, settings) and own.max_examples > MUTATION_EXAMPLES:
            machine.settings = settings(own, max_examples=MUTATION_EXAMPLES)  # type: ignore[union-attr]


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe as the extension makes its control and wake-up pipes (read end, write end, both
    non-blocking); both ends closed after the test."""
    from ext import control

    read_fd, write_fd = control.make_pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)
