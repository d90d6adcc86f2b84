"""The supervisor with real forked children: exit codes, the fds a child keeps, reaping without
blocking, bounded waits, and a stop that ends even a child ignoring SIGTERM."""

from __future__ import annotations

import gc
import io
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from ext import diagnostics
from ext.main import supervisor
from ext.main.supervisor import EXIT_CRASHED, EXIT_OK, Child


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()  # spawn froze the test process's objects, as it does main's


@pytest.fixture(autouse=True)
def _only_children_exit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A spawn that ran the entry in the test process would end it with a child's exit code
    (0 when the entry returns): that fails the test instead, and a forked copy of the test that
    came back from spawn ends at teardown."""
    me, real_exit = os.getpid(), os._exit

    def exit_children_only(code: int) -> None:
        if os.getpid() == me:
            raise AssertionError(f"the test process ran a child's entry and would exit {code}")
        real_exit(code)

    monkeypatch.setattr(os, "_exit", exit_children_only)
    yield
    if os.getpid() != me:
        real_exit(99)


def child(entry: Callable[[], int | None], keep: tuple[int, ...] = ()) -> Child:
    return Child("tester", entry, keep, "ERROR")


def wait_dead(kid: Child, seconds: float = 5.0) -> None:
    assert supervisor.wait_exit(kid, time.monotonic() + seconds), "the child did not exit"


def divide_by_zero() -> None:
    """An entry that raises."""
    _ = 1 / 0


def read_one_byte(fd: int) -> Callable[[], None]:
    """An entry that lives until a byte comes on `fd`."""

    def entry() -> None:
        os.read(fd, 1)

    return entry


def test_a_child_that_returns_exits_ok_and_one_that_raises_exits_crashed() -> None:
    fine, broken = child(lambda: None), child(divide_by_zero)
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
        slow = child(read_one_byte(release_r))
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
        kid = child(read_one_byte(release_r))
        supervisor.spawn(kid, ())
        started = time.monotonic()
        assert not supervisor.wait_exit(kid, started + 0.2)
        assert 0.2 <= time.monotonic() - started < 0.9  # at it, not a second past it
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
    deaf_pid = deaf.pid
    time.sleep(0.2)  # let the stubborn one ignore SIGTERM before it comes
    started = time.monotonic()
    supervisor.stop([polite, deaf], time.monotonic() + 5)
    assert time.monotonic() - started < 0.8  # SIGKILL after the short grace, not the deadline
    assert polite.pid == deaf.pid == 0
    assert polite.exit_status == -signal.SIGTERM  # SIGTERM is restored to its default
    assert deaf.exit_status == -signal.SIGKILL  # waited for after the SIGKILL: reaped, no zombie
    with pytest.raises(ChildProcessError):
        os.waitpid(deaf_pid, os.WNOHANG)


def test_stop_and_reap_leave_a_gone_child_alone() -> None:
    kid = child(lambda: None)
    supervisor.spawn(kid, ())
    wait_dead(kid)
    supervisor.stop([kid], time.monotonic() + 1)  # already reaped: nothing to signal
    assert supervisor.reap([kid]) == []
    assert supervisor.wait_exit(kid, time.monotonic() + 1)  # it has exited: nothing to wait for


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def test_a_child_s_pidfd_is_readable_once_it_exits_and_closed_once_reaped() -> None:
    release_r, release_w = os.pipe()
    try:
        kid = child(read_one_byte(release_r))
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


def _no_polling(seconds: float) -> None:
    raise AssertionError("polled although the child has a pidfd")


def test_wait_exit_returns_as_the_child_exits_not_at_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kid = child(lambda: time.sleep(0.2))
    supervisor.spawn(kid, ())
    monkeypatch.setattr(time, "sleep", _no_polling)  # its pidfd wakes the wait
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


def test_exit_codes_are_the_conventional_ones() -> None:
    # Seen from outside (ps, a core's exit status): 0 for a clean end, EX_SOFTWARE for a crash.
    fine, broken = child(lambda: None), child(divide_by_zero)
    supervisor.spawn(fine, ())
    supervisor.spawn(broken, ())
    wait_dead(fine)
    wait_dead(broken)
    assert (fine.exit_status, broken.exit_status) == (0, os.EX_SOFTWARE)


def test_a_sender_out_of_drain_time_exits_with_the_code_main_knows_it_by() -> None:
    # EX_TEMPFAIL: data left to send (spooled), not a crash.
    from ext.sender import process as sender

    undrained = child(lambda: sender.EXIT_UNDRAINED)
    supervisor.spawn(undrained, ())
    wait_dead(undrained)
    assert undrained.exit_status == supervisor.EXIT_UNDRAINED == os.EX_TEMPFAIL


def test_a_child_reaped_elsewhere_counts_as_ended_cleanly() -> None:
    kid = child(lambda: None)
    supervisor.spawn(kid, ())
    pidfd = kid.exit_fd
    os.waitpid(kid.pid, 0)  # another wait took its status first
    assert supervisor.reap([kid]) == [kid]
    assert kid.pid == 0 and kid.exit_status == EXIT_OK and kid.exit_fd == -1
    with pytest.raises(OSError):
        os.fstat(pidfd)


def test_reap_looks_past_a_child_already_reaped() -> None:
    gone, dying = child(lambda: None), child(lambda: None)
    supervisor.spawn(gone, ())
    wait_dead(gone)
    supervisor.spawn(dying, ())
    assert select_readable(dying.exit_fd, 5.0)
    assert supervisor.reap([gone, dying]) == [dying]
    assert dying.pid == 0 and dying.exit_status == EXIT_OK


def select_readable(fd: int, seconds: float) -> bool:
    import select

    return bool(select.select([fd], [], [], seconds)[0])


def test_a_child_ignores_fds_to_close_that_are_closed_already() -> None:
    spare_r, spare_w = os.pipe()
    os.close(spare_r)
    os.close(spare_w)
    kid = child(lambda: None)
    supervisor.spawn(kid, close_fds=(spare_r, spare_w))
    wait_dead(kid)
    assert kid.exit_status == EXIT_OK  # not a crash on EBADF


def test_stop_gives_a_child_its_grace_to_end_by_itself() -> None:
    ready_r, ready_w = os.pipe()

    def tidy() -> None:
        # Ends cleanly a little after SIGTERM, well within the grace.
        def end_soon(signum: int, frame: object) -> None:
            time.sleep(0.02)
            os._exit(EXIT_OK)

        signal.signal(signal.SIGTERM, end_soon)
        os.write(ready_w, b"r")
        time.sleep(60)

    try:
        kid = child(tidy)
        supervisor.spawn(kid, ())
        assert select_readable(ready_r, 5.0)
        supervisor.stop([kid], time.monotonic() + 5)
        assert kid.pid == 0 and kid.exit_status == EXIT_OK  # not SIGKILLed
    finally:
        os.close(ready_r)
        os.close(ready_w)


@pytest.mark.parametrize("platform", ["kernel before 5.3", "no pidfd_open"])
def test_without_a_pidfd_a_child_is_watched_by_polling(
    monkeypatch: pytest.MonkeyPatch, platform: str,
) -> None:
    def no_pidfd(pid: int) -> int:
        raise OSError(38, "pidfd_open: not implemented")

    if platform == "no pidfd_open":
        monkeypatch.delattr(os, "pidfd_open")
    else:
        monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    kid = child(lambda: time.sleep(0.2))
    supervisor.spawn(kid, ())
    assert kid.exit_fd < 0 and supervisor.exit_fds([kid]) is None
    started = time.monotonic()
    assert supervisor.wait_exit(kid, started + 10)
    assert time.monotonic() - started < 0.9  # polled often, not every second
    assert kid.pid == 0 and kid.exit_status == EXIT_OK


def test_a_pidfd_that_is_fd_0_is_one_like_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    # Main's stdin may be closed, so a pidfd can be fd 0: it is waited on, not polled, and
    # closed once the child is reaped.
    saved_stdin = os.dup(0)
    try:
        kid = child(lambda: time.sleep(0.3))  # alive at wait_exit's first look
        supervisor.spawn(kid, ())
        os.dup2(kid.exit_fd, 0)
        os.close(kid.exit_fd)
        kid.exit_fd = 0
        assert supervisor.exit_fds([kid]) == [0]
        monkeypatch.setattr(time, "sleep", _no_polling)
        assert supervisor.wait_exit(kid, time.monotonic() + 10)
        assert kid.exit_fd == -1 and kid.exit_status == EXIT_OK
        with pytest.raises(OSError):
            os.fstat(0)  # closed with the reaping
    finally:
        os.dup2(saved_stdin, 0)
        os.close(saved_stdin)


def test_a_crashing_child_logs_what_escaped_its_entry() -> None:
    log_r, log_w = os.pipe()

    def crash() -> None:
        import logging

        # The handler configure_logging made writes to this test's captured stderr: read it here.
        logging.getLogger().handlers[0].setStream(os.fdopen(log_w, "w"))  # type: ignore[attr-defined]
        raise RuntimeError("the entry broke")

    try:
        kid = child(crash)
        supervisor.spawn(kid, ())
        wait_dead(kid)
        os.close(log_w)
        logged = os.read(log_r, 65_536).decode()
        assert kid.exit_status == EXIT_CRASHED
        assert "ERROR tester: tester process failed" in logged
        assert "RuntimeError: the entry broke" in logged  # with its traceback
    finally:
        os.close(log_r)


def test_stop_ends_a_child_reaped_elsewhere_during_its_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kid = child(lambda: time.sleep(60))
    supervisor.spawn(kid, ())
    pidfd = kid.exit_fd

    def reaped_behind_its_back(waited: Child, deadline: float) -> bool:
        os.kill(waited.pid, signal.SIGKILL)
        os.waitpid(waited.pid, 0)  # another wait took the status: the pid is no longer a child
        return False

    monkeypatch.setattr(supervisor, "wait_exit", reaped_behind_its_back)
    supervisor.stop([kid], time.monotonic() + 5)  # its SIGKILL and wait find nothing
    assert kid.pid == 0 and kid.exit_status is None and kid.exit_fd == -1
    with pytest.raises(OSError):
        os.fstat(pidfd)


def test_a_child_that_keeps_dying_at_its_start_is_held_back_longer_each_time() -> None:
    kid = child(divide_by_zero)
    held: list[float] = []
    for _ in range(5):
        assert supervisor.restart_due(kid)  # run at once, as the test does
        supervisor.spawn(kid, ())
        wait_dead(kid)
        assert supervisor.held_back(kid) == (kid.restart_at > 0)
        held.append(kid.restart_at and kid.restart_at - time.monotonic())
        kid.restart_at = 0.0
    assert held[:2] == [0.0, 0.0]  # the first exits in a row are restarted at once
    assert held[2:] == [pytest.approx(1.0, abs=0.1), pytest.approx(2.0, abs=0.1),
                        pytest.approx(4.0, abs=0.1)]


def test_a_child_that_lived_past_its_start_is_restarted_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "QUICK_EXIT_S", 0.05)
    def crash_later() -> None:
        time.sleep(0.1)
        divide_by_zero()

    kid = child(crash_later)
    kid.quick_exits = 7  # crashed at its start before; this one lives a while
    supervisor.spawn(kid, ())
    wait_dead(kid)
    assert kid.quick_exits == 0 and kid.restart_at == 0.0 and supervisor.restart_due(kid)


def test_stop_returns_by_its_deadline_though_a_killed_child_does_not_die(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A child in uninterruptible sleep (a hung NFS or EFS mount) takes no signal, SIGKILL
    # included, until the call returns: stop waited for it without bound after its SIGKILL,
    # and main outlived Lambda's shutdown deadline. Here its signals are lost on the way.
    import threading

    kid = child(lambda: time.sleep(60))
    supervisor.spawn(kid, ())
    pid, real_kill = kid.pid, os.kill

    def unheeded(target: int, signum: int) -> None:
        if target != pid:
            real_kill(target, signum)

    monkeypatch.setattr(os, "kill", unheeded)
    logged: list[tuple[str, str]] = []
    monkeypatch.setattr(diagnostics, "note", lambda level, text: logged.append((level, text)))
    returned = threading.Event()

    def stop() -> None:
        supervisor.stop([kid], time.monotonic() + 0.3)
        returned.set()

    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    try:
        assert returned.wait(10), "stop held its caller past its deadline"
        assert kid.pid == pid  # not reaped: main exits without it (the spool keeps its data)
        assert [level for level, text in logged if "SIGKILL" in text] == ["WARNING"]
    finally:
        real_kill(pid, signal.SIGKILL)  # ends a blocked wait too
        stopper.join(20)
        if kid.pid:
            os.waitpid(pid, 0)
        if kid.exit_fd >= 0:
            os.close(kid.exit_fd)


def test_stop_past_its_deadline_still_reaps_a_child_its_sigkill_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The usual case at a late shutdown: the SIGKILL ends the child within a millisecond, and
    # the short wait after it (within main's margin before Lambda's deadline) reaps it.
    monkeypatch.setattr(supervisor, "KILL_REAP_S", 5.0)  # a busy test machine may be slower

    def stubborn() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)

    kid = child(stubborn)
    supervisor.spawn(kid, ())
    time.sleep(0.2)  # let it ignore SIGTERM before it comes
    supervisor.stop([kid], time.monotonic() - 1)
    assert kid.pid == 0 and kid.exit_status == -signal.SIGKILL


def spin_forever() -> None:
    """An entry that keeps a CPU busy until it is killed."""
    while True:
        pass


def test_cpu_ticks_grow_while_a_child_works_and_not_while_it_is_stopped() -> None:
    kid = child(spin_forever)
    supervisor.spawn(kid, ())
    try:
        first = supervisor.cpu_ticks(kid)
        assert first is not None
        end = time.monotonic() + 10  # a tick is 10 ms of CPU; generous on a loaded machine
        while supervisor.cpu_ticks(kid) == first and time.monotonic() < end:
            time.sleep(0.01)
        assert (supervisor.cpu_ticks(kid) or 0) > first
        os.kill(kid.pid, signal.SIGSTOP)
        time.sleep(0.05)  # the stop takes effect
        stopped = supervisor.cpu_ticks(kid)
        time.sleep(0.1)
        assert supervisor.cpu_ticks(kid) == stopped
    finally:
        os.kill(kid.pid, signal.SIGKILL)  # not through supervisor: a spinner must never be left
        wait_dead(kid)


def test_cpu_ticks_of_a_child_gone_are_unknown() -> None:
    kid = child(divide_by_zero)
    supervisor.spawn(kid, ())
    pid = kid.pid
    wait_dead(kid)
    kid.pid = pid  # as a child whose pid went (reaped), or a /proc that cannot tell
    assert supervisor.cpu_ticks(kid) is None


class Clock:
    """A monotonic clock the test sets, standing for the `time` module in supervisor: a
    comparison at an exact instant is then exact. Sleeps (polling without a pidfd) are real."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(100.0)
    monkeypatch.setattr(supervisor, "time", fake)
    return fake


