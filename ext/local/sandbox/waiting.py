"""Waiting on the sandbox's control plane until a condition, a fatal failure, or a deadline.

Emulator process only: the orchestration in sandbox.py waits here for registrations, the
runtime's next calls and the extensions' next calls, and learns why a cycle failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ext.local.sandbox import wire
from ext.local.sandbox.control_plane import ControlPlane
from ext.local.sandbox.fleet import Fleet

Failure = tuple[str, str]  # (platform status, errorType)


def failure_locked(cp: ControlPlane, fleet: Fleet) -> Failure | None:
    """A fatal condition of the current cycle, checked with cp.cv held."""
    if cp.runtime_init_error is not None:
        return "error", cp.runtime_init_error[0]
    if cp.runtime_restore_error is not None:
        return "error", cp.runtime_restore_error[0]
    for ext in cp.extensions.values():
        if ext.finished and ext.error_type:
            return "error", ext.error_type
    dead = fleet.dead()
    if dead is not None:
        return "error", wire.F_RT_EXIT if dead.kind == "runtime" else wire.F_EXT_CRASH
    return None


def await_ready(cp: ControlPlane, fleet: Fleet, ready: Callable[[], bool],
                deadline: float) -> Failure | None:
    """Wait until `ready()` (None), a fatal condition, or the deadline ("timeout")."""
    with cp.cv:
        while True:
            if ready():
                return None
            failure = failure_locked(cp, fleet)
            if failure is not None:
                return failure
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", wire.F_SANDBOX_TIMEOUT
            cp.cv.wait(left)
