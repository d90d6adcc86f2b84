"""The HEC receiver's connection board (ext/local/hec/connections.py): which connections an
abandonment takes, and that the board closes them at stop. Loopback TCP pairs (a Unix socket
pair's SHUT_RD would refuse the peer's writes), no server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ext.local.hec.connections import ConnectionBoard


def tcp_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    """(server end, client end) of one loopback TCP connection."""
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    return server, client


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        made = [tcp_pair(listener) for _ in range(3)]
    yield made
    for server, client in made:
        server.close()
        client.close()


def test_abandon_takes_every_open_connection_but_the_one_kept(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    board = ConnectionBoard()
    (one, _), (two, _), (admin, _) = pairs
    for conn in (one, two, admin):
        board.opened(conn)
    assert board.abandon(keep=admin) == 2
    assert board.is_abandoned(one) and board.is_abandoned(two) and not board.is_abandoned(admin)
    assert board.abandon(keep=admin) == 0  # once each
    board.finished(one)
    board.finished(two)
    assert board.counts() == {"open": 1, "abandoned": 2}


def test_an_abandoned_connection_reads_end_of_stream_and_tells_the_peer_nothing(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    board = ConnectionBoard()
    server, client = pairs[0]
    board.opened(server)
    board.abandon()
    assert server.recv(10) == b""  # what wakes its handler thread
    client.sendall(b"never read")
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(10)  # no FIN, no RST, no answer


def test_close_all_closes_the_abandoned_and_shuts_the_live(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    board = ConnectionBoard()
    (gone, gone_peer), (live, live_peer), _ = pairs
    board.opened(gone)
    board.abandon()
    board.finished(gone)
    board.opened(live)
    board.close_all()
    assert gone.fileno() == -1  # nobody else would close it
    assert live.fileno() != -1 and live.recv(1) == b""  # its thread closes it, once woken
    assert gone_peer.recv(1) == b"" and live_peer.recv(1) == b""
    assert board.counts() == {"open": 1, "abandoned": 0}
