"""The custom runtime mode of the emulator (`provided.al2023`, `provided.al2`): no Python at all.

Lambda starts the function's own executable `bootstrap` (in the function directory, else in the
layers' /opt) with no arguments; it loops on the Runtime API itself. The environment has no
Python shim, no PYTHONPATH and no AWS_EXECUTION_ENV, and PATH is Lambda's default unless the
function sets one (PATH is not a reserved variable, lambda-protocol 6.1). The runtime does not
get the telemetry log fd: its stdout and stderr lines are its log lines.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CUSTOM_RUNTIMES = frozenset({"provided.al2023", "provided.al2"})
DEFAULT_PATH = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
# What only a managed (Python) runtime gets; a custom runtime's environment goes without.
MANAGED_ONLY_VARS = ("AWS_EXECUTION_ENV", "PYTHONPATH")


class CustomRuntimeError(Exception):
    """The function of a custom runtime has no executable bootstrap."""


def is_custom(runtime: str) -> bool:
    """True for the `provided.*` runtimes."""
    return runtime in CUSTOM_RUNTIMES


def bootstrap_path(function_dir: Path, opt_dir: Path | None) -> Path:
    """The executable Lambda starts: <task root>/bootstrap, else /opt/bootstrap."""
    candidates = [function_dir / "bootstrap"]
    if opt_dir is not None:
        candidates.append(opt_dir / "bootstrap")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    names = " or ".join(str(c) for c in candidates)
    raise CustomRuntimeError(f"custom runtime: no executable bootstrap at {names}")


def runtime_argv(function_dir: Path, opt_dir: Path | None) -> list[str]:
    """What the emulator starts as the runtime. Without a bootstrap Lambda fails the init
    (Runtime.InvalidEntrypoint): a process that says why and exits 127 does the same here."""
    try:
        return [str(bootstrap_path(function_dir, opt_dir))]
    except CustomRuntimeError as err:
        return ["/bin/sh", "-c", 'echo "$1" >&2; exit 127', "bootstrap", str(err)]


def runtime_env(
    managed_env: Mapping[str, str], customer_env: Mapping[str, str], opt_dir: Path | None
) -> dict[str, str]:
    """The managed runtime's environment turned into a custom runtime's one."""
    env = {k: v for k, v in managed_env.items() if k not in MANAGED_ONLY_VARS}
    path = DEFAULT_PATH if opt_dir is None else DEFAULT_PATH.replace("/opt/bin", f"{opt_dir}/bin")
    env["PATH"] = customer_env.get("PATH", path)
    return env
