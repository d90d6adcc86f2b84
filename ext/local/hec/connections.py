"""The client connections of the embedded HEC receiver: open ones, and abandoned ones.

An abandoned connection is what a connection from before a SnapStart snapshot is to the
restored environment that still holds it: the server end is gone without a word, so what the
client sends on it is never read nor answered and the connection is never closed; only the
client's own timeout ends the wait. On loopback the receiver stands in for that by keeping the
socket open but unread (shutdown(SHUT_RD): Linux sends nothing to the peer, and keeps taking in
its data) until the receiver stops. Thread-safe; used by the handler threads, the receiver and
the admin endpoint.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class ConnectionBoard:
    """Every client connection from its setup until its handler is done with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._abandoned: set[socket.socket] = set()

    def opened(self, conn: socket.socket) -> None:
        """A handler thread took `conn`."""
        with self._lock:
            self._open.add(conn)

    def finished(self, conn: socket.socket) -> None:
        """Its handler thread is done with `conn` (an abandoned one stays, open)."""
        with self._lock:
            self._open.discard(conn)

    def is_abandoned(self, conn: socket.socket) -> bool:
        """True when nothing may be read from, written to or closed on `conn` any more."""
        with self._lock:
            return conn in self._abandoned

    def abandon(self, keep: socket.socket | None = None) -> int:
        """Abandon every open connection but `keep`; returns how many were abandoned."""
        with self._lock:
            gone = [c for c in self._open if c is not keep and c not in self._abandoned]
            self._abandoned.update(gone)
        for conn in gone:
            # Wakes the handler thread blocked in its read with an end of stream, so it ends
            # without reading on; the peer is told nothing (no FIN, no RST). The plain socket's
            # shutdown: an SSLSocket's own would also drop its TLS state, and a reply still
            # under way would then go out as plaintext.
            with contextlib.suppress(OSError):  # the client vanished meanwhile
                socket.socket.shutdown(conn, socket.SHUT_RD)
        return len(gone)

    def close_all(self) -> None:
        """At stop: wake every idle keep-alive thread, and close the abandoned connections."""
        with self._lock:
            live = list(self._open)
            left = list(self._abandoned)
            self._abandoned.clear()
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for conn in left:
            # No handler thread owns them any more (or the one still running lets go of it
            # now): closing is up to the board.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def counts(self) -> dict[str, int]:
        """How many connections are open and abandoned (admin stats)."""
        with self._lock:
            return {"open": len(self._open - self._abandoned), "abandoned": len(self._abandoned)}
