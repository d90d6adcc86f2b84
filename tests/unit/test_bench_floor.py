"""The yardstick of benchmarks/bench_floor.py: the floor extension does the work it is a floor of
(every function line to HEC with HEC's epoch time, runtimeDone seen), and the figures picked
from the rounds are the median round's."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from benchmarks import bench_cost, bench_floor, floor_extension, rig


def test_take_maps_function_lines_and_notes_runtime_done() -> None:
    body = msgspec.json.encode([
        {"time": "2026-11-30T05:00:00.250Z", "type": "platform.start",
         "record": {"requestId": "r1"}},
        {"time": "2026-11-30T05:00:00.500Z", "type": "function", "record": "hello"},
        {"time": "2026-11-30T05:00:00.750Z", "type": "platform.runtimeDone",
         "record": {"requestId": "r1", "status": "success"}},
    ])
    lines, done = floor_extension.take(body)
    assert done == ["r1"]
    assert [msgspec.json.decode(line) for line in lines] == [
        {"time": datetime.fromisoformat("2026-11-30T05:00:00.500+00:00").timestamp(),
         "event": "hello", "sourcetype": "aws:lambda:function"}]


def test_read_message_keeps_what_follows_the_body() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n"
                       b"Content-Length: 2\r\nX-Id: 7\r\n\r\nok")
        state = floor_extension.Holder()
        assert floor_extension.read_message(ours, state) == (0, {b"content-length": b"3"},
                                                             b"abc")
        status, headers, body = floor_extension.read_message(ours, state)
        assert (status, headers[b"x-id"], body) == (200, b"7", b"ok")
        assert state.pending == b""


def test_read_message_refuses_a_closed_connection_mid_body() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        theirs.sendall(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        theirs.close()
        with pytest.raises(ConnectionError):
            floor_extension.read_message(ours, floor_extension.Holder())


@pytest.mark.parametrize(("values", "index"), [([3.0, 1.0, 2.0], 2), ([5.0], 0),
                                               ([4.0, 1.0, 3.0, 2.0], 2)])
def test_the_median_round_is_picked(values: list[float], index: int) -> None:
    assert bench_floor._median_index(values) == index


def test_rows_show_each_contender_with_its_median_rounds_processes() -> None:
    def figures(cpu: list[float], by_process: list[dict[str, float]]) -> dict[str, object]:
        return {"cpu_ms_per_invocation": cpu,
                "cpu_ms_per_invocation_median": cpu[bench_floor._median_index(cpu)],
                "cpu_ms_per_invocation_by_process": by_process}

    cell = {"extension": figures([3.0, 2.0, 4.0], [{"main": 0.3, "listener": 0.7, "sender": 2.0},
                                                   {"main": 0.2, "listener": 0.6, "sender": 1.2},
                                                   {"main": 0.4, "listener": 0.9, "sender": 2.7}]),
            "floor-1": figures([1.0], [{"main": 1.0}]),
            "floor-3": figures([1.5], [{"main": 0.25, "listener": 0.45, "sender": 0.8}])}
    rows = bench_floor.rows({"cost": {"128MB-2s": cell}})
    assert rows == [
        ["128MB-2s", "extension", 3.0, 0.3, 0.7, 2.0, "3.00 / 2.00 / 4.00"],
        ["128MB-2s", "floor-1", 1.0, 1.0, "-", "-", "1.00"],
        ["128MB-2s", "floor-3", 1.5, 0.25, 0.45, 0.8, "1.50"],
    ]


@pytest.mark.parametrize(("gap_s", "side_by_side"), [(0.2, False), (2.0, False), (10.0, True)])
def test_a_round_runs_each_contender_on_its_own_rig_side_by_side_only_when_sparse(
        monkeypatch: pytest.MonkeyPatch, gap_s: float, side_by_side: bool) -> None:
    running: list[str] = []
    overlapped: list[bool] = []

    def run_cell(memory_mb: int, gap: float, strategy: str, invocations: int, seed: int,
                 rig_factory: object) -> dict[str, object]:
        who = next(w for w, factory in bench_floor.CONTENDERS.items() if factory is rig_factory)
        running.append(who)
        time.sleep(0.05)  # long enough for staggered starts 0.01 s apart to overlap
        overlapped.append(len(running) > 1)
        running.remove(who)
        return {"who": who, "cell": (memory_mb, gap, strategy, invocations, seed)}

    monkeypatch.setattr(bench_cost, "run_cell", run_cell)
    monkeypatch.setattr(bench_cost, "STAGGER_S", 0.01)
    out = list(bench_floor._round(512, gap_s, 8, 13))
    assert [who for who, _ in out] == list(bench_floor.CONTENDERS)
    assert all(cell == {"who": who, "cell": (512, gap_s, "sync", 8, 13)} for who, cell in out)
    assert any(overlapped) is side_by_side


def test_the_spool_tail_reads_whole_bodies_only_and_from_where_it_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "spool"
    monkeypatch.setattr(floor_extension, "SPOOL", str(spool))
    tail = floor_extension.SpoolTail()
    first = msgspec.json.encode([{"time": "2026-11-30T05:00:00Z", "type": "function",
                                  "record": "one"}])
    second = msgspec.json.encode([{"time": "2026-11-30T05:00:01Z", "type": "platform.runtimeDone",
                                   "record": {"requestId": "r9"}}])
    framed = [len(body).to_bytes(4, "little") + body for body in (first, second)]
    wake_r, wake_w = os.pipe()
    try:
        spool.write_bytes(framed[0] + framed[1][:6])  # the second body is not whole yet
        os.write(wake_w, b"1")
        tail.read(wake_r)
        assert [msgspec.json.decode(line)["event"] for line in tail.lines] == ["one"]
        assert tail.done == set()
        with spool.open("ab") as fh:
            fh.write(framed[1][6:])
        os.write(wake_w, b"1")
        tail.read(wake_r)
        assert len(tail.lines) == 1
        assert tail.done == {"r9"}
        assert tail.unread == b""
    finally:
        os.close(wake_r)
        os.close(wake_w)


def test_touched_memory_is_what_the_process_accessed_since_the_clear() -> None:
    """rig.referenced_kb after rig.clear_referenced: 16 MiB written now show as anonymous
    memory touched; left alone after another clear, they do not."""
    block = bytearray(16 * 1024 * 1024)  # zero pages, touched only when written below
    pid = os.getpid()
    rig.clear_referenced([pid])
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    written = rig.referenced_kb(pid)
    rig.clear_referenced([pid])
    idle = rig.referenced_kb(pid)
    assert written["anonymous"] >= 16 * 1024
    assert idle["anonymous"] < 8 * 1024
    assert written["libpython"] + written["other files"] > 0  # the loop ran interpreter code
    del block


def test_touched_rows_sum_each_contenders_processes() -> None:
    results = {"touched": {
        "extension": {"main": {"anonymous": 600.0, "libpython": 900.0, "other files": 300.0},
                      "listener": {"anonymous": 500.0, "libpython": 800.0, "other files": 200.0},
                      "sender": {"anonymous": 1800.0, "libpython": 1400.0, "other files": 400.0}},
        "floor-1": {"main": {"anonymous": 800.0, "libpython": 1000.0, "other files": 400.0}}}}
    assert bench_floor.touched_rows(results) == [
        ["extension", 1800.0, 1500.0, 3600.0, 6900.0, 2900.0],
        ["floor-1", 2200.0, "-", "-", 2200.0, 800.0],
    ]
    assert bench_floor.touched_rows({}) == []
