"""Lambda Managed Instances: the extension registers for SHUTDOWN only, subscribes with the
schema they accept, gives a line no other invocation's id, and keeps its children running while
the next event (the SHUTDOWN) is hours away. That it flushes in the background is config's
choice (test_config.py)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ext import __main__ as entry
from ext import config, control, diagnostics, errors
from ext.main import lifecycle, supervisor, telemetry_api
from ext.main.extensions_api import (
    INITIALIZATION_TYPE,
    MANAGED_INSTANCES,
    REGISTER_PATH,
    ExtensionsApi,
    LambdaApiClient,
    lifecycle_events,
)
from ext.sender import process as sender_process
from ext.sender.envelope import EnvelopeBuilder
from tests.unit import test_sender_loop
from tests.unit.lambda_api_stub import ScriptedApi, reply
from tests.unit.test_lifecycle import Main
from tests.unit.test_lifecycle_main import Children, Clock, Poll
from tests.unit.test_sender_dispatch import WideRig

LMI = {INITIALIZATION_TYPE: MANAGED_INSTANCES}
ENV = {"SPLUNK_HOST": "https://splunk.example:8088", "SPLUNK_HEC_TOKEN": "secret-token"}
A = "6f9a3c8e-1b2d-4e5f-8a7b-0c1d2e3f4a5b"
B = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"


@pytest.mark.parametrize(("init_type", "events"), [
    (MANAGED_INSTANCES, ("SHUTDOWN",)),
    (f" {MANAGED_INSTANCES}\n", ("SHUTDOWN",)),
    ("on-demand", ("INVOKE", "SHUTDOWN")),
    ("provisioned-concurrency", ("INVOKE", "SHUTDOWN")),
    ("snap-start", ("INVOKE", "SHUTDOWN")),
    (None, ("INVOKE", "SHUTDOWN")),
])
def test_invoke_is_asked_for_everywhere_but_on_managed_instances(
    init_type: str | None, events: tuple[str, ...],
) -> None:
    assert lifecycle_events({} if init_type is None else {INITIALIZATION_TYPE: init_type}) == events


def test_the_extension_registers_for_shutdown_only_on_managed_instances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # There an INVOKE in the register request is refused (403) and the environment's init fails.
    answer = reply(200, b'{"functionName":"f"}', {"Lambda-Extension-Identifier": "id-1"})
    stub = ScriptedApi([[answer]])
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", stub.address)
    monkeypatch.setenv(INITIALIZATION_TYPE, MANAGED_INSTANCES)
    monkeypatch.setattr(lifecycle, "run", lambda api, environ: 0)
    monkeypatch.setattr("sys.argv", ["ext", "splunk-hec-extension"])
    try:
        assert entry.main() == 0
    finally:
        stub.close()
    [(line, _, body)] = stub.requests
    assert line == f"POST {REGISTER_PATH} HTTP/1.1"
    assert json.loads(body) == {"events": ["SHUTDOWN"]}


@pytest.mark.parametrize(("env", "version"), [(LMI, "2025-01-29"), ({}, "2022-12-13")])
def test_the_subscription_has_the_schema_version_the_environment_accepts(
    env: dict[str, str], version: str,
) -> None:
    loaded = config.load({**ENV, **env})
    assert json.loads(telemetry_api.build_subscription(loaded, 4243))["schemaVersion"] == version


def _envelopes(tmp_path: Path, env: dict[str, str]) -> tuple[EnvelopeBuilder, list[dict[str, Any]]]:
    """Two invocations at once: B starts while A runs, then lines of either."""
    loaded = config.load({**ENV, "SPLUNK_SPOOL_DIR": str(tmp_path / "spool"), **env})
    builder = EnvelopeBuilder(loaded, "fn")
    stamp = "2026-12-03T06:00:00.000Z"
    body = json.dumps([
        {"time": stamp, "type": "platform.start", "record": {"requestId": A}},
        {"time": stamp, "type": "platform.start", "record": {"requestId": B}},
        {"time": stamp, "type": "function", "record": "a print() line of A's\n"},
        {"time": stamp, "type": "function",
         "record": f"[INFO]\t{stamp}\t{A}\ta logging line of A's\n"},
        {"time": stamp, "type": "function", "record": {"requestId": A, "message": "A's JSON"}},
        {"time": stamp, "type": "platform.report", "record": {"requestId": A, "metrics": {}}},
    ]).encode()
    return builder, [json.loads(e) for e in builder.build(body)]


def _request_ids(envelopes: list[dict[str, Any]]) -> list[str | None]:
    return [e["fields"].get("request_id") for e in envelopes]


def test_on_managed_instances_a_line_has_the_request_id_it_carries_or_none(
    tmp_path: Path,
) -> None:
    builder, made = _envelopes(tmp_path, LMI)
    # The print() line is not B's, though B started last: it may be A's.
    assert _request_ids(made) == [A, B, None, A, A, A]
    assert builder.landmarks == []  # no flush waits for an invocation there


def test_elsewhere_a_line_without_an_id_is_the_last_started_invocation_s(tmp_path: Path) -> None:
    builder, made = _envelopes(tmp_path, {})
    assert _request_ids(made) == [A, B, B, A, A, A]
    assert [kind for kind, _, _ in builder.landmarks] == [
        "platform.start", "platform.start", "platform.report"]


def test_the_next_event_is_read_once_the_wait_says_it_may_be() -> None:
    event = b'{"eventType":"SHUTDOWN","deadlineMs":1}'
    stub = ScriptedApi([[reply(200, event)]])
    api = ExtensionsApi(LambdaApiClient(stub.address))
    waited: list[int] = []
    try:
        assert api.next_event(waited.append) == event
    finally:
        api.client.close()
        stub.close()
    assert len(waited) == 1 and waited[0] >= 0  # the connection's fd, the request sent


def test_elsewhere_main_waits_for_its_next_event_without_watching_its_children() -> None:
    made = Main()
    waits: list[object] = []

    def next_event(wait: object = None) -> bytes:
        waits.append(wait)
        raise errors.ApiError("/next", 500, b"")

    made.loop.api.next_event = next_event  # type: ignore[method-assign]
    try:
        with pytest.raises(errors.ApiError):
            made.loop.serve()
    finally:
        made.close()
    assert waits == [None]  # a select per event would be paid at every invocation


@contextlib.contextmanager
def _real_sender(made: Main, entry: Callable[[], None], *,
                 started: bool = True) -> Iterator[supervisor.Child]:
    """Main's sender as a real process running `entry` (forked as main forks it, now or, not
    `started`, by main); stopped, and main's pipes closed, at the end."""
    sender = made.loop.sender
    sender.entry, sender.log_level = entry, "CRITICAL"
    try:
        if started:
            supervisor.spawn(sender, made.loop._all_fds())
        yield sender
    finally:
        supervisor.stop([sender], time.monotonic() + 1)
        made.close()
        gc.unfreeze()  # main's, before its forks


