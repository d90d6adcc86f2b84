"""The sender's commits against a stand-in courier whose batches finish when the test says.

The committed spool position must never pass a record that HEC has not accepted, whatever the
records after it contain (lines, only filtered lines, nothing), and it must reach the last record
once everything is accepted.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext import config, control
from ext.schema import TelemetryEvent
from ext.sender import process
from ext.sender.batching import HecBatch
from ext.sender.process import Sender
from ext.spool import SpoolWriter, read_committed
from ext.spool.writer import RecordTooLargeError


class StandInCourier:
    """Holds offered batches until `finish` is called; room for two, like the real one."""

    def __init__(self) -> None:
        self.in_flight: deque[HecBatch] = deque()
        self.done: list[int | None] = []
        self.accepted: list[bytes] = []
        self.drain_deadline: float | None = None
        self.failures = 0
        self.hanging = False
        self.restores = 0  # control.Restored passed on
        self.done_r, self.done_w = control.make_pipe()

    def can_accept(self) -> bool:
        return len(self.in_flight) < 2

    def offer(self, batch: HecBatch) -> bool:
        self.in_flight.append(batch)
        return True

    def deliver_now(self, batch: HecBatch, within_s: float) -> bool:
        """Never sends on the sender's thread: every batch waits for `finish`."""
        self.offer(batch)
        return False

    def finish(self, count: int = 1) -> None:
        for _ in range(min(count, len(self.in_flight))):
            batch = self.in_flight.popleft()
            self.accepted.extend(batch.envelopes())
            self.done.append(batch.completes_seq)

    def take_done(self) -> list[int | None]:
        done, self.done = self.done, []
        return done

    def idle(self) -> bool:
        return not self.in_flight and not self.done

    def draining(self, deadline: float) -> None:
        self.drain_deadline = deadline

    def hurry(self) -> None:
        pass

    def restored(self) -> None:
        self.restores += 1

    def stalled(self, limit_s: float) -> bool:
        return self.hanging

    def stop(self) -> None:  # the sender's run() stops it, and the rig's close again
        if self.done_r >= 0:
            os.close(self.done_r)
            os.close(self.done_w)
            self.done_r = self.done_w = -1


class Rig:
    def __init__(self, folder: Path, min_batch: int = 1, max_wait_ms: int = 0,
                 max_request_bytes: int = 1_048_576, spool_max_bytes: int = 64 * 2**20) -> None:
        self.spool = folder / "spool"
        env = {"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "t",
               "SPLUNK_SPOOL_DIR": str(self.spool), "DISPATCH_MIN_BATCH_SIZE": str(min_batch),
               "SPLUNK_DISPATCH_MAX_WAIT_MS": str(max_wait_ms),
               "SPLUNK_MAX_REQUEST_BYTES": str(max_request_bytes)}
        self.config = config.load(env)
        self.pipes = [control.make_pipe() for _ in range(3)]
        self.writer = SpoolWriter(self.spool, wake_fd=self.pipes[0][1], max_bytes=spool_max_bytes,
                                  segment_bytes=min(spool_max_bytes, 2**20))
        self.courier = StandInCourier()
        self.sender = self._start_sender()
        self.lines: dict[int, list[str]] = {}  # seq -> the lines that must reach HEC
        self.status = control.Inbox(self.pipes[2][0])

    def _start_sender(self) -> Sender:
        return Sender(self.config, "fn", self.pipes[0][0], self.pipes[1][0],
                      self.pipes[2][1], courier=self.courier)  # type: ignore[arg-type]

    def restart_sender(self) -> list[bytes]:
        """The sender is killed and a new one starts (with a new courier); what HEC accepted
        from the old one."""
        accepted = self.courier.accepted
        self.sender.courier.stop()
        self.sender.reader.close()
        self.courier = StandInCourier()
        self.sender = self._start_sender()
        return accepted

    def append(self, texts: list[str], read_now: bool = True) -> None:
        seq = self.writer.next_seq
        events = [{"time": "2026-11-26T12:00:00.000Z", "type": "function", "record": t}
                  for t in texts]
        self.writer.append(json.dumps(events).encode(), len(events), read_now=read_now)
        self.lines[seq] = [t for t in texts if t]

    def append_invocation(self, rid: str, texts: list[str]) -> None:
        seq = self.writer.next_seq
        stamp = "2026-11-26T12:00:00.000Z"
        events: list[dict[str, object]] = [
            {"time": stamp, "type": "function", "record": t} for t in texts]
        events.append({"time": stamp, "type": "platform.runtimeDone",
                       "record": {"requestId": rid, "status": "success"}})
        self.writer.append(json.dumps(events).encode(), len(events))
        self.lines[seq] = texts

    def tell(self, message: control.Message) -> list[control.Message]:
        """Main sends `message`; the sender's loop passes once; its answers."""
        control.send(self.pipes[1][1], message)
        self.sender.control_ready = True  # what the loop's select reports
        self.sender._service_control()
        self.sender.step()
        return self.answers()

    def answers(self) -> list[control.Message]:
        return self.status.read()

    def committed(self) -> int:
        return read_committed(self.spool)

    def accepted_lines(self) -> set[str]:
        return {json.loads(e)["event"] for e in self.courier.accepted}

    def close(self) -> None:
        self.sender.courier.stop()
        self.sender.reader.close()
        self.writer.close()
        for r, w in self.pipes:
            os.close(r)
            os.close(w)


