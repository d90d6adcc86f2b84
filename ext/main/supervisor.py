"""Starts, watches and stops the listener and sender processes (os.fork, pipes, signals).

Runs in the main process. Children are forked after the main process has registered and bound
the listener socket, and each builds its own sockets and pools after the fork. Children exit
with named codes; a dead child is restarted (the spool makes that lossless). No
multiprocessing primitive is used: Lambda has no /dev/shm. Uses the C `_signal` module:
`signal` imports enum, which costs milliseconds on the cold-start path.

Each child gets a pidfd (Linux 5.3+), readable once it has exited: main's waits include it
with the sender's answers, so a death wakes them, and an invocation of seconds is not polled
every SENDER_CHECK_S for one (ext/main/lifecycle.py). Where the kernel has none, they poll.
"""

from __future__ import annotations

import _signal
import gc
import os
import select
import time

from ext import diagnostics

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_OK = 0
EXIT_CRASHED = 70  # an unexpected exception escaped the child's entry point
EXIT_UNDRAINED = 75  # the sender's drain deadline passed with data not sent (left spooled)
STOP_GRACE_S = 0.1
# A SIGKILLed child is gone within a few milliseconds, but one whose cgroup spent its CPU
# quota (a 128 MB function's share: 7.2 ms per 100 ms period) dies only when the next period
# lets it run: measured 5-8 ms, or 98-100 ms in 2 of 6 trials (a child busy in the emulator's
# 128 MB cgroup, ext/local/sandbox/limits.py, SIGKILLed; 2026-12-02). stop waits that long for
# it even at or past its deadline, so that it is reaped, its status known, and no false "still
# there" warning is logged; main then still exits 40 ms before Lambda's own deadline
# (lifecycle.SHUTDOWN_MARGIN_S, 150 ms).
KILL_REAP_S = 0.11
# A child that exits within QUICK_EXIT_S of its start is failing to start (a spool it cannot
# open, a certificate it cannot read): started again at once, it dies again at once. After
# QUICK_EXITS_FREE such exits in a row it is restarted no sooner than RESTART_BACKOFF_S after
# its exit, doubled at each further one up to RESTART_BACKOFF_MAX_S (lifecycle.py leaves it
# down meanwhile), so that main does not fork it over and over on the function's CPU.
QUICK_EXIT_S = 1.0
QUICK_EXITS_FREE = 2
RESTART_BACKOFF_S = 1.0
RESTART_BACKOFF_MAX_S = 60.0


class Child:
    """One child process: its role, entry point, the fds it keeps, and its pid while alive."""

    def __init__(self, role: str, entry: Callable[[], int | None], keep_fds: tuple[int, ...],
                 log_level: str) -> None:
        self.role = role
        self.entry = entry
        self.keep_fds = keep_fds
        self.log_level = log_level
        self.pid = 0
        self.restarts = 0
        self.hangs = 0  # times it was presumed hung and killed (each one also a restart)
        self.exit_status: int | None = None
        self.exit_fd = -1  # the living child's pidfd, readable once it exited; -1: none
        self.started_at = 0.0  # monotonic time of the last spawn
        self.quick_exits = 0  # exits in a row within QUICK_EXIT_S of the start
        self.restart_at = 0.0  # monotonic time before which it is not restarted (0: none)


def exit_fds(children: list[Child]) -> list[int] | None:
    """The pidfds of the living `children`, which a wait includes to wake at a death; None when
    one of them has none (the kernel has no pidfd): the waits then look every so often."""
    fds = []
    for child in children:
        if child.pid:
            if child.exit_fd < 0:
                return None
            fds.append(child.exit_fd)
    return fds


def restart_due(child: Child) -> bool:
    """Whether the dead `child` may be started again now (no back-off, or its end passed)."""
    return time.monotonic() >= child.restart_at


def held_back(child: Child) -> bool:
    """Dead and left down for its back-off: it answers nothing until restarted."""
    return not child.pid and child.restart_at > 0


