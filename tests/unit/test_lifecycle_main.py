"""The main process's loop in process: events, flush waits, shutdown and restarts, with the
children's supervisor, the clock and `select` replaced by stand-ins the test drives (no fork)."""

from __future__ import annotations

import _socket
import functools
import io
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ext import control, diagnostics, errors, flush_policy
from ext.flush_policy import MIN_GAPS, RELIABLE_GAPS, reaction_s
from ext.main import lifecycle, supervisor, telemetry_api
from tests.unit.test_lifecycle import ENV, FakeApi, Main

EPOCH = 1_800_000_000.0


class Clock:
    """Stands in for the `time` module main reads: both clocks move when the test says."""

    def __init__(self) -> None:
        self.now = 50.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return EPOCH + self.now


class Poll:
    """Stands in for `select`: a wait passes its whole timeout on the test clock, unless an
    answer is written to main's status pipe (then it is ready at once). A wait without a
    timeout (None, recorded as infinite) must be ended by an fd made readable, as a real one
    would never end."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.timeouts: list[float] = []
        self.script: dict[int, list[control.Message]] = {}  # wait number -> answers sent then
        self.actions: dict[int, Callable[[], object]] = {}  # wait number -> what happens then
        self.status_w = -1

    def select(self, read: list[int], write: list[int], error: list[int],
               timeout: float | None) -> tuple[list[int], list[int], list[int]]:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be non-negative")  # as select.select says
        for message in self.script.pop(len(self.timeouts), []):
            control.send(self.status_w, message)
        self.actions.pop(len(self.timeouts), lambda: None)()
        self.timeouts.append(math.inf if timeout is None else timeout)
        ready = [fd for fd in read if _readable(fd)]
        if not ready:
            assert timeout is not None, "a wait that nothing ends: main would hang"
            self.clock.now += timeout
        return ready, [], []


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


class Children:
    """Stands in for ext/main/supervisor.py: records spawns and stops; a child dies when told."""

    def __init__(self) -> None:
        self.spawned: list[str] = []
        self.closing: list[tuple[int, ...]] = []  # the fds each spawned child was to close
        self.stopped: list[tuple[list[str], float]] = []
        self.dying: list[str] = []  # roles reaped as dead at the next reap
        self.exits: list[tuple[bool, int]] = []  # wait_exit answers: (exited, exit status)
        self.waited_until: list[float] = []  # each wait_exit's deadline
        self.while_waiting: Callable[[], object] = lambda: None  # what a child does meanwhile
        self.on_spawn: Callable[[], object] = lambda: None  # what a new child does at once
        self.killed: list[str] = []  # roles SIGKILLed, in order
        self.unkillable = False  # a SIGKILL ends no child (uninterruptible sleep)
        self.cpu: list[int | None] = []  # cpu_ticks answers, in turn; then 0: it uses none
        self.next_pid = 1000

    def spawn(self, child: supervisor.Child, close_fds: tuple[int, ...]) -> None:
        self.next_pid += 1
        child.pid, child.exit_status = self.next_pid, None
        self.spawned.append(child.role)
        self.closing.append(close_fds)
        self.on_spawn()

    def reap(self, children: list[supervisor.Child]) -> list[supervisor.Child]:
        dead = [c for c in children if c.role in self.dying]
        for child in dead:
            self.dying.remove(child.role)
            child.pid, child.exit_status, child.exit_fd = 0, supervisor.EXIT_CRASHED, -1
        return dead

    def wait_exit(self, child: supervisor.Child, deadline: float) -> bool:
        self.waited_until.append(deadline)
        self.while_waiting()
        exited, status = self.exits.pop(0) if self.exits else (False, 0)
        if exited:
            child.pid, child.exit_status = 0, status
        return exited

    def cpu_ticks(self, child: supervisor.Child) -> int | None:
        return self.cpu.pop(0) if self.cpu else 0

    def stop(self, children: list[supervisor.Child], deadline: float) -> None:
        self.stopped.append(([c.role for c in children], deadline))

    def kill(self, child: supervisor.Child) -> None:
        self.killed.append(child.role)
        if not self.unkillable:
            self.dying.append(child.role)  # reaped as dead at the next reap


class Notes:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def note(self, level: str, message: str) -> None:
        self.lines.append((level, message))

    def levels(self) -> list[str]:
        return [level for level, _ in self.lines]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(lifecycle, "time", made)
    return made


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Children:
    made = Children()
    for name in ("spawn", "reap", "wait_exit", "stop", "cpu_ticks"):
        monkeypatch.setattr(supervisor, name, getattr(made, name))
    monkeypatch.setattr(supervisor, "kill", made.kill, raising=False)
    # No real child here: the kernel's "a child exited" stands in as "look at them".
    monkeypatch.setattr(lifecycle, "_a_child_exited", lambda: True)
    return made


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> Notes:
    made = Notes()
    monkeypatch.setattr(diagnostics, "note", made.note)
    return made


def _main(budget_ms: int = 150, **env: str) -> Main:
    made = Main(budget_ms, **env)
    made.loop.listener.pid = made.loop.sender.pid = 1  # as if started
    return made


@pytest.fixture
def main(clock: Clock, children: Children, notes: Notes,
         request: pytest.FixtureRequest) -> Iterator[Main]:
    made = _main(**getattr(request, "param", {}))
    yield made
    made.close()


@pytest.fixture
def poll(main: Main, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Poll:
    made = Poll(clock)
    made.status_w = main.loop.status_w
    monkeypatch.setattr(lifecycle, "select", made)
    return made


def sent(main: Main) -> list[control.Message]:
    """What main told the sender."""
    return main.inbox.read()


def noted(main: Main) -> list[control.Message]:
    """What main noted for the sender on the pipe that does not wake it."""
    return main.noted.read()


# -- answers from the sender --------------------------------------------------------------------


def test_answers_are_kept_per_invocation_and_delivered_wins(main: Main) -> None:
    for message in (control.Failing("a"), control.Delivered("a"), control.Delivered("b"),
                    control.Failing("b"), control.Running("c"), control.Ready()):
        control.send(main.loop.status_w, message)
    main.loop.adaptive.decide("a", 1.0)
    main.loop._read_answers()
    assert main.loop.answers == {"a": True, "b": True}
    assert main.loop.running == {"c"}
    assert main.loop.sender_started
    assert "a" not in main.loop.adaptive.undelivered  # the adaptive policy hears of it too


# -- telling the sender, restarting children ----------------------------------------------------


def test_a_full_control_pipe_of_a_dead_sender_is_retried_once_it_is_restarted(
    main: Main, children: Children,
) -> None:
    while control.send(main.loop.ctl_w, control.Flush("filler")):
        pass
    children.dying.append("sender")
    children.on_spawn = lambda: sent(main)  # the new sender reads what the dead one left
    assert main.loop._tell_sender(control.Flush("r1"))
    assert sent(main) == [control.Flush("r1")]
    assert main.loop.sender.restarts == 1


def test_a_full_control_pipe_of_a_live_sender_is_given_up_with_a_warning(
    main: Main, notes: Notes,
) -> None:
    while control.send(main.loop.ctl_w, control.Flush("filler")):
        pass
    assert not main.loop._tell_sender(control.Flush("r1"))
    assert notes.levels() == ["WARNING"]


def sender_started(main: Main) -> bool:
    """Whether main counts the sender as started (a function: mypy would narrow the attribute)."""
    return main.loop.sender_started


def test_a_restarted_sender_must_say_ready_again_and_the_rhythm_is_relearnt(
    main: Main, children: Children,
) -> None:
    main.loop.sender_started = True
    for n in range(5):
        main.loop.adaptive.decide(f"r{n}", float(n))
    children.dying.append("listener")
    main.loop._restart_dead_children()
    assert (children.spawned, main.loop.listener.restarts) == (["listener"], 1)
    assert sender_started(main) is True  # the listener's restart does not concern the sender
    assert not main.loop.adaptive.decide("r5", 5.0).expected_gap_s  # warming up again
    children.dying.append("sender")
    assert main.loop._sender_restarted()
    assert sender_started(main) is False
    assert (children.spawned, main.loop.sender.restarts) == (["listener", "sender"], 1)
    assert not main.loop._sender_restarted()  # alive


# -- the event loop -----------------------------------------------------------------------------


def _serve(main: Main, *bodies: bytes,
           answers: list[bool | None] | None = None) -> tuple[int, list[tuple[str, str, float]]]:
    """Serves `bodies`; each flush ends with the next of `answers` (Delivered, Failing, or none
    by the end of the wait)."""
    calls: list[tuple[str, str, float]] = []
    answers = list(answers or [])

    def flush_invocation(request_id: str, deadline: float, ended: bool = False,
                         ask_late: bool = False, zero_budget_s: float = 0.0) -> None:
        calls.append(("flush" if ask_late else "flush, asking at once", request_id, deadline))
        answer = answers.pop(0) if answers else None
        main.loop.answers.clear()
        if answer is not None:
            main.loop.answers[request_id] = answer

    main.loop.api.events = list(bodies)  # type: ignore[attr-defined]
    main.loop.flush_invocation = flush_invocation  # type: ignore[method-assign]
    main.loop.adapt = (  # type: ignore[method-assign]
        lambda request_id, deadline: calls.append(("adapt", request_id, deadline)))
    main.loop.shutdown = (  # type: ignore[method-assign]
        lambda deadline_ms, reason: calls.append(("shutdown", reason, deadline_ms)))
    return main.loop.serve(), calls


INVOKE = b'{"eventType":"INVOKE","requestId":"r1","deadlineMs":1800000060500}'
NO_ID = b'{"eventType":"INVOKE","deadlineMs":1800000060000}'
SHUTDOWN = b'{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1800000002000}'


@pytest.mark.parametrize(("init_s", "warned"),
                         [(8.5, True), (8.4, False), (2.0, False), (None, False)])
def test_the_first_invoke_warns_when_the_timeout_leaves_no_room_to_initialise_again(
    main: Main, clock: Clock, notes: Notes, init_s: float | None, warned: bool,
) -> None:
    # After a timeout or a crash the next invocation holds the init, within its timeout: at
    # 128 MB a 2 s timeout against a 2.6 s init timed out every invocation after the first reset.
    clock.now = 50.0  # the INVOKE's deadline is 10.5 s away: room for an init up to 8.4 s
    main.loop.init_s = init_s
    _serve(main, INVOKE, INVOKE, SHUTDOWN)
    found = [text for level, text in notes.lines if "room to initialise" in text]
    assert len(found) == (1 if warned else 0)  # at the first INVOKE only
    if warned:
        assert "(10.5 s)" in found[0] and f"({init_s} s here)" in found[0]
        assert "raise the timeout to 18 s or more" in found[0]
    assert main.loop.init_s is None


def test_the_age_of_main_is_from_its_start_in_clock_ticks_to_now_on_the_boot_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stat = b"4242 (python3 (odd) name) S " + b" ".join(b"0" for _ in range(18)) + b" 12345 99"
    monkeypatch.setattr(lifecycle, "open", lambda path, mode: io.BytesIO(stat), raising=False)
    monkeypatch.setattr(time, "clock_gettime", lambda clock: 200.0)
    monkeypatch.setattr(os, "sysconf", lambda name: 100)
    assert lifecycle._age_s() == pytest.approx(200.0 - 123.45)  # started 123.45 s after boot


@pytest.mark.parametrize(("env", "measured"), [
    ({}, True),
    # A reset restores the snapshot: no init to fit in an invocation, nothing to warn of.
    ({"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}, False),
])
def test_main_measures_its_init_unless_snapstart_restores_it(
    clock: Clock, children: Children, notes: Notes, poll: Poll,
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], measured: bool,
) -> None:
    monkeypatch.setattr(telemetry_api, "subscribe", lambda api, body: True)
    monkeypatch.setattr(lifecycle, "preload_children", lambda: None)
    monkeypatch.setattr(lifecycle, "_age_s", lambda: 1.5)
    made = _main(150, **env)
    try:
        poll.status_w = made.loop.status_w
        poll.script = {0: [control.Ready()]}
        made.loop.start()
        assert made.loop.init_s == (1.5 if measured else None)
    finally:
        made.close()


def test_the_age_of_main_counts_from_its_process_start() -> None:
    import subprocess
    import sys

    script = ("import time; time.sleep(0.5); from ext.main import lifecycle; "
              "print(lifecycle._age_s())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True, cwd=Path(__file__).resolve().parents[2])
    assert 0.5 <= float(done.stdout) < 30  # the sleep, the interpreter's start and imports


@pytest.mark.parametrize(("flush", "expected"), [
    ("sync", [("flush", "r1", 1_800_000_060.5)]),
    ("adaptive", [("adapt", "r1", 1_800_000_060.5)]),
    ("background", []),
])
def test_each_invocation_is_flushed_as_the_strategy_says_until_shutdown(
    clock: Clock, children: Children, notes: Notes, flush: str,
    expected: list[tuple[str, str, float]],
) -> None:
    made = _main(SPLUNK_FLUSH=flush)
    try:
        code, calls = _serve(made, INVOKE, NO_ID, SHUTDOWN, INVOKE)
        assert code == 0
        assert calls == [*expected, ("shutdown", "spindown", 1_800_000_002_000)]
        assert made.loop.last_request == "r1"
        assert made.loop.api.events == [INVOKE]  # type: ignore[attr-defined]
    finally:
        made.close()


def test_sync_asks_late_only_after_a_wait_that_ended_delivered(
    clock: Clock, children: Children, notes: Notes,
) -> None:
    made = _main(SPLUNK_FLUSH="sync")
    try:
        _, calls = _serve(made, INVOKE, INVOKE, INVOKE, INVOKE, INVOKE, SHUTDOWN,
                          answers=[True, False, True, None, True])
        assert [kind for kind, _, _ in calls] == [
            "flush", "flush",  # the first asks late; Delivered: so does the next
            "flush, asking at once",  # after a Failing
            "flush",  # after a Delivered again
            "flush, asking at once",  # after a wait that ran out without an answer
            "shutdown"]
    finally:
        made.close()


def test_children_found_dead_at_an_event_are_restarted(main: Main, children: Children) -> None:
    children.dying.extend(["listener", "sender"])
    _serve(main, SHUTDOWN)
    assert sorted(children.spawned) == ["listener", "sender"]


def test_children_are_reaped_only_once_one_has_exited(
    main: Main, children: Children, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One system call at each event says whether any child exited; reap (one per child) only then.
    reaps: list[list[str]] = []
    real_reap = children.reap

    def reap(kids: list[supervisor.Child]) -> list[supervisor.Child]:
        reaps.append([kid.role for kid in kids])
        return real_reap(kids)

    monkeypatch.setattr(supervisor, "reap", reap)
    monkeypatch.setattr(lifecycle, "_a_child_exited", lambda: False)
    main.loop._restart_dead_children()
    assert reaps == []
    monkeypatch.setattr(lifecycle, "_a_child_exited", lambda: True)
    children.dying.append("sender")
    main.loop._restart_dead_children()
    assert reaps == [["listener", "sender"]]
    assert children.spawned == ["sender"]


def _child_exit_checks() -> None:
    """In a process of its own (no other child of the test process around): True once a child
    has exited, until it is reaped; False while the children live; True with no child at all."""
    import os

    release_r, release_w = os.pipe()
    alive = os.fork()
    if not alive:
        os.close(release_w)  # a checker that dies (its alarm) releases it too: end of file
        os.read(release_r, 1)
        os._exit(0)
    try:
        assert not lifecycle._a_child_exited()
        quick = os.fork()
        if not quick:
            os._exit(0)
        deadline = time.monotonic() + 5
        while not lifecycle._a_child_exited() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert lifecycle._a_child_exited()  # and it is still there to be reaped
        assert os.waitpid(quick, os.WNOHANG)[0] == quick
        assert not lifecycle._a_child_exited()  # the other one lives
    finally:
        os.write(release_w, b"x")  # never leave it behind
        os.waitpid(alive, 0)
    assert lifecycle._a_child_exited()  # none at all: supervisor.reap takes a gone one as dead


def test_a_child_exited_says_so_until_it_is_reaped() -> None:
    import os

    checker = os.fork()
    if not checker:
        code = 1
        try:
            # A waitid that blocks (a mutant without WNOHANG) would hold it, and its child, past
            # the test's own timeout, which ends only this process: SIGALRM ends it first.
            signal.alarm(10)
            _child_exit_checks()
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(checker, 0)[1]) == 0


# -- shutdown -----------------------------------------------------------------------------------


def test_shutdown_hands_the_sender_the_deadline_less_the_margin_and_the_last_request(
    main: Main, clock: Clock, children: Children, notes: Notes,
) -> None:
    main.loop.last_request = "r9"
    children.exits = [(True, supervisor.EXIT_OK)]
    main.loop.shutdown(round((EPOCH + clock.now + 2.5) * 1000), "spindown")  # whole ms
    [drain] = sent(main)
    assert drain == control.Drain(round((EPOCH + clock.now + 2.35) * 1000), "r9")
    # The intake first, then the sender (drained: nothing came in after its last look).
    assert [roles for roles, _ in children.stopped] == [["listener"], ["sender"]]
    assert [d for _, d in children.stopped] == [pytest.approx(clock.now + 2.35)] * 2
    assert notes.lines == []  # drained: nothing to warn about


@pytest.mark.parametrize("main", [{"SPLUNK_TELEMETRY_TYPES": "function,extension",
                                   "SPLUNK_FLUSH": "sync"}], indirect=True)
def test_without_platform_events_no_invocation_and_no_shutdown_waits_for_its_end(
    main: Main, poll: Poll, clock: Clock, children: Children, notes: Notes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No runtimeDone or report can come: waiting for one cost a whole budget per invocation
    # and most of the shutdown window.
    monkeypatch.setattr(telemetry_api, "subscribe", lambda api, body: True)
    monkeypatch.setattr(lifecycle, "preload_children", lambda: None)
    poll.script = {0: [control.Ready()]}
    main.loop.start()
    [(level, notice)] = notes.lines
    assert level == "WARNING" and "SPLUNK_FLUSH=sync" in notice and "background" in notice
    main.loop.api.events = [INVOKE, INVOKE, SHUTDOWN]  # type: ignore[attr-defined]
    children.exits = [(True, supervisor.EXIT_OK)]
    started = clock.now
    assert main.loop.serve() == 0
    assert main.loop.last_request == "r1"
    [drain] = sent(main)
    assert isinstance(drain, control.Drain) and drain.request_id == ""
    assert clock.now == started  # no wait at any invocation


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "sync"}], indirect=True)
def test_without_a_telemetry_api_no_invocation_and_no_shutdown_waits_for_telemetry(
    main: Main, poll: Poll, clock: Clock, children: Children, notes: Notes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry_api, "subscribe", lambda api, body: False)  # 202
    monkeypatch.setattr(lifecycle, "preload_children", lambda: None)
    poll.script = {0: [control.Ready()]}
    main.loop.start()
    main.loop.api.events = [INVOKE, SHUTDOWN]  # type: ignore[attr-defined]
    children.exits = [(True, supervisor.EXIT_OK)]
    started = clock.now
    assert main.loop.serve() == 0
    [drain] = sent(main)
    assert isinstance(drain, control.Drain) and drain.request_id == ""
    assert clock.now == started
    assert notes.levels() == ["WARNING"]


def test_what_came_in_after_the_drain_s_last_look_is_sent_by_a_new_sender(
    main: Main, clock: Clock, children: Children, notes: Notes, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The listener answered 2xx to a batch after the sender's last look: stopped first, it takes
    # in no more, and a sender started again sends what the spool holds, awaiting no report.
    main.loop.last_request = "r9"
    looked: list[int] = []  # how many stops had come when main looked at the spool

    def unsent(config: object) -> bool:
        looked.append(len(children.stopped))
        return len(looked) == 1  # the late batch; the new sender sent it

    monkeypatch.setattr(lifecycle, "_unsent", unsent)
    children.exits = [(True, supervisor.EXIT_OK), (True, supervisor.EXIT_OK)]
    main.loop.shutdown(round((EPOCH + clock.now + 2.5) * 1000), "spindown")
    deadline_ms = round((EPOCH + clock.now + 2.35) * 1000)
    assert sent(main) == [control.Drain(deadline_ms, "r9"), control.Drain(deadline_ms, "")]
    assert looked == [1]  # once, after the listener's stop
    assert children.spawned == ["sender"]
    assert main.loop.sender.restarts == 0  # not a crash
    assert [roles for roles, _ in children.stopped] == [["listener"], ["sender"]]
    assert notes.levels() == ["INFO"]


def test_the_spool_is_looked_at_with_time_left_whatever_the_clock_s_origin(
    main: Main, clock: Clock, children: Children, monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock.now = 1.0  # right after boot: the time left is a difference (1.05 s), not a ratio
    monkeypatch.setattr(lifecycle, "_unsent", lambda config: not children.spawned)
    children.exits = [(True, supervisor.EXIT_OK), (True, supervisor.EXIT_OK)]
    main.loop.shutdown(round((EPOCH + clock.now + 1.2) * 1000), "spindown")
    assert children.spawned == ["sender"]


@pytest.mark.parametrize(("exits", "left_s", "spawned"), [
    ([(True, supervisor.EXIT_CRASHED), (False, 0)], 2.5, ["sender"]),  # still at it: the end
    ([(True, supervisor.EXIT_OK)], 0.24, []),  # drained, with too little time to send more
])
def test_the_spool_is_not_looked_at_after_an_unfinished_drain_or_without_time_to_send(
    main: Main, clock: Clock, children: Children, monkeypatch: pytest.MonkeyPatch,
    exits: list[tuple[bool, int]], left_s: float, spawned: list[str],
) -> None:
    monkeypatch.setattr(lifecycle, "_unsent", lambda config: pytest.fail("looked"))
    children.exits = exits
    main.loop.shutdown(round((EPOCH + clock.now + left_s) * 1000), "spindown")
    assert children.spawned == spawned


@pytest.mark.parametrize("where", ["open", "read"])
def test_a_spool_that_cannot_be_read_is_taken_as_holding_nothing_to_send(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str,
) -> None:
    from ext import config as config_module
    from ext.spool import reader as reader_module

    class Failing(reader_module.SpoolReader):
        def __init__(self, directory: str) -> None:
            if where == "open":
                raise OSError(5, "I/O error")
            super().__init__(directory)

        def read(self, max_records: int, max_bytes: int) -> list[object]:  # type: ignore[override]
            raise OSError(5, "I/O error")

    monkeypatch.setattr(reader_module, "SpoolReader", Failing)
    cfg = config_module.load({**ENV, "SPLUNK_SPOOL_DIR": str(tmp_path / "spool")})
    assert lifecycle._unsent(cfg) is False


def test_unsent_is_what_a_sender_would_read(tmp_path: Path) -> None:
    from ext import config as config_module
    from ext.spool.reader import SpoolReader
    from ext.spool.writer import SpoolWriter

    spool = tmp_path / "spool"
    cfg = config_module.load({**ENV, "SPLUNK_SPOOL_DIR": str(spool)})
    assert not lifecycle._unsent(cfg)  # none yet
    writer = SpoolWriter(spool, max_bytes=2**20, segment_bytes=2**17)
    writer.append(b'[{"type":"function","record":"late"}]', 1)
    assert lifecycle._unsent(cfg)
    assert lifecycle._unsent(cfg)  # looking commits nothing
    reader = SpoolReader(spool)
    [record] = reader.read(max_records=10, max_bytes=2**20)
    reader.commit(record.seq)
    reader.close()
    assert not lifecycle._unsent(cfg)
    writer.close()


def test_shutdown_past_its_deadline_still_asks_for_a_drain_now(
    main: Main, clock: Clock, children: Children,
) -> None:
    children.exits = [(True, supervisor.EXIT_OK)]
    main.loop.shutdown((EPOCH + clock.now - 1.0) * 1000, "timeout")
    assert sent(main) == [control.Drain(round((EPOCH + clock.now) * 1000), "")]
    assert children.stopped == [(["listener"], clock.now), (["sender"], clock.now)]


@pytest.mark.parametrize("status", [supervisor.EXIT_CRASHED, -9])  # an exception; SIGKILL
def test_a_sender_that_crashes_while_draining_is_restarted_and_asked_again(
    main: Main, clock: Clock, children: Children, notes: Notes, status: int,
) -> None:
    clock.now = 1.0  # right after boot: the time left is a difference, whatever the origin
    children.exits = [(True, status), (True, supervisor.EXIT_OK)]
    main.loop.shutdown((EPOCH + clock.now + 2.2) * 1000, "spindown")
    assert len(sent(main)) == 2
    assert children.spawned == ["sender"]
    assert "WARNING" not in notes.levels()


def test_a_sender_that_crashes_too_late_to_restart_is_left_with_a_warning(
    main: Main, clock: Clock, children: Children, notes: Notes,
) -> None:
    children.exits = [(True, supervisor.EXIT_CRASHED)]
    main.loop.shutdown((EPOCH + clock.now + 0.15 + 0.099) * 1000, "spindown")
    assert children.spawned == []  # 99 ms left: no time to start another
    assert notes.levels() == ["WARNING"]


def test_a_sender_that_crashes_while_draining_and_is_held_back_is_asked_nothing_more(
    main: Main, clock: Clock, children: Children, notes: Notes, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It fails at every start (its back-off not over): the spool keeps the rest, and main
    # neither asks a dead sender to drain again nor tries it again and again to the deadline.
    monkeypatch.setattr(supervisor, "restart_due", lambda child: False)
    children.exits = [(True, supervisor.EXIT_CRASHED)] * 5
    main.loop.shutdown((EPOCH + clock.now + 2.0) * 1000, "spindown")
    assert len(sent(main)) == 1 and children.spawned == []
    assert len(children.exits) == 4  # waited for once
    assert notes.levels() == ["ERROR", "WARNING"]  # not restarted; not drained
    assert len(children.stopped) == 2  # the listener, then the sender


def test_a_sender_still_draining_at_the_deadline_is_stopped_with_a_warning(
    main: Main, clock: Clock, children: Children, notes: Notes,
) -> None:
    children.exits = [(False, 0)]
    main.loop.shutdown((EPOCH + clock.now + 2.0) * 1000, "spindown")
    assert children.spawned == []
    assert notes.levels() == ["WARNING"]
    assert len(children.stopped) == 2  # the listener, then the sender


def test_a_sender_that_ran_out_of_drain_time_is_warned_about_not_restarted(
    main: Main, clock: Clock, children: Children, notes: Notes, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ran_out(child: supervisor.Child, deadline: float) -> bool:
        clock.now = deadline  # it exits at the drain deadline, data left
        child.pid, child.exit_status = 0, supervisor.EXIT_UNDRAINED
        return True

    monkeypatch.setattr(supervisor, "wait_exit", ran_out)
    main.loop.shutdown((EPOCH + clock.now + 2.0) * 1000, "spindown")
    assert children.spawned == []
    assert notes.levels() == ["WARNING"]  # "deadline reached with events possibly still spooled"


def test_shutdown_with_a_sender_that_takes_no_message_stops_at_once(
    main: Main, clock: Clock, children: Children, notes: Notes,
) -> None:
    while control.send(main.loop.ctl_w, control.Flush("filler")):
        pass
    main.loop.shutdown((EPOCH + clock.now + 2.0) * 1000, "spindown")
    assert notes.levels() == ["WARNING", "WARNING"]  # not taken; not drained
    assert len(children.stopped) == 2  # the listener, then the sender


def test_a_sender_hung_before_shutdown_is_killed_and_a_new_one_drains_in_the_window_left(
    main: Main, clock: Clock, children: Children, notes: Notes,
) -> None:
    # It hung shortly before SHUTDOWN (under background, before a probe could judge it): it
    # never read the Drain, and all it had not committed stayed spooled, lost with the
    # environment.
    control.send(main.loop.status_w, control.Ready())  # it had started
    main.loop.last_request = "r9"
    children.exits = [(False, 0), (True, -signal.SIGKILL), (True, supervisor.EXIT_OK)]
    main.loop.shutdown(round((EPOCH + clock.now + 2.0) * 1000), "spindown")
    assert children.killed == ["sender"] and children.spawned == ["sender"]
    assert main.loop.sender.hangs == 1 and main.loop.sender.restarts == 1
    [warning] = _hung(notes)
    assert "SIGKILL" in warning and "Drain" in warning
    # The new one is asked with the same deadline (epoch ms: what is left of the window), and
    # is not judged again (it is starting): waited for until the window's end less the margin
    drain = control.Drain(round((EPOCH + clock.now + 1.85) * 1000), "r9")
    assert sent(main) == [drain, drain]
    end = clock.now + 1.85
    assert children.waited_until == [clock.now + lifecycle.DRAIN_READ_S, end, end]
    assert children.stopped == [(["listener"], end), (["sender"], end)]
    assert "WARNING" not in [level for level, line in notes.lines if line != warning]  # drained


def _reads_its_drain(main: Main) -> None:
    sent(main)


def _speaks(main: Main) -> None:
    control.send(main.loop.status_w, control.Failing("r9"))


@pytest.mark.parametrize("meanwhile", [_reads_its_drain, _speaks, None])
def test_a_sender_that_reads_its_drain_late_speaks_or_is_starting_is_not_killed(
    main: Main, clock: Clock, children: Children, notes: Notes,
    meanwhile: Callable[[Main], None] | None,
) -> None:
    # A long pass (a 128 MB CPU share) reads the Drain late, or answers meanwhile; a sender
    # that has not said Ready is still starting: none is hung.
    if meanwhile is not None:
        control.send(main.loop.status_w, control.Ready())
        children.while_waiting = functools.partial(meanwhile, main)
    children.exits = [(False, 0), (True, supervisor.EXIT_OK)]
    main.loop.shutdown(round((EPOCH + clock.now + 2.0) * 1000), "spindown")
    assert children.killed == [] and children.spawned == [] and _hung(notes) == []


@pytest.mark.parametrize(("cpu", "killed"), [
    ([100, 104], []),
    ([None, None], ["sender"]),
    # Hung after an hour's work: two reads of /proc, two int objects of one value
    ([int("360000"), int("360000")], ["sender"]),
], ids=["busy", "unknown", "idle"])
def test_a_sender_silent_at_shutdown_but_using_cpu_is_not_killed(
    main: Main, clock: Clock, children: Children, notes: Notes, cpu: list[int | None],
    killed: list[str],
) -> None:
    # A pass over a backlog at a 128 MB CPU share can outlast DRAIN_READ_S without a word; it
    # uses CPU meanwhile, which a hung sender (stopped, deadlocked) does not. Where /proc
    # cannot tell, silence alone judges, as before.
    control.send(main.loop.status_w, control.Ready())
    children.cpu = list(cpu)
    children.exits = [(False, 0), (True, supervisor.EXIT_OK)]
    main.loop.shutdown(round((EPOCH + clock.now + 2.0) * 1000), "spindown")
    assert children.killed == killed


@pytest.mark.parametrize("main", [{"budget_ms": 900}], indirect=True)
def test_a_sender_s_drain_is_judged_no_sooner_than_a_request_on_its_thread_may_take(
    main: Main, clock: Clock, children: Children, notes: Notes,
) -> None:
    # A request on the sender's own thread (courier.deliver_now) may hold it up to the flush
    # budget before it reads its pipe again: a slow HEC then is not a hang.
    control.send(main.loop.status_w, control.Ready())
    children.exits = [(False, 0), (True, supervisor.EXIT_OK)]
    main.loop.shutdown(round((EPOCH + clock.now + 2.0) * 1000), "spindown")
    assert children.waited_until[0] == pytest.approx(clock.now + 0.9 + lifecycle.INLINE_SLACK_S)


def test_a_sender_is_not_judged_at_a_shutdown_too_short_to_start_another(
    main: Main, clock: Clock, children: Children, notes: Notes,
) -> None:
    control.send(main.loop.status_w, control.Ready())
    main.loop.shutdown(round((EPOCH + clock.now + 0.15 + 0.4) * 1000), "timeout")
    assert children.killed == [] and _hung(notes) == []
    assert children.waited_until == [pytest.approx(clock.now + 0.4)]


# -- how long a flush waits ---------------------------------------------------------------------


BUDGET_S = 0.15 - reaction_s(0.15)  # 150 ms less main's own reaction (15 ms)


def test_a_silent_sender_is_waited_for_the_budget_in_checks(main: Main, poll: Poll) -> None:
    poll.clock.now = 0.04  # right after boot: the time left is a difference, whatever the origin
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60)
    assert sent(main) == [control.Flush("rid")]
    assert poll.timeouts == [0.1, pytest.approx(BUDGET_S - 0.1)]  # looking at the children


@pytest.fixture
def pidfds(main: Main) -> Iterator[dict[str, int]]:
    """Pipes stand in for the children's pidfds: writing to one is that child's exit."""
    ends: dict[str, int] = {}
    for child in (main.loop.listener, main.loop.sender):
        child.exit_fd, ends[child.role] = os.pipe()
    yield ends
    for child in (main.loop.listener, main.loop.sender):
        if child.exit_fd >= 0:
            os.close(child.exit_fd)
            child.exit_fd = -1
    for fd in ends.values():
        os.close(fd)


def test_with_the_children_s_pidfds_a_silent_sender_is_waited_for_in_one_wait(
    main: Main, poll: Poll, pidfds: dict[str, int],
) -> None:
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60)
    assert poll.timeouts == [pytest.approx(BUDGET_S)]  # no look at the children every 0.1 s


def death(role: str, children: Children, pidfds: dict[str, int]) -> Callable[[], None]:
    """What makes `role` die: reaped as dead, and its pidfd readable."""
    def dies() -> None:
        children.dying.append(role)
        os.write(pidfds[role], b"x")

    return dies


def test_a_sender_s_death_ends_the_wait_at_once_and_it_is_asked_again(
    main: Main, poll: Poll, children: Children, pidfds: dict[str, int],
) -> None:
    poll.actions = {0: death("sender", children, pidfds)}
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60)
    assert sent(main) == [control.Flush("rid"), control.Flush("rid")]
    assert children.spawned == ["sender"]
    # Woken by the death (no time passed), then, the new sender without a pidfd here, polled.
    assert poll.timeouts == [pytest.approx(BUDGET_S), 0.1, pytest.approx(BUDGET_S - 0.1)]


def test_a_listener_s_death_ends_a_running_wait_at_once(
    main: Main, poll: Poll, children: Children, pidfds: dict[str, int],
) -> None:
    poll.script = {0: [control.Running("rid")]}
    poll.actions = {1: death("listener", children, pidfds)}
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60)
    assert children.spawned == ["listener"]
    assert "rid" not in main.loop.running
    assert poll.timeouts[1] == pytest.approx(60 - 0.05)  # the death ended it, no time passed
    assert sum(poll.timeouts[2:]) == pytest.approx(BUDGET_S)  # the budget again, from then


@pytest.mark.parametrize("listener_pidfd", ["a pipe", "fd 0"])
def test_a_restarted_child_closes_the_other_child_s_pidfd(
    main: Main, poll: Poll, children: Children, pidfds: dict[str, int], listener_pidfd: str,
) -> None:
    # Main's stdin may be closed, so a pidfd can be fd 0 (a stand-in number here: nothing runs).
    if listener_pidfd == "fd 0":
        os.close(main.loop.listener.exit_fd)
        main.loop.listener.exit_fd = 0
    listener_fd = main.loop.listener.exit_fd

    def dies() -> None:
        children.dying.append("sender")
        os.write(pidfds["sender"], b"x")

    poll.actions = {0: dies}
    try:
        main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60)
    finally:
        if listener_pidfd == "fd 0":
            main.loop.listener.exit_fd = -1  # not the test process's stdin to close
    assert children.spawned == ["sender"]
    assert listener_fd in children.closing[0]  # main's pidfds are no child's business


@pytest.mark.parametrize(("api_fd", "closed"), [(0, True), (7, True), (-1, False)])
def test_main_s_connection_to_the_extensions_api_is_closed_in_the_children_even_at_fd_0(
    main: Main, monkeypatch: pytest.MonkeyPatch, api_fd: int, closed: bool,
) -> None:
    # Main's stdin may be closed, so its connection can be fd 0; -1: none open.
    monkeypatch.setattr(main.loop.api, "connection_fd", lambda: api_fd)
    fds = main.loop._all_fds()
    monkeypatch.undo()  # the test's Main closes its fds, not the test process's stdin
    assert (api_fd in fds) is closed


ASK_AT_S = BUDGET_S * flush_policy.RUNNING_AT


def test_a_late_asking_wait_ends_at_a_delivery_told_unasked_without_a_word(
    main: Main, poll: Poll, pidfds: dict[str, int],
) -> None:
    poll.script = {0: [control.Delivered("rid")]}
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert sent(main) == []
    assert poll.timeouts == [pytest.approx(ASK_AT_S)]
    assert main.loop.answers == {"rid": True}


def test_a_late_asking_wait_asks_running_at_through_it_then_waits_the_rest(
    main: Main, poll: Poll, pidfds: dict[str, int],
) -> None:
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert sent(main) == [control.FlushLate("rid")]
    assert poll.timeouts == [pytest.approx(ASK_AT_S), pytest.approx(BUDGET_S - ASK_AT_S)]


def test_a_wait_that_wakes_past_the_late_ask_s_time_still_asks(
    main: Main, poll: Poll, pidfds: dict[str, int],
) -> None:
    def oversleeps() -> None:  # a real select returns a little after its timeout
        poll.clock.now += 0.002

    poll.actions = {0: oversleeps}
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert sent(main) == [control.FlushLate("rid")]
    assert poll.timeouts == [pytest.approx(ASK_AT_S),
                             pytest.approx(BUDGET_S - ASK_AT_S - 0.002)]


@pytest.mark.parametrize(("told_at_wait", "asked"), [
    (1, [control.FlushLate("rid")]),  # the answer to the late ask
    (0, []),  # told unasked before it (the start read): nothing left to ask
])
def test_a_running_invocation_is_waited_for_until_the_deadline_asked_only_if_not_told(
    main: Main, poll: Poll, pidfds: dict[str, int], told_at_wait: int,
    asked: list[control.Message],
) -> None:
    poll.script = {told_at_wait: [control.Running("rid")]}
    began = poll.clock.now
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 0.05 + 2.0, ask_late=True)
    assert sent(main) == asked
    assert poll.clock.now - began == pytest.approx(2.0, abs=1e-6)


def test_a_deadline_before_the_late_ask_is_waited_for_without_asking(
    main: Main, poll: Poll, pidfds: dict[str, int],
) -> None:
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 0.05 + ASK_AT_S / 2,
                               ask_late=True)
    assert sent(main) == []
    assert poll.timeouts == [pytest.approx(ASK_AT_S / 2, abs=1e-6)]


def test_a_delivery_told_before_the_wait_began_ends_it_at_once(main: Main, poll: Poll) -> None:
    control.send(main.loop.status_w, control.Delivered("earlier"))
    control.send(main.loop.status_w, control.Delivered("rid"))
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert (sent(main), poll.timeouts) == ([], [])
    assert main.loop.answers == {"rid": True}  # the earlier one forgotten


def test_a_sender_restarted_before_the_late_ask_is_not_asked_and_after_it_is(
    main: Main, poll: Poll, children: Children, pidfds: dict[str, int],
) -> None:
    poll.actions = {0: death("sender", children, pidfds)}
    began = poll.clock.now
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert children.spawned == ["sender"]
    assert sent(main) == [control.FlushLate("rid")]  # the new sender reads it again unasked
    assert poll.clock.now - began == pytest.approx(BUDGET_S)
    os.close(pidfds["sender"])
    main.loop.sender.exit_fd, pidfds["sender"] = os.pipe()  # the new sender's pidfd
    poll.actions = {len(poll.timeouts) + 1: death("sender", children, pidfds)}  # after the ask
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert sent(main) == [control.FlushLate("rid"), control.FlushLate("rid")]


@pytest.mark.parametrize(("main", "note"), [
    ({}, [control.Awaited("rid")]),  # adaptive (the default): the sender learns it from a note
    ({"SPLUNK_FLUSH": "sync"}, []),  # sync: the sender takes every invocation as waited for
], indirect=["main"])
def test_a_late_asking_wait_notes_the_invocation_where_the_sender_cannot_know_it(
    main: Main, poll: Poll, pidfds: dict[str, int], note: list[control.Message],
) -> None:
    poll.script = {0: [control.Delivered("rid")]}
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert (sent(main), noted(main)) == ([], note)


def test_a_wait_whose_note_the_pipe_cannot_take_asks_at_once(
    main: Main, poll: Poll, pidfds: dict[str, int],
) -> None:
    while control.send(main.loop.notes_w, control.Awaited("filler")):
        pass
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert sent(main) == [control.Flush("rid")]
    assert poll.timeouts == [pytest.approx(BUDGET_S)]  # asked: no late ask to wait for


def test_a_sender_restarted_before_the_late_ask_is_noted_again(
    main: Main, poll: Poll, children: Children, pidfds: dict[str, int],
) -> None:
    # The dead sender may have read the note: the new one would take the invocation as not
    # waited for, and hold its lines for the linger bound until the late ask.
    poll.actions = {0: death("sender", children, pidfds)}
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert children.spawned == ["sender"]
    assert noted(main) == [control.Awaited("rid"), control.Awaited("rid")]


def test_adaptive_asks_late_only_after_a_wait_that_ended_delivered(
    main: Main, poll: Poll, clock: Clock,
) -> None:
    told = []
    for n, answer in enumerate([control.Failing, control.Delivered, control.Delivered]):
        clock.now += 5.0  # sparse: each one waited for
        poll.script = {len(poll.timeouts): [answer(f"r{n}")]}
        main.loop.adapt(f"r{n}", EPOCH + clock.now + 60)
        told.append((sent(main), noted(main)))
    assert told == [
        ([], [control.Awaited("r0")]),  # the first asks late
        ([control.Flush("r1")], []),  # after a Failing: at once
        ([], [control.Awaited("r2")]),  # after a Delivered: late again
    ]


def test_a_sender_that_takes_no_late_ask_ends_the_wait(
    main: Main, poll: Poll, notes: Notes, pidfds: dict[str, int],
) -> None:
    while control.send(main.loop.ctl_w, control.Flush("filler")):
        pass
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60, ask_late=True)
    assert poll.timeouts == [pytest.approx(ASK_AT_S)]  # not the rest of the budget
    assert notes.levels() == ["WARNING"]


def test_a_deadline_nearer_than_the_budget_ends_the_wait_before_it(main: Main, poll: Poll) -> None:
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 0.05 + 0.08)
    assert poll.timeouts == [pytest.approx(0.08)]


def test_a_past_deadline_waits_not_at_all(main: Main, poll: Poll) -> None:
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now - 5)
    assert sent(main) == [control.Flush("rid")]
    assert poll.timeouts == []


def test_a_running_invocation_is_waited_for_until_its_deadline(main: Main, poll: Poll) -> None:
    poll.script = {0: [control.Running("rid")]}
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 0.05 + 0.35)
    assert sum(poll.timeouts[1:]) == pytest.approx(0.35)
    assert max(poll.timeouts) <= 0.1


def test_an_answer_for_another_invocation_does_not_end_the_wait(main: Main, poll: Poll) -> None:
    poll.script = {0: [control.Delivered("other")], 1: [control.Delivered("rid")]}
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60)
    assert main.loop.answers == {"other": True, "rid": True}
    assert len(poll.timeouts) == 2  # woken by each answer; the second one ends the wait


def test_answers_about_earlier_invocations_are_forgotten_at_a_flush(
    main: Main, poll: Poll,
) -> None:
    main.loop.answers["old"] = True
    main.loop.running.add("old")
    poll.script = {0: [control.Delivered("rid")]}
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60)
    assert main.loop.answers == {"rid": True}
    assert main.loop.running == set()


def test_a_sender_that_died_during_the_wait_is_restarted_and_asked_again(
    main: Main, poll: Poll, children: Children,
) -> None:
    children.dying.append("sender")
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60)
    assert sent(main) == [control.Flush("rid"), control.Flush("rid")]
    assert children.spawned == ["sender"]


def test_a_sender_restarted_in_a_wait_it_had_not_told_running_keeps_the_wait_s_end(
    main: Main, poll: Poll, children: Children,
) -> None:
    # It never told the invocation's start: the budget from the ask still holds, the new one
    # asked again within it.
    poll.actions = {1: lambda: children.dying.append("sender")}
    start = poll.clock.now
    main.loop.flush_invocation("rid", EPOCH + start + 60)
    assert children.spawned == ["sender"]
    assert sent(main) == [control.Flush("rid"), control.Flush("rid")]
    assert poll.clock.now - start == pytest.approx(BUDGET_S)


def test_a_listener_that_died_during_a_wait_not_running_gives_telemetry_the_budget_again(
    main: Main, poll: Poll, children: Children,
) -> None:
    # The invocation's start may not have been spooled yet: it comes, late, to the new
    # listener: the budget from the death, past the wait's first end.
    poll.actions = {1: lambda: children.dying.append("listener")}
    start = poll.clock.now
    main.loop.flush_invocation("rid", EPOCH + start + 60)
    assert children.spawned == ["listener"]
    assert sum(poll.timeouts[2:]) == pytest.approx(BUDGET_S)  # the budget again, from then
    assert poll.clock.now - start == pytest.approx(2 * BUDGET_S)  # found at its first end


def test_a_listener_that_died_during_a_running_wait_falls_back_to_the_budget(
    main: Main, poll: Poll, children: Children,
) -> None:
    poll.script = {0: [control.Running("rid")]}
    poll.actions = {2: lambda: children.dying.append("listener")}  # telemetry may come late
    main.loop.flush_invocation("rid", EPOCH + poll.clock.now + 60)
    assert children.spawned == ["listener"]
    assert "rid" not in main.loop.running
    assert sum(poll.timeouts[3:]) == pytest.approx(BUDGET_S)  # the budget again, from then


# -- start --------------------------------------------------------------------------------------


def test_start_waits_for_the_sender_to_say_ready(
    main: Main, poll: Poll, children: Children, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bodies: list[bytes] = []

    def subscribe(api: object, body: bytes) -> bool:
        bodies.append(body)
        return True

    monkeypatch.setattr(telemetry_api, "subscribe", subscribe)
    monkeypatch.setattr(lifecycle, "preload_children", lambda: None)
    poll.script = {3: [control.Ready()]}
    main.loop.start()
    assert children.spawned == ["listener", "sender"]
    assert main.loop.sender_started
    assert poll.timeouts == [0.1, 0.1, 0.1, 0.1]
    port = main.loop.server.getsockname()[1]
    [body] = bodies  # the Telemetry API is told where the listener listens
    assert f":{port}".encode() in body


def test_a_sender_slow_to_start_is_not_waited_for_past_the_start_wait(
    main: Main, poll: Poll, notes: Notes, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry_api, "subscribe", lambda api, body: False)
    monkeypatch.setattr(lifecycle, "preload_children", lambda: None)
    main.loop.start()
    assert sum(poll.timeouts) == pytest.approx(2.0)
    assert notes.levels() == ["WARNING", "WARNING"]  # no Telemetry API; no Ready


def test_the_listener_binds_the_sandbox_address_or_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_socket, "gethostbyname", lambda host: "169.254.79.1")
    assert lifecycle._default_listener_host() == "169.254.79.1"

    def unresolvable(host: str) -> str:
        raise OSError(host)

    monkeypatch.setattr(_socket, "gethostbyname", unresolvable)
    assert lifecycle._default_listener_host() == "127.0.0.1"


# -- run: what main reports when it cannot go on ------------------------------------------------


class RecordingLoop:
    """Stands in for MainLoop in run(): records its function name; start or serve may fail."""

    made: list[RecordingLoop] = []
    start_error: Exception | None = None
    serve_error: Exception | None = None

    def __init__(self, api: FakeApi, config: object, function_name: str) -> None:
        self.function_name = function_name
        self.stopped = False
        RecordingLoop.made.append(self)

    def start(self) -> None:
        if self.start_error:
            raise self.start_error

    def serve(self) -> int:
        if self.serve_error:
            raise self.serve_error
        return 0

    def stop_children(self) -> None:
        self.stopped = True


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingLoop]:
    monkeypatch.setattr(lifecycle, "MainLoop", RecordingLoop)
    RecordingLoop.made, RecordingLoop.start_error, RecordingLoop.serve_error = [], None, None
    return RecordingLoop


def test_the_function_name_comes_from_lambda_or_is_unknown(
    recording: type[RecordingLoop],
) -> None:
    assert lifecycle.run(FakeApi([]), {**ENV, "AWS_LAMBDA_FUNCTION_NAME": "orders"}) == 0  # type: ignore[arg-type]
    assert lifecycle.run(FakeApi([]), ENV) == 0  # type: ignore[arg-type]
    assert [loop.function_name for loop in recording.made] == ["orders", "unknown-function"]


def test_a_startup_failure_is_reported_as_an_init_error(
    recording: type[RecordingLoop], notes: Notes,
) -> None:
    recording.start_error = OSError("address in use")
    api = FakeApi([])
    assert lifecycle.run(api, ENV) == 1  # type: ignore[arg-type]
    assert api.reports == [("init", errors.STARTUP_FAILED,
                            "splunk-hec-extension startup failed: address in use")]
    assert notes.levels() == ["ERROR"]


class UnreachableApi(FakeApi):
    refusal: Exception = OSError("the Extensions API is gone")

    def exit_error(self, error_type: str, message: str) -> None:
        raise self.refusal


@pytest.mark.parametrize("refusal", [OSError("connection refused"),
                                     errors.ApiError("/exit/error", 500, b"")])
def test_a_failure_after_init_that_cannot_be_reported_still_stops_the_children(
    recording: type[RecordingLoop], notes: Notes, refusal: Exception,
) -> None:
    recording.serve_error = RuntimeError("bug")
    api = UnreachableApi([])
    api.refusal = refusal
    assert lifecycle.run(api, ENV) == 1  # type: ignore[arg-type]
    assert recording.made[0].stopped
    assert notes.levels() == ["ERROR", "ERROR"]  # the failure, then the report that failed


def test_stopping_the_children_gives_them_half_a_second(
    main: Main, clock: Clock, children: Children,
) -> None:
    main.loop.stop_children()
    assert children.stopped == [(["listener", "sender"], clock.now + 0.5)]


def test_the_listener_socket_can_rebind_a_port_left_in_time_wait(main: Main) -> None:
    assert main.loop.server.getsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR)


def test_a_sender_that_dies_while_starting_is_restarted(
    main: Main, poll: Poll, children: Children, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry_api, "subscribe", lambda api, body: True)
    monkeypatch.setattr(lifecycle, "preload_children", lambda: None)
    poll.actions = {1: lambda: children.dying.append("sender")}
    poll.script = {3: [control.Ready()]}
    main.loop.start()
    assert children.spawned == ["listener", "sender", "sender"]


# `ask` None: the sender is told nothing (it may linger; it tells every delivery unasked);
# Hurried: sent at once, asked for by a note that wakes nothing.
@pytest.mark.parametrize(("main", "gap", "ask"), [
    ({}, 0.1, None),  # the sender may linger (1 s) within the 2 s bound: no hurry
    ({"SPLUNK_DISPATCH_MAX_WAIT_MS": "0"}, 0.1, control.Hurried),  # it sends at once anyway
    ({}, 1.0, None),  # gap + linger = the bound exactly
    ({}, 1.0005, control.Hurried),  # just over it: send now
    ({"SPLUNK_MAX_LATENCY_MS": "2500"}, 1.5, None),  # a bound of 2.5 s, exactly met
    ({"SPLUNK_DISPATCH_MAX_WAIT_MS": "1500"}, 0.5005, control.Hurried),  # a 1.5 s linger: over
], indirect=["main"])
def test_adaptive_flush_waits_while_learning_the_rhythm_then_only_asks(
    main: Main, poll: Poll, clock: Clock, notes: Notes, gap: float,
    ask: type[control.Hurried] | None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(diagnostics, "_threshold", 0)
    diagnostics.set_level("INFO")
    waited = []
    asks = []  # what each invocation told the sender
    count = RELIABLE_GAPS + 3  # from then on, the rhythm's own quantile decides
    for n in range(count):
        clock.now += gap  # an invocation every `gap` seconds, each delivered at once
        before = len(poll.timeouts)
        poll.script = {before: [control.Delivered(f"r{n}")]}
        main.loop.adapt(f"r{n}", EPOCH + clock.now + 60)
        waited.append(len(poll.timeouts) > before)
        asks.append(sent(main) + noted(main))
        if not waited[-1]:
            poll.script = {}
            control.send(main.loop.status_w, control.Delivered(f"r{n}"))
    assert waited[:MIN_GAPS] == [True] * MIN_GAPS
    assert waited[RELIABLE_GAPS:] == [False] * 3
    # Waited for quietly: a note, no wake-up (each wait ended delivered, so none asks at once).
    assert asks[:MIN_GAPS] == [[control.Awaited(f"r{n}")] for n in range(MIN_GAPS)]
    assert asks[RELIABLE_GAPS:] == [[] if ask is None else [ask(f"r{n}")]
                                    for n in range(RELIABLE_GAPS, count)]
    assert notes.levels() == ["INFO"] * count  # each decision is noted


@pytest.mark.parametrize(("level", "described"), [("INFO", 1), ("WARNING", 0)])
def test_a_decision_is_put_in_words_only_when_its_note_is_written(
    main: Main, poll: Poll, monkeypatch: pytest.MonkeyPatch, level: str, described: int,
) -> None:
    # Formatting its figures costs CPU at every invocation; nobody reads it below INFO.
    monkeypatch.setattr(diagnostics, "_threshold", 0)
    diagnostics.set_level(level)
    calls: list[str] = []
    real = flush_policy.Decision.describe

    def describe(self: flush_policy.Decision, request_id: str) -> str:
        calls.append(request_id)
        return real(self, request_id)

    monkeypatch.setattr(flush_policy.Decision, "describe", describe)
    poll.script = {0: [control.Delivered("r0")]}
    main.loop.adapt("r0", EPOCH + poll.clock.now + 60)
    assert len(calls) == described


def test_the_start_wait_ends_at_its_end_not_at_the_next_check(main: Main, poll: Poll) -> None:
    poll.clock.now = 0.04
    main.loop._await_sender_start(poll.clock.now + 0.05)
    assert poll.timeouts == [pytest.approx(0.05)]


def test_a_start_wait_already_over_does_not_wait(main: Main, poll: Poll, notes: Notes) -> None:
    main.loop._await_sender_start(poll.clock.now - 1)
    assert poll.timeouts == []
    assert notes.levels() == ["WARNING"]


def test_the_listener_binds_the_configured_host(
    clock: Clock, children: Children, notes: Notes,
) -> None:
    made = _main(SPLUNK_LISTENER_HOST="127.0.0.2")
    try:
        assert made.loop.server.getsockname()[0] == "127.0.0.2"
    finally:
        made.close()


# -- the backlog: an earlier invocation waited for, not the one that just started ---------------


def _backlog_of_one(main: Main, clock: Clock) -> None:
    """A learnt 0.5 s rhythm, everything delivered but the last invocation ("b", 1.6 s ago):
    the next one finds a backlog too old for the 2 s bound, with a gap that fits it."""
    policy = main.loop.adaptive
    for n in range(RELIABLE_GAPS + 1):
        policy.decide(f"w{n}", clock.now - 1.6 - (RELIABLE_GAPS + 1 - n) * 0.5)
        policy.delivered(f"w{n}")
    policy.decide("b", clock.now - 1.6)


@pytest.mark.parametrize(("main", "ask"), [
    ({}, []),  # "c" alone lingers: 0 + 0.5 s gap + 1 s linger fit the 2 s bound: not told
    ({"SPLUNK_DISPATCH_MAX_WAIT_MS": "0"}, [control.Hurried("a")]),  # no linger: sent at once
], indirect=["main"])
def test_a_backlog_is_waited_for_alone_and_the_new_invocation_only_asked_for(
    main: Main, poll: Poll, clock: Clock, ask: list[control.Message],
) -> None:
    _backlog_of_one(main, clock)
    poll.script = {0: [control.Delivered("b")]}
    main.loop.adapt("a", EPOCH + clock.now + 60)  # ids are UUIDs: an earlier one may sort after
    assert (sent(main), noted(main)) == ([control.FlushBacklog("b")], ask)
    assert len(poll.timeouts) == 1  # the wait ended at "b"'s delivery
    assert list(main.loop.adaptive.undelivered) == ["a"]


@pytest.mark.parametrize("main", [{"SPLUNK_DISPATCH_MAX_WAIT_MS": "0"}], indirect=True)
def test_a_hurried_invocation_whose_note_the_pipe_cannot_take_is_asked_for(
    main: Main, poll: Poll, clock: Clock,
) -> None:
    _backlog_of_one(main, clock)
    while control.send(main.loop.notes_w, control.Awaited("filler")):
        pass
    poll.script = {0: [control.Delivered("b")]}
    main.loop.adapt("a", EPOCH + clock.now + 60)
    assert sent(main) == [control.Flush("a"), control.FlushBacklog("b")]


def test_a_running_backlog_is_waited_for_the_budget_not_until_the_deadline(
    main: Main, poll: Poll, clock: Clock,
) -> None:
    # Its platform.start is spooled and its runtimeDone is not (dropped telemetry): it ended
    # an invocation ago, whatever its records say
    _backlog_of_one(main, clock)
    poll.script = {0: [control.Running("b")]}
    start = clock.now
    main.loop.adapt("c", EPOCH + clock.now + 60)
    assert clock.now - start == pytest.approx(BUDGET_S)
    assert sent(main) == [control.FlushBacklog("b")]


def test_a_sender_that_died_during_a_backlog_wait_is_asked_for_the_backlog_again(
    main: Main, poll: Poll, clock: Clock, children: Children,
) -> None:
    _backlog_of_one(main, clock)
    children.dying.append("sender")
    main.loop.adapt("c", EPOCH + clock.now + 60)
    assert sent(main) == [control.FlushBacklog("b"), control.FlushBacklog("b")]
    assert children.spawned == ["sender"]


def test_a_listener_that_keeps_dying_during_a_running_wait_moves_its_end_only_once(
    main: Main, poll: Poll, children: Children,
) -> None:
    # A listener that dies again and again (a crash loop, a batch that kills it at every retry)
    # sent no telemetry since its first death: each restart pushed the end a budget further,
    # and main waited, billed, until the invocation's deadline.
    poll.script = {0: [control.Running("rid")]}
    poll.actions = {n: lambda: children.dying.append("listener") for n in range(1, 1000)}
    start = poll.clock.now
    main.loop.flush_invocation("rid", EPOCH + start + 60)
    assert "rid" not in main.loop.running
    assert poll.clock.now - start == pytest.approx(0.1 + BUDGET_S)  # the first death's budget


def test_a_sender_held_back_is_not_waited_for_and_restarted_after_its_back_off_or_at_shutdown(
    main: Main, poll: Poll, children: Children, clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = {"now": True}  # the back-off runs on the supervisor's clock: the test says when
    monkeypatch.setattr(supervisor, "restart_due", lambda child: not held["now"])
    main.loop.sender.pid, main.loop.sender.restart_at = 0, 1.0  # died at its start, held back
    start = clock.now
    main.loop.flush_invocation("rid", EPOCH + start + 60)
    assert clock.now == start and poll.timeouts == []  # nothing can answer: no wait
    main.loop._restart_dead_children()
    assert children.spawned == []
    held["now"] = False
    main.loop._restart_dead_children()  # the first event after its back-off
    assert children.spawned == ["sender"]
    main.loop.sender.pid, held["now"] = 0, True
    main.loop._restart_dead_children(anyway=True)  # SHUTDOWN: its last chance to drain
    assert children.spawned == ["sender", "sender"]


def test_a_child_held_back_is_started_before_its_back_off_at_shutdown_not_at_an_invoke(
    main: Main, children: Children, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "restart_due", lambda child: False)  # back-off not over
    for child in (main.loop.listener, main.loop.sender):
        child.pid, child.restart_at = 0, 1.0  # died at its start, held back
    at_invoke: list[list[str]] = []
    main.loop.adapt = (  # type: ignore[method-assign]
        lambda request_id, deadline: at_invoke.append(list(children.spawned)))
    main.loop.shutdown = lambda deadline_ms, reason: None  # type: ignore[method-assign]
    main.loop.api.events = [INVOKE, SHUTDOWN]  # type: ignore[attr-defined]
    assert main.loop.serve() == 0
    assert at_invoke == [[]]
    assert children.spawned == ["listener", "sender"]  # their last chance to send the spool


def test_a_sender_restarted_during_a_running_wait_falls_back_to_the_budget(
    main: Main, poll: Poll, children: Children,
) -> None:
    # The old sender told Running, then died once the invocation's end was committed, before
    # its Delivered: the new one reads on from the commit and never sees that invocation, so
    # nothing ends the wait: main waited, billed, until the invocation's deadline.
    poll.script = {0: [control.Running("rid")]}
    poll.actions = {1: lambda: children.dying.append("sender")}
    start = poll.clock.now
    main.loop.flush_invocation("rid", EPOCH + start + 60)
    assert children.spawned == ["sender"]
    assert sent(main) == [control.Flush("rid"), control.Flush("rid")]  # asked again
    assert poll.clock.now - start == pytest.approx(0.1 + BUDGET_S)  # the budget from the restart
    assert "rid" not in main.loop.running


# -- a hung sender ------------------------------------------------------------------------------


def _hung(notes: Notes) -> list[str]:
    """The warnings that name the sender presumed hung."""
    return [line for level, line in notes.lines if level == "WARNING" and "hung" in line]


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "sync", "SPLUNK_FLUSH_BUDGET_MS": "500"}],
                         indirect=True)
def test_a_sender_that_reads_and_answers_nothing_is_killed_and_restarted(
    main: Main, poll: Poll, children: Children, notes: Notes,
) -> None:
    # Alive but stuck (a deadlock, a call that never returns, SIGSTOP): it never exits, so
    # the supervisor never restarted it, and every waited invocation cost its whole budget
    # while the spool filled, without a word in the log.
    main.loop.api.events = [INVOKE] * 3  # type: ignore[attr-defined]
    with pytest.raises(errors.ApiError):  # the stand-in API's end, after the third INVOKE
        main.loop.serve()
    assert children.killed == ["sender"]  # the third wait: 0.18 s + 0.485 s + 0.485 s unread
    [warning] = _hung(notes)
    assert "3 waited invocations" in warning and "SIGKILL" in warning
    assert main.loop.sender.hangs == 1
    main.loop._restart_dead_children()  # the next event: restarted, resumes from the spool
    assert children.spawned == ["sender"] and main.loop.sender.restarts == 1


def _wait_silently(main: Main, poll: Poll, waits: int,
                   sender: Callable[[str], object] = lambda rid: None) -> None:
    """`waits` invocations flushed, asked at once; `sender` acts at each wait's first check."""
    for _ in range(waits):
        rid = f"r{len(poll.timeouts)}"  # a new invocation each time
        poll.actions = {len(poll.timeouts): functools.partial(sender, rid)}
        main.loop.flush_invocation(rid, EPOCH + poll.clock.now + 60)
        main.loop._restart_dead_children()


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH_BUDGET_MS": "500"}], indirect=True)
def test_a_sender_that_answers_failing_is_never_taken_for_hung(
    main: Main, poll: Poll, children: Children, notes: Notes,
) -> None:
    # HEC down or hanging: the sender does not read main's asks while an attempt holds its
    # thread, but it answers Failing as soon as it can (the courier's failure, its breaker).
    _wait_silently(main, poll, 10, lambda rid: control.send(main.loop.status_w,
                                                            control.Failing("earlier")))
    assert children.killed == [] and _hung(notes) == []


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH_BUDGET_MS": "500"}], indirect=True)
def test_a_silent_sender_that_reads_main_s_asks_is_never_taken_for_hung(
    main: Main, poll: Poll, children: Children, notes: Notes,
) -> None:
    # Telemetry that never comes (a listener that cannot spool), or a backlog read in order:
    # the sender has nothing to say of the invocation, but it reads what main asks.
    _wait_silently(main, poll, 10, lambda rid: sent(main))
    assert children.killed == [] and _hung(notes) == []


