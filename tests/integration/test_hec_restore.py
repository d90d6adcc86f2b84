"""The HEC client and courier after a SnapStart restore (control.Restored): the connection from
before the snapshot is cut off without a byte sent on it, a request waiting on it ends at once,
the next request connects anew on a channel of its own, and the courier connects ahead again.

A restored environment's connection leads nowhere: what is sent on it may never be answered
nor refused. The loopback stand-in for it is a server that reads a request and never answers.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.sender import hec_wire
from ext.sender.batching import seal
from ext.sender.courier import Courier
from ext.sender.hec import CHANNEL_HEADER, HecClient, HecOutcome, Verdict
from tests.integration.test_hec_client import (  # noqa: F401 - fixtures
    Script,
    certificate,
    config,
    tls_server,
)
from tests.integration.test_hec_receiver_helpers import read_message

pytestmark = pytest.mark.integration
ANSWER = b'HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\n{"text":"Success","code":0}'
WAIT_S = 10.0  # far longer than any of this takes; far shorter than the request timeout


def read_request(conn: socket.socket) -> bytes:
    """One request's head (its body read too)."""
    return read_message(conn)[0]


def channel(head: bytes) -> bytes:
    prefix = CHANNEL_HEADER.lower().encode() + b":"
    return next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                if line.lower().startswith(prefix))


def rest_of(conn: socket.socket) -> bytes:
    """What else arrives on `conn` until the client closes it."""
    conn.settimeout(WAIT_S)
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def delivered(courier: Courier) -> list[int | None]:
    """The batches the courier reports delivered, once it reports any (WAIT_S at most)."""
    ends = time.monotonic() + WAIT_S
    done: list[int | None] = []
    while not done and time.monotonic() < ends:
        select.select([courier.done_r], [], [], ends - time.monotonic())
        done = courier.take_done()
    return done


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(WAIT_S)
    yield server
    server.close()


def client_for(server: socket.socket) -> HecClient:
    return HecClient(config(f"http://127.0.0.1:{server.getsockname()[1]}",
                            request_timeout_ms=120_000))


def courier_for(server: socket.socket, tmp_path: Path) -> Courier:
    """A courier whose requests wait for an answer far longer than any test (none times out)."""
    return Courier(config(f"http://127.0.0.1:{server.getsockname()[1]}",
                          request_timeout_ms=120_000), str(tmp_path / "quarantine"))


def restore_and_answer_anew(courier: Courier, server: socket.socket) -> None:
    """The restore, with a request of the init's batch on the wire: the courier sends it again
    at once on a new connection, HEC accepts it there, and nothing counts as a failure."""
    courier.restored()
    new, _ = server.accept()
    with new:
        read_request(new)
        new.sendall(ANSWER)
        assert delivered(courier) == [1]
    assert (courier.failures, courier.failing) == (0, False)


def test_a_request_left_unanswered_at_the_snapshot_ends_at_the_restore(
    listener: socket.socket,
) -> None:
    client = client_for(listener)
    outcomes: list[HecOutcome] = []
    poster = threading.Thread(target=lambda: outcomes.append(client.post(b"{}")))
    try:
        poster.start()
        old, _ = listener.accept()
        with old:
            before = channel(read_request(old))  # read, never answered: the request waits
            client.restored()
            poster.join(WAIT_S)
            assert not poster.is_alive(), "the request still waits on the cut connection"
            assert [o.verdict for o in outcomes] == [Verdict.RETRY]
            # The next request connects anew, on a channel of its own.
            poster = threading.Thread(target=lambda: outcomes.append(client.post(b"{}")))
            poster.start()
            new, _ = listener.accept()
            with new:
                after = channel(read_request(new))
                new.sendall(ANSWER)
                poster.join(WAIT_S)
            assert outcomes[1].verdict is Verdict.ACCEPTED
            assert after != before
            assert rest_of(old) == b""  # nothing more was sent on the old connection
    finally:
        client.close()
        poster.join(WAIT_S)


def test_an_idle_connection_from_before_the_snapshot_is_not_used_again(
    listener: socket.socket,
) -> None:
    client = client_for(listener)
    outcomes: list[HecOutcome] = []
    try:
        client.prepare()  # connected ahead at the init, idle at the snapshot
        old, _ = listener.accept()
        with old:
            client.restored()
            poster = threading.Thread(target=lambda: outcomes.append(client.post(b"{}")))
            poster.start()
            new, _ = listener.accept()
            with new:
                read_request(new)
                new.sendall(ANSWER)
                poster.join(WAIT_S)
            assert [o.verdict for o in outcomes] == [Verdict.ACCEPTED]
            assert rest_of(old) == b""  # not a byte of a request on it
    finally:
        client.close()


def test_restored_before_any_connection_changes_only_the_channel(
    listener: socket.socket,
) -> None:
    client = client_for(listener)
    heads: list[bytes] = []
    try:
        for _ in range(2):
            client.restored()  # harmless with no connection yet, or twice
            poster = threading.Thread(target=client.post, args=(b"{}",))
            poster.start()
            conn, _ = listener.accept()
            with conn:
                heads.append(read_request(conn))
                conn.sendall(ANSWER)
                poster.join(WAIT_S)
    finally:
        client.close()
    assert channel(heads[0]) != channel(heads[1])


