"""Starts, watches and stops the listener and sender processes (os.fork, pipes, signals).

Runs in the main process. Children are forked after the main process has registered and bound
the listener socket, and each builds its own sockets and pools after the fork. Children exit
with named codes; a dead child is restarted (the spool makes that lossless). No
multiprocessing primitive is used: Lambda has no /dev/shm.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CRASHED = 70  # an unexpected exception escaped the child's entry point
STOP_GRACE_S = 0.1


@dataclass
class Child:
    role: str
    entry: Callable[[], None]
    keep_fds: tuple[int, ...]
    pid: int = 0
    restarts: int = 0
    exit_status: int | None = field(default=None)


def spawn(child: Child, close_fds: tuple[int, ...]) -> None:
    """Forks `child`; in the child, closes the fds it must not hold and runs its entry."""
    pid = os.fork()
    if pid:
        child.pid = pid
        child.exit_status = None
        return
    code = EXIT_CRASHED
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in close_fds:
            if fd not in child.keep_fds:
                _close_quietly(fd)
        _set_role(child.role)
        child.entry()
        code = EXIT_OK
    except BaseException:
        logging.getLogger(f"ext.{child.role}").exception("%s process failed", child.role)
    finally:
        logging.shutdown()
        os._exit(code)


def reap(children: list[Child]) -> list[Child]:
    """Collects exited children without blocking; returns those that died."""
    dead = []
    for child in children:
        if not child.pid:
            continue
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = child.pid, 0
        if pid:
            child.exit_status = os.waitstatus_to_exitcode(status)
            child.pid = 0
            dead.append(child)
    return dead


def wait_exit(child: Child, deadline: float) -> bool:
    """Waits (polling, bounded by the monotonic `deadline`) for `child` to exit by itself."""
    while child.pid:
        reap([child])
        if not child.pid:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def stop(children: list[Child], deadline: float) -> None:
    """SIGTERM, a short grace bounded by `deadline`, then SIGKILL and a final reap."""
    for child in children:
        _signal(child, signal.SIGTERM)
    grace = min(deadline, time.monotonic() + STOP_GRACE_S)
    for child in children:
        wait_exit(child, grace)
    for child in children:
        if child.pid:
            _signal(child, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
            child.pid = 0


def _signal(child: Child, signum: int) -> None:
    if child.pid:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            return


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        return


def _set_role(role: str) -> None:
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if formatter is not None and formatter._fmt:
            handler.setFormatter(logging.Formatter(formatter._fmt.replace("main:", f"{role}:")))
