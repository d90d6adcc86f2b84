"""The extension's own metrics (ext/sender/self_metrics.py) and where the sender emits them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ext import config, control
from ext.errors import ConfigError
from ext.sender.batching import seal
from ext.sender.envelope import EnvelopeBuilder
from ext.sender.process import Sender
from ext.sender.self_metrics import (
    MAX_LATENCIES,
    DeliveryStats,
    SelfMetrics,
    UnsentRecords,
    extension_pids,
    percentile,
    process_figures,
)
from ext.spool.ackstate import SpoolStats
from tests.unit.test_sender_commits import Rig

PREFIX = "metric_name:splunk.extension."


def self_metrics(**env: str) -> tuple[SelfMetrics, EnvelopeBuilder]:
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t", **env})
    builder = EnvelopeBuilder(cfg, "fn")
    return SelfMetrics(builder.derivation.metrics, cfg.self_metrics), builder


def test_delivery_counters_are_deltas_with_latency_percentiles() -> None:
    stats = DeliveryStats()
    assert DeliveryStats().take() == {  # nothing yet: every counter at 0, no percentiles
        "hec.requests": 0, "hec.retries": 0, "hec.quarantined_events": 0,
        "hec.quarantine_lost_events": 0, "hec.repaired_events": 0, "hec.bytes_uncompressed": 0,
        "hec.bytes_compressed": 0, "hec.failures.retry": 0, "hec.failures.hold": 0,
        "hec.failures.poison": 0, "hec.failures.too_large": 0}
    for n in range(100):
        stats.requested((n + 1) / 1000, "accepted", retry=False)
    stats.requested(0.5, "retry", retry=False)
    stats.requested(0.2, "retry", retry=True)
    stats.requested(0.1, "hold", retry=True)
    stats.bytes_uncompressed, stats.bytes_compressed = 1000, 300
    first = stats.take()
    assert first["hec.requests"] == 103
    assert first["hec.retries"] == 2
    assert (first["hec.failures.retry"], first["hec.failures.hold"],
            first["hec.failures.poison"]) == (2, 1, 0)
    assert first["hec.latency_p50_ms"] == 52.0
    assert first["hec.latency_p99_ms"] == 200.0
    assert (first["hec.bytes_uncompressed"], first["hec.bytes_compressed"]) == (1000, 300)
    second = stats.take()
    assert second["hec.requests"] == 0 and "hec.latency_p50_ms" not in second
    assert (second["hec.bytes_uncompressed"], second["hec.bytes_compressed"]) == (0, 0)


def test_only_the_quarantined_events_the_dead_letter_file_could_not_keep_count_as_lost() -> None:
    stats = DeliveryStats()
    for kept in (True, True, False):
        stats.quarantined_event(kept)
    taken = stats.take()
    assert (taken["hec.quarantined_events"], taken["hec.quarantine_lost_events"]) == (3, 1)


def test_unsent_records_follow_reads_and_commits() -> None:
    unsent = UnsentRecords()
    now = time.time_ns()
    unsent.read(0, 10, now - 2_000_000_000)
    unsent.read(1, 5, now)
    assert unsent.events == 15
    assert 1_900 < unsent.oldest_age_ms() < 60_000
    unsent.committed(0)
    assert unsent.events == 5 and unsent.oldest_age_ms() < 1_000
    unsent.committed(1)
    assert (unsent.events, unsent.oldest_age_ms()) == (0, 0.0)


@pytest.mark.parametrize("gone_first", [False, True])
def test_process_figures_of_a_live_and_a_gone_process(gone_first: bool) -> None:
    pids = {"sender": os.getpid(), "gone": 2**22 + 12345}
    if gone_first:
        pids = dict(reversed(pids.items()))
    figures = process_figures(pids)
    assert figures["process.sender.rss_mb"] > 1
    assert figures["process.sender.cpu_ms"] >= 0
    assert not any(k.startswith("process.gone") for k in figures)


def test_metric_event_when_a_metrics_index_is_set() -> None:
    sm, builder = self_metrics(SPLUNK_METRICS_INDEX="m")
    sm.delivery.requested(0.01, "accepted", retry=False)
    envelope = sm.envelope(builder, SpoolStats(dropped_events=7), 123, "invocation")
    assert envelope is not None
    event = json.loads(envelope)
    assert (event["event"], event["index"], event["sourcetype"]) == (
        "metric", "m", "aws:lambda:metrics")
    fields = event["fields"]
    assert fields["telemetry_type"] == "splunk-extension.self-metrics"
    assert fields["function_name"] == "fn" and fields["reason"] == "invocation"
    assert fields[PREFIX + "spool.dropped_events"] == 7
    assert fields[PREFIX + "spool.unsent_bytes"] == 123
    assert fields[PREFIX + "hec.requests"] == 1
    assert fields[PREFIX + "process.sender.cpu_ms"] >= 0
    assert all(isinstance(v, int | float) for k, v in fields.items() if k.startswith(PREFIX))


def test_an_event_without_metrics_index_and_nothing_when_off() -> None:
    sm, builder = self_metrics()
    envelope = sm.envelope(builder, SpoolStats(dropped_events=3), 0, "shutdown")
    assert envelope is not None
    event = json.loads(envelope)
    assert event["sourcetype"] == "aws:lambda:extension"
    assert event["fields"]["telemetry_type"] == "splunk-extension.self-metrics"
    body = event["event"]
    assert body["reason"] == "shutdown"
    assert body["metrics"]["splunk.extension.spool.dropped_events"] == 3
    # Counts at the top of an extension notice mean "lost": these must stay nested.
    assert not any(k.endswith("_events") for k in body)
    off, builder = self_metrics(SPLUNK_SELF_METRICS="false")
    assert off.envelope(builder, SpoolStats(), 0, "shutdown") is None


def own(rig: Rig) -> list[dict[str, Any]]:
    found = []
    for envelope in rig.courier.accepted:
        event = json.loads(envelope)
        if event["fields"].get("telemetry_type") == "splunk-extension.self-metrics":
            found.append(event["event"])
    return found


def test_sender_emits_once_per_invocation_and_at_shutdown(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.sender.self_metrics.interval_s = 0  # SPLUNK_SELF_METRICS_INTERVAL_MS=0
    try:
        rig.append(["a", "b"])
        rig.append_invocation("r1", ["c"])
        rig.append_invocation("r2", ["d"])
        for _ in range(4):
            rig.sender.step()
            rig.courier.finish(2)
        assert [e["reason"] for e in own(rig)] == ["invocation", "invocation"]
        committed = rig.committed()
        rig.tell(control.Drain(int(time.time() * 1000) + 2_000, "r2"))
        for _ in range(3):
            rig.courier.finish(2)
            rig.sender.step()
        assert [e["reason"] for e in own(rig)] == ["invocation", "invocation", "shutdown"]
        assert rig.committed() == committed  # the shutdown event completes no spool record
        assert own(rig)[-1]["metrics"]["splunk.extension.spool.unsent_events"] == 0
    finally:
        rig.close()


def test_invocation_self_metrics_wait_for_the_interval_and_shutdown_does_not() -> None:
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t",
                       "SPLUNK_SELF_METRICS_INTERVAL_MS": "60000"})
    builder = EnvelopeBuilder(cfg, "fn")
    sm = SelfMetrics(builder.derivation.metrics, True,
                     interval_s=cfg.self_metrics_interval_ms / 1000)
    assert sm.envelope(builder, SpoolStats(), 0, "invocation") is not None  # the first one
    sm.delivery.requested(0.01, "accepted", retry=False)
    assert sm.envelope(builder, SpoolStats(), 0, "invocation") is None
    last = sm.envelope(builder, SpoolStats(), 0, "shutdown")
    assert last is not None
    assert json.loads(last)["event"]["metrics"]["splunk.extension.hec.requests"] == 1
    sm.last_emitted = time.monotonic() - 61  # the interval has passed
    assert sm.envelope(builder, SpoolStats(), 0, "invocation") is not None


def test_the_interval_is_validated() -> None:
    env = {"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"}
    assert config.load(env).self_metrics_interval_ms == 60_000
    with pytest.raises(ConfigError) as caught:
        config.load({**env, "SPLUNK_SELF_METRICS_INTERVAL_MS": "-1"})
    assert any("SPLUNK_SELF_METRICS_INTERVAL_MS" in p for p in caught.value.problems)


def test_the_backlog_is_measured_only_when_a_self_metrics_event_is_due(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    measured: list[int] = []
    unread = rig.sender.reader.unread_bytes

    def counting() -> int:
        measured.append(unread())
        return measured[-1]

    rig.sender.reader.unread_bytes = counting  # type: ignore[method-assign]
    try:
        rig.append_invocation("r1", ["a"])
        rig.sender.step()
        assert len(measured) == 1 and len(own(rig)) == 0  # the first one: made, not sent yet
        rig.courier.finish(2)
        rig.append_invocation("r2", ["b"])
        rig.sender.step()
        rig.courier.finish(2)
        # Within the interval (60 s by default): no event, and no listing of the spool for it.
        assert len(measured) == 1 and len(own(rig)) == 1
        rig.sender.self_metrics.last_emitted = time.monotonic() - 59
        rig.append_invocation("r3", ["c"])
        rig.sender.step()
        rig.courier.finish(2)
        assert len(measured) == 1 and len(own(rig)) == 1  # 59 s: not yet
        rig.sender.self_metrics.last_emitted = time.monotonic() - 61
        rig.append_invocation("r4", ["d"])
        rig.sender.step()
        rig.courier.finish(2)
        assert len(measured) == 2 and len(own(rig)) == 2
    finally:
        rig.close()


def test_process_figures_are_the_process_cpu_time_and_resident_memory() -> None:
    def resident_mb() -> float:
        # proc(5): rss, in pages, is field 24 of /proc/<pid>/stat (the 22nd after the name).
        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read()
        pages = int(stat[stat.rfind(b")") + 2:].split()[21])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)

    def cpu_ticks(times: os.times_result) -> float:
        return (times.user + times.system) * os.sysconf("SC_CLK_TCK")

    before, low = os.times(), resident_mb()
    figures = process_figures({"sender": os.getpid()})
    after, high = os.times(), resident_mb()
    # Whole clock ticks of this process (user and system), as os.times counts them, in ms.
    ticks = figures["process.sender.cpu_ms"] * os.sysconf("SC_CLK_TCK") / 1000
    assert abs(ticks - round(ticks)) < 1e-6
    assert cpu_ticks(before) - 1e-6 <= ticks <= cpu_ticks(after) + 1e-6
    # In MB to two decimals: 0.005 MB either way, and a few pages more or less in between.
    assert min(low, high) - 0.02 <= figures["process.sender.rss_mb"] <= max(low, high) + 0.02


FakeMain = Callable[[int], tuple[int, list[int]]]


@pytest.fixture
def fake_main() -> Iterator[FakeMain]:
    """A process standing for main, with the children its test asks for (sleepers)."""
    made: list[subprocess.Popen[bytes]] = []

    def start(children: int) -> tuple[int, list[int]]:
        script = "; ".join(["sleep 30 & echo $!"] * children + ["wait"])
        proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE)
        made.append(proc)
        assert proc.stdout is not None
        return proc.pid, [int(proc.stdout.readline()) for _ in range(children)]

    yield start
    for proc in made:
        for pid in children_of(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=5)


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", "rb") as fh:
        return [int(p) for p in fh.read().split()]


@pytest.mark.parametrize(("children", "sender"), [(1, -1), (2, -1), (2, 0), (3, -1)])
def test_the_listener_is_the_only_other_child_of_main(
    monkeypatch: pytest.MonkeyPatch, fake_main: FakeMain, children: int, sender: int,
) -> None:
    main, pids = fake_main(children)
    monkeypatch.setattr(os, "getppid", lambda: main)
    # Which child stands for the sender: the listener may be older, or younger (restarted).
    monkeypatch.setattr(os, "getpid", lambda: pids[sender])
    expected = {"sender": pids[sender], "main": main}
    if children == 2:
        expected["listener"] = pids[1 + sender]  # one other child: it is the listener
    assert extension_pids() == expected  # none other (listener gone) or two: none is named


def test_a_sender_whose_main_is_gone_names_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getppid", lambda: 1)  # reparented to init
    assert extension_pids() == {"sender": os.getpid()}


def test_latencies_kept_between_emissions_are_bounded() -> None:
    stats = DeliveryStats()
    for n in range(MAX_LATENCIES + 10):
        stats.requested(n / 1000, "accepted", retry=False)
    assert len(stats.latencies_ms) == MAX_LATENCIES  # the first ones: a bound on memory
    values = stats.take()
    assert values["hec.requests"] == MAX_LATENCIES + 10  # every request is still counted
    assert values["hec.latency_p99_ms"] == percentile(list(range(MAX_LATENCIES)), 99)


def test_a_record_stamped_ahead_of_this_clock_is_not_older_than_zero() -> None:
    unsent = UnsentRecords()
    unsent.read(0, 1, time.time_ns() + 5_000_000_000)  # a writer's clock ahead of this one
    assert unsent.oldest_age_ms() == 0.0


def test_latency_percentiles_are_in_milliseconds_to_the_microsecond() -> None:
    stats = DeliveryStats()
    stats.requested(0.0123456789, "accepted", retry=False)
    values = stats.take()
    assert (values["hec.latency_p50_ms"], values["hec.latency_p99_ms"]) == (12.346, 12.346)


def test_the_processes_are_looked_up_while_one_is_missing_then_every_64th_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    me = os.getpid()
    found = [{"sender": me, "main": me}]  # the listener not started yet
    lookups: list[int] = []

    def looking_up() -> dict[str, int]:
        lookups.append(len(lookups))
        return dict(found[-1])

    monkeypatch.setattr("ext.sender.self_metrics.extension_pids", looking_up)
    sm, builder = self_metrics()

    def emit() -> dict[str, Any]:
        envelope = sm.envelope(builder, SpoolStats(), 0, "shutdown")
        assert envelope is not None
        metrics: dict[str, Any] = json.loads(envelope)["event"]["metrics"]
        return metrics

    assert "splunk.extension.process.listener.cpu_ms" not in emit()
    found.append({"sender": me, "main": me, "listener": me})
    assert "splunk.extension.process.listener.cpu_ms" in emit()  # looked up again: found
    assert len(lookups) == 2
    for _ in range(62):
        emit()
    assert len(lookups) == 2  # all three known: their pids are kept...
    emit()
    assert len(lookups) == 3  # ...but looked up again at the 64th (a restarted listener)
    for _ in range(63):
        emit()
    assert len(lookups) == 3
    emit()
    assert len(lookups) == 4  # and every 64th after that


class FixedWallClock:
    """self_metrics' `time` with the wall clock stopped at `now_ns`."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def time_ns(self) -> int:
        return self.now_ns

    def time(self) -> float:
        return self.now_ns / 1e9

    def monotonic(self) -> float:
        return time.monotonic()


