"""Runs the extension with cProfile in each of its processes (local tooling, never shipped).

Used as the extension's interpreter (bench_invocation_cost --profile): the launcher's arguments
(`-S -m ext <name>`) are taken as they come. The main process and each forked child (listener,
then sender) profile themselves and write <EXT_PROFILE_DIR>/<role>-<pid>.prof when they end:
normally, through os._exit, or on SIGTERM (how the listener is stopped at shutdown); each of
their threads writes <role>.<thread name>-<pid>.prof beside it. Times are CPU time per thread.
"""

from __future__ import annotations

import _signal
import contextlib
import cProfile
import os
import runpy
import sys
import threading
import time
from typing import Any

OUT = os.environ.get("EXT_PROFILE_DIR", ".")
ROLES = ["listener", "sender"]
_real_exit = os._exit
_real_fork = os.fork
_real_signal = _signal.signal
# CPU time of the thread, not wall time (the processes spend most of their life blocked or
# frozen) and not the process's (the sender's courier thread would be charged to whatever the
# sender thread waits in): each thread has its own profile, written as <role>.<thread>-<pid>.
state: dict[str, Any] = {"profile": cProfile.Profile(time.thread_time), "role": "main",
                         "forks": 0, "threads": []}
_real_thread_run = threading.Thread.run


def thread_run(self: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    state["threads"].append((self.name, profile))
    profile.enable()
    try:
        _real_thread_run(self)
    finally:
        profile.disable()


def dump() -> None:
    profile: cProfile.Profile = state["profile"]
    profile.disable()
    profile.dump_stats(os.path.join(OUT, f"{state['role']}-{os.getpid()}.prof"))
    for name, thread_profile in state["threads"]:
        with contextlib.suppress(Exception):  # a thread still running: its figures so far
            thread_profile.disable()
        thread_profile.dump_stats(os.path.join(OUT, f"{state['role']}.{name}-{os.getpid()}.prof"))


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
        state["profile"] = cProfile.Profile(time.thread_time)
        state["threads"] = []
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
    threading.Thread.run = thread_run  # type: ignore[method-assign]
    _signal.signal = signal
    sys.argv = ["ext", sys.argv[-1]]
    state["profile"].enable()
    try:
        runpy.run_module("ext", run_name="__main__", alter_sys=True)
    finally:
        dump()


if __name__ == "__main__":
    main()