def test_with_a_short_budget_three_silent_waits_are_not_enough(
    main: Main, poll: Poll, children: Children, notes: Notes,
) -> None:
    # 150 ms: a pass of the sender's (an inline attempt, a large record at a small CPU share)
    # may outlast a few such waits; a second of them unread in all is what it cannot.
    _wait_silently(main, poll, 3)
    assert children.killed == []
    _wait_silently(main, poll, 7)
    assert children.killed == ["sender"]
    assert len(_hung(notes)) == 1


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH_BUDGET_MS": "500"}], indirect=True)
def test_an_answer_between_silent_waits_starts_the_count_again(
    main: Main, poll: Poll, children: Children, notes: Notes,
) -> None:
    _wait_silently(main, poll, 2)
    _wait_silently(main, poll, 1, lambda rid: control.send(main.loop.status_w,
                                                           control.Delivered(rid)))
    _wait_silently(main, poll, 2)
    assert children.killed == []
    _wait_silently(main, poll, 1)
    assert children.killed == ["sender"]


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH_BUDGET_MS": "500"}], indirect=True)
def test_a_restarted_sender_starts_the_count_again(
    main: Main, poll: Poll, children: Children,
) -> None:
    _wait_silently(main, poll, 2)
    children.dying.append("sender")  # it died by itself: restarted at the next event
    main.loop._restart_dead_children()
    sent(main)  # the new sender read what the old one left
    _wait_silently(main, poll, 2)
    assert children.killed == []