def test_an_empty_batch_waits_behind_a_batch_still_in_flight(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.append(["a", "b", "c", "d", "e"])
        rig.sender.step()
        assert len(rig.courier.in_flight) == 1  # HEC holds it (e.g. code 4, invalid token)
        rig.append([""])  # one empty line: nothing to send
        rig.sender.step()
        assert rig.committed() == -1  # record 0 is not accepted: nothing may be committed
        rig.courier.finish()
        rig.sender.step()
        assert rig.committed() == 1
    finally:
        rig.close()


def test_two_batches_finished_between_polls_commit_the_last(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.append(["a"])
        rig.sender.step()
        rig.append(["b"])
        rig.sender.step()
        assert len(rig.courier.in_flight) == 2
        rig.courier.finish(2)
        rig.sender.step()
        assert rig.committed() == 1
    finally:
        rig.close()


def test_min_batch_size_counts_events_not_records(tmp_path: Path) -> None:
    # 3 records of 4 events: 12 events, 3 records. A minimum of 10 is reached in events only.
    rig = Rig(tmp_path, min_batch=10, max_wait_ms=600_000)
    try:
        for n in range(2):
            rig.append([f"{n}-{i}" for i in range(4)])
        rig.sender.step()
        assert not rig.courier.in_flight  # 8 events < 10
        rig.append([f"2-{i}" for i in range(4)])
        rig.sender.step()
        assert len(rig.courier.in_flight) == 1  # 12 events >= 10, although only 3 records
        assert rig.courier.in_flight[0].count == 12
    finally:
        rig.close()


line_counts = st.integers(min_value=0, max_value=3)  # 0: a record of one empty line
actions = st.lists(
    st.one_of(
        st.tuples(st.just("append"), line_counts),
        st.tuples(st.just("finish"), st.integers(min_value=1, max_value=2)),
        st.tuples(st.just("hold"), st.just(0)),  # HEC holds or the courier retries: no answer
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(actions, st.lists(st.booleans(), min_size=30, max_size=30))
def test_committed_position_never_passes_an_unaccepted_record(
    script: list[tuple[str, int]], steps: list[bool],
) -> None:
    """Interleavings of accepted, held (or retried) and empty batches; the sender's loop passes
    after most actions (a skipped pass lets several records arrive before the next read)."""
    with tempfile.TemporaryDirectory() as folder:
        rig = Rig(Path(folder))
        try:
            for (action, arg), step in zip(script, steps, strict=False):
                if action == "append":
                    n = rig.writer.next_seq
                    rig.append([f"r{n}-{i}" for i in range(arg)] if arg else [""])
                elif action == "finish":
                    rig.courier.finish(arg)
                if step or action != "append":
                    rig.sender.step()
                committed, accepted = rig.committed(), rig.accepted_lines()
                for seq, lines in rig.lines.items():
                    if seq <= committed:
                        assert set(lines) <= accepted, (seq, committed)
            for _ in range(2 * len(script) + 2):  # HEC recovers: everything gets through
                rig.sender.step()
                rig.courier.finish(2)
            rig.sender.step()
            assert rig.committed() == rig.writer.next_seq - 1
            assert rig.accepted_lines() == {x for lines in rig.lines.values() for x in lines}
        finally:
            rig.close()


def test_flush_answered_once_its_runtime_done_is_committed(tmp_path: Path) -> None:
    rig = Rig(tmp_path, min_batch=1000, max_wait_ms=600_000)
    try:
        rig.append_invocation("r1", ["a", "b"])
        rig.sender.step()
        assert not rig.courier.in_flight  # below the minimum batch size: held
        assert rig.tell(control.Flush("r1")) == []
        assert len(rig.courier.in_flight) == 1  # the flush sends at once
        rig.courier.finish()
        rig.sender.step()
        assert rig.answers() == [control.Delivered("r1")]
        assert rig.committed() == 0
    finally:
        rig.close()


def test_a_failed_attempt_answers_failing_then_delivered_later(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.append_invocation("r1", ["a"])
        assert rig.tell(control.Flush("r1")) == []
        rig.courier.failures += 1  # HEC refused the attempt; the courier keeps retrying
        rig.sender.step()
        assert rig.answers() == [control.Failing("r1")]
        rig.courier.finish()
        rig.sender.step()
        assert rig.answers() == [control.Delivered("r1")]
    finally:
        rig.close()


def test_a_hanging_hec_answers_failing_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.courier.hanging = True  # the last attempt timed out
        rig.append_invocation("r1", ["a"])
        assert rig.tell(control.Flush("r1")) == [control.Failing("r1")]
    finally:
        rig.close()


def test_unread_bytes_counts_what_the_drain_still_has_to_send(tmp_path: Path) -> None:
    rig = Rig(tmp_path, min_batch=1000, max_wait_ms=600_000)
    try:
        assert rig.sender.reader.unread_bytes() == 0
        rig.append(["x" * 1000])
        assert 1000 < rig.sender.reader.unread_bytes() < 1200
        rig.sender.step()  # read and held (below the minimum batch size)
        assert rig.sender.reader.unread_bytes() == 0
        assert rig.sender.held.size > 1000
    finally:
        rig.close()


def test_a_record_whose_mapping_raises_is_quarantined_once_and_the_rest_delivered(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    real_build = rig.sender.builder.build_parts

    def build_parts(payload: bytes, part_events: int) -> Iterator[list[bytes]]:
        if b"poison" in payload:
            raise RecursionError("maximum recursion depth exceeded")
        return real_build(payload, part_events)

    rig.sender.builder.build_parts = build_parts  # type: ignore[method-assign]
    try:
        rig.append(["a"])
        rig.append(["poison"])
        rig.lines[1] = []
        rig.append(["b"])
        events = _delivered(rig)
        assert rig.committed() == 2  # past the poison record: it is never retried
        assert {"a", "b"} <= {e for e in events if isinstance(e, str)}
        assert _quarantined(events) == [(1, "RecursionError")]
        assert _dead_letters(rig) == [1]
    finally:
        rig.close()


def test_a_flush_is_answered_running_then_failing_a_budget_after_the_runtime_done(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    try:
        stamp = "2026-11-26T12:00:00.000Z"
        start = [{"time": stamp, "type": "platform.start", "record": {"requestId": "r1"}}]
        rig.writer.append(json.dumps(start).encode(), 1)
        rig.sender.step()
        assert rig.tell(control.Flush("r1")) == []  # no Running before RUNNING_AT through
        rig.sender.running_due["r1"] = time.monotonic()  # main has waited half its budget
        rig.sender.step()
        assert rig.answers() == [control.Running("r1")]  # wait for its end
        rig.append_invocation("r1", ["late line"])
        rig.sender.step()
        assert rig.courier.in_flight  # HEC has not answered yet
        assert rig.answers() == []  # within the budget after the runtimeDone
        rig.sender.due["r1"] = time.monotonic()  # the budget (500 ms) has passed
        rig.sender.step()
        assert rig.answers() == [control.Failing("r1")]
        rig.courier.finish(2)
        rig.sender.step()
        assert rig.answers() == [control.Delivered("r1")]  # delivered later, as after HEC failed
    finally:
        rig.close()


def test_a_record_that_fails_partway_sends_what_was_built_then_its_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(process, "PART_EVENTS", 2)
    rig = Rig(tmp_path)
    real_build = rig.sender.builder.build_parts

    def build_parts(payload: bytes, part_events: int) -> Iterator[list[bytes]]:
        for n, part in enumerate(real_build(payload, part_events)):
            if n == 2 and b"poison" in payload:
                raise RuntimeError("a bug in the mapping")
            yield part

    rig.sender.builder.build_parts = build_parts  # type: ignore[method-assign]
    try:
        rig.append(["a1", "a2", "a3", "a4", "poison", "a6"])  # parts of 2: the third fails
        rig.append(["b"])
        events = _delivered(rig)
        assert rig.committed() == 1  # past the failed record: it is never retried
        assert [e for e in events if isinstance(e, str)] == ["a1", "a2", "a3", "a4", "b"]
        assert _quarantined(events) == [(0, "RuntimeError")]
        assert _dead_letters(rig) == [0]
    finally:
        rig.close()


def test_a_record_that_fails_at_one_event_sends_the_parts_of_128_built_before_it(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    real_envelope = rig.sender.builder.envelope

    def envelope(event: TelemetryEvent) -> bytes | None:
        if bytes(event.record) == b'"poison"':
            raise RuntimeError("a bug in the mapping")
        return real_envelope(event)

    rig.sender.builder.envelope = envelope  # type: ignore[method-assign]
    try:
        texts = [f"e{n}" for n in range(300)]
        texts[200] = "poison"  # in the second part: the first 128 events were built and held
        rig.append(texts)
        for _ in range(3):
            rig.sender.step()
            rig.courier.finish(2)
        events = [json.loads(e)["event"] for e in rig.courier.accepted]
        assert [e for e in events if isinstance(e, str)] == texts[:128]
        [notice] = [e for e in events if isinstance(e, dict) and "spool_seq" in e]
        assert notice["spool_seq"] == 0
        assert rig.committed() == 0
    finally:
        rig.close()


def test_losses_told_with_a_read_spanning_two_requests_are_told_again_after_a_crash(
    tmp_path: Path,
) -> None:
    # The spool-loss notice rides with the last record of a read. A read that fills two
    # requests commits its first records with the first one: that commit must not mark the
    # notice's counts reported, or a sender killed before HEC accepted the second request
    # leaves the next one nothing to tell, and the refusal never reaches Splunk.
    rig = Rig(tmp_path, max_request_bytes=4096, spool_max_bytes=64 * 1024)
    try:
        with pytest.raises(RecordTooLargeError):
            rig.writer.append(bytes(64 * 1024), 7)  # refused: one batch of 7 events
        rig.append(["a" * 2500])
        rig.append(["b" * 2500])  # one read of both, two requests
        rig.sender.step()
        rig.sender.step()
        assert [b.completes_seq for b in rig.courier.in_flight] == [0, 1]
        rig.courier.finish(1)  # HEC accepts the first request only
        rig.sender.step()
        assert rig.committed() == 0
        before = rig.restart_sender()  # killed before HEC accepted the second
        events = [json.loads(e)["event"] for e in before] + _delivered(rig)
        assert rig.committed() == 1
        notices = [e for e in events
                   if isinstance(e, dict) and e.get("type") == process.LOSS_NOTICE]
        assert sum(n["refused_batches"] for n in notices) == 1
        assert sum(n["refused_events"] for n in notices) == 7
    finally:
        rig.close()


def _delivered(rig: Rig) -> list[Any]:
    """Runs the sender until HEC has accepted everything spooled; the events it accepted."""
    for _ in range(5):
        rig.sender.step()
        rig.courier.finish(2)
    rig.sender.step()
    return [json.loads(e)["event"] for e in rig.courier.accepted]


def _quarantined(events: list[Any]) -> list[tuple[int, str]]:
    """(spool seq, error) of each quarantine notice among the events."""
    return [(e["spool_seq"], e["error"]) for e in events
            if isinstance(e, dict) and e.get("type") == "splunk-extension.record-quarantined"]


def _dead_letters(rig: Rig) -> list[int]:
    lines = (rig.spool.parent / "deadletter.jsonl").read_text().splitlines()
    return [json.loads(line)["spool_seq"] for line in lines]
