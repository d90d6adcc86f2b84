"""The listener's batch intake (Listener.accept_batch) called directly: what is spooled with each
batch, what is counted and logged, and the loop that ends with the parent process."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ext import config, flush_policy
from ext.listener import filters, http_server, intake
from ext.listener import process as listener
from ext.listener.process import Listener
from ext.spool import SpoolReader, SpoolWriter

TIME = "2026-10-08T07:30:28.235Z"
BASE = {"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"}


def body(*items: tuple[str, object]) -> bytes:
    return json.dumps([{"time": TIME, "type": kind, "record": record}
                       for kind, record in items]).encode()


def spooled(spool: Path) -> list[list[dict[str, object]]]:
    with SpoolReader(spool) as reader:
        return [json.loads(bytes(r.payload)) for r in reader.read(1_000, 2**30)]


def make(tmp_path: Path, **extra: str) -> Listener:
    import socket

    cfg = config.load({**BASE, "SPLUNK_SPOOL_DIR": str(tmp_path / "spool"), **extra})
    server = socket.socket()
    made = Listener(cfg, server, -1)
    server.close()
    return made


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Listener]:
    made = make(tmp_path)
    yield made
    made.close()


@pytest.fixture
def filtering(tmp_path: Path) -> Iterator[Listener]:
    made = make(tmp_path, SPLUNK_MIN_LEVEL="info")
    yield made
    made.close()


def types(spool: Path) -> list[list[object]]:
    return [[event["type"] for event in batch] for batch in spooled(spool)]


def test_only_a_batch_that_ends_an_invocation_asks_the_sender_to_read_it_at_once(
        tmp_path: Path) -> None:
    import os
    import socket

    from ext.spool.layout import WAKE_NOW

    cfg = config.load({**BASE, "SPLUNK_SPOOL_DIR": str(tmp_path / "spool")})
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK)
    server = socket.socket()
    made = Listener(cfg, server, write_fd)
    server.close()
    try:
        made.accept_batch(body(("platform.report", {"requestId": "r0"})))
        made.accept_batch(body(("platform.start", {"requestId": "r1"}), ("function", "a")))
        with pytest.raises(BlockingIOError):
            os.read(read_fd, 10)  # held: the sender is not woken for these
        assert made.writer.wake_due is not None
        made.accept_batch(body(("function", "b"),
                               ("platform.runtimeDone", {"requestId": "r1", "status": "success"})))
        assert os.read(read_fd, 10) == WAKE_NOW
        # A large batch is read at once all the same, while the function still runs.
        room = listener.READ_AT_ONCE_BYTES - len(body(("function", "")))
        just_below = body(("function", "x" * (room - 1)))
        assert len(just_below) == listener.READ_AT_ONCE_BYTES - 1
        made.accept_batch(just_below)
        with pytest.raises(BlockingIOError):
            os.read(read_fd, 10)
        made.accept_batch(body(("function", "x" * room)))  # READ_AT_ONCE_BYTES exactly
        made.accept_batch(body(("function", "x" * (4 * room))))
        assert os.read(read_fd, 10) == WAKE_NOW + WAKE_NOW
    finally:
        made.close()
        os.close(read_fd)
        os.close(write_fd)


def test_a_refusal_notice_the_spool_refuses_waits_for_the_next_batch(
        plain: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain.accept_batch(b"{}")
    real = plain.writer.append
    calls: list[int] = []

    def notice_refused(payload: object, count: int, read_now: bool = True) -> int:
        calls.append(count)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(payload, count)  # type: ignore[arg-type]

    monkeypatch.setattr(plain.writer, "append", notice_refused)
    assert plain.accept_batch(body(("function", "a"))).startswith(b"HTTP/1.1 200 ")
    assert plain.refused == {"malformed": 1}  # not reported yet
    assert plain.accept_batch(body(("function", "b"))).startswith(b"HTTP/1.1 200 ")
    assert plain.refused == {}
    assert types(tmp_path / "spool") == [
        ["function"], [listener.REFUSED_TYPE], ["function"]]


def test_refusals_of_each_kind_are_counted_together(plain: Listener, tmp_path: Path) -> None:
    plain.accept_batch(b"{}")
    plain.accept_batch(b"nul")
    plain.http.on_refused("timed_out")
    plain.http.on_refused("malformed")
    assert plain.malformed == 3
    plain.accept_batch(body(("function", "a"), ("function", "b")))
    with SpoolReader(tmp_path / "spool") as reader:
        notice, batch = reader.read(10, 2**20)
    assert (notice.event_count, batch.event_count) == (1, 2)
    assert json.loads(bytes(notice.payload))[0]["record"] == {
        "requests": {"malformed": 3, "timed_out": 1}}


def test_an_empty_batch_is_answered_200_and_spools_nothing_not_even_refusals(
        plain: Listener, tmp_path: Path) -> None:
    plain.accept_batch(b"{}")
    assert plain.accept_batch(b"[]").startswith(b"HTTP/1.1 200 ")
    assert spooled(tmp_path / "spool") == []
    assert plain.refused == {"malformed": 1}


def test_malformed_and_dropped_counts_are_logged_at_powers_of_two(
        plain: Listener, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ext.listener.process")
    for _ in range(5):
        plain.accept_batch(b"{}")
    for _ in range(3):
        plain.accept_batch(b'[3, {"time": "t", "type": "function", "record": "a"}]')
    assert (plain.malformed, plain.dropped_events) == (5, 3)
    assert [r.getMessage() for r in caplog.records] == [
        "refused 1 malformed telemetry request(s)", "refused 2 malformed telemetry request(s)",
        "refused 4 malformed telemetry request(s)",
        f"dropped 1 malformed telemetry event(s) (counted in Splunk as {intake.DROPPED_TYPE})",
        f"dropped 2 malformed telemetry event(s) (counted in Splunk as {intake.DROPPED_TYPE})"]


def test_spool_failures_are_logged_at_powers_of_two(
        plain: Listener, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def full(payload: object, count: int, read_now: bool = True) -> int:
        raise ValueError("record larger than the spool")

    monkeypatch.setattr(plain.writer, "append", full)
    for _ in range(3):
        assert plain.accept_batch(body(("function", "a"))).startswith(b"HTTP/1.1 503 ")
    assert plain.spool_failures == 3 and plain.refused == {"spool_failed": 3}
    assert [r.getMessage() for r in caplog.records if r.name == "ext.listener.process"] == [
        "cannot spool 1 telemetry batch(es) (answered 503): record larger than the spool",
        "cannot spool 2 telemetry batch(es) (answered 503): record larger than the spool"]


def test_a_too_deep_event_is_counted(plain: Listener, tmp_path: Path) -> None:
    deep: object = "leaf"
    for _ in range(intake.MAX_DEPTH):
        deep = [deep]
    plain.accept_batch(body(("function", deep), ("function", deep)))
    assert (plain.too_deep_events, plain.dropped_events) == (2, 0)
    assert types(tmp_path / "spool") == [[intake.TOO_DEEP_TYPE] * 2 + [intake.DROPPED_TYPE]]


# --- with filters ------------------------------------------------------------------------------

def test_a_salvaged_batch_is_filtered_too(filtering: Listener, tmp_path: Path) -> None:
    payload = (b'[3, {"time": "t", "type": "function", "record": "[DEBUG]\\tx"},'
               b' {"time": "t", "type": "function", "record": "[INFO]\\tkept"}]')
    assert filtering.accept_batch(payload).startswith(b"HTTP/1.1 200 ")
    [batch] = spooled(tmp_path / "spool")
    assert [e["record"] for e in batch[:1]] == ["[INFO]\tkept"]
    assert batch[1]["type"] == intake.DROPPED_TYPE
    assert filtering.filtered == {"level": 1}


def test_drops_wait_at_most_the_report_interval(
        filtering: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [10.0]  # a VM booted seconds ago: the monotonic clock is small
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    filtering.accept_batch(body(("function", "[DEBUG]\tx")))
    assert filtering.filtered_since == 10.0
    now[0] += 59.5  # drops wait at most a minute
    filtering.accept_batch(body(("function", "[DEBUG]\ty"), ("function", "a")))
    assert filtering.filtered_since == 10.0  # the oldest unreported drop's time
    now[0] += 0.5
    filtering.accept_batch(body(("function", "b")))
    assert types(tmp_path / "spool") == [["function"], ["function", filters.FILTERED_TYPE]]
    assert spooled(tmp_path / "spool")[1][1]["record"] == {
        "dropped_events": 2, "by_reason": {"level": 2}}
    assert filtering.filtered == {}
    filtering.accept_batch(body(("function", "[DEBUG]\tz")))
    assert filtering.filtered_since == now[0]  # a new wait starts with the next drop


def test_a_batch_that_ends_an_invocation_carries_the_drops_even_if_all_of_it_is_dropped(
        filtering: Listener, tmp_path: Path) -> None:
    filtering.accept_batch(body(("function", "[DEBUG]\tx")))
    filtering.accept_batch(body(("function", "[DEBUG]\ty"),
                                ("platform.report", {"requestId": "r"})))
    [batch] = spooled(tmp_path / "spool")
    assert [e["type"] for e in batch] == ["platform.report", filters.FILTERED_TYPE]
    assert batch[1]["record"] == {"dropped_events": 2, "by_reason": {"level": 2}}


def test_a_batch_left_empty_by_the_filters_is_answered_200(filtering: Listener,
                                                           tmp_path: Path) -> None:
    assert filtering.accept_batch(body(("function", "[DEBUG]\tx"))).startswith(b"HTTP/1.1 200 ")
    assert spooled(tmp_path / "spool") == []
    assert filtering.filtered == filtering.filtered_total == {"level": 1}


# --- the process loop --------------------------------------------------------------------------

def recording(polls: list[float]) -> Callable[[float], bool]:
    """A stand-in for the server's poll: records each timeout, says the timers ran."""

    def poll(timeout: float) -> bool:
        polls.append(timeout)
        return True

    return poll