def test_the_oldest_unsent_record_s_age_is_in_milliseconds_to_a_tenth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = 1_791_000_000_000_000_000
    monkeypatch.setattr("ext.sender.self_metrics.time", FixedWallClock(now))
    sm, builder = self_metrics()
    sm.unsent.read(0, 3, now - 123_456_789_012)  # 123.456789012 s ago
    sm.unsent.read(1, 2, now)
    envelope = sm.envelope(builder, SpoolStats(), 0, "shutdown")
    assert envelope is not None
    metrics = json.loads(envelope)["event"]["metrics"]
    assert metrics["splunk.extension.spool.oldest_unsent_age_ms"] == 123_456.8
    assert metrics["splunk.extension.spool.unsent_events"] == 5


def test_a_sender_whose_main_has_just_gone_names_no_listener(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = 2**22 + 12345  # no such process: its children cannot be read
    monkeypatch.setattr(os, "getppid", lambda: gone)
    assert extension_pids() == {"sender": os.getpid(), "main": gone}


class BootClock(FixedWallClock):
    """self_metrics' `time` in a fresh execution environment: the monotonic clock counts from
    the microVM's boot, a few seconds before the first invocation."""

    def __init__(self, monotonic_s: float) -> None:
        super().__init__(time.time_ns())
        self.monotonic_s = monotonic_s

    def monotonic(self) -> float:
        return self.monotonic_s


def test_an_invocation_is_due_once_the_interval_has_passed_since_the_last_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = BootClock(5.0)
    monkeypatch.setattr("ext.sender.self_metrics.time", clock)
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"})
    builder = EnvelopeBuilder(cfg, "fn")
    sm = SelfMetrics(builder.derivation.metrics, True, interval_s=10.0)
    assert sm.envelope(builder, SpoolStats(), 0, "invocation") is not None
    clock.monotonic_s = 14.9
    assert not sm.due("invocation")
    clock.monotonic_s = 16.0
    assert sm.due("invocation")


def test_a_main_with_a_low_pid_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # In a container's PID namespace the extension's main can be pid 2 (pid 1 its init).
    monkeypatch.setattr(os, "getppid", lambda: 2)
    assert extension_pids()["main"] == 2


def test_unsent_bytes_count_the_requests_cut_and_waiting_for_the_courier(tmp_path: Path) -> None:
    # While HEC is slow or down the courier holds one request and the sender keeps the next ones
    # cut (its outbox): they are unsent too, as the shutdown's drain estimate counts them.
    rig = Rig(tmp_path)
    try:
        waiting = seal([b"x" * 500, b"y" * 499], 1, 1)
        rig.sender.outbox.append(waiting)
        envelope = rig.sender._self_metrics("shutdown")[0]
        figures = json.loads(envelope)["event"]["metrics"]
        assert figures["splunk.extension.spool.unsent_bytes"] >= waiting.size == 1000
    finally:
        rig.sender.outbox.clear()
        rig.close()


class NotedRig(Rig):
    """A Rig whose sender was forked with main's restart counts and reads main's notes pipe."""

    def __init__(self, folder: Path, restarts: control.Restarts | None) -> None:
        self.notes_r, self.notes_w = control.make_pipe()
        self.restarts = restarts
        super().__init__(folder)
        self.sender.self_metrics.interval_s = 0  # one event with every invocation batch

    def _start_sender(self) -> Sender:
        return Sender(self.config, "fn", self.pipes[0][0], self.pipes[1][0], self.pipes[2][1],
                      courier=self.courier,  # type: ignore[arg-type]
                      notes_fd=self.notes_r, restarts=self.restarts)

    def note(self, message: control.Message) -> None:
        assert control.send(self.notes_w, message)

    def invocation_metrics(self, rid: str) -> dict[str, Any]:
        """The self-metrics of the invocation batch of `rid`, once read and sent."""
        self.append_invocation(rid, ["x"])
        self.sender.step()
        self.courier.finish(2)
        return dict(own(self)[-1]["metrics"])

    def close(self) -> None:
        super().close()
        os.close(self.notes_r)
        os.close(self.notes_w)


RESTARTS = ("splunk.extension.process.listener.restarts",
            "splunk.extension.process.sender.restarts", "splunk.extension.process.sender.hangs")


def restarts_in(metrics: dict[str, Any]) -> tuple[int, ...]:
    return tuple(metrics[name] for name in RESTARTS)


def test_main_s_restart_counts_reach_the_self_metrics(tmp_path: Path) -> None:
    # Main counted restarts and hung senders killed, and only logged them: a crash loop was
    # invisible in Splunk. The sender takes main's counts at its fork, and a listener
    # restarted after it is noted on the pipe read with the spool.
    rig = NotedRig(tmp_path, control.Restarts(listener=1, sender=3, sender_hangs=2))
    try:
        assert restarts_in(rig.invocation_metrics("r1")) == (1, 3, 2)
        rig.note(control.Restarts(listener=2, sender=3, sender_hangs=2))
        assert restarts_in(rig.invocation_metrics("r2")) == (2, 3, 2)  # read before the record
        # A note older than the counts this sender was forked with (left unread by the one
        # before it) lowers none: they are totals.
        rig.note(control.Restarts(listener=1, sender=2, sender_hangs=0))
        assert restarts_in(rig.invocation_metrics("r3")) == (2, 3, 2)
    finally:
        rig.close()


def test_a_sender_started_once_reports_no_restart(tmp_path: Path) -> None:
    rig = NotedRig(tmp_path, None)
    try:
        assert restarts_in(rig.invocation_metrics("r1")) == (0, 0, 0)  # present, as a zero
    finally:
        rig.close()


def test_a_listener_restarted_at_shutdown_is_in_the_shutdown_event(tmp_path: Path) -> None:
    # Main restarts a dead listener at SHUTDOWN, notes it, then asks for the drain: the sender
    # may have nothing left to read, and the notes are read with the spool.
    rig = NotedRig(tmp_path, None)
    try:
        rig.invocation_metrics("r1")
        rig.note(control.Restarts(listener=1, sender=0, sender_hangs=0))
        rig.tell(control.Drain(int(time.time() * 1000) + 2_000, "r1"))
        for _ in range(3):
            rig.courier.finish(2)
            rig.sender.step()
        last = own(rig)[-1]
        assert last["reason"] == "shutdown"
        assert restarts_in(last["metrics"]) == (1, 0, 0)
    finally:
        rig.close()
