"""A scripted stand-in for the Lambda APIs on 127.0.0.1: each accepted connection is served by a
list of raw answers, one per request, and every request it read is kept (head and body)."""

from __future__ import annotations

import socket
import threading
from collections import deque


class ScriptedApi:
    """Answers the requests of each connection with the next raw replies of `script`.

    `script` holds one list of answers per connection, in order of connection; an answer of
    None closes the connection instead of answering (a peer that went away).
    """

    def __init__(self, script: list[list[bytes | None]]) -> None:
        self.script = deque(script)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)  # so that close() ends a wait for a connection at once
        self._stopping = False
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping = True
        self._thread.join(5)
        self._server.close()

    def _serve(self) -> None:
        while self.script and not self._stopping:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            answers = self.script.popleft()
            conn.settimeout(5)
            # The reader holds the socket open too: both are closed when the answers end.
            with conn, conn.makefile("rb") as reader:
                for answer in answers:
                    request = _read_request(reader)
                    if request is None:
                        break
                    self.requests.append(request)
                    if answer is None:
                        break
                    conn.sendall(answer)


def _read_request(reader: object) -> tuple[str, dict[str, str], bytes] | None:
    line = reader.readline()  # type: ignore[attr-defined]
    if not line:
        return None
    headers: dict[str, str] = {}
    while (header := reader.readline()) not in (b"\r\n", b""):  # type: ignore[attr-defined]
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))  # type: ignore[attr-defined]
    return line.decode("latin-1").strip(), headers, body


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None,
          length: bool = True) -> bytes:
    """A raw HTTP/1.1 answer; with a Content-Length unless `length` is False (the body is then
    framed by `headers`, e.g. chunked, or by the connection's end)."""
    fields = {**({"Content-Length": str(len(body))} if length else {}), **(headers or {})}
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"HTTP/1.1 {status} X\r\n{head}\r\n".encode() + body
