"""When the sender dispatches, how much it reads per pass, and when it stops: against the
stand-in courier of test_sender_commits (batches finish when the test says)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext import config, control
from ext.sender import process as sender
from ext.sender.process import Sender
from ext.spool import SpoolRecord, SpoolWriter
from tests.unit.test_sender_commits import Rig, StandInCourier


class TimedCourier(StandInCourier):
    """The stand-in plus the figures the shutdown's drain estimate reads."""

    def __init__(self) -> None:
        super().__init__()
        self.queued_bytes = 0
        self.round_trip_s: float | None = None
        self.rate_bps: float | None = None
        self.on_wire_s: float | None = None  # how long the request in flight has been posting

    def send_rate_bps(self) -> float | None:
        return self.rate_bps

    def stalled(self, limit_s: float) -> bool:
        return self.hanging or (self.on_wire_s is not None and self.on_wire_s > limit_s)


class WideRig(Rig):
    """A Rig with any configuration variable."""

    def __init__(self, folder: Path, courier: TimedCourier | None = None, **env: str) -> None:
        self.spool = folder / "spool"
        full = {"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "t",
                "SPLUNK_SPOOL_DIR": str(self.spool), **env}
        self.pipes = [control.make_pipe() for _ in range(4)]  # the fourth: main's notes
        # Holds the wake-up of a read that may wait, as the listener's does.
        self.writer = SpoolWriter(self.spool, wake_fd=self.pipes[0][1], defer_wake_s=0.25)
        self.courier: TimedCourier = courier or TimedCourier()
        self.sender = Sender(config.load(full), "fn", self.pipes[0][0], self.pipes[1][0],
                             self.pipes[2][1], courier=self.courier,  # type: ignore[arg-type]
                             notes_fd=self.pipes[3][0])
        self.lines: dict[int, list[str]] = {}
        self.status = control.Inbox(self.pipes[2][0])

    def note(self, request_id: str) -> None:
        """Main waits for `request_id` quietly (adaptive): a note, no wake-up."""
        assert control.send(self.pipes[3][1], control.Awaited(request_id))


HOLDING = {"DISPATCH_MIN_BATCH_SIZE": "1000", "SPLUNK_DISPATCH_MAX_WAIT_MS": "600000"}


@pytest.fixture
def rig(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WideRig]:
    made = WideRig(tmp_path, **getattr(request, "param", {}))
    yield made
    made.close()


@pytest.mark.parametrize("rig", [{**HOLDING, "SPLUNK_MAX_REQUEST_BYTES": "4096"}], indirect=True)
def test_a_full_request_is_dispatched_without_waiting_and_never_exceeded(rig: WideRig) -> None:
    rig.append(["x" * 1000])
    rig.sender.step()
    assert not rig.courier.in_flight  # 1 event, far below the minimum batch: held
    rig.append(["y" * 1500, "z" * 1500])
    rig.sender.step()
    assert rig.courier.in_flight  # over 4,096 bytes held: dispatched at once
    rig.sender.step()  # hands over the second request
    batches = list(rig.courier.in_flight)
    assert [b.count for b in batches] == [2, 1]
    assert all(b.size <= 4096 for b in batches)


@pytest.mark.parametrize("rig", [{"DISPATCH_MIN_BATCH_SIZE": "1000",
                                  "SPLUNK_DISPATCH_MAX_WAIT_MS": "0"}], indirect=True)
def test_without_a_linger_bound_what_is_read_is_sent(rig: WideRig) -> None:
    rig.append(["a"])
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1


def test_an_idle_sender_sleeps_through_a_long_invocation(rig: WideRig) -> None:
    """Nothing held, nothing due: only a wake-up ends the wait, not a quarter-second poll (each
    pass costs CPU the function pays for; a 10 s invocation used to wake it forty times)."""
    rig.sender.step()
    assert not rig.sender.held and not rig.sender.outbox and not rig.sender.due
    assert rig.sender._idle_timeout() >= 30.0


@pytest.mark.parametrize("rig", [{"DISPATCH_MIN_BATCH_SIZE": "1000",
                                  "SPLUNK_DISPATCH_MAX_WAIT_MS": "100"}], indirect=True)
