# ruff: noqa: F811 - the fixtures of test_lifecycle_main, imported
"""SnapStart: the first event after a snap-start init comes in an environment restored from the
init's snapshot, where the connection to HEC made before it leads nowhere. Main tells the sender
(control.Restored) before that invocation's flush, once; the sender tells its courier."""

from __future__ import annotations

from pathlib import Path

import pytest

from ext import config, control
from ext.main.extensions_api import INITIALIZATION_TYPE, SNAP_START, on_snap_start
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
from tests.unit.test_sender_dispatch import WideRig

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
