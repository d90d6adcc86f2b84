"""The emulator's telemetry bus across a reset: what a dead listener could not take is reported
to the extension's next subscription as platform.logsDropped, not forgotten (issue 16)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ext.local.sandbox import delivery
from ext.local.sandbox.subscription import Buffering, Subscription
from ext.local.sandbox.telemetry import TelemetryBus


def subscription(port: int) -> Subscription:
    return Subscription("2022-12-13", ("platform", "function"), Buffering(1000, 262_144, 25),
                        f"http://127.0.0.1:{port}/", "127.0.0.1", port, "/")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events: list[dict[str, Any]] = []  # JSON, as the extension's listener gets it
        self.got = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.events.extend(json.loads(body))
        self.server.got.set()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A Telemetry subscriber's endpoint, serving on its own thread for the test."""
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_reset_reports_what_a_dead_listener_left_undelivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "RETRY_BASE_S", 0.001)
    bus = TelemetryBus()
    collector = Collector()
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        bus.subscribe("ext", subscription(closed_port()))  # its listener is dead
        bus.emit_logs("function", [f"line {n}" for n in range(30)])
        bus.begin_shutdown(0.0)  # the reset: deliver what is pending, then give up
        bus.drop_subscribers(1.0)
        bus.open_replay()  # the new environment's init
        bus.subscribe("ext", subscription(collector.server_address[1]))
        assert collector.got.wait(5.0)
        drops = [e for e in collector.events if e["type"] == "platform.logsDropped"]
        # The 30 lines and the subscription notice, counted once, whatever stage they died in.
        assert sum(int(e["record"]["droppedRecords"]) for e in drops) == 31
        assert all(e["record"]["reason"] == delivery.DROP_REASON_RESET
                   for e in drops)
        assert bus.subscriber_stats()["ext"]["dropped_records"] == 31
    finally:
        bus.drop_subscribers(1.0)
        collector.shutdown()
        collector.server_close()