def _lives_on() -> None:
    time.sleep(60)  # until stopped


def _serve_until(made: Main, done: Callable[[], bool], limit_s: float) -> float:
    """Serves one next-event call whose answer (none: the stand-in API ends) comes once `done()`
    or after `limit_s`; returns how long main waited for it."""
    lambda_side, main_side = socket.socketpair()

    def lambda_answers() -> None:
        end = time.monotonic() + limit_s
        while not done() and time.monotonic() < end:
            time.sleep(0.01)
        with contextlib.suppress(OSError):  # the test ended without it (unfixed: unwatched)
            lambda_side.send(b"x")

    def next_event(wait: object = None) -> bytes:
        assert callable(wait)
        wait(main_side.fileno())
        raise errors.ApiError("/next", 500, b"")  # the stand-in API's end

    made.loop.api.next_event = next_event  # type: ignore[method-assign]
    answering = threading.Thread(target=lambda_answers)
    answering.start()
    start = time.monotonic()
    try:
        with pytest.raises(errors.ApiError):
            made.loop.serve()
        return time.monotonic() - start
    finally:
        answering.join()
        lambda_side.close()
        main_side.close()


def test_on_managed_instances_a_sender_that_dies_is_restarted_before_the_next_event(
    tmp_path: Path,
) -> None:
    died = tmp_path / "died"

    def dies_once() -> None:
        if not died.exists():
            died.write_text("")
            os._exit(1)  # a crash while main waits for an event that comes hours later
        _lives_on()  # the one restarted

    made = Main(150, **LMI)
    with _real_sender(made, dies_once) as sender:
        first = sender.pid
        _serve_until(made, lambda: sender.restarts > 0, limit_s=10)
        assert sender.restarts == 1  # unfixed: never, until the SHUTDOWN
        assert sender.pid not in (0, first)
        os.kill(sender.pid, 0)  # running


