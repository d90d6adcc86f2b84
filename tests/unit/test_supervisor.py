"""The supervisor with real forked children: exit codes, the fds a child keeps, reaping without
blocking, bounded waits, and a stop that ends even a child ignoring SIGTERM."""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from ext.main import supervisor
from ext.main.supervisor import EXIT_CRASHED, EXIT_OK, Child


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()  # spawn froze the test process's objects, as it does main's


def child(entry: Callable[[], None], keep: tuple[int, ...] = ()) -> Child:
    return Child("tester", entry, keep, "ERROR")


def wait_dead(kid: Child, seconds: float = 5.0) -> None:
    assert supervisor.wait_exit(kid, time.monotonic() + seconds), "the child did not exit"


def test_a_child_that_returns_exits_ok_and_one_that_raises_exits_crashed() -> None:
    fine, broken = child(lambda: None), child(lambda: 1 / 0)  # type: ignore[func-returns-value]
    supervisor.spawn(fine, ())
    supervisor.spawn(broken, ())
    assert fine.pid and broken.pid and fine.pid != broken.pid
    wait_dead(fine)
    wait_dead(broken)
    assert (fine.exit_status, broken.exit_status) == (EXIT_OK, EXIT_CRASHED)
    assert fine.pid == broken.pid == 0


def test_a_child_keeps_only_its_own_fds() -> None:
    kept_r, kept_w = os.pipe()
    other_r, other_w = os.pipe()
    report_r, report_w = os.pipe()

    def entry() -> None:
        alive = []
        for fd in (kept_w, other_w):
            try:
                os.fstat(fd)
                alive.append(fd)
            except OSError:
                pass
        os.write(report_w, repr(alive).encode())

    try:
        kid = child(entry, keep=(kept_w, report_w))
        supervisor.spawn(kid, close_fds=(kept_w, other_w, report_w))
        wait_dead(kid)
        assert kid.exit_status == EXIT_OK
        assert os.read(report_r, 100) == repr([kept_w]).encode()
    finally:
        for fd in (kept_r, kept_w, other_r, other_w, report_r, report_w):
            os.close(fd)


def test_reap_does_not_block_and_reports_only_the_dead() -> None:
    release_r, release_w = os.pipe()
    try:
        slow = child(lambda: os.read(release_r, 1) and None)  # type: ignore[func-returns-value]
        quick = child(lambda: None)
        supervisor.spawn(slow, ())
        supervisor.spawn(quick, ())
        wait_dead(quick)
        started = time.monotonic()
        assert supervisor.reap([slow, quick]) == []  # quick was reaped already; slow lives
        assert time.monotonic() - started < 1.0
        assert slow.pid
        os.write(release_w, b"x")
        deadline = time.monotonic() + 5
        dead: list[Child] = []
        while not dead and time.monotonic() < deadline:
            dead = supervisor.reap([slow])
            time.sleep(0.01)
        assert dead == [slow] and slow.exit_status == EXIT_OK
    finally:
        os.close(release_r)
        os.close(release_w)


def test_wait_exit_gives_up_at_its_deadline() -> None:
    release_r, release_w = os.pipe()
    try:
        kid = child(lambda: os.read(release_r, 1) and None)  # type: ignore[func-returns-value]
        supervisor.spawn(kid, ())
        started = time.monotonic()
        assert not supervisor.wait_exit(kid, started + 0.2)
        assert 0.2 <= time.monotonic() - started < 2.0
        assert kid.pid  # still there
        os.write(release_w, b"x")
        wait_dead(kid)
    finally:
        os.close(release_r)
        os.close(release_w)


def test_stop_ends_a_child_that_ignores_sigterm_within_the_grace() -> None:
    def stubborn() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)

    polite, deaf = child(lambda: time.sleep(60)), child(stubborn)
    supervisor.spawn(polite, ())
    supervisor.spawn(deaf, ())
    time.sleep(0.2)  # let the stubborn one ignore SIGTERM before it comes
    started = time.monotonic()
    supervisor.stop([polite, deaf], time.monotonic() + 5)
    assert time.monotonic() - started < 2.0  # SIGKILL after the short grace, not the deadline
    assert polite.pid == deaf.pid == 0
    assert polite.exit_status == -signal.SIGTERM  # SIGTERM is restored to its default


def test_stop_and_reap_leave_a_gone_child_alone() -> None:
    kid = child(lambda: None)
    supervisor.spawn(kid, ())
    wait_dead(kid)
    supervisor.stop([kid], time.monotonic() + 1)  # already reaped: nothing to signal
    assert supervisor.reap([kid]) == []


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def test_a_child_s_pidfd_is_readable_once_it_exits_and_closed_once_reaped() -> None:
    release_r, release_w = os.pipe()
    try:
        kid = child(lambda: os.read(release_r, 1) and None)  # type: ignore[func-returns-value]
        supervisor.spawn(kid, ())
        pidfd = kid.exit_fd
        assert pidfd >= 0 and supervisor.exit_fds([kid]) == [pidfd]
        assert not _readable(pidfd)  # alive
        os.write(release_w, b"x")
        import select

        assert select.select([pidfd], [], [], 5.0)[0] == [pidfd]  # its exit wakes a wait
        assert supervisor.reap([kid]) == [kid] and kid.exit_status == EXIT_OK
        assert kid.exit_fd == -1
        with pytest.raises(OSError):
            os.fstat(pidfd)  # closed with the reaping: none left behind per restart
        assert supervisor.exit_fds([kid]) == []  # nothing alive to watch
    finally:
        os.close(release_r)
        os.close(release_w)


def test_a_living_child_without_a_pidfd_makes_the_waits_poll() -> None:
    watched, unwatched, gone = child(lambda: None), child(lambda: None), child(lambda: None)
    watched.pid, watched.exit_fd = 101, 7
    unwatched.pid = 102  # a kernel before 5.3: no pidfd
    assert supervisor.exit_fds([watched, gone]) == [7]
    assert supervisor.exit_fds([watched, unwatched]) is None


def test_wait_exit_returns_as_the_child_exits_not_at_its_deadline() -> None:
    kid = child(lambda: time.sleep(0.2))
    supervisor.spawn(kid, ())
    started = time.monotonic()
    assert supervisor.wait_exit(kid, started + 10)
    assert time.monotonic() - started < 5.0
    assert kid.exit_status == EXIT_OK and kid.exit_fd == -1


def test_stop_closes_the_pidfd_of_a_child_it_killed() -> None:
    kid = child(lambda: time.sleep(60))
    supervisor.spawn(kid, ())
    pidfd = kid.exit_fd
    supervisor.stop([kid], time.monotonic() + 5)
    assert kid.pid == 0 and kid.exit_fd == -1 and kid.exit_status == -signal.SIGTERM
    with pytest.raises(OSError):
        os.fstat(pidfd)