def spawn(child: Child, close_fds: tuple[int, ...]) -> None:
    """Forks `child`; in the child, closes the fds it must not hold and runs its entry."""
    # Everything the main process allocated so far moves to the permanent generation, so the
    # child's collections never write to those objects' headers: their pages stay shared with
    # the main process instead of being copied into each child (PSS).
    gc.freeze()
    pid = os.fork()
    if pid:
        child.pid = pid
        child.started_at = time.monotonic()
        child.exit_status = None
        child.exit_fd = _pidfd(pid)
        return
    code = EXIT_CRASHED
    try:
        _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
        for fd in close_fds:
            if fd not in child.keep_fds:
                _close_quietly(fd)
        diagnostics.configure_logging(child.log_level, child.role)
        status = child.entry()  # its own exit status, or None: it ended as it should
        code = EXIT_OK if status is None else status
    except BaseException:
        import logging

        logging.getLogger(f"ext.{child.role}").exception("%s process failed", child.role)
    finally:
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
            _forget(child, os.waitstatus_to_exitcode(status))
            dead.append(child)
    return dead


def wait_exit(child: Child, deadline: float) -> bool:
    """Waits (bounded by the monotonic `deadline`) for `child` to exit by itself: on its pidfd,
    else polling."""
    while child.pid:
        reap([child])
        if not child.pid:
            return True
        if not _await_exit(child, deadline):
            return False
    return True


def stop(children: list[Child], deadline: float) -> None:
    """SIGTERM, a short grace bounded by `deadline`, then SIGKILL and a final reap, bounded by
    `deadline` too (or KILL_REAP_S after the SIGKILL): a child still there then is left
    unreaped (_reap_killed)."""
    for child in children:
        _signal_child(child, _signal.SIGTERM)
    grace = min(deadline, time.monotonic() + STOP_GRACE_S)
    for child in children:
        wait_exit(child, grace)
    killed = [child for child in children if child.pid]
    for child in killed:
        _signal_child(child, _signal.SIGKILL)
    reap_by = max(deadline, time.monotonic() + KILL_REAP_S)
    for child in killed:
        _reap_killed(child, reap_by)


def _reap_killed(child: Child, deadline: float) -> None:
    """Reaps a SIGKILLed `child`, waiting no later than `deadline`. A child in uninterruptible
    sleep (a hung NFS or EFS mount) acts on no signal until its call returns, maybe never: a
    wait without bound would keep main past Lambda's shutdown deadline. Left unreaped, it
    ends with the environment after main's exit; what it had not committed stays spooled."""
    while True:
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            _forget(child, None)  # reaped elsewhere; nothing left to wait for
            return
        if pid:
            _forget(child, os.waitstatus_to_exitcode(status))
            return
        if not _await_exit(child, deadline):
            diagnostics.note("WARNING", f"{child.role} (pid {child.pid}) is still there after "
                                        "SIGKILL at the deadline; leaving it unreaped")
            return


def _await_exit(child: Child, deadline: float) -> bool:
    """Sleeps until `child` may have exited (its pidfd readable, or a short poll without one)
    or `deadline`; False if the deadline has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    if child.exit_fd >= 0:
        select.select([child.exit_fd], [], [], left)
    else:
        time.sleep(min(left, 0.005))
    return True


def kill(child: Child) -> None:
    """SIGKILL, not waited for: the next reap (at the next event, or a wait's) collects it and
    it is restarted as any dead child."""
    _signal_child(child, _signal.SIGKILL)


def cpu_ticks(child: Child) -> int | None:
    """The CPU time `child` has used (user and system, all its threads, in clock ticks); None
    when /proc cannot tell. Whether a silent child is busy or stuck: a stopped or deadlocked
    one uses none."""
    try:
        with open(f"/proc/{child.pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()  # the name may hold spaces
        return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    except (OSError, IndexError, ValueError):
        return None


def _forget(child: Child, exit_status: int | None) -> None:
    """`child` was reaped: its pid and pidfd are no longer its; a child failing to start
    is held back before its next start."""
    child.pid = 0
    child.exit_status = exit_status
    now = time.monotonic()
    child.quick_exits = child.quick_exits + 1 if now - child.started_at < QUICK_EXIT_S else 0
    over = child.quick_exits - QUICK_EXITS_FREE
    child.restart_at = (now + min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** (over - 1))
                        if over > 0 else 0.0)
    if child.exit_fd >= 0:
        _close_quietly(child.exit_fd)
        child.exit_fd = -1


def _pidfd(pid: int) -> int:
    """A pidfd of `pid`, or -1 where the kernel (before Linux 5.3) or the platform has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1


def _signal_child(child: Child, signum: int) -> None:
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