def test_on_managed_instances_a_child_held_back_is_started_once_its_back_off_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[float] = []
    spawn = supervisor.spawn

    def timed_spawn(child: supervisor.Child, fds: tuple[int, ...]) -> None:
        started.append(time.monotonic())
        spawn(child, fds)

    made = Main(150, **LMI)
    with _real_sender(made, _lives_on, started=False) as sender:
        # The clock read once: a stall of a loaded machine between two reads would take from
        # the 0.2 s the lower bound below counts on.
        begin = time.monotonic()
        sender.restart_at = begin + 0.2  # dead, and held back 0.2 s
        monkeypatch.setattr(supervisor, "spawn", timed_spawn)
        # The event comes once it was started, or 3 s later (unfixed: it is started only then)
        waited = _serve_until(made, lambda: bool(started), limit_s=3)
        ended = time.monotonic()
    assert len(started) == 1
    # Started during main's wait, once the hold was over: not at the event 3 s later.
    assert 0.15 <= started[0] - begin < 2.5 and started[0] < ended and waited < 2.5


def _stops_itself() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)  # alive, reading nothing, until SIGKILLed
    time.sleep(60)


@pytest.fixture
def probed_often(monkeypatch: pytest.MonkeyPatch) -> None:
    # Looked at from the start, an unread ask judged 50 ms later (5 s and 1 s in Lambda)
    monkeypatch.setattr(lifecycle, "PROBE_AFTER_S", 0.0)
    monkeypatch.setattr(lifecycle, "PROBE_READ_S", 0.05)


@pytest.mark.usefixtures("probed_often")
def test_on_managed_instances_a_hung_sender_is_killed_and_restarted_before_the_next_event(
) -> None:
    made = Main(150, **LMI)
    with _real_sender(made, _stops_itself) as sender:
        stopped = sender.pid
        os.write(made.loop.wake_w, b"!")  # the listener spooled something it never takes
        _serve_until(made, lambda: sender.restarts > 0, limit_s=20)
        assert sender.restarts == 1 and sender.hangs == 1  # unfixed: never judged
        with pytest.raises(ProcessLookupError):
            os.kill(stopped, 0)  # killed and reaped


@pytest.mark.usefixtures("probed_often")
def test_on_managed_instances_a_sender_that_reads_its_asks_is_never_killed(
    tmp_path: Path,
) -> None:
    # As a sender holding a backlog while HEC is down: the listener's wake-ups wait, but it reads
    # main's asks between its passes and answers them (Failing).
    made = Main(150, **LMI)
    asks = tmp_path / "asks"

    def answers_its_asks() -> None:
        inbox = control.Inbox(made.loop.ctl_r)
        while not inbox.closed:
            select.select([made.loop.ctl_r], [], [], 1.0)
            for message in inbox.read():
                if isinstance(message, control.Flush):
                    with asks.open("a") as out:
                        out.write(message.request_id + "\n")
                    control.send(made.loop.status_w, control.Failing(message.request_id))

    with _real_sender(made, answers_its_asks) as sender:
        os.write(made.loop.wake_w, b"!")  # never taken
        waited = _serve_until(made, lambda: asks.exists() and len(asks.read_text().split()) >= 5,
                              limit_s=20)
        assert len(asks.read_text().split()) >= 5  # probed again and again (the test's premise)
        assert sender.hangs == 0 and sender.restarts == 0
        assert waited < 20


def test_the_sender_answers_a_probe_for_an_invocation_nothing_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Main's probe on Managed Instances asks for UNNAMED_REQUEST: a sender reading its asks must
    # answer it (what main hears: alive), with invocations under way at once and none named.
    clock = test_sender_loop.Clock()
    monkeypatch.setattr(sender_process, "time", clock)
    rig = WideRig(tmp_path, None, **LMI)
    try:
        stamp = "2026-12-03T06:00:00.000Z"
        rig.writer.append(json.dumps([
            {"time": stamp, "type": "platform.start", "record": {"requestId": A}},
            {"time": stamp, "type": "platform.start", "record": {"requestId": B}},
            {"time": stamp, "type": "function", "record": "a line\n"},
        ]).encode(), 3)
        rig.sender.step()
        heard: list[control.Message] = []
        for _ in range(2):  # asked again at a later probe: answered again
            heard += rig.tell(control.FlushBacklog(lifecycle.UNNAMED_REQUEST))
            for _ in range(3):
                rig.courier.finish()
                clock.now += rig.sender.flush_budget_s + 0.1  # at the latest, its budget later
                rig.sender.step()
                heard += rig.answers()
        answered = [m for m in heard if isinstance(m, control.Delivered | control.Failing)
                    and m.request_id == lifecycle.UNNAMED_REQUEST]
        assert len(answered) >= 2
        assert rig.sender.self_metrics.ends_lost == 0  # B's start ended no A there
    finally:
        rig.close()


