"""The receiver's abandoned connections (HecReceiver.abandon_open_connections, POST
/_admin/connections/abandon): what a SnapStart-restored environment's connections from before
the snapshot look like from the client. A request on one is never answered nor refused and the
connection is never closed, while a new connection is served; stop() closes them.

Raw sockets, so that nothing between the test and the wire retries or times out on its own.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver
from ext.local.hec.certificates import self_signed
from tests.integration.sandbox_helpers import holds_within
from tests.integration.test_hec_receiver_helpers import EVENT, TOKEN, read_message
from tests.integration.test_hec_receiver_helpers import request as http_request

pytestmark = pytest.mark.integration

SILENCE_S = 0.3  # how long an abandoned connection is watched for an answer that must not come
WAIT_S = 10.0  # bound of every wait for something that must happen


@pytest.fixture
def rx(tmp_path: Path) -> Iterator[HecReceiver]:
    with HecReceiver(tmp_path / "hec.db") as receiver:
        yield receiver


def post(event: str) -> bytes:
    body = json.dumps({"event": event}).encode()
    head = (
        f"POST {EVENT} HTTP/1.1\r\nHost: hec\r\nAuthorization: Splunk {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer from a keep-alive connection: its status line, a space, its body."""
    head, body = read_message(sock)
    return head.split(b"\r\n", 1)[0] + b" " + body


def connect(rx: HecReceiver) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", rx.port), timeout=WAIT_S)
    if rx.url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock)
    sock.sendall(post("hello"))
    assert read_answer(sock).startswith(b"HTTP/1.1 200")  # open, served, kept alive
    return sock


def silent(sock: socket.socket) -> bool:
    """Nothing arrives on `sock` (no answer, no FIN, no RST) within SILENCE_S."""
    readable, _, _ = select.select([sock], [], [], SILENCE_S)
    return not readable


def ended(sock: socket.socket) -> bool:
    """The server closed `sock` (FIN or RST), seen within WAIT_S."""
    sock.settimeout(WAIT_S)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def handler_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())



@pytest.fixture
def tls_rx(tmp_path: Path) -> Iterator[HecReceiver]:
    cert, key = self_signed(tmp_path)
    with HecReceiver(tmp_path / "hec.db", tls_cert=cert, tls_key=key) as receiver:
        yield receiver


@pytest.mark.parametrize("which", ["rx", "tls_rx"])
def test_a_request_on_an_abandoned_connection_is_never_answered(
    which: str, request: pytest.FixtureRequest
) -> None:
    # With TLS nothing goes out either: no alert at the end of stream that wakes the thread.
    rx: HecReceiver = request.getfixturevalue(which)
    old = connect(rx)
    try:
        assert rx.abandon_open_connections() == 1
        old.sendall(post("lost"))
        fresh = connect(rx)  # a new connection is served as usual
        fresh.close()
        assert silent(old)
        assert [e.event for e in rx.events()] == ['"hello"', '"hello"']  # "lost" never arrived
        # The fresh connection's thread ends at its close; the abandoned one stays abandoned.
        counts = {"open": 0, "abandoned": 1}
        assert holds_within(lambda: rx.state.connections.counts() == counts, WAIT_S)
        assert rx.abandon_open_connections() == 0
    finally:
        old.close()


def test_a_reply_under_way_is_lost_with_its_connection(rx: HecReceiver) -> None:
    old = connect(rx)
    try:
        rx.set_fault("delay", count=1, seconds=SILENCE_S / 3)
        old.sendall(post("stored"))
        # Stored, the reply waits.
        assert holds_within(lambda: rx.count(contains="stored") == 1, WAIT_S)
        assert rx.abandon_open_connections() == 1
        assert silent(old)  # the delay has passed: the reply was dropped, not sent
    finally:
        old.close()


def test_stop_closes_abandoned_connections_and_leaves_no_thread(tmp_path: Path) -> None:
    before = handler_threads()
    rx = HecReceiver(tmp_path / "hec.db").start()
    try:
        old = connect(rx)
        idle = connect(rx)
        assert rx.abandon_open_connections() == 2
        # Their handler threads end at once; the sockets stay open for the board to close.
        assert holds_within(lambda: handler_threads() <= before, WAIT_S)
        assert rx.state.connections.counts() == {"open": 0, "abandoned": 2}
        old.sendall(post("lost"))
    finally:
        rx.stop()
    try:
        assert ended(old) and ended(idle)
    finally:
        old.close()
        idle.close()
    assert rx.state.connections.counts() == {"open": 0, "abandoned": 0}
    assert handler_threads() <= before


def test_admin_endpoint_abandons_all_but_its_own_connection(rx: HecReceiver) -> None:
    old = connect(rx)
    try:
        answer = http_request(rx.url, "/_admin/connections/abandon", b"")
        assert (answer.status, answer.json()) == (200, {"abandoned": 1})
        stats = http_request(rx.url, "/_admin/stats", method="GET").json()
        assert stats["connections"]["abandoned"] == 1
        old.sendall(post("lost"))
        assert silent(old)
        assert rx.count(contains="lost") == 0
    finally:
        old.close()
