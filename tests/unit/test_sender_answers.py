"""What the sender tells main about the flushes it waits for, and when its waits end for them:
Running halfway through main's wait, never to an invocation already told Failing, never for a
backlog; every message read with a backlog flush applied; the inline request's limit and the
idle wait on a monotonic clock counted from boot (a fresh microVM's reads well under a second).
In process, on the test's clock and select (test_sender_loop)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext import control
from ext.sender import process as sender
from ext.sender import self_metrics
from tests.unit.test_sender_dispatch import WideRig
from tests.unit.test_sender_loop import Clock, Poll


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[WideRig]:
    made = WideRig(tmp_path)
    yield made
    made.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(sender, "time", made)
    monkeypatch.setattr(self_metrics, "time", made)
    return made


@pytest.fixture
def poll(monkeypatch: pytest.MonkeyPatch) -> Poll:
    made = Poll()
    monkeypatch.setattr(sender, "select", made)
    return made


def _started(rig: WideRig, rid: str) -> None:
    """`rid`'s platform.start is spooled and read."""
    start = [{"time": "2026-11-26T12:00:00.000Z", "type": "platform.start",
              "record": {"requestId": rid}}]
    rig.writer.append(json.dumps(start).encode(), 1)
    rig.sender.step()


def test_an_invocation_told_failing_is_not_told_running_halfway_through_the_wait(
    rig: WideRig, clock: Clock,
) -> None:
    assert rig.tell(control.Flush("r1")) == []
    _started(rig, "r1")
    rig.courier.failures += 1  # HEC refused an attempt: main stops waiting for r1
    rig.sender.step()
    assert rig.answers() == [control.Failing("r1")]
    clock.now += rig.sender.flush_wait_s / 2
    rig.sender.step()
    assert rig.answers() == []  # main no longer waits: Running would only wake it
    assert not rig.sender.running_due


def test_a_backlog_flush_that_started_is_never_told_running(rig: WideRig, clock: Clock) -> None:
    _started(rig, "r1")  # its platform.start is spooled, its runtimeDone not (yet, or lost)
    assert rig.tell(control.FlushBacklog("r1")) == []
    clock.now += rig.sender.flush_wait_s / 2
    rig.sender.step()
    assert rig.answers() == []  # main would not wait longer for an invocation ended long ago
    clock.now = rig.sender.due["r1"]
    rig.sender.step()
    assert rig.answers() == [control.Failing("r1")]  # its budget from the asking


def test_the_messages_read_with_a_backlog_flush_are_all_applied(
    rig: WideRig, clock: Clock,
) -> None:
    # Main asks for the new invocation, then for the backlog; the sender reads both at once,
    # with whatever came after them (the next invocation's flush, main's shutdown).
    for message in (control.Track("r2"), control.FlushBacklog("r1"), control.Flush("r3"),
                    control.Drain(clock.deadline_ms(60), "r3")):
        control.send(rig.pipes[1][1], message)
    rig.sender.control_ready = True
    assert rig.sender._service_control() is True
    assert set(rig.sender.due) == {"r1"}
    assert set(rig.sender.running_due) == {"r3"}
    assert rig.sender.drain_deadline == pytest.approx(clock.now + 60)
    assert rig.sender.last_request == "r3"


def test_a_request_on_the_senders_thread_ends_with_the_first_budget_right_after_boot(
    rig: WideRig, clock: Clock,
) -> None:
    clock.now = 0.25  # the monotonic clock of a microVM booted a quarter of a second ago
    rig.tell(control.Flush("r1"))
    rig.sender.due["r1"] = 0.55
    assert rig.sender._inline_limit_s() == pytest.approx(0.3)


def test_an_idle_wait_right_after_boot_ends_halfway_through_main_s_wait(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    clock.now = 0.1  # a sender started right after boot
    rig.tell(control.Flush("r1"))
    rig.sender._wait(5.0)
    assert poll.timeouts == [pytest.approx(rig.sender.flush_wait_s / 2)]


def test_an_idle_wait_past_main_s_halfway_point_is_a_poll(
    rig: WideRig, clock: Clock, poll: Poll,
) -> None:
    # The halfway point passed during the pass (Running is told at the next): a 1 ms poll that
    # looks everywhere, as for a flush's budget that ended.
    rig.tell(control.Flush("r1"))
    clock.now += rig.sender.flush_wait_s
    rig.sender.spool_dirty = False
    rig.sender._wait(5.0)
    assert poll.timeouts == [0.001]
    assert rig.sender.spool_dirty
