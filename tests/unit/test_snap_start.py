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
    _serve,
    children,
    clock,
    main,
    notes,
    sent,
)
from tests.unit.test_sender_dispatch import HOLDING, WideRig

ENV = {"SPLUNK_HOST": "https://splunk.example:8088", "SPLUNK_HEC_TOKEN": "secret-token"}
SNAP = {INITIALIZATION_TYPE: SNAP_START}


@pytest.mark.parametrize(("init_type", "snap"), [
    ("snap-start", True), (" snap-start\n", True), ("on-demand", False),
    ("provisioned-concurrency", False), ("lambda-managed-instances", False), ("", False),
    (None, False),
])
def test_snap_start_is_told_by_the_initialization_type(init_type: str | None, snap: bool) -> None:
    environ = {} if init_type is None else {INITIALIZATION_TYPE: init_type}
    assert on_snap_start(environ) is snap
    assert config.load({**ENV, **environ}).snap_start is snap


@pytest.mark.parametrize("main", [{**SNAP, "SPLUNK_FLUSH": "sync"}], indirect=True)
def test_the_sender_hears_of_the_restore_before_the_first_flush_and_only_once(
    main: Main, children: Children,
) -> None:
    seen: list[list[control.Message]] = []

    def flush_invocation(request_id: str, deadline: float, ended: bool = False,
                         ask_late: bool = False, zero_budget_s: float = 0.0) -> None:
        seen.append(sent(main))

    main.loop.api.events = [INVOKE, INVOKE]  # type: ignore[attr-defined]
    main.loop.flush_invocation = flush_invocation  # type: ignore[method-assign]
    with pytest.raises(Exception, match="/next"):
        main.loop.serve()
    assert seen == [[control.Restored()], []]


@pytest.mark.parametrize("main", [SNAP], indirect=True)
def test_a_shutdown_first_still_cuts_the_old_connection_before_the_drain(
    main: Main, children: Children,
) -> None:
    code, calls = _serve(main, SHUTDOWN)
    assert code == 0 and [call[0] for call in calls] == ["shutdown"]
    assert sent(main) == [control.Restored()]


@pytest.mark.parametrize("main", [{}, {INITIALIZATION_TYPE: "on-demand"},
                                  {INITIALIZATION_TYPE: "provisioned-concurrency"}],
                         indirect=True)
def test_without_snap_start_the_sender_hears_of_no_restore(
    main: Main, children: Children,
) -> None:
    _serve(main, INVOKE, INVOKE, SHUTDOWN)
    assert control.Restored() not in sent(main)


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