def test_over_tls_the_next_request_after_a_restore_is_on_a_new_connection(
    tls_server: tuple[str, Script], certificate: tuple[Path, Path],  # noqa: F811 - fixtures
) -> None:
    url, script = tls_server
    client = HecClient(config(url, ca_bundle=str(certificate[0])))
    try:
        assert client.post(b"{}").verdict is Verdict.ACCEPTED
        client.restored()
        assert client.post(b"{}").verdict is Verdict.ACCEPTED
    finally:
        client.close()
    assert script.seen[0].peer != script.seen[1].peer
    assert script.seen[0].headers[CHANNEL_HEADER] != script.seen[1].headers[CHANNEL_HEADER]


def test_the_courier_connects_ahead_again_after_a_restore(
    listener: socket.socket, tmp_path: Path,
) -> None:
    courier = Courier(config(f"http://127.0.0.1:{listener.getsockname()[1]}"),
                      str(tmp_path / "quarantine"))
    try:
        first, _ = listener.accept()  # connected ahead as the sender starts
        with first:
            assert courier.offer(seal([b'{"event":"init"}'], 1, 1))  # the init's lines
            read_request(first)
            first.sendall(ANSWER)
            assert delivered(courier) == [1]
            courier.restored()
            second, _ = listener.accept()  # connected again at the restore, unasked
            with second:
                assert rest_of(first) == b""
                second.settimeout(0.2)
                with pytest.raises(TimeoutError):
                    second.recv(1)  # and nothing sent on it yet
    finally:
        courier.stop()


def test_a_request_the_restore_cuts_is_sent_again_at_once_and_is_no_failure(
    listener: socket.socket, tmp_path: Path,
) -> None:
    # Told as a failure, it would end the first invocation's flush (Failing) before the
    # request that follows at once on a new connection was answered. On the connection made
    # ahead (kept alive), the client sends it again itself (a kept-alive connection found
    # dropped); see the next test for one on a connection made for it.
    courier = courier_for(listener, tmp_path)
    try:
        old, _ = listener.accept()  # connected ahead
        with old:
            assert courier.offer(seal([b'{"event":"init"}'], 1, 1))
            read_request(old)  # on the wire at the snapshot, never answered
            restore_and_answer_anew(courier, listener)
    finally:
        courier.stop()


def test_a_request_the_restore_cuts_on_a_connection_made_for_it_is_sent_again_by_the_courier(
    listener: socket.socket, tmp_path: Path,
) -> None:
    # The client sends nothing again on a connection made for the request: the cut comes back
    # as a failure (RETRY), and the courier sends it again at once, as no failure.
    courier = courier_for(listener, tmp_path)
    try:
        ahead, _ = listener.accept()
        ahead.close()  # HEC closed the connection made ahead: the request connects anew
        assert courier.offer(seal([b'{"event":"init"}'], 1, 1))
        cut, _ = listener.accept()
        with cut:
            read_request(cut)  # on the wire at the snapshot, never answered
            restore_and_answer_anew(courier, listener)
    finally:
        courier.stop()


def test_a_restore_while_a_request_head_is_built_leaves_the_next_request_on_the_new_channel(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sender's thread handles the Restored while the courier's builds a request's head
    # from the fields it read before: that head has the old channel, and the next request's
    # must not.
    client = client_for(listener)
    real = hec_wire.request_head
    built: list[int] = []

    def building(path: str, host: str, fields: list[tuple[str, str]]) -> bytes:
        built.append(1)
        if len(built) == 1:
            client.restored()
        return real(path, host, fields)

    monkeypatch.setattr(hec_wire, "request_head", building)
    outcomes: list[HecOutcome] = []
    poster = threading.Thread(
        target=lambda: outcomes.extend(client.post(b"{}") for _ in range(2)))
    try:
        poster.start()
        conn, _ = listener.accept()  # kept alive for the second request
        with conn:
            heads = []
            for _ in range(2):
                heads.append(read_request(conn))
                conn.sendall(ANSWER)
            poster.join(WAIT_S)
    finally:
        client.close()
        poster.join(WAIT_S)
    assert [o.verdict for o in outcomes] == [Verdict.ACCEPTED] * 2
    assert channel(heads[1]) != channel(heads[0])


def test_the_request_head_is_built_once_per_token_and_channel(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = client_for(listener)
    real = hec_wire.request_head
    built: list[bytes] = []

    def building(path: str, host: str, fields: list[tuple[str, str]]) -> bytes:
        head = real(path, host, fields)
        built.append(head)
        return head

    monkeypatch.setattr(hec_wire, "request_head", building)

    def token(name: str) -> str:
        return "".join(["t-", name])  # equal, never the same object: as each fetch's

    try:
        heads = [client._request_head(token("1")), client._request_head(token("1"))]
        assert len(built) == 1
        client.restored()
        heads += [client._request_head(token("1")), client._request_head(token("1"))]
        assert len(built) == 2
        heads += [client._request_head(token("2")), client._request_head(token("2"))]
        assert len(built) == 3
        heads.append(client._request_head(token("1")))  # back to the first: built again
        assert len(built) == 4
    finally:
        client.close()
    assert heads == [built[0]] * 2 + [built[1]] * 2 + [built[2]] * 2 + [built[3]]
    assert channel(built[0]) != channel(built[1]) == channel(built[2]) == channel(built[3])
    assert b"Splunk t-2\r\n" in built[2] and built[3] == built[1]
    # The restore changed the channel and nothing else.
    assert built[1] == built[0].replace(channel(built[0]), channel(built[1]))
