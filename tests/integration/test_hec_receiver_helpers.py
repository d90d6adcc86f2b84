"""Plain-HTTP helpers for the HEC receiver tests (no tests here): requests built from hec.md,
not through our sender."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TOKEN = "00000000-0000-0000-0000-000000000000"
CHANNEL = "6f1c3f5e-8d6b-4c43-9b7e-0a6e2b7f9c11"
EVENT = "/services/collector/event"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def splunk_auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Splunk {token}"}


def basic_auth(token: str, user: str = "anyone") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def request(
    url: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    conn: http.client.HTTPConnection | None = None,
    timeout: float = 10,
) -> Answer:
    """One request; opens and closes its own connection unless `conn` is given."""
    own = conn is None
    if conn is None:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        if own:
            conn.close()


def post_events(
    url: str,
    envelopes: list[dict[str, Any]],
    *,
    gzipped: bool = False,
    headers: dict[str, str] | None = None,
    path: str = EVENT,
) -> Answer:
    body = "\n".join(json.dumps(e) for e in envelopes).encode()
    all_headers = {**splunk_auth(), **(headers or {})}
    if gzipped:
        body = gzip.compress(body)
        all_headers["Content-Encoding"] = "gzip"
    return request(url, path, body, all_headers)


def read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 message (request or answer) framed by Content-Length, off a raw socket:
    (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before a whole head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed inside a body"
        body += chunk
    return head, body
