"""The listener's answers, called directly (accept_batch) and over a real loopback socket."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.bench_listener import read_status
from ext import config
from ext.listener import http_server, intake
from ext.listener.process import Listener
from ext.spool import SpoolReader, SpoolWriter

TIME = "2026-10-08T07:30:28.235Z"
RID = "79b5e81f-9cdd-4145-b1f6-7c50ef8a2a36"


def event(record: object, kind: str = "function") -> dict[str, object]:
    return {"time": TIME, "type": kind, "record": record}


def body(*events: object) -> bytes:
    return json.dumps(list(events)).encode()


def spooled(spool: Path) -> list[list[dict[str, object]]]:
    """Every batch in the spool, decoded."""
    out = []
    with SpoolReader(spool) as reader:
        for record in reader.read(1_000, 2**30):
            out.append(json.loads(bytes(record.payload)))
    return out


class Served:
    """A Listener on a loopback socket, its loop run by a thread (stopped by close())."""

    def __init__(self, tmp: Path, **limits: int) -> None:
        self.spool = tmp / "spool"
        cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t",
                           "SPLUNK_SPOOL_DIR": str(self.spool)})
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.listener = Listener(cfg, self.server, -1)
        for name, value in limits.items():
            setattr(self.listener.http, name, value)
        self.listener.http.listen()
        self.running = True
        self.paused = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while self.running:
            if self.paused:
                time.sleep(0.01)
                continue
            self.listener.http.poll(0.02)

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        self.listener.close()
        self.server.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def exchange(self, raw: bytes, sock: socket.socket | None = None) -> int:
        own = sock is None
        sock = sock or self.connect()
        try:
            sock.sendall(raw)
            return read_status(sock)
        finally:
            if own:
                sock.close()


def post(payload: bytes, extra: bytes = b"") -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: sandbox\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(payload) + payload)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


@pytest.fixture
def direct(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    s.running = False
    s.thread.join()
    yield s
    s.close()


# --- the intake called directly -----------------------------------------------------------

def test_a_valid_batch_is_spooled_byte_for_byte_and_answered_200(direct: Served) -> None:
    payload = body(event("a"), event("b"))
    assert direct.listener.accept_batch(payload).startswith(b"HTTP/1.1 200 ")
    with SpoolReader(direct.spool) as reader:
        [record] = reader.read(10, 2**20)
    assert bytes(record.payload) == payload
    assert record.event_count == 2


@pytest.mark.parametrize("payload", [b"{}", b'{"time":"x"}', b'"text"', b"12", b"", b"nul"])
def test_a_body_that_is_not_an_array_gets_400_and_is_not_spooled(
        direct: Served, payload: bytes) -> None:
    assert direct.listener.accept_batch(payload).startswith(b"HTTP/1.1 400 ")
    assert direct.listener.malformed == 1
    assert spooled(direct.spool) == []


def test_spool_failure_answers_503_never_200(direct: Served,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def full(payload: object, count: int, read_now: bool = True) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(direct.listener.writer, "append", full)
    assert direct.listener.accept_batch(body(event("a"))).startswith(b"HTTP/1.1 503 ")
    assert direct.listener.spool_failures == 1
    assert direct.listener.refused == {"spool_failed": 1}


def test_a_record_larger_than_the_spool_answers_503(direct: Served) -> None:
    huge = body(event("x" * (direct.listener.writer.max_bytes + 1)))
    assert direct.listener.accept_batch(huge).startswith(b"HTTP/1.1 503 ")
    assert spooled(direct.spool) == []


def test_a_full_spool_refuses_the_new_batch_and_keeps_every_batch_answered_200(
    direct: Served,
) -> None:
    # HEC is down: nothing is delivered, the spool fills up to its bound (1 MiB here).
    direct.listener.writer.close()
    direct.listener.writer = SpoolWriter(direct.spool, max_bytes=2**20, segment_bytes=2**17)
    answers = [direct.listener.accept_batch(body(event(f"{n:03d}" + "x" * 2**16)))[:12]
               for n in range(20)]
    taken = answers.count(b"HTTP/1.1 200")
    assert 0 < taken < 20
    assert answers[taken:] == [b"HTTP/1.1 503"] * (20 - taken)  # none dropped to make room
    assert direct.listener.writer.refusals.batches == 20 - taken
    with SpoolReader(direct.spool) as reader:  # HEC is back: everything taken is there
        records = reader.read(100, 2**30)
        batches = [json.loads(r.payload)[0] for r in records]
        assert [b["record"][:3] for b in batches if b["type"] == "function"] == [
            f"{n:03d}" for n in range(taken)]
        # The refusals' own notices (small) still fit in between: counted in Splunk too.
        assert {b["type"] for b in batches} <= {"function", "splunk-extension.intake-refused"}
        reader.commit(records[-1].seq)
    assert direct.listener.accept_batch(body(event("next"))).startswith(b"HTTP/1.1 200 ")


def test_a_batch_retried_against_a_full_spool_is_counted_refused_once(direct: Served) -> None:
    # The spool is full to the last bytes: not even the refusals' own notice fits any more.
    listener = direct.listener
    listener.writer.close()
    listener.writer = SpoolWriter(direct.spool, max_bytes=2**20, segment_bytes=2**17)
    for size in (2**14, 0):
        while listener.accept_batch(body(event("x" * size))).startswith(b"HTTP/1.1 200 "):
            pass
    before, failed = listener.writer.refusals, listener.refused["spool_failed"]
    for _ in range(3):  # Lambda sends the refused batch again, and again
        assert listener.accept_batch(body(event("retried"))).startswith(b"HTTP/1.1 503 ")
    after = listener.writer.refusals
    # One telemetry batch of one event was lost, not one per POST: a notice of the listener's
    # own that did not fit is no lost telemetry.
    assert (after.batches - before.batches, after.events - before.events) == (1, 1)
    assert listener.refused == {"spool_failed": failed + 3}  # each POST refused is counted
    with SpoolReader(direct.spool) as reader:  # HEC is back, the sender catches up
        reader.commit(reader.read(1_000, 2**30)[-1].seq)
    assert listener.accept_batch(body(event("retried"))).startswith(b"HTTP/1.1 200 ")
    assert listener.refused == {}
    *_, batch, notice = spooled(direct.spool)
    assert batch == [event("retried")]
    assert notice[0]["record"] == {"requests": {"spool_failed": failed + 3}}
    assert listener.writer.refusals == after


def test_refusals_reach_the_spool_ahead_of_the_next_batch(direct: Served) -> None:
    direct.listener.accept_batch(b"{}")
    direct.listener.accept_batch(body(event("a")))
    notice, batch = spooled(direct.spool)
    assert notice[0]["type"] == "splunk-extension.intake-refused"
    assert notice[0]["record"] == {"requests": {"malformed": 1}}
    assert batch == [event("a")]


def test_a_bad_escape_costs_only_its_own_event(direct: Served) -> None:
    bad = b'{"time":"%s","type":"function","record":"x\\ud800y"}' % TIME.encode()
    payload = b"[" + json.dumps(event("before")).encode() + b"," + bad + b"," + (
        json.dumps(event("after")).encode() + b"]")
    assert direct.listener.accept_batch(payload).startswith(b"HTTP/1.1 200 ")
    [batch] = spooled(direct.spool)
    assert batch[:2] == [event("before"), event("after")]
    assert batch[2]["type"] == intake.DROPPED_TYPE
    assert batch[2]["record"]["dropped_events"] == 1  # type: ignore[index]
    assert direct.listener.dropped_events == 1


def test_a_record_nested_too_deep_is_kept_as_text_and_counted(direct: Served) -> None:
    deep: object = "leaf"
    for _ in range(intake.MAX_DEPTH):
        deep = [deep]
    fits: object = "leaf"
    for _ in range(intake.MAX_DEPTH - 1):
        fits = {"k": fits}
    payload = body(event("ok"), event(deep), event(fits))
    assert direct.listener.accept_batch(payload).startswith(b"HTTP/1.1 200 ")
    [batch] = spooled(direct.spool)
    assert batch[0] == event("ok") and batch[2] == event(fits)
    assert batch[1]["type"] == intake.TOO_DEEP_TYPE
    assert json.loads(batch[1]["record"]) == event(deep)  # type: ignore[arg-type]
    assert batch[3]["record"]["too_deep_kept_as_text"] == 1  # type: ignore[index]
    assert batch[3]["record"]["dropped_events"] == 0  # type: ignore[index]
    assert direct.listener.too_deep_events == 1


def test_numeric_time_and_type_are_kept(direct: Served) -> None:
    payload = body({"time": 1791444629443, "type": 5, "record": "n"})
    assert direct.listener.accept_batch(payload).startswith(b"HTTP/1.1 200 ")
    assert spooled(direct.spool) == [[{"time": 1791444629443, "type": 5, "record": "n"}]]


def test_an_event_with_an_unknown_field_is_dropped_not_passed_on(direct: Served) -> None:
    payload = body(event("ok"), {**event("x"), "extra": [[[1]]]})
    direct.listener.accept_batch(payload)
    [batch] = spooled(direct.spool)
    assert batch[0] == event("ok") and batch[1]["type"] == intake.DROPPED_TYPE


def test_keep_alive_requests_and_a_chunked_one(served: Served) -> None:
    with served.connect() as sock:
        assert served.exchange(post(body(event("a"))), sock) == 200
        assert served.exchange(post(body(event("b"))), sock) == 200
        payload = body(event("c"))
        chunked = (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5;ext=1\r\n" + payload[:5] + b"\r\n%x\r\n" % (len(payload) - 5)
                   + payload[5:] + b"\r\n0\r\nX-Trailer: y\r\n\r\n")
        assert served.exchange(chunked, sock) == 200
    assert spooled(served.spool) == [[event("a")], [event("b")], [event("c")]]


def test_pipelined_requests_are_all_answered(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(post(body(event("a"))) + post(body(event("b"))))
        data = b""
        while data.count(b"\r\n\r\n") < 2:
            data += sock.recv(4096)
        assert data.count(b"HTTP/1.1 200 OK") == 2
    assert spooled(served.spool) == [[event("a")], [event("b")]]


@pytest.mark.parametrize(("raw", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]xx\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", 431),
])
def test_each_malformed_or_oversized_request_gets_its_answer(
        served: Served, raw: bytes, status: int) -> None:
    assert served.exchange(raw) == status
    assert spooled(served.spool) == []


def test_a_chunked_body_over_the_limit_gets_413(served: Served) -> None:
    size = served.listener.http.max_body // 2 + 1
    raw = (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
           + (b"%x\r\n" % size + b" " * size + b"\r\n") * 2 + b"0\r\n\r\n")
    assert served.exchange(raw) == 413


def test_an_endless_chunk_size_line_is_cut_at_its_bound(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(64):  # 4 MiB of hex digits, far past the 1 KiB bound
                sock.sendall(b"1" * 65_536)
        except OSError:
            pass
        assert read_status(sock) == 400
    assert served.listener.refused == {"malformed": 1}


def test_a_spool_failure_answers_503_over_the_socket(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(payload: object, count: int, read_now: bool = True) -> int:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(served.listener.writer, "append", broken)
    assert served.exchange(post(body(event("a")))) == 503


def test_a_request_whose_sender_gave_up_is_not_spooled(served: Served) -> None:
    served.paused = True
    time.sleep(0.05)
    with served.connect() as gone:
        gone.sendall(post(body(event("abandoned"))))
    served.paused = False
    assert served.exchange(post(body(event("retried")))) == 200
    assert spooled(served.spool) == [[event("retried")]]
    assert served.listener.http.abandoned == 1


def test_connections_beyond_the_cap_evict_the_least_recently_active(tmp_path: Path) -> None:
    s = Served(tmp_path, max_connections=4)
    try:
        idle = [s.connect() for _ in range(12)]
        time.sleep(0.2)
        assert s.exchange(post(body(event("a")))) == 200
        assert len(s.listener.http._conns) <= 4
        assert s.listener.http.evicted >= 8
        for sock in idle:
            sock.close()
    finally:
        s.close()


def test_bodies_wait_for_the_shared_budget_instead_of_growing_memory(tmp_path: Path) -> None:
    s = Served(tmp_path, body_budget=70_000, max_body=60_000)
    try:
        payload = body(*(event("x" * 100) for _ in range(250)))
        assert 35_000 < len(payload) < 60_000
        first, second = s.connect(), s.connect()
        head = post(payload)[: -len(payload)]
        first.sendall(head + payload[:10])  # holds most of the budget, half sent
        time.sleep(0.1)
        second.sendall(post(payload))
        time.sleep(0.1)
        assert s.listener.http._reserved <= 70_000
        first.sendall(payload[10:])
        assert read_status(first) == 200
        assert read_status(second) == 200
        first.close()
        second.close()
    finally:
        s.close()


def test_a_head_that_never_ends_gets_408(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "HEAD_TIMEOUT_S", 0.3)
    monkeypatch.setattr(http_server, "TICK_S", 0.05)
    s = Served(tmp_path)
    try:
        with s.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # ...and nothing more
            start = time.monotonic()
            assert read_status(sock) == 408
            assert time.monotonic() - start < 3
        assert s.listener.refused == {"timed_out": 1}
    finally:
        s.close()


def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "IDLE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(http_server, "TICK_S", 0.05)
    s = Served(tmp_path)
    try:
        with s.connect() as sock:
            assert s.exchange(post(body(event("a"))), sock) == 200
            assert sock.recv(1) == b""  # closed by the listener, with no answer owed
        assert s.listener.refused == {}
    finally:
        s.close()


def test_a_freeze_does_not_count_against_a_request_in_progress(direct: Served) -> None:
    listener = direct.listener.http
    listener.listen()
    with direct.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\n[")
        for _ in range(20):
            listener.poll(0.01)
        [conn] = listener._conns.values()
        assert conn.in_request
        # The environment was frozen for 120 s: the loop's clock jumps by as much as the
        # connection's idle time, and nothing times out for it.
        listener._last_tick -= 120
        conn.active -= 120
        conn.started -= 120
        listener._tick(time.monotonic())
        assert list(listener._conns.values()) == [conn]
        rest = json.dumps([event("x" * 5)]).encode()[1:]
        sock.sendall(rest + b" " * (39 - len(rest)))
        for _ in range(20):
            listener.poll(0.01)
        assert read_status(sock) == 200


def test_an_unexpected_error_costs_one_connection_not_the_listener(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    real = intake.inspect

    def broken_once(body: object) -> object:
        monkeypatch.setattr(intake, "inspect", real)
        raise RuntimeError("a bug")

    monkeypatch.setattr(intake, "inspect", broken_once)
    assert served.exchange(post(body(event("a")))) == 0  # closed without an answer
    assert served.exchange(post(body(event("b")))) == 200
    assert served.listener.http.internal_errors == 1