def exits_after(kid: Child, clock: Clock, lived: float) -> None:
    """Spawns `kid` (which exits at once) and reaps it `lived` seconds after its start, as the
    clock tells."""
    supervisor.spawn(kid, ())
    assert select_readable(kid.exit_fd, 5.0)
    clock.now += lived
    assert supervisor.reap([kid]) == [kid]


@pytest.mark.parametrize(("started", "lived", "quick"), [
    (100.0, 0.5, True),
    (100.0, 1.0, False),  # a second is a start that worked
    (100.0, 1.5, False),
    (100.0, 100.5, False),  # an exit past twice its start's time (as a remainder: 0.5 s)
])
def test_an_exit_within_a_second_of_the_start_is_a_quick_one(
    clock: Clock, started: float, lived: float, quick: bool,
) -> None:
    kid = child(lambda: None)
    kid.quick_exits = supervisor.QUICK_EXITS_FREE  # the next quick exit is held back
    clock.now = started
    exits_after(kid, clock, lived)
    if quick:
        assert kid.quick_exits == supervisor.QUICK_EXITS_FREE + 1
        assert supervisor.held_back(kid) and kid.restart_at == clock.now + 1.0
    else:
        assert kid.quick_exits == 0 and kid.restart_at == 0.0 and not supervisor.held_back(kid)
        assert supervisor.restart_due(kid)