def test_serve_runs_while_the_parent_lives(plain: Listener,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    parents = iter([plain.parent, plain.parent, 1])
    polls: list[float] = []
    monkeypatch.setattr(os, "getppid", lambda: next(parents))
    monkeypatch.setattr(plain.http, "listen", lambda: polls.append(-1.0))
    monkeypatch.setattr(plain.http, "poll", recording(polls))
    plain.serve()
    assert polls == [-1.0, http_server.TICK_S, http_server.TICK_S]


def test_serve_waits_as_long_as_the_server_says(plain: Listener,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    parents = iter([plain.parent, plain.parent, 1])
    polls: list[float] = []
    monkeypatch.setattr(os, "getppid", lambda: next(parents))
    monkeypatch.setattr(plain.http, "listen", lambda: None)
    monkeypatch.setattr(plain.http, "wait_s", lambda: 1.75)  # e.g. every connection idle
    monkeypatch.setattr(plain.http, "poll", recording(polls))
    plain.serve()
    assert polls == [1.75, 1.75]


def test_serve_writes_a_held_wake_up_when_it_is_due_and_waits_no_longer(
        plain: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [50.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    parents = iter([plain.parent, plain.parent, plain.parent, 1])
    polls: list[float] = []
    woken: list[float] = []
    monkeypatch.setattr(os, "getppid", lambda: next(parents))
    monkeypatch.setattr(plain.http, "listen", lambda: None)
    monkeypatch.setattr(plain.http, "wait_s", lambda: 1.75)
    plain.writer.wake_due = 50.375

    def poll(timeout: float) -> bool:
        polls.append(timeout)
        now[0] += 0.25  # each poll takes a quarter second
        return True

    monkeypatch.setattr(plain.http, "poll", poll)
    monkeypatch.setattr(plain.writer, "wake_if_due", woken.append)
    plain.serve()
    # The server's wait, cut to when the held wake-up is due; written once due (the stand-in
    # keeps it held, so the third wait, past due, does not wait: 0, not below, which epoll
    # would take as "wait for ever").
    assert polls == [0.375, 0.125, 0.0]
    assert woken == [50.25, 50.5, 50.75]


def test_the_sender_s_wake_up_is_held_a_quarter_second_at_most(tmp_path: Path) -> None:
    for wait_ms, held_s in (("60000", 0.25), ("100", 0.1), ("0", 0.0)):
        cfg = config.load({**BASE, "SPLUNK_SPOOL_DIR": str(tmp_path / wait_ms),
                           "SPLUNK_DISPATCH_MAX_WAIT_MS": wait_ms})
        made = Listener(cfg, socket.socket(), -1)
        try:
            assert made.writer.defer_wake_s == held_s  # or the linger bound if shorter
        finally:
            made.close()
            made.http.server.close()


def test_by_default_a_long_invocation_s_start_is_read_in_time_to_tell_main_it_runs() -> None:
    from ext.flush_policy import wait_limit
    from ext.sender import process as sender

    running_at = wait_limit(config.load(BASE).flush_budget_ms / 1000) * flush_policy.RUNNING_AT
    # The start's batch comes at least 25 ms (the subscription's least buffering) after main
    # asks; its held wake-up is then read within the sender's slack, before Running is due.
    assert running_at - sender.RUNNING_SLACK_S <= listener.DEFER_WAKE_S + 0.025 <= running_at


def test_serve_looks_at_the_parent_only_when_the_timers_ran(
        plain: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    # A system call per request for a check whose latency the timers bound anyway (TICK_S).
    ticks = iter([False, False, True, False, True])
    looks: list[int] = []

    def getppid() -> int:
        looks.append(len(looks))
        return plain.parent if len(looks) < 3 else 1

    monkeypatch.setattr(os, "getppid", getppid)
    monkeypatch.setattr(plain.http, "listen", lambda: None)
    monkeypatch.setattr(plain.http, "poll", lambda timeout: next(ticks))
    plain.serve()
    assert looks == [0, 1, 2]  # at the start, then after each round whose timers ran
    assert next(ticks, None) is None  # every round was served


def test_an_empty_array_spools_nothing_even_with_drops_overdue(
        filtering: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    filtering.accept_batch(body(("function", "[DEBUG]\tx")))
    now[0] += 61
    assert filtering.accept_batch(b"[]").startswith(b"HTTP/1.1 200 ")
    assert spooled(tmp_path / "spool") == []
    assert filtering.filtered == {"level": 1}  # still owed, with the next batch


def test_overdue_drops_are_reported_even_by_a_batch_all_dropped(
        filtering: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [10.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    filtering.accept_batch(body(("function", "[DEBUG]\tx")))
    now[0] += 61
    assert filtering.accept_batch(body(("function", "[DEBUG]\ty"))).startswith(b"HTTP/1.1 200 ")
    [batch] = spooled(tmp_path / "spool")
    assert [e["type"] for e in batch] == [filters.FILTERED_TYPE]
    assert batch[0]["record"] == {"dropped_events": 2, "by_reason": {"level": 2}}
    assert filtering.filtered == {} and filtering.filtered_total == {"level": 2}


def test_only_malformed_requests_count_as_malformed(plain: Listener) -> None:
    for kind in ("busy", "evicted", "timed_out", "too_large", "malformed"):
        plain.http.on_refused(kind)
    assert plain.malformed == 1
    assert plain.refused == dict.fromkeys(
        ("busy", "evicted", "timed_out", "too_large", "malformed"), 1)


def test_serve_compares_the_parent_by_its_pid(plain: Listener,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # os.getppid() makes a new int at each call: the same pid, never the same object. Once
    # the parent is gone the listener belongs to another process: a subreaper's pid may be
    # higher.
    plain.parent = 123_456
    parents = iter([int("123456"), int("123456"), 200_000])
    polls: list[float] = []
    monkeypatch.setattr(os, "getppid", lambda: next(parents))
    monkeypatch.setattr(plain.http, "listen", lambda: None)
    monkeypatch.setattr(plain.http, "poll", recording(polls))
    plain.serve()
    assert polls == [http_server.TICK_S, http_server.TICK_S]


def test_a_batch_with_the_drops_notice_counts_the_notice_as_an_event(
        filtering: Listener, tmp_path: Path) -> None:
    filtering.accept_batch(body(("function", "[DEBUG]\tx")))
    filtering.accept_batch(body(("function", "[INFO]\ty"),
                                ("platform.report", {"requestId": "r"})))
    with SpoolReader(tmp_path / "spool") as reader:
        [record] = reader.read(10, 2**20)
    assert record.event_count == len(json.loads(record.payload)) == 3


def test_the_batch_that_ends_an_invocation_reports_its_own_drops_too(
        filtering: Listener, tmp_path: Path) -> None:
    filtering.accept_batch(body(("function", "[DEBUG]\tx"), ("function", "[INFO]\ty"),
                                ("platform.report", {"requestId": "r"})))
    [batch] = spooled(tmp_path / "spool")
    assert [e["type"] for e in batch] == ["function", "platform.report", filters.FILTERED_TYPE]
    assert batch[2]["record"] == {"dropped_events": 1, "by_reason": {"level": 1}}
    assert filtering.filtered == {} and filtering.filtered_total == {"level": 1}


def fill_a_small_spool(listener: Listener, tmp_path: Path) -> None:
    """The listener's spool replaced by a 1 MiB one, filled to its last bytes."""
    listener.writer.close()
    listener.writer = SpoolWriter(tmp_path / "spool", max_bytes=2**20, segment_bytes=2**17)
    for size in (2**14, 0):
        while listener.accept_batch(body(("function", "x" * size))).startswith(b"HTTP/1.1 200"):
            pass


def test_a_batch_with_the_drops_notice_retried_against_a_full_spool_is_refused_once(
        filtering: Listener, tmp_path: Path) -> None:
    fill_a_small_spool(filtering, tmp_path)
    retried = body(("function", "[DEBUG]\tx"), ("platform.report", {"requestId": "r"}))
    before = filtering.writer.refusals
    for _ in range(3):  # Lambda sends the same batch again, a few ms later each time
        assert filtering.accept_batch(retried).startswith(b"HTTP/1.1 503 ")
        time.sleep(0.002)
    after = filtering.writer.refusals
    # One batch lost (the report and the drops' notice), not one per POST: the same bytes
    # refused again are a retry, so the notice must not change from one attempt to the next.
    assert (after.batches - before.batches, after.events - before.events) == (1, 2)
    with SpoolReader(tmp_path / "spool") as reader:  # the sender catches up
        reader.commit(reader.read(1_000, 2**30)[-1].seq)
    assert filtering.accept_batch(retried).startswith(b"HTTP/1.1 200 ")  # the retry is kept
    *_, batch, _ = spooled(tmp_path / "spool")
    assert [e["type"] for e in batch] == ["platform.report", filters.FILTERED_TYPE]
    assert batch[1]["record"] == {"dropped_events": 1, "by_reason": {"level": 1}}
    assert filtering.filtered == {} and filtering.filtered_total == {"level": 1}


def test_a_notice_made_for_a_refused_batch_is_not_reused_for_other_counts(
        filtering: Listener, tmp_path: Path) -> None:
    fill_a_small_spool(filtering, tmp_path)
    refused = body(("function", "[DEBUG]\tx"), ("platform.report", {"requestId": "r1"}))
    assert filtering.accept_batch(refused).startswith(b"HTTP/1.1 503 ")  # its notice: 1 drop
    with SpoolReader(tmp_path / "spool") as reader:  # the sender catches up
        reader.commit(reader.read(1_000, 2**30)[-1].seq)
    # Another invocation's end, with two drops of its own: its notice says two, not the one
    # the refused batch's said.
    other = body(("function", "[DEBUG]\ty"), ("function", "[TRACE]\tz"),
                 ("platform.report", {"requestId": "r2"}))
    assert filtering.accept_batch(other).startswith(b"HTTP/1.1 200 ")
    *_, batch, _ = spooled(tmp_path / "spool")  # then the count of refused requests
    assert [e["type"] for e in batch] == ["platform.report", filters.FILTERED_TYPE]
    assert batch[1]["record"] == {"dropped_events": 2, "by_reason": {"level": 2}}
    assert filtering.filtered == {} and filtering.filtered_total == {"level": 2}
