"""Runs the extension with cProfile in each of its processes (local tooling, never shipped).

Used as the extension's interpreter (bench_invocation_cost --profile): the launcher's arguments
(`-S -m ext <name>`) are taken as they come. The main process and each forked child (listener,
then sender) profile themselves and write <EXT_PROFILE_DIR>/<role>-<pid>.prof when they end:
normally, through os._exit, or on SIGTERM (how the listener is stopped at shutdown).
"""

from __future__ import annotations

import _signal
import cProfile
import os
import runpy
import sys
import time
from typing import Any

OUT = os.environ.get("EXT_PROFILE_DIR", ".")
ROLES = ["listener", "sender"]
_real_exit = os._exit
_real_fork = os.fork
_real_signal = _signal.signal
# CPU time, not wall time: the processes spend most of their life blocked or frozen.
state: dict[str, Any] = {"profile": cProfile.Profile(time.process_time), "role": "main",
                         "forks": 0}


def dump() -> None:
    profile: cProfile.Profile = state["profile"]
    profile.disable()
    profile.dump_stats(os.path.join(OUT, f"{state['role']}-{os.getpid()}.prof"))


def exit_now(code: int) -> None:
    dump()
    _real_exit(code)


def on_term(signum: int, frame: object) -> None:
    exit_now(0)


def fork() -> int:
    pid = _real_fork()
    if pid == 0:
        state["profile"].disable()
        forks = state["forks"]
        state["role"] = ROLES[forks] if forks < len(ROLES) else f"child{forks}"
        state["profile"] = cProfile.Profile(time.process_time)
        state["profile"].enable()
    else:
        state["forks"] += 1
    return pid


def signal(signum: int, handler: Any) -> Any:
    if signum == _signal.SIGTERM and handler == _signal.SIG_DFL and state["role"] != "main":
        handler = on_term  # a child resets SIGTERM after the fork: dump before dying
    return _real_signal(signum, handler)


def main() -> None:
    os._exit = exit_now  # type: ignore[assignment]
    os.fork = fork
    _signal.signal = signal
    sys.argv = ["ext", sys.argv[-1]]
    state["profile"].enable()
    try:
        runpy.run_module("ext", run_name="__main__", alter_sys=True)
    finally:
        dump()


if __name__ == "__main__":
    main()