def _silent_waits_to_hang(budget_ms: int) -> int:
    """How many silent waits in a row, each its whole budget unread, make a sender hung."""
    unread_s = budget_ms / 1000 - reaction_s(budget_ms / 1000)
    return max(lifecycle.HUNG_WAITS, math.ceil(lifecycle.HUNG_AFTER_S / unread_s))


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH_BUDGET_MS": "1000"}], indirect=True)
def test_with_a_long_budget_two_silent_waits_are_not_enough(
    main: Main, poll: Poll, children: Children, notes: Notes,
) -> None:
    # Two waits hold two seconds of asks unread, but one pass of the sender's may outlast a
    # wait: only the third in a row says it is stuck.
    _wait_silently(main, poll, 2)
    assert children.killed == [] and _hung(notes) == []
    _wait_silently(main, poll, 1)
    assert children.killed == ["sender"]


def test_right_after_boot_the_time_unread_is_counted_whatever_the_clock_s_origin(
    main: Main, poll: Poll, children: Children,
) -> None:
    poll.clock.now = 0.04  # the monotonic clock starts near 0 at the environment's boot
    waits = _silent_waits_to_hang(150)  # the seconds decide here, not the count
    assert waits > lifecycle.HUNG_WAITS
    _wait_silently(main, poll, waits - 1)
    assert children.killed == []
    _wait_silently(main, poll, 1)
    assert children.killed == ["sender"]


