"""The flush budget runs from the invocation's end as the platform stamped it, not from when the
sender read the runtimeDone: Lambda bills post-runtime from the runtime's `next`, and the
Telemetry API delivers the runtimeDone at least its buffering time later."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext import config, control
from ext.flush_policy import REACTION_S, TRUSTED_AGE_S, budget_left, reaction_s
from ext.sender.process import Sender
from ext.spool import SpoolWriter
from tests.unit.test_sender_commits import Rig, StandInCourier

BUDGET_S = 0.5  # the configuration's default flush budget


@given(budget=st.floats(0.001, 30), ended=st.none() | st.floats(-1e6, 1e6),
       now=st.floats(-1e6, 1e6))
def test_a_wait_never_outlasts_the_budget_less_the_reaction(
    budget: float, ended: float | None, now: float,
) -> None:
    left = budget_left(budget, ended, now)
    assert 0 <= left <= budget - reaction_s(budget)
    if ended is None or not 0 <= now - ended <= TRUSTED_AGE_S:  # no usable end: from now
        assert left == budget - reaction_s(budget)


def test_the_budget_counts_from_the_invocations_end() -> None:
    reaction = reaction_s(0.3)
    assert reaction == REACTION_S  # a 300 ms budget keeps 20 ms for main to answer
    assert budget_left(0.3, 100.0, 100.1) == pytest.approx(0.2 - reaction)
    assert budget_left(0.3, 100.0, 100.0) == pytest.approx(0.3 - reaction)
    assert budget_left(0.3, 100.0, 100.5) == 0  # delivered (or read) late: nothing left
    assert budget_left(0.3, 100.1, 100.0) == pytest.approx(0.3 - reaction)  # ahead of our clock
    assert budget_left(0.3, 90.0, 100.0) == pytest.approx(0.3 - reaction)  # clocks disagree
    assert budget_left(0.3, None, 100.0) == pytest.approx(0.3 - reaction)
    assert reaction_s(0.05) == pytest.approx(0.005)  # a small budget keeps a tenth


def _iso(epoch_s: float) -> str:
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _invocation(rig: Rig, rid: str, ended_s: float) -> None:
    events = [{"time": _iso(ended_s), "type": "platform.start", "record": {"requestId": rid}},
              {"time": _iso(ended_s), "type": "function", "record": "a line"},
              {"time": _iso(ended_s), "type": "platform.runtimeDone",
               "record": {"requestId": rid, "status": "success"}}]
    rig.writer.append(json.dumps(events).encode(), len(events))


def test_a_runtime_done_read_late_leaves_only_the_rest_of_the_budget(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        assert rig.tell(control.Flush("r1")) == []
        wall, mono = time.time(), time.monotonic()
        _invocation(rig, "r1", wall - 0.2)  # the runtime ended 200 ms ago
        rig.sender.step()
        # The budget runs from the runtimeDone's own time, however long the read took.
        ended = mono - 0.2
        assert abs(rig.sender.due["r1"] - (ended + BUDGET_S - REACTION_S)) < 0.002
    finally:
        rig.close()


def test_a_runtime_done_stamped_long_ago_gets_the_whole_budget(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        assert rig.tell(control.Flush("r1")) == []
        _invocation(rig, "r1", time.time() - 3600)  # a clock that disagrees with ours
        before = time.monotonic()
        rig.sender.step()
        after = time.monotonic()
        # The whole budget (less main's reaction) from the moment the sender read it, which is
        # somewhere between before and after: not shortened by the hour-old stamp.
        wait = BUDGET_S - REACTION_S
        assert before + wait - 1e-6 <= rig.sender.due["r1"] <= after + wait + 1e-6
        rig.sender.due["r1"] = time.monotonic()
        rig.sender.step()
        assert rig.answers() == [control.Failing("r1")]
    finally:
        rig.close()


def test_a_backlog_flush_has_its_budget_from_the_asking_not_from_its_old_runtime_done(
    tmp_path: Path,
) -> None:
    # Main waits for an invocation that ended a second ago (the previous thaw), whose telemetry
    # the sender reads only now: a budget from that runtimeDone would be spent already, and
    # main would stop waiting at once.
    rig = Rig(tmp_path)
    try:
        before = time.monotonic()
        assert rig.tell(control.FlushBacklog("r1")) == []
        after = time.monotonic()
        wait = BUDGET_S - REACTION_S
        assert before + wait - 1e-6 <= rig.sender.due["r1"] <= after + wait + 1e-6
        assert "r1" not in rig.sender.running_due  # it ended: never told Running
        _invocation(rig, "r1", time.time() - 1.0)
        rig.sender.step()
        assert rig.courier.in_flight  # HEC has not answered yet
        assert rig.answers() == []  # and its budget has just begun: no Failing
        rig.courier.finish()
        rig.sender.step()
        assert rig.answers() == [control.Delivered("r1")]
    finally:
        rig.close()


class _BusyCourier(StandInCourier):
    """HEC never has room: everything read stays held by the sender."""

    def can_accept(self) -> bool:
        return False


def test_a_backlog_is_read_only_as_far_as_one_request_holds(tmp_path: Path) -> None:
    """Envelopes are several times the spooled records (the fields every event carries): the
    sender reads what fills one request, not a request's worth of records."""
    limit = 8192
    env = {"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "t",
           "SPLUNK_SPOOL_DIR": str(tmp_path / "spool"), "SPLUNK_MAX_REQUEST_BYTES": str(limit),
           "AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_REGION": "eu-west-1"}
    pipes = [control.make_pipe() for _ in range(3)]
    writer = SpoolWriter(tmp_path / "spool", wake_fd=pipes[0][1])
    courier = _BusyCourier()
    sender = Sender(config.load(env), "fn", pipes[0][0], pipes[1][0], pipes[2][1],
                    courier=courier)  # type: ignore[arg-type]
    try:
        stamp = "2026-11-26T12:00:00.000Z"
        record = json.dumps([{"time": stamp, "type": "function", "record": f"line {n}"}
                             for n in range(10)]).encode()
        for _ in range(100):  # 100 records, several requests' worth of envelopes
            writer.append(record, 10)
        largest = 0
        for _ in range(5):
            sender.step()
            largest = max([largest, *(sum(map(len, e)) + len(e) for _, e in sender.held.records)])
        assert sender.held, "nothing was read"
        assert sender.held.size <= limit + largest  # one record may cross the limit
        assert len(sender.held.records) < 100  # the rest waits in the spool
    finally:
        courier.stop()
        sender.reader.close()
        writer.close()
        for r, w in pipes:
            os.close(r)
            os.close(w)
