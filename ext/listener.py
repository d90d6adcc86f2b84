"""Listener process: receives Telemetry API POSTs and spools each batch before answering 2xx.

Holds the spool's writer role. A body that is not a JSON array of events gets 400 and is
counted; a spool failure gets 503 so Lambda retries. It only takes in: the sender, which reads
every record anyway, learns where invocations end. It never logs per request: its own stderr
would come back to it as `extension` telemetry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING

import msgspec

from ext import schema
from ext.spool import SpoolWriter

if TYPE_CHECKING:
    from ext.config import Config

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 2**20  # Lambda sends at most 2 x maxBytes (1 MiB) plus metadata
ACCEPT_POLL_S = 1.0
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
_UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
_TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _BadRequestError(Exception):
    pass


class Listener:
    def __init__(self, config: Config, server: socket.socket, wake_fd: int) -> None:
        self.server = server
        self.writer = SpoolWriter(
            config.spool_dir, max_bytes=config.spool_max_bytes, wake_fd=wake_fd
        )
        self.append_lock = threading.Lock()
        self.parent = os.getppid()
        self.malformed = 0
        self.spool_failures = 0

    def serve(self) -> None:
        """Accepts connections until the parent process is gone."""
        self.server.settimeout(ACCEPT_POLL_S)
        while os.getppid() == self.parent:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            thread = threading.Thread(target=self._serve_connection, args=(conn,), daemon=True)
            thread.start()

    def _serve_connection(self, conn: socket.socket) -> None:
        buffer = bytearray()
        with conn:
            while True:
                try:
                    body, keep_alive = _read_request(conn, buffer)
                except _BadRequestError:
                    self._count_malformed()
                    conn.sendall(_TOO_LARGE)
                    return
                except (ConnectionError, OSError):
                    return
                if body is None:
                    return
                conn.sendall(self.accept_batch(body))
                if not keep_alive:
                    return

    def accept_batch(self, body: bytes) -> bytes:
        """Validates and spools one Telemetry batch; returns the HTTP response to send."""
        try:
            heads = schema.telemetry_batch_heads.decode(body)
            count = len(heads)
        except msgspec.DecodeError:
            # Not every element is an event object: keep the batch if it is a JSON array at
            # all (the sender salvages the valid events and counts the rest), else refuse it.
            try:
                count = len(schema.raw_array.decode(body))
            except msgspec.DecodeError:
                self._count_malformed()
                return _BAD
            self._count_malformed()
        try:
            with self.append_lock:
                self.writer.append(body, count)
        except (OSError, ValueError) as err:  # ValueError: a record larger than the spool bound
            self.spool_failures += 1
            log.error("cannot spool a telemetry batch (Lambda will retry it): %s", err)
            return _UNAVAILABLE
        return _OK

    def _count_malformed(self) -> None:
        self.malformed += 1
        if self.malformed & (self.malformed - 1) == 0:
            log.warning("refused %d malformed telemetry request(s)", self.malformed)


def _read_request(conn: socket.socket, buffer: bytearray) -> tuple[bytes | None, bool]:
    """Reads one HTTP/1.1 request; (None, False) at a clean end of the connection."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = conn.recv(262_144)
        if not chunk:
            return None, False
        buffer += chunk
        if len(buffer) > 65_536 and buffer.find(b"\r\n\r\n") < 0:
            raise _BadRequestError
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get("connection", "").lower() != "close" and head[0].endswith("1.1")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return _read_chunked(conn, buffer), keep_alive
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as err:
        raise _BadRequestError from err
    if length < 0 or length > MAX_BODY_BYTES:
        raise _BadRequestError
    while len(buffer) < length:
        chunk = conn.recv(max(length - len(buffer), 65_536))
        if not chunk:
            raise ConnectionError("closed inside a request body")
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return body, keep_alive


def _read_chunked(conn: socket.socket, buffer: bytearray) -> bytes:
    body = bytearray()
    while True:
        while (eol := buffer.find(b"\r\n")) < 0:
            buffer += _recv(conn)
        try:
            size = int(bytes(buffer[:eol]).split(b";")[0], 16)
        except ValueError as err:
            raise _BadRequestError from err
        del buffer[: eol + 2]
        if size == 0:
            while (end := buffer.find(b"\r\n")) < 0:  # trailers end with an empty line
                buffer += _recv(conn)
            del buffer[: end + 2]
            return bytes(body)
        if len(body) + size > MAX_BODY_BYTES:
            raise _BadRequestError
        while len(buffer) < size + 2:
            buffer += _recv(conn)
        body += buffer[:size]
        del buffer[: size + 2]


def _recv(conn: socket.socket) -> bytes:
    chunk = conn.recv(262_144)
    if not chunk:
        raise ConnectionError("closed inside a chunked body")
    return chunk