def test_asks_unread_for_exactly_hung_after_s_make_a_sender_hung(
    main: Main, children: Children, notes: Notes,
) -> None:
    assert control.send(main.loop.ctl_w, control.Flush("rid"))  # main's ask, left unread
    spans = [0.25] * (lifecycle.HUNG_WAITS - 1)
    spans.append(lifecycle.HUNG_AFTER_S - sum(spans))  # exact in binary: 1.0 in all
    for n, span in enumerate(spans):
        assert children.killed == []
        main.loop._judge_silence(False, 10.0 * n, 10.0 * n + span)
    assert children.killed == ["sender"]
    [warning] = _hung(notes)
    assert f"({lifecycle.HUNG_AFTER_S:.1f} s)" in warning


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH_BUDGET_MS": "500"}], indirect=True)
def test_a_wait_in_which_the_sender_spoke_is_not_counted_silent(
    main: Main, poll: Poll, children: Children, notes: Notes,
) -> None:
    # It said Failing of an earlier invocation, left main's ask unread and the wait ran out:
    # alive (an attempt holds it), not hung; then two silent waits are two, not three.
    _wait_silently(main, poll, 1, lambda rid: control.send(main.loop.status_w,
                                                           control.Failing("earlier")))
    _wait_silently(main, poll, 2)
    assert children.killed == [] and _hung(notes) == []
    _wait_silently(main, poll, 1)
    assert children.killed == ["sender"]


