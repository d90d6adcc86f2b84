"""Runs the extension with cProfile in each of its processes (local tooling, never shipped).

Used as the extension's interpreter (bench_invocation_cost --profile): the launcher's arguments
(`-S -m ext <name>`) are taken as they come. The main process and each forked child (listener,
then sender) profile themselves and write <EXT_PROFILE_DIR>/<role>-<pid>.prof when they end:
normally, through os._exit, or on SIGTERM (how the listener is stopped at shutdown); each of
their threads writes <role>.<thread name>-<pid>.prof beside it. Times are CPU time per thread.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import threading
import time
from typing import Any

import child_hooks  # type: ignore[import-not-found]  # beside this file: run as a script

OUT = os.environ.get("EXT_PROFILE_DIR", ".")
# CPU time of the thread, not wall time (the processes spend most of their life blocked or
# frozen) and not the process's (the sender's courier thread would be charged to whatever the
# sender thread waits in): each thread has its own profile, written as <role>.<thread>-<pid>.
state: dict[str, Any] = {"profile": cProfile.Profile(time.thread_time), "role": "main",
                         "threads": []}
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


def on_fork(role: str) -> None:
    state["profile"].disable()
    state["role"] = role
    state["profile"] = cProfile.Profile(time.thread_time)
    state["threads"] = []
    state["profile"].enable()


def main() -> None:
    threading.Thread.run = thread_run  # type: ignore[method-assign]
    state["profile"].enable()
    child_hooks.run(on_fork, dump)


if __name__ == "__main__":
    main()
