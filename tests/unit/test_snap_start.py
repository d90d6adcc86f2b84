# ruff: noqa: F811 - the fixtures of test_lifecycle_main, imported
"""SnapStart: the first event after a snap-start init comes in an environment restored from the
init's snapshot, where the connection to HEC made before it leads nowhere. Main tells the sender
(control.Restored) before that invocation's flush, once; the sender tells its courier."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from ext import config, control, errors
from ext.listener.process import Listener
from ext.main import lifecycle, supervisor
from ext.main.extensions_api import INITIALIZATION_TYPE, SNAP_START, on_snap_start
from ext.sender import process as sender_process
from ext.spool.layout import WAKE_NOW
from tests.unit.test_lifecycle import Main
from tests.unit.test_lifecycle_main import (  # noqa: F401 - fixtures
    INVOKE,
    SHUTDOWN,
    Children,
    Clock,
    Notes,
    Poll,
    _serve,
    children,
    clock,
    main,
    notes,
    poll,
    sent,
)
from tests.unit.test_sender_dispatch import HOLDING, WideRig

ENV = {"SPLUNK_HOST": "https://splunk.example:8088", "SPLUNK_HEC_TOKEN": "secret-token"}
SNAP = {INITIALIZATION_TYPE: SNAP_START}


@pytest.mark.parametrize(("init_type", "snap"), [
    ("snap-start", True), (" snap-start\n", True), ("snapstart", False), ("on-demand", False),
    ("provisioned-concurrency", False), ("lambda-managed-instances", False), ("", False),
    (None, False),
])
def test_snap_start_is_told_by_the_initialization_type(init_type: str | None, snap: bool) -> None:
    environ = {} if init_type is None else {INITIALIZATION_TYPE: init_type}
    assert on_snap_start(environ) is snap
    assert config.load({**ENV, **environ}).snap_start is snap


@pytest.mark.parametrize("main", [{**SNAP, "SPLUNK_FLUSH": "sync"}], indirect=True)
def test_the_sender_hears_of_the_restore_before_the_first_flush_and_only_once(
    main: Main, children: Children, poll: Poll,
) -> None:
    seen: list[list[control.Message]] = []

    def flush_invocation(request_id: str, deadline: float, ended: bool = False,
                         ask_late: bool = False, zero_budget_s: float = 0.0) -> None:
        seen.append(sent(main))

    main.loop.api.events = [INVOKE, INVOKE]  # type: ignore[attr-defined]
    main.loop.flush_invocation = flush_invocation  # type: ignore[method-assign]
    with pytest.raises(Exception, match="/next"):
        main.loop.serve()
    # The init's spool settled first (no answer here: its whole wait), then the restore.
    assert seen == [[control.Settle(), control.Restored()], []]


@pytest.mark.parametrize("main", [SNAP], indirect=True)
def test_a_shutdown_first_still_cuts_the_old_connection_before_the_drain(
    main: Main, children: Children, poll: Poll,
) -> None:
    code, calls = _serve(main, SHUTDOWN)
    assert code == 0 and [call[0] for call in calls] == ["shutdown"]
    assert sent(main) == [control.Settle(), control.Restored()]


@pytest.mark.parametrize("main", [{}, {INITIALIZATION_TYPE: "on-demand"},
                                  {INITIALIZATION_TYPE: "provisioned-concurrency"}],
                         indirect=True)
def test_without_snap_start_the_sender_hears_of_no_restore(
    main: Main, children: Children,
) -> None:
    _serve(main, INVOKE, INVOKE, SHUTDOWN)
    told = sent(main)
    assert control.Restored() not in told and control.Settle() not in told


def test_the_sender_passes_the_restore_to_its_courier(tmp_path: Path) -> None:
    rig = WideRig(tmp_path)
    try:
        assert control.send(rig.pipes[1][1], control.Restored())
        rig.sender.control_ready = True
        assert rig.sender._service_control() is False  # nothing to send for it
        assert rig.courier.restores == 1
        rig.sender.control_ready = True
        rig.sender._service_control()  # read once
        assert rig.courier.restores == 1
    finally:
        rig.close()


# -- before the snapshot nothing lingers ----------------------------------------------------------


def test_before_the_snapshot_a_line_is_sent_at_once_and_after_the_restore_it_lingers(
    tmp_path: Path,
) -> None:
    # Lambda snapshots at a moment nobody here is told of: what is held then is sent again by
    # every environment restored from it. From the restore on, the dispatch settings apply.
    rig = WideRig(tmp_path, None, **HOLDING, **SNAP)
    try:
        rig.sender.before_snapshot = True  # as main forks it during a snap-start init
        rig.append(["loading the model"])
        rig.sender.step()
        assert len(rig.courier.in_flight) == 1  # not held for 500 lines or 600 s
        rig.courier.finish()
        rig.tell(control.Restored())
        rig.append(["an invocation's line"])
        rig.sender.step()
        assert not rig.courier.in_flight  # held, as the settings say
    finally:
        rig.close()


@pytest.mark.parametrize(("main", "before"), [(SNAP, [True, False]), ({}, [False, False])],
                         indirect=["main"])
def test_a_sender_forked_before_the_restore_sends_at_once_and_one_forked_after_it_does_not(
    main: Main, children: Children, monkeypatch: pytest.MonkeyPatch, before: list[bool],
    poll: Poll,
) -> None:
    made: list[bool] = []

    class Forked:
        def __init__(self, *args: object, before_snapshot: bool = False, **kwargs: object) -> None:
            made.append(before_snapshot)

        def run(self) -> None:
            return None

    monkeypatch.setattr(sender_process, "Sender", Forked)
    main.loop._run_sender()  # the sender of the init
    main.loop.api.events = [INVOKE]  # type: ignore[attr-defined]
    main.loop.flush_invocation = lambda *args, **kwargs: None  # type: ignore[method-assign]
    with pytest.raises(errors.ApiError):
        main.loop.serve()
    main.loop._run_sender()  # one restarted after the restore
    assert made == before



def test_before_the_first_invocation_ends_the_listener_wakes_the_sender_for_every_batch(
    tmp_path: Path,
) -> None:
    def woken(made: Listener, read_fd: int, *items: tuple[str, object]) -> bool:
        made.accept_batch(json.dumps([{"time": "2026-12-03T06:00:00.000Z", "type": kind,
                                       "record": record} for kind, record in items]).encode())
        try:
            return os.read(read_fd, 10) == WAKE_NOW
        except BlockingIOError:
            return False

    seen: dict[str, list[bool]] = {}
    for name, env in (("snap", SNAP), ("on-demand", {})):
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK)
        server = socket.socket()
        made = Listener(config.load({**ENV, "SPLUNK_SPOOL_DIR": str(tmp_path / name / "spool"),
                                     **env}), server, write_fd)
        server.close()
        try:
            seen[name] = [
                woken(made, read_fd, ("platform.initStart", {"phase": "init"}),
                      ("function", "loading\n")),  # the init's: in the snapshot
                woken(made, read_fd, ("platform.start", {"requestId": "r1"}),
                      ("function", "a\n")),  # the restore, its first invocation
                woken(made, read_fd, ("platform.runtimeDone", {"requestId": "r1"})),
                woken(made, read_fd, ("platform.start", {"requestId": "r2"}),
                      ("function", "b\n")),  # held again, as anywhere
            ]
        finally:
            made.close()
            os.close(read_fd)
            os.close(write_fd)
    assert seen == {"snap": [True, True, True, False], "on-demand": [False, False, True, False]}


# -- before main's first event/next the spool settles ---------------------------------------------


def _settle(main: Main, clock: Clock) -> tuple[list[control.Message], float]:
    """Serves until the first event/next: what main told the sender, and how long it waited."""
    started = clock.now
    main.loop.api.events = []  # type: ignore[attr-defined]
    with pytest.raises(errors.ApiError):
        main.loop.serve()
    return sent(main), clock.now - started


@pytest.mark.parametrize("main", [SNAP], indirect=True)
@pytest.mark.parametrize("answer", [control.Delivered(control.SETTLED),
                                    control.Failing(control.SETTLED)])
def test_main_waits_for_the_spool_to_settle_until_the_sender_answers(
    main: Main, children: Children, poll: Poll, clock: Clock, answer: control.Message,
) -> None:
    poll.script = {0: [control.Delivered("an-earlier-invocation")], 1: [answer]}
    told, waited = _settle(main, clock)
    assert told == [control.Settle()]
    # Another invocation's answer does not end the wait; the sender's answer to it does, at once.
    assert waited == 0.0 and len(poll.timeouts) == 2
    assert control.SETTLED not in main.loop.answers


@pytest.mark.parametrize("main", [SNAP], indirect=True)
def test_main_waits_for_the_spool_to_settle_no_longer_than_its_bound(
    main: Main, children: Children, poll: Poll, clock: Clock,
) -> None:
    told, waited = _settle(main, clock)
    assert told == [control.Settle()] and waited == lifecycle.SNAPSHOT_SETTLE_S


@pytest.mark.parametrize("main", [SNAP], indirect=True)
def test_a_wait_that_wakes_past_the_settle_s_bound_is_the_last(
    main: Main, children: Children, poll: Poll, clock: Clock,
) -> None:
    # A real select wakes a little after its timeout, or much later at a small CPU share.
    def stalled() -> None:
        clock.now += lifecycle.SNAPSHOT_SETTLE_S + 1.0

    poll.actions = {0: stalled}
    poll.script = {1: [control.Delivered(control.SETTLED)]}  # would end a wait after it
    told, waited = _settle(main, clock)
    assert told == [control.Settle()] and len(poll.timeouts) == 1
    assert waited == pytest.approx(lifecycle.SNAPSHOT_SETTLE_S + 1.0 + lifecycle.SENDER_CHECK_S)


@pytest.mark.parametrize("main", [SNAP], indirect=True)
def test_the_settle_s_bound_holds_whatever_the_monotonic_clock_reads(
    main: Main, children: Children, poll: Poll, clock: Clock,
) -> None:
    clock.now = 0.25  # main starts right after the microVM's boot
    told, waited = _settle(main, clock)
    assert told == [control.Settle()] and waited == pytest.approx(lifecycle.SNAPSHOT_SETTLE_S)


@pytest.mark.parametrize("main", [SNAP], indirect=True)
@pytest.mark.parametrize("due", [True, False])
def test_a_sender_that_dies_while_the_spool_settles_ends_the_wait(
    main: Main, children: Children, poll: Poll, clock: Clock, monkeypatch: pytest.MonkeyPatch,
    due: bool,
) -> None:
    # Restarted, the new sender sends the spool anyway; held back for its back-off, nothing
    # would answer: either way main goes on to its first event/next at once.
    monkeypatch.setattr(supervisor, "restart_due", lambda child: due)

    def dies() -> None:
        children.dying.append("sender")
        main.loop.sender.restart_at = 1.0  # it died right after its start

    poll.actions = {1: dies}  # in the second look (no pidfds here: SENDER_CHECK_S each)
    told, waited = _settle(main, clock)
    assert told == [control.Settle()]
    assert waited == pytest.approx(2 * lifecycle.SENDER_CHECK_S)
    assert len(poll.timeouts) == 2
    assert children.spawned == (["sender"] if due else [])


@pytest.mark.parametrize("main", [{}, {INITIALIZATION_TYPE: "provisioned-concurrency"}],
                         indirect=True)
def test_elsewhere_main_does_not_wait_before_its_first_next(
    main: Main, children: Children, poll: Poll, clock: Clock,
) -> None:
    told, waited = _settle(main, clock)
    assert told == [] and waited == 0 and poll.timeouts == []


def test_snapshot_settle_stays_far_within_the_shortest_snap_start_init() -> None:
    assert lifecycle.SNAPSHOT_SETTLE_S + lifecycle.SENDER_START_WAIT_S <= 130 / 10


@pytest.mark.parametrize("failing", [False, True])
def test_the_sender_says_settled_once_everything_spooled_is_in_hec_or_hec_fails(
    tmp_path: Path, failing: bool,
) -> None:
    rig = WideRig(tmp_path, None, **HOLDING)
    try:
        rig.append(["loading the model"])
        answers = rig.tell(control.Settle())  # read, handed over at once: not in HEC yet
        assert answers == [] and len(rig.courier.in_flight) == 1
        if failing:  # an attempt failed: HEC is not taking it now
            rig.courier.failures += 1
            rig.sender.step()
            assert rig.answers() == [control.Failing(control.SETTLED)]
        else:
            rig.courier.finish()
            rig.sender.step()
            assert rig.answers() == [control.Delivered(control.SETTLED)]
        rig.sender.step()
        assert rig.answers() == []  # told once
        if failing:  # nor again once HEC takes it after all, or fails again
            rig.courier.failures += 1
            rig.sender.step()
            rig.courier.finish()
            rig.sender.step()
            assert rig.answers() == []
    finally:
        rig.close()


def test_with_nothing_spooled_the_sender_says_settled_at_once(tmp_path: Path) -> None:
    rig = WideRig(tmp_path)
    try:
        assert rig.tell(control.Settle()) == [control.Delivered(control.SETTLED)]
    finally:
        rig.close()


def test_a_hanging_hec_ends_the_settling(tmp_path: Path) -> None:
    rig = WideRig(tmp_path, None, **HOLDING)
    try:
        rig.append(["loading the model"])
        assert rig.tell(control.Settle()) == []
        rig.courier.on_wire_s = rig.sender.flush_wait_s + 0.01  # on the wire longer than a flush
        rig.sender.step()
        assert rig.answers() == [control.Failing(control.SETTLED)]
    finally:
        rig.close()


def test_before_the_snapshot_no_request_is_made_on_the_sender_s_own_thread(
    tmp_path: Path,
) -> None:
    # One on the wire at the snapshot would hold that thread, deaf to the restore, until its
    # timeout: the courier's thread sends, the sender's stays free to hear of it.
    rig = WideRig(tmp_path, None, **SNAP, DISPATCH_MIN_BATCH_SIZE="1")
    inline: list[object] = []

    def deliver_now(batch: object, within_s: float) -> bool:
        inline.append(batch)
        return True

    rig.courier.deliver_now = deliver_now  # type: ignore[method-assign]
    try:
        rig.sender.before_snapshot = True
        rig.append(["loading the model"])
        rig.sender.step()
        assert inline == [] and len(rig.courier.in_flight) == 1
        rig.courier.finish()
        rig.tell(control.Restored())
        rig.append(["an invocation's line"])
        rig.sender.step()
        assert len(inline) == 1  # after the restore, as anywhere
    finally:
        rig.close()