def _answers_earlier(main: Main, poll: Poll, children: Children) -> None:
    _wait_silently(main, poll, 1, lambda rid: control.send(main.loop.status_w,
                                                           control.Failing("earlier")))


def _reads_main(main: Main, poll: Poll, children: Children) -> None:
    _wait_silently(main, poll, 1, lambda rid: sent(main))


def _restarts(main: Main, poll: Poll, children: Children) -> None:
    children.dying.append("sender")  # it died by itself: restarted at the next event
    main.loop._restart_dead_children()
    sent(main)  # the new sender read what the old one left


def _outlives_its_kill(main: Main, poll: Poll, children: Children) -> None:
    # SIGKILL does not end a process in uninterruptible sleep (a hung disk) at once: it is
    # judged afresh, not killed again at every wait while it lingers.
    children.unkillable = True
    _wait_silently(main, poll, 1)
    assert children.killed == ["sender"] and children.spawned == []  # still there


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH_BUDGET_MS": "1000"},  # the count decides
                                  {"SPLUNK_FLUSH_BUDGET_MS": "150"}],  # the seconds decide
                         indirect=True)
@pytest.mark.parametrize("fresh_start", [_answers_earlier, _reads_main, _restarts,
                                         _outlives_its_kill])
def test_the_count_of_silent_waits_starts_again_from_nothing(
    main: Main, poll: Poll, children: Children,
    fresh_start: Callable[[Main, Poll, Children], None],
) -> None:
    waits = _silent_waits_to_hang(main.loop.config.flush_budget_ms)
    _wait_silently(main, poll, waits - 1)  # one silent wait short of hung
    fresh_start(main, poll, children)
    kills = len(children.killed)
    _wait_silently(main, poll, waits - 1)
    assert len(children.killed) == kills
    _wait_silently(main, poll, 1)
    assert len(children.killed) == kills + 1