def test_the_back_off_doubles_up_to_a_minute(clock: Clock) -> None:
    kid = child(lambda: None)
    kid.quick_exits = supervisor.QUICK_EXITS_FREE + 5  # held back 16 s at the last exit
    held = []
    for _ in range(3):
        exits_after(kid, clock, 0.1)
        held.append(kid.restart_at - clock.now)
        clock.now = kid.restart_at
    assert held == [32.0, 60.0, 60.0]


def test_a_held_back_child_is_due_at_the_end_of_its_back_off_not_before(clock: Clock) -> None:
    kid = child(lambda: None)
    kid.quick_exits = supervisor.QUICK_EXITS_FREE
    exits_after(kid, clock, 0.1)
    assert supervisor.held_back(kid) and kid.restart_at == clock.now + 1.0
    clock.now = kid.restart_at - 0.001
    assert not supervisor.restart_due(kid)
    clock.now = kid.restart_at  # the instant it ends
    assert supervisor.restart_due(kid)
    clock.now = kid.restart_at + 0.001
    assert supervisor.restart_due(kid)
    supervisor.spawn(kid, ())  # restarted: no longer held back, though restart_at stays
    try:
        assert not supervisor.held_back(kid)
    finally:
        wait_dead(kid)


def test_a_child_never_started_is_neither_held_back_nor_kept_waiting(clock: Clock) -> None:
    clock.now = 0.5  # soon after boot
    kid = child(lambda: None)
    assert not supervisor.held_back(kid)
    assert supervisor.restart_due(kid)


