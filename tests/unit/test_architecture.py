"""Guards on the package's shape: no /dev/shm primitives, layering, and what the core imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parents[2] / "ext"
CORE = sorted(p for p in EXT.rglob("*.py") if "local" not in p.relative_to(EXT).parts)
# Everything here needs a POSIX semaphore or shared memory, which Lambda lacks (no /dev/shm).
SHM_NAMES = {
    "Queue",
    "SimpleQueue",
    "JoinableQueue",
    "Lock",
    "RLock",
    "Event",
    "Condition",
    "Semaphore",
    "BoundedSemaphore",
    "Barrier",
    "Pool",
    "Manager",
    "Value",
    "Array",
    "shared_memory",
    "SharedMemory",
    "ProcessPoolExecutor",
}


def imports_of(path: Path) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.extend((node.module, alias.name) for alias in node.names)
    return found


def test_core_modules_found() -> None:
    assert len(CORE) >= 15


@pytest.mark.parametrize("path", list(EXT.rglob("*.py")), ids=lambda p: p.name)
def test_no_dev_shm_primitives(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for module, name in imports_of(path):
        assert not module.startswith("multiprocessing"), f"{path.name} imports {module}"
        if module == "concurrent.futures":
            assert name != "ProcessPoolExecutor"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"multiprocessing", "mp"}
        ):
            assert node.attr not in SHM_NAMES, f"{path.name} uses multiprocessing.{node.attr}"


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(EXT)))
def test_core_never_imports_local_tooling_or_tests(path: Path) -> None:
    for module, _ in imports_of(path):
        assert not module.startswith(("ext.local", "tests", "benchmarks", "function"))


def test_only_hec_imports_urllib3() -> None:
    # All run in the sender only, after the fork (secret_store: the token from AWS, issue 11;
    # container_credentials: the role's credentials for it under SnapStart).
    users = {p.name for p in CORE for module, _ in imports_of(p) if module.startswith("urllib3")}
    assert users == {"hec.py", "secret_store.py", "container_credentials.py"}


def test_local_tooling_does_not_import_core() -> None:
    allowed = {"ext.local"}
    for path in (EXT / "local").rglob("*.py"):
        for module, _ in imports_of(path):
            if module.startswith("ext") and not module.startswith(tuple(allowed)):
                pytest.fail(f"{path} imports {module}")


def test_cold_start_path_imports_nothing_heavy() -> None:
    """register happens after importing only ext.__main__ and ext.main.extensions_api."""
    for name in ("__main__.py", "main/extensions_api.py"):
        top_level = [
            n
            for n in ast.parse((EXT / name).read_text()).body
            if isinstance(n, ast.Import | ast.ImportFrom)
        ]
        modules = {m.names[0].name if isinstance(m, ast.Import) else m.module for m in top_level}
        assert modules <= {"__future__", "os", "sys", "_socket"}, modules


def test_main_process_imports_nothing_heavy_until_the_first_event() -> None:
    """The modules the main process runs (config, control plane, lifecycle, supervisor) load no
    msgspec, dataclasses, typing, logging, re or enum: register and the subscription wait for
    none of them. The children's modules are imported later, by `preload_children` (tested
    below)."""
    import subprocess
    import sys

    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules)\n"
        "import ext.__main__, ext.main.extensions_api, ext.main.lifecycle, ext.control, "
        "ext.config\n"
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(EXT.parent)],
                         capture_output=True, text=True, check=True).stdout.split()
    heavy = {"msgspec", "dataclasses", "typing", "logging", "re", "enum", "urllib3", "json"}
    assert not {name.split(".")[0] for name in out} & heavy, out


def test_children_modules_load_after_the_subscription_and_before_the_fork() -> None:
    """MainLoop.start subscribes with nothing heavy loaded, then imports the children's modules
    once, before forking them: each child starts with msgspec and urllib3 already loaded."""
    import subprocess
    import sys

    probe = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from ext import config\n"
        "from ext.main import lifecycle, supervisor, telemetry_api\n"
        "seen = {}\n"
        "def loaded(): return {'msgspec', 'urllib3'} & set(sys.modules)\n"
        "telemetry_api.subscribe = lambda api, body: bool(seen.setdefault('subscribe', loaded())"
        " or 1)\n"
        "supervisor.spawn = lambda child, fds: seen.setdefault(child.role, loaded())\n"
        "lifecycle.SENDER_START_WAIT_S = 0\n"
        "env = {'SPLUNK_HOST': 'https://splunk.example:8088', 'SPLUNK_HEC_TOKEN': 't-1',\n"
        "       'SPLUNK_SPOOL_DIR': sys.argv[2]}\n"
        "class Api:\n"
        "    def connection_fd(self): return -1\n"
        "lifecycle.MainLoop(Api(), config.load(env), 'fn').start()\n"
        "print(sorted((k, sorted(v)) for k, v in seen.items()))"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as spool:
        done = subprocess.run([sys.executable, "-c", probe, str(EXT.parent), spool],
                              check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout.strip()
    both = ["msgspec", "urllib3"]
    assert out == repr(sorted([("subscribe", []), ("listener", both), ("sender", both)]))


# Imported by no process of the extension: dataclasses brings inspect, ast and dis (0.8 MiB of
# objects the three processes share and each child partly copies, docs/memory.md); the
# classes are msgspec Structs, and msgspec is loaded anyway. pathlib (~0.2 MiB, with fnmatch
# and ntpath) served only to join the spool's paths: os.path does that.
NEVER_LOADED = {"dataclasses", "inspect", "ast", "dis", "pathlib"}


def test_core_does_not_import_dataclasses_or_pathlib() -> None:
    users = {str(p.relative_to(EXT)) for p in CORE for module, _ in imports_of(p)
             if module.split(".")[0] in NEVER_LOADED}
    assert not users


# Imported by the extension's code for nothing else on the layer's Python 3.13 (3.11's email
# package loads it anyway): calendar and the locale it imports cost ~2 ms of every cold start
# (x14 at a 128 MB CPU share) for calendar.timegm on rare input.
NOT_IMPORTED = {"calendar", "locale"}


def test_core_does_not_import_calendar_or_locale() -> None:
    users = {str(p.relative_to(EXT)) for p in CORE for module, _ in imports_of(p)
             if module.split(".")[0] in NOT_IMPORTED}
    assert not users


def test_the_processes_modules_load_no_dataclasses_inspect_ast_dis_or_pathlib(
    tmp_path: Path,
) -> None:
    """What the three processes import on the layer's sys.path (the extension, msgspec and
    urllib3 only: the dev environment's typing_extensions would import inspect for msgspec),
    including what the sender imports only when it runs (token sources, the secret store)."""
    import subprocess
    import sys

    from ext.local.layer import EXTENSION_NAME, make_local_opt

    code = make_local_opt(tmp_path / "opt") / EXTENSION_NAME
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import ext.__main__, ext.main.lifecycle, ext.main.supervisor\n"
        "from ext.main import preload\n"
        "preload.import_children_modules()\n"
        "import ext.rules, ext.sender.token_source, ext.sender.secret_store\n"
        "import ext.sender.container_credentials\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(code)], capture_output=True,
                         text=True, check=True, timeout=60).stdout.split()
    assert "ext.sender.process" in out and "msgspec" in out and "urllib3" in out
    assert not NEVER_LOADED & set(out)