# -- restarts reported ---------------------------------------------------------------------------


def test_a_restarted_listener_is_noted_for_the_sender_without_waking_it(
    main: Main, children: Children,
) -> None:
    # The sender reports main's counts in its self-metrics; it took them at its fork, so a
    # listener restarted since is told, on the pipe it reads with the spool (no wake-up).
    main.loop.sender.restarts, main.loop.sender.hangs = 4, 1
    children.dying.append("listener")
    main.loop._restart_dead_children()
    assert children.spawned == ["listener"]
    assert noted(main) == [control.Restarts(listener=1, sender=4, sender_hangs=1)]
    assert sent(main) == []


def test_a_restarted_sender_is_noted_nothing_and_nothing_is_noted_without_a_restart(
    main: Main, children: Children,
) -> None:
    main.loop._restart_dead_children()
    children.dying.append("sender")
    main.loop._restart_dead_children()
    assert children.spawned == ["sender"]
    assert noted(main) == [] and sent(main) == []  # it takes the counts at its fork


def test_the_sender_takes_main_s_restart_counts_at_its_fork(
    main: Main, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ext.sender import process

    made: list[control.Restarts | None] = []

    class ForkedSender:
        def __init__(self, *args: object, restarts: control.Restarts | None = None,
                     **kwargs: object) -> None:
            made.append(restarts)

        def run(self) -> None:
            return None

    monkeypatch.setattr(process, "Sender", ForkedSender)
    main.loop.listener.restarts, main.loop.sender.restarts, main.loop.sender.hangs = 2, 3, 1
    main.loop._run_sender()  # the sender's entry, run in the child after the fork
    assert made == [control.Restarts(listener=2, sender=3, sender_hangs=1)]


# -- a hung sender where main does not wait -----------------------------------------------------


def _invoke_every(main: Main, clock: Clock, gap: float, count: int,
                  sender: Callable[[int], object] = lambda n: None,
                  deadline_s: float = 60.0) -> None:
    """Serves `count` INVOKEs `gap` apart on the test clock, each due `deadline_s` after its
    start; before each, the listener spools the previous one's telemetry (a wake-up byte for
    the sender) and `sender(n)` acts."""
    served: list[int] = []

    def next_event(wait: object = None) -> bytes:
        n = len(served)
        if n == count:
            raise errors.ApiError("/next", 500, b"")  # the stand-in API's end
        served.append(n)
        clock.now += gap
        if n:
            os.write(main.loop.wake_w, b"!")
        sender(n)
        return b'{"eventType":"INVOKE","requestId":"r%d","deadlineMs":%d}' % (
            n, round((EPOCH + clock.now + deadline_s) * 1000))

    main.loop.api.next_event = next_event  # type: ignore[method-assign]
    with pytest.raises(errors.ApiError):
        main.loop.serve()


def _healthy(main: Main, answer: type[control.AboutOneRequest] | None = None,
             ) -> Callable[[int], object]:
    """A sender in health between two invocations: it takes its wake-ups and main's messages
    (and answers a FlushBacklog with `answer`, for that invocation)."""
    def act(n: int) -> None:
        control.drain_pipe(main.loop.wake_r)
        for message in sent(main):
            if answer is not None and isinstance(message, control.FlushBacklog):
                control.send(main.loop.status_w, answer(message.request_id))
    return act


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "background",
                                   "SPLUNK_FLUSH_BUDGET_MS": "500"}], indirect=True)