def test_stop_past_its_deadline_waits_for_the_killed_child_within_main_s_margin(
    clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At least the 100 ms a child of a throttled cgroup was measured to take to die after its
    # SIGKILL, and short enough that main still exits before Lambda's deadline.
    from ext.main import lifecycle

    kid = child(lambda: None)
    kid.pid = 4242  # never signalled: a stubborn child, still there after the grace
    signalled: list[int] = []
    reap_by: list[float] = []
    monkeypatch.setattr(supervisor, "_signal_child", lambda c, signum: signalled.append(signum))
    monkeypatch.setattr(supervisor, "wait_exit", lambda c, deadline: False)
    monkeypatch.setattr(supervisor, "_reap_killed", lambda c, deadline: reap_by.append(deadline))
    clock.now = 1000.0
    supervisor.stop([kid], clock.now - 1)
    assert signalled == [signal.SIGTERM, signal.SIGKILL]
    assert len(reap_by) == 1
    assert 0.1 <= reap_by[0] - clock.now < lifecycle.SHUTDOWN_MARGIN_S
    reap_by.clear()
    supervisor.stop([kid], clock.now + 3)  # before its deadline: waits up to it
    assert reap_by == [clock.now + 3]


def test_cpu_ticks_are_the_user_and_system_time_of_proc_stat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime ...; the name may hold spaces and parentheses.
    stat = (b"4242 (a (b) c) R 1 4242 4242 0 -1 4194304 120 7 3 9 700 30 5000 6000 20 0 1 0 "
            b"12345 10000000 500 18446744073709551615\n")
    opened: list[str] = []

    def fake_open(path: str, mode: str) -> io.BytesIO:
        opened.append(path)
        return io.BytesIO(stat)

    monkeypatch.setattr(supervisor, "open", fake_open, raising=False)
    kid = child(lambda: None)
    kid.pid = 4242
    assert supervisor.cpu_ticks(kid) == 700 + 30  # not its children's 5000 and 6000
    assert opened == ["/proc/4242/stat"]
