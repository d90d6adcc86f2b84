"""A container credentials endpoint on 127.0.0.1 (a free port), as Lambda serves one to a
SnapStart function (the Runtime API's /2021-04-23/credentials): GET with the Authorization token
it was given answers the role's credentials as JSON; another token answers 404 (RIE's
rapi/handler/credentials.go). Records every request; can be told to fail, or to give scripted
answers first (a redirect, a 1xx, a dropped connection)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = "/2021-04-23/credentials"
# RIE's credentials service hands out credentials valid for 16 minutes.
LIFETIME_S = 16 * 60


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CredentialsServer:
    """`credentials`: AccessKeyId, SecretAccessKey, Token; `token`: the Authorization expected."""

    def __init__(self, credentials: dict[str, str], token: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.credentials = dict(credentials)
        self.token = token
        self.clock = clock
        self.lifetime_s: float = LIFETIME_S
        self.fail_with: int | None = None  # answer this status instead
        self.answer: bytes | None = None  # answer these bytes (200) instead
        # (status, headers, body) answered first, one per request; status 0 closes the
        # connection without an answer.
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    def environment(self) -> dict[str, str]:
        """What Lambda puts in a SnapStart function's environment instead of access keys."""
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": self.token}

    def _respond(self, handler: BaseHTTPRequestHandler,
                 ) -> tuple[int, dict[str, str], bytes]:
        presented = handler.headers.get("Authorization")
        self.requests.append({"method": handler.command, "path": handler.path,
                              "authorization": presented, "accept": handler.headers.get("Accept")})
        if self.script:
            return self.script.pop(0)
        status, body = self._usual(handler, presented)
        return status, {"Content-Type": "application/json"}, body

    def _usual(self, handler: BaseHTTPRequestHandler, presented: str | None) -> tuple[int, bytes]:
        if self.fail_with is not None:
            # Echoes the token presented, as a careless endpoint or proxy might.
            return self.fail_with, f"failed for token {presented}".encode()
        if handler.path != PATH or presented != self.token:
            return 404, b"cannot get credentials for the provided token"
        if self.answer is not None:
            return 200, self.answer
        body = {**self.credentials, "Expiration": iso(self.clock() + self.lifetime_s)}
        return 200, json.dumps(body).encode()

    @contextmanager
    def running(self) -> Iterator[CredentialsServer]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = owner._respond(self)
                if status == 0:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