def test_the_idle_wait_ends_when_the_oldest_held_event_is_due(rig: WideRig) -> None:
    assert rig.sender._idle_timeout() == sender.IDLE_WAIT_S  # nothing held
    rig.append(["a"])
    rig.sender.step()
    assert not rig.courier.in_flight
    assert 0.0 < rig.sender._idle_timeout() <= 0.1
    rig.sender.held_since -= 0.2  # the linger bound passed
    assert rig.sender._idle_timeout() == 0.0
    rig.sender.step()
    assert len(rig.courier.in_flight) == 1  # sent once due, below the minimum batch size
    assert rig.sender._idle_timeout() == sender.IDLE_WAIT_S  # nothing held any more


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
def test_a_pass_reads_at_most_256_records_and_comes_back_for_the_rest(rig: WideRig) -> None:
    for n in range(300):
        rig.append([f"line {n}"])
    rig.sender.step()
    assert len(rig.sender.held.records) == 256
    assert rig.sender.spool_dirty  # stopped at the limit: read again without a wake-up
    rig.sender.step()
    assert len(rig.sender.held.records) == 300
    assert not rig.sender.spool_dirty


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
def test_a_drain_sends_at_once_and_is_done_when_all_is_committed(rig: WideRig) -> None:
    rig.append(["a", "b"])
    rig.sender.step()
    assert not rig.courier.in_flight
    deadline_ms = int(time.time() * 1000) + 10_000
    assert rig.tell(control.Drain(deadline_ms, "")) == []
    assert rig.courier.drain_deadline is not None
    assert 9.0 < rig.courier.drain_deadline - time.monotonic() <= 10.0
    assert len(rig.courier.in_flight) == 1  # below the minimum batch size, sent anyway
    assert not rig.sender._drained(False)  # in flight
    rig.courier.finish()
    rig.sender.step()
    assert rig.committed() == 0
    assert not rig.sender._drained(True)  # records were read in this pass
    assert not rig.sender._drained(False)  # the intake not quiet yet: more may come
    rig.sender.heard_at -= rig.sender.quiet_s
    assert rig.sender._drained(False)


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
def test_a_drain_waits_for_the_last_report_while_the_window_allows(rig: WideRig) -> None:
    deadline_ms = int(time.time() * 1000) + 10_000
    rig.tell(control.Drain(deadline_ms, "r1"))
    assert rig.sender.last_request == "r1"
    assert not rig.sender._drained(False)  # r1's platform.report is not spooled yet
    rig.append_invocation("r1", ["a"])
    stamp = "2026-11-26T12:00:00.000Z"
    report = [{"time": stamp, "type": "platform.report", "record": {"requestId": "r1"}}]
    rig.writer.append(json.dumps(report).encode(), 1)
    for _ in range(3):
        rig.sender.step()
        rig.courier.finish(2)
    rig.sender.step()
    assert rig.committed() == 1
    rig.sender.heard_at -= rig.sender.quiet_s  # and nothing came for the quiet time since
    assert rig.sender._drained(False)


def test_a_drain_past_its_deadline_stops_the_sender(rig: WideRig) -> None:
    with pytest.raises(sender._StopSendingError):
        rig.tell(control.Drain(int(time.time() * 1000) - 1, ""))


@pytest.mark.parametrize("offset", [1, -1])  # the new parent's pid may be lower or higher
def test_a_parent_gone_stops_the_sender(rig: WideRig, offset: int) -> None:
    rig.sender.parent = os.getppid() + offset  # as if reparented after main died
    with pytest.raises(sender._StopSendingError):
        rig.tell(control.Flush("r1"))


def test_main_closing_the_control_pipe_stops_the_sender(rig: WideRig) -> None:
    read_end, write_end = rig.pipes[1]
    os.close(write_end)
    rig.pipes[1] = (read_end, os.open(os.devnull, os.O_WRONLY))  # closed by the rig's close
    rig.sender.control_ready = True
    with pytest.raises(sender._StopSendingError):
        rig.sender._service_control()


def test_an_id_that_is_not_json_is_no_id() -> None:
    assert sender._decode_id(b'"r1"') == "r1"
    assert sender._decode_id(b"not json") == ""


@pytest.mark.parametrize("rig", [{"DISPATCH_MIN_BATCH_SIZE": "4",
                                  "SPLUNK_DISPATCH_MAX_WAIT_MS": "600000"}], indirect=True)
def test_exactly_the_minimum_batch_size_dispatches(rig: WideRig) -> None:
    rig.append(["a", "b", "c"])
    rig.sender.step()
    assert not rig.courier.in_flight
    rig.append(["d"])
    rig.sender.step()
    assert [b.count for b in rig.courier.in_flight] == [4]


@pytest.mark.parametrize("rig", [{**HOLDING, "SPLUNK_MAX_REQUEST_BYTES": "4096"}], indirect=True)
def test_held_bytes_are_the_request_body_not_more(rig: WideRig) -> None:
    rig.append(["x" * 1400, "y" * 1400])  # a body of ~3,000 bytes: under the 4,096 bound
    rig.sender.step()
    assert not rig.courier.in_flight
    assert 2800 < rig.sender.held.size < 4096