# -- main's wait for the next event, in process (stand-in children, clock and select) ----------


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Main, Poll, Children, int]]:
    """Main on Managed Instances with its children started (no pidfd: the kernel has none),
    and the end of its connection to the Extensions API that Lambda writes its event to."""
    clock = Clock()
    children = Children()
    monkeypatch.setattr(lifecycle, "time", clock)
    for name in ("spawn", "reap"):
        monkeypatch.setattr(supervisor, name, getattr(children, name))
    monkeypatch.setattr(supervisor, "restart_due", lambda child: clock.now >= child.restart_at)
    monkeypatch.setattr(lifecycle, "_a_child_exited", lambda: True)
    monkeypatch.setattr(diagnostics, "note", lambda level, message: None)
    made = Main(150, **LMI)
    made.loop.listener.pid = made.loop.sender.pid = 1  # as if started
    poll = Poll(clock)
    poll.status_w = made.loop.status_w
    monkeypatch.setattr(lifecycle, "select", poll)
    lambda_side, main_side = socket.socketpair()
    poll.lambda_answers = lambda: lambda_side.send(b"x")  # type: ignore[attr-defined]
    try:
        yield made, poll, children, main_side.fileno()
    finally:
        for child in (made.loop.listener, made.loop.sender):
            if child.exit_fd >= 0:
                os.close(child.exit_fd)
                child.exit_fd = -1
        made.close()
        for closing in (lambda_side, main_side):
            closing.close()


def _answers(poll: Poll) -> Callable[[], object]:
    return poll.lambda_answers  # type: ignore[attr-defined, no-any-return]


def test_without_pidfds_main_looks_at_its_children_every_so_often_while_it_waits(
    watched: tuple[Main, Poll, Children, int],
) -> None:
    made, poll, children, api_fd = watched
    poll.actions = {2: lambda: children.dying.append("sender"), 4: _answers(poll)}
    made.loop._watch_children(api_fd)
    assert children.spawned == ["sender"] and made.loop.sender.restarts == 1
    assert poll.timeouts == [lifecycle.SENDER_CHECK_S] * 5  # until the event came


def test_with_pidfds_main_waits_for_a_death_the_event_or_its_next_look_at_the_sender(
    watched: tuple[Main, Poll, Children, int],
) -> None:
    made, poll, children, api_fd = watched
    listener, sender = made.loop.listener, made.loop.sender
    pipes = [os.pipe() for _ in range(3)]  # pidfds: writing to one is that child's exit
    (listener.exit_fd, listener_end), (sender.exit_fd, _), (new_pidfd, _) = pipes

    def listener_dies() -> None:
        children.dying.append("listener")
        os.write(listener_end, b"x")

    def gets_a_pidfd() -> None:  # the restarted listener
        listener.exit_fd = new_pidfd

    children.on_spawn = gets_a_pidfd
    poll.actions = {0: listener_dies, 1: _answers(poll)}
    try:
        made.loop._watch_children(api_fd)
    finally:
        listener.exit_fd = sender.exit_fd = -1
        for fds in pipes:
            for fd in fds:
                os.close(fd)
    assert children.spawned == ["listener"] and listener.restarts == 1
    # Woken by the death, not by a timer; then a wait until the sender's next look again
    # (PROBE_AFTER_S from the start, none of it gone on the stand-in clock), ended by the event
    assert poll.timeouts == [lifecycle.PROBE_AFTER_S, lifecycle.PROBE_AFTER_S]


@pytest.mark.parametrize("pidfd", [False, True])
def test_a_child_whose_back_off_is_over_is_started_at_once_while_main_waits(
    watched: tuple[Main, Poll, Children, int], pidfd: bool,
) -> None:
    made, poll, children, api_fd = watched
    sender = made.loop.sender
    sender.pid, sender.restart_at = 0, poll.clock.now - 1.0  # held back, its back-off over
    poll.actions = {1: _answers(poll)}
    start = poll.clock.now
    with _stand_in_pidfds(*([made.loop.listener] if pidfd else [])):
        made.loop._watch_children(api_fd)
    assert children.spawned == ["sender"]
    assert poll.timeouts[0] == 0.0 and poll.clock.now - start < lifecycle.SENDER_CHECK_S + 1e-9


