"""What the extension's instrumented interpreters share (benchmarks/profiled_extension.py,
benchmarks/phased_extension.py; local tooling, never shipped): runs `python -m ext` as the
launcher asked, tells the instrument when a child is forked and which role it has (listener,
then sender, in the order main forks them), and lets it write its figures however the process
ends: returning, os._exit, or SIGTERM (how the listener is stopped at shutdown).
"""

from __future__ import annotations

import _signal
import os
import runpy
import sys
from collections.abc import Callable
from typing import Any

ROLES = ["listener", "sender"]
_real_exit = os._exit
_real_fork = os.fork
_real_signal = _signal.signal


def run(on_fork: Callable[[str], None], dump: Callable[[], None]) -> None:
    """Runs the extension; `on_fork(role)` in each child just after its fork, `dump()` in every
    process as it ends (`role()` tells which process it is)."""
    forks = [0]

    def exit_now(code: int) -> None:
        dump()
        _real_exit(code)

    def on_term(signum: int, frame: object) -> None:
        exit_now(0)

    def fork() -> int:
        pid = _real_fork()
        if pid == 0:
            _role[0] = ROLES[forks[0]] if forks[0] < len(ROLES) else f"child{forks[0]}"
            on_fork(_role[0])
        else:
            forks[0] += 1
        return pid

    def signal(signum: int, handler: Any) -> Any:
        if signum == _signal.SIGTERM and handler == _signal.SIG_DFL and _role[0] != "main":
            handler = on_term  # a child resets SIGTERM after the fork: dump before dying
        return _real_signal(signum, handler)

    os._exit = exit_now  # type: ignore[assignment]
    os.fork = fork
    _signal.signal = signal
    sys.argv = ["ext", sys.argv[-1]]
    try:
        runpy.run_module("ext", run_name="__main__", alter_sys=True)
    finally:
        dump()


_role = ["main"]


def role() -> str:
    """This process's role: main, listener, sender (or childN for a later fork)."""
    return _role[0]