def test_only_a_flush_or_a_drain_asks_to_send_now(rig: WideRig) -> None:
    rig.sender.control_ready = False
    assert rig.sender._service_control() is False  # nothing from main: no hurry
    control.send(rig.pipes[1][1], control.Flush("r1"))
    rig.sender.control_ready = True
    assert rig.sender._service_control() is True


def test_the_drain_deadline_keeps_its_milliseconds(rig: WideRig) -> None:
    deadline_ms = (int(time.time()) + 3) * 1000 + 900
    rig.tell(control.Drain(deadline_ms, ""))
    left = deadline_ms / 1000 - time.time()
    assert rig.sender.drain_deadline is not None
    assert abs(rig.sender.drain_deadline - time.monotonic() - left) < 0.2


def test_a_wait_that_times_out_looks_everywhere(rig: WideRig) -> None:
    rig.sender.spool_dirty = rig.sender.control_ready = False
    rig.sender._wait(0.01)
    assert rig.sender.spool_dirty and rig.sender.control_ready  # a wake-up may have been lost


def test_a_control_message_ends_the_wait_and_only_control_is_read(rig: WideRig) -> None:
    rig.sender.spool_dirty = rig.sender.control_ready = False
    control.send(rig.pipes[1][1], control.Flush("r1"))
    started = time.monotonic()
    rig.sender._wait(5.0)
    assert time.monotonic() - started < 1.0
    assert rig.sender.control_ready and not rig.sender.spool_dirty


def test_a_wait_ends_at_the_drain_deadline(rig: WideRig) -> None:
    rig.sender.control_ready = False
    rig.sender.drain_deadline = time.monotonic() - 0.01  # already passed
    started = time.monotonic()
    rig.sender._wait(5.0)
    assert rig.sender.control_ready  # the next pass sees the deadline and stops
    rig.sender.drain_deadline = time.monotonic() + 0.05
    rig.sender._wait(5.0)
    assert time.monotonic() - started < 1.0


def _reads(rig: WideRig, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records each SpoolReader.read of the sender returns, from now on."""
    real = rig.sender.reader.read
    counts: list[int] = []

    def counted(max_records: int, max_bytes: int) -> list[SpoolRecord]:
        got = real(max_records, max_bytes)
        counts.append(len(got))
        return got

    monkeypatch.setattr(rig.sender.reader, "read", counted)
    return counts


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
def test_a_record_whose_read_may_wait_is_read_with_the_next_runtime_done(
        rig: WideRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform.report that arrives alone as the environment thaws is read in the same pass
    as the invocation that follows: one read, not two, and no pass before it."""
    rig.sender.step()  # the first pass looks at the spool in any case
    reads = _reads(rig, monkeypatch)
    rig.append(["the last report"], read_now=False)
    assert not sender._emptied(rig.pipes[0][0])  # the sender is not woken for it
    rig.append_invocation("r1", ["a"])
    rig.sender.step()
    assert reads == [2]
    assert [seq for seq, _ in rig.sender.held.records] == [0, 1]
    assert rig.writer.wake_due is None


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
def test_a_read_that_may_wait_is_done_once_its_wake_up_is_due_and_lingers_from_its_append(
        rig: WideRig) -> None:
    rig.sender.step()
    before = time.monotonic()
    rig.append(["a"], read_now=False)
    rig.append(["b"], read_now=False)
    after = time.monotonic()
    rig.sender.step()
    assert not rig.sender.held  # not woken: not read
    assert rig.writer.wake_due is not None
    rig.writer.wake_if_due(rig.writer.wake_due)
    rig.sender.step()
    assert len(rig.sender.held.records) == 2
    # Its wait counts toward the linger bound: from the first record's append, not the read.
    assert before - 0.01 <= rig.sender.held_since <= after


@pytest.mark.parametrize("rig", [HOLDING], indirect=True)
def test_while_draining_a_read_whose_wake_up_is_held_is_done_before_the_drain_ends(
        rig: WideRig) -> None:
    rig.sender.quiet_s = 0.0  # the intake taken as quiet: only the unread bytes hold the drain
    rig.sender.step()
    rig.tell(control.Drain(int(time.time() * 1000) + 10_000, ""))
    rig.sender.step()  # the shutdown's own figures go
    rig.courier.finish()
    rig.sender.step()
    rig.append(["a"], read_now=False)
    _, got = rig.sender.step()
    assert not got  # not woken
    assert not rig.sender._drained(got)  # unread bytes: one more pass
    rig.sender.step()
    assert [b.completes_seq for b in rig.courier.in_flight] == [0]  # read and sent