@pytest.mark.parametrize("gap", [0.02, 0.5, 30.0])
def test_a_hung_sender_is_killed_where_main_never_waits(
    main: Main, poll: Poll, clock: Clock, children: Children, notes: Notes, gap: float,
) -> None:
    # Background: no wait ever judged the sender, so one stuck kept the spool growing for the
    # environment's whole life and the shutdown drained nothing. (Its successor is in health.)
    healthy = _healthy(main)
    _invoke_every(main, clock, gap, 700, lambda n: children.killed and healthy(n))
    assert children.killed == ["sender"]
    [warning] = _hung(notes)
    assert "SIGKILL" in warning and main.loop.sender.hangs == 1
    assert children.spawned == ["sender"]  # restarted at the next event
    assert len(poll.timeouts) < 40  # a few waits to judge it, not one per invocation


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": flush, "SPLUNK_FLUSH_BUDGET_MS": "0"}
                                  for flush in ("sync", "adaptive", "background")],
                         indirect=True)
def test_a_hung_sender_is_killed_with_a_budget_of_0(
    main: Main, poll: Poll, clock: Clock, children: Children, notes: Notes,
) -> None:
    # A budget of 0 (main never waits) is valid: each wait ended at once, so none added up to
    # HUNG_AFTER_S, the probe's waits neither, and a hung sender was never killed.
    healthy = _healthy(main)
    _invoke_every(main, clock, 0.5, 200, lambda n: children.killed and healthy(n))
    assert children.killed == ["sender"] and main.loop.sender.hangs == 1
    [warning] = _hung(notes)
    assert "SIGKILL" in warning
    # Judged by the probe's few waits, once a hang is likely: about a second billed, once
    assert 0 < sum(poll.timeouts) <= 1.5


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": flush, "SPLUNK_FLUSH_BUDGET_MS": "0"}
                                  for flush in ("sync", "adaptive", "background")],
                         indirect=True)