@pytest.mark.parametrize("pidfd", [False, True])
def test_a_child_held_back_is_started_when_its_back_off_ends_while_main_waits(
    watched: tuple[Main, Poll, Children, int], pidfd: bool,
) -> None:
    made, poll, children, api_fd = watched
    sender = made.loop.sender
    sender.pid, sender.restart_at = 0, poll.clock.now + 0.25  # held back 0.25 s more
    start = poll.clock.now
    spawned_at: list[float] = []
    children.on_spawn = lambda: spawned_at.append(poll.clock.now - start)
    poll.actions = {(1 if pidfd else 3): _answers(poll)}
    with _stand_in_pidfds(*([made.loop.listener] if pidfd else [])):
        made.loop._watch_children(api_fd)
    assert children.spawned == ["sender"] and spawned_at == [pytest.approx(0.25)]
    # One wait until then with the listener's pidfd, else looks every SENDER_CHECK_S, the last
    # one shorter
    assert poll.timeouts[:-1] == (
        [pytest.approx(0.25)] if pidfd else [0.1, 0.1, pytest.approx(0.05)])


@contextlib.contextmanager
def _stand_in_pidfds(*children: supervisor.Child) -> Iterator[list[tuple[int, int]]]:
    """Pipes as the `children`'s pidfds (unreadable while nothing is written: alive); the list
    takes more pipes to close at the end."""
    pipes = [os.pipe() for _ in children]
    for child, (read_end, _) in zip(children, pipes, strict=True):
        child.exit_fd = read_end
    try:
        yield pipes
    finally:
        for child in children:
            child.exit_fd = -1
        for fds in pipes:
            for fd in fds:
                os.close(fd)


def _probes(made: Main, poll: Poll, answer_after: int) -> list[tuple[float, str, float]]:
    """Main's probes while it waits (when, for which request, its deadline from then); the
    event comes after `answer_after` probes."""
    made_probes: list[tuple[float, str, float]] = []

    def probe(request_id: str, deadline: float) -> None:
        made_probes.append((poll.clock.now, request_id, deadline - poll.clock.time()))
        if len(made_probes) == answer_after:
            poll.actions[len(poll.timeouts)] = _answers(poll)

    made.loop.probe = probe  # type: ignore[method-assign]
    return made_probes


def test_main_probes_the_sender_when_its_look_is_due_while_it_waits(
    watched: tuple[Main, Poll, Children, int],
) -> None:
    made, poll, children, api_fd = watched
    start = poll.clock.now
    made.loop.look_at = start + 0.25
    probes = _probes(made, poll, answer_after=1)
    listener = made.loop.listener
    with _stand_in_pidfds(listener, made.loop.sender) as pipes:
        new_pidfd = os.pipe()
        pipes.append(new_pidfd)

        def listener_dies() -> None:  # a wake-up before the look is due: no probe yet
            children.dying.append("listener")
            os.write(pipes[0][1], b"x")

        def gets_a_pidfd() -> None:
            listener.exit_fd = new_pidfd[0]

        children.on_spawn = gets_a_pidfd
        poll.actions[0] = listener_dies
        made.loop._watch_children(api_fd)
    # Woken by the death, then one wait to the look's time (not a second early or late), then
    # the probe, for the invocation nothing names, with a deadline far enough not to bound its
    # waits
    assert children.spawned == ["listener"]
    assert poll.timeouts[:2] == [pytest.approx(0.25), pytest.approx(0.25)]
    [(at, request_id, deadline_in)] = probes
    assert at == pytest.approx(start + 0.25) and request_id == lifecycle.UNNAMED_REQUEST
    assert 10 <= deadline_in <= 600


def test_a_probe_that_ends_at_once_is_made_again_no_sooner_than_sender_check_s(
    watched: tuple[Main, Poll, Children, int],
) -> None:
    made, poll, _, api_fd = watched
    made.loop.probing, made.loop.look_at = True, poll.clock.now - 1.0  # an ask out, overdue
    probes = _probes(made, poll, answer_after=3)  # each ends at once (a sender not started)
    with _stand_in_pidfds(made.loop.listener, made.loop.sender):
        made.loop._watch_children(api_fd)
    assert len(probes) == 3
    assert poll.timeouts[:3] == [lifecycle.SENDER_CHECK_S] * 3  # not a loop of zero waits


def test_a_dead_sender_is_not_probed_before_it_is_started_again(
    watched: tuple[Main, Poll, Children, int],
) -> None:
    made, poll, children, api_fd = watched
    sender = made.loop.sender
    start = poll.clock.now
    sender.pid, sender.restart_at = 0, start + 0.3  # held back 0.3 s more
    made.loop.look_at = start - 1.0  # a look overdue
    probes = _probes(made, poll, answer_after=1)
    made.loop._watch_children(api_fd)
    assert children.spawned == ["sender"]
    [(at, _, _)] = probes
    assert at >= start + 0.3  # asked of the new one, not of none