def test_a_sender_in_health_with_a_budget_of_0_costs_main_no_wait(
    main: Main, poll: Poll, clock: Clock, children: Children, notes: Notes,
) -> None:
    def sender(n: int) -> None:  # it takes its wake-ups and main's asks, answers Failing
        control.drain_pipe(main.loop.wake_r)
        for message in sent(main):
            if isinstance(message, control.Flush):
                control.send(main.loop.status_w, control.Failing(message.request_id))
        noted(main)

    _invoke_every(main, clock, 0.5, 200, sender)
    assert children.killed == [] and poll.timeouts == [] and _hung(notes) == []


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "background"}], indirect=True)
def test_a_sender_with_wake_ups_pending_is_probed_every_probe_after_s_from_the_start(
    main: Main, poll: Poll, clock: Clock, children: Children,
) -> None:
    # In health but in a long pass: it reads main's asks, its wake-ups pile up. A look (and a
    # probe) PROBE_AFTER_S after main's start, then PROBE_AFTER_S after the look that found the
    # last probe read, PROBE_READ_S after it.
    start, gap = clock.now, 0.5
    probed_at: list[float] = []

    def sender(n: int) -> None:
        probed_at.extend(clock.now - gap for _ in sent(main))  # asked at the INVOKE before

    _invoke_every(main, clock, gap, 60, sender)
    assert children.killed == [] and poll.timeouts == []
    probe_after_s = 5.0  # PROBE_AFTER_S: a few seconds, over the default latency bound and linger
    expected = [start + probe_after_s]
    while len(expected) < len(probed_at):
        expected.append(expected[-1] + lifecycle.PROBE_READ_S + probe_after_s)
    assert len(probed_at) >= 4 and probed_at == expected


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "background"}], indirect=True)
def test_a_sender_found_idle_is_looked_at_again_probe_after_s_later(
    main: Main, poll: Poll, clock: Clock,
) -> None:
    # It takes its wake-ups until 60.0 (idle at the looks at 55.0 and 60.0), then stops: the
    # look at 65.0 finds one not taken and asks for the invocation before that INVOKE.
    def sender(n: int) -> None:
        if clock.now <= 60.0:
            control.drain_pipe(main.loop.wake_r)

    assert clock.now == 50.0
    _invoke_every(main, clock, 0.5, 30, sender)  # INVOKEs from 50.5 to 65.0
    assert sent(main) == [control.FlushBacklog("r28")]


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "background"}], indirect=True)
def test_a_probe_is_made_at_the_invoke_that_comes_at_its_time(
    main: Main, poll: Poll, clock: Clock,
) -> None:
    main.loop.look_at = clock.now + 0.5
    os.write(main.loop.wake_w, b"!")  # spooled, not taken
    _invoke_every(main, clock, 0.5, 1)
    assert sent(main) == [control.FlushBacklog("r0")]


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "background",
                                   "SPLUNK_FLUSH_BUDGET_MS": "500"}], indirect=True)
def test_a_probe_s_wait_ends_before_the_invocation_s_deadline(
    main: Main, poll: Poll, clock: Clock, children: Children,
) -> None:
    # Its invocation due 0.2 s after its INVOKE (the function's time is up): the wait for the
    # one before it ends INVOKE_MARGIN_S before that, not at the budget.
    main.loop.look_at = clock.now
    _invoke_every(main, clock, 1.0, 3, lambda n: n or os.write(main.loop.wake_w, b"!"),
                  deadline_s=0.2)
    # The probe's ask, left unread; at each INVOKE after it, the one before waited for
    assert sent(main) == [control.FlushBacklog(rid) for rid in ("r0", "r0", "r1")]
    assert sum(poll.timeouts) == pytest.approx(2 * (0.2 - lifecycle.INVOKE_MARGIN_S))


@pytest.mark.parametrize("main", [
    {"SPLUNK_FLUSH": "background", "SPLUNK_FLUSH_BUDGET_MS": "1000"},  # the count decides
    {"SPLUNK_FLUSH": "background", "SPLUNK_FLUSH_BUDGET_MS": "150"},  # the seconds decide
], indirect=True)
def test_a_probed_sender_that_comes_round_between_two_invocations_is_judged_afresh(
    main: Main, poll: Poll, clock: Clock, children: Children,
) -> None:
    # One silent wait short of hung, it reads main's ask (says nothing) before the next INVOKE:
    # the probe ends there, and the next one, when it hangs again, counts from nothing.
    waits = _silent_waits_to_hang(main.loop.config.flush_budget_ms)
    probe_waits: list[str] = []
    wait = main.loop.flush_invocation

    def flush_invocation(request_id: str, deadline: float, ended: bool = False,
                         ask_late: bool = False, zero_budget_s: float = 0.0) -> None:
        probe_waits.append(request_id)
        wait(request_id, deadline, ended=ended, ask_late=ask_late, zero_budget_s=zero_budget_s)

    main.loop.flush_invocation = flush_invocation  # type: ignore[method-assign]
    came_round: list[int] = []
    healthy = _healthy(main)

    def sender(n: int) -> None:
        if children.killed:
            healthy(n)  # its successor
        elif len(probe_waits) == waits - 1 and not came_round:
            came_round.append(n)
            assert sent(main)  # the probe's ask, read late

    _invoke_every(main, clock, 0.5, 400, sender)
    assert came_round and children.killed == ["sender"]
    assert len(probe_waits) == (waits - 1) + waits


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "background"}], indirect=True)
@pytest.mark.parametrize(("gap", "every"), [
    (0.02, 1), (0.5, 1), (30.0, 1),
    (0.02, 23),  # a pass that outlasts a few invocations (0.46 s): the probe read late
])
def test_a_sender_in_health_costs_main_no_wait_and_a_rare_probe(
    main: Main, poll: Poll, clock: Clock, children: Children, notes: Notes, gap: float,
    every: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    looks: list[int] = []
    real_unread = control.unread

    def unread(fd: int) -> bool:
        looks.append(fd)
        return real_unread(fd)

    monkeypatch.setattr(control, "unread", unread)
    probes: list[control.Message] = []

    def sender(n: int) -> None:
        if n % every:
            return
        control.drain_pipe(main.loop.wake_r)
        probes.extend(sent(main))

    _invoke_every(main, clock, gap, 1500, sender)
    span = gap * 1500
    assert children.killed == [] and poll.timeouts == []  # never a wait
    # At most a look (one poll) and a probe per few seconds, not one per invocation
    assert len(probes) <= span / 4 + 1 and len(looks) <= 2 * (span / 4 + 1)
    assert all(isinstance(p, control.FlushBacklog) for p in probes)


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "background"}], indirect=True)
def test_a_sender_with_nothing_to_send_is_not_probed(
    main: Main, poll: Poll, clock: Clock, children: Children,
) -> None:
    # It drained every wake-up (or nothing was spooled): its silence says nothing.
    seen: list[control.Message] = []

    def sender(n: int) -> None:
        control.drain_pipe(main.loop.wake_r)
        seen.extend(sent(main))

    _invoke_every(main, clock, 30.0, 50, sender)
    assert seen == [] and children.killed == [] and poll.timeouts == []


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": flush} for flush in ("sync", "adaptive")],
                         indirect=True)
def test_where_main_waits_for_its_flushes_it_makes_no_probe(
    main: Main, poll: Poll, clock: Clock, children: Children,
) -> None:
    # Its flush waits judge the sender: a probe (an ask for an earlier invocation, and waits
    # for it) is for where main never waits (background, a budget of 0). Here a sender in a
    # long pass leaves its wake-ups, reads main's messages and tells each invocation delivered
    # before the next INVOKE, for longer than PROBE_AFTER_S.
    told: list[control.Message] = []

    def sender(n: int) -> None:
        if n:
            control.send(main.loop.status_w, control.Delivered(f"r{n - 1}"))
        told.extend(sent(main))
        noted(main)

    _invoke_every(main, clock, 0.5, 4 * round(lifecycle.PROBE_AFTER_S / 0.5), sender)
    assert told and not [m for m in told if isinstance(m, control.FlushBacklog)]
    assert children.killed == []


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "background",
                                   "SPLUNK_FLUSH_BUDGET_MS": "500"}], indirect=True)
@pytest.mark.parametrize("answer", [control.Failing, None])
def test_a_busy_sender_that_reads_main_late_is_never_killed(
    main: Main, poll: Poll, clock: Clock, children: Children, notes: Notes,
    answer: type[control.AboutOneRequest] | None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A long backlog or a HEC down (Failing): it reads main's pipe and its wake-ups between
    # passes, and a pass outlasts a few invocations' thawed time, not a wait of main's.
    healthy = _healthy(main, answer)
    waits = poll.select

    def select(*args: object) -> tuple[list[int], list[int], list[int]]:
        healthy(-1)  # its pass ends while main waits: the environment is thawed
        return waits(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(poll, "select", select)
    _invoke_every(main, clock, 0.05, 3000, lambda n: n % 150 == 0 and healthy(n))
    assert children.killed == [] and _hung(notes) == []
    # A wait now and then, when a probe found it in a pass: one budget at most per probe
    probes = 3000 * 0.05 / lifecycle.PROBE_AFTER_S
    assert 0 < sum(poll.timeouts) <= probes * 0.5


@pytest.mark.parametrize("main", [{"SPLUNK_FLUSH": "adaptive",
                                   "SPLUNK_FLUSH_BUDGET_MS": "500"}], indirect=True)
@pytest.mark.parametrize("gap", [0.02, 0.2])
def test_adaptive_under_dense_traffic_waits_for_a_silent_sender_and_kills_it(
    main: Main, poll: Poll, clock: Clock, children: Children, notes: Notes, gap: float,
) -> None:
    # Dense traffic is not waited for while deliveries come; once they stop, the backlog
    # outgrows the latency bound (2 s) and main waits for it: those waits judge the sender.
    def sender(n: int) -> None:
        # In health (and so is the one restarted after the kill): every invocation delivered
        # before the next one; the 100th invocation's sender hangs.
        if n < 100 or children.killed:
            control.send(main.loop.status_w, control.Delivered(f"r{n - 1}"))
            control.drain_pipe(main.loop.wake_r)
            sent(main)
            noted(main)

    _invoke_every(main, clock, gap, 100 + int(4 / gap), sender)  # 4 s after the last delivery
    assert children.killed == ["sender"] and len(_hung(notes)) == 1
