"""Listener process: receives Telemetry API POSTs and spools each batch before answering 2xx.

Holds the spool's writer role; its HTTP server (`ext.http_server`: one thread, an epoll loop,
limits on everything, memory bounded whatever arrives, requests whose sender gave up not
spooled) hands it each complete request body. Answers: 200 once the batch is spooled; 400 for a
body that is not a JSON array; 503 when the spool append fails (Lambda then retries), never 200;
the HTTP errors of `ext.http_server`. What of a body is kept is `ext.intake`'s decision;
refusals are counted and reported to Splunk in a spool record of their own
(`splunk-extension.intake-refused`) ahead of the next batch.

It only takes in: the sender, which reads every record anyway, learns where invocations end.
It never logs per request: its own stderr would come back to it
as `extension` telemetry.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ext import intake, schema
from ext.http_intake import response
from ext.http_server import TICK_S, HttpServer
from ext.spool import SpoolWriter

if TYPE_CHECKING:
    import socket

    from ext.config import Config

log = logging.getLogger(__name__)

REFUSED_TYPE = "splunk-extension.intake-refused"

_OK = response(200)
_BAD = response(400)
_UNAVAILABLE = response(503)


class Listener:
    def __init__(self, config: Config, server: socket.socket, wake_fd: int) -> None:
        self.writer = SpoolWriter(
            config.spool_dir, max_bytes=config.spool_max_bytes, wake_fd=wake_fd
        )
        self.parent = os.getppid()
        self.malformed = 0
        self.spool_failures = 0
        self.dropped_events = 0  # elements of accepted batches that intake did not keep
        self.too_deep_events = 0  # elements intake kept as text, nested too deep
        self.refused: dict[str, int] = {}  # not yet reported to Splunk, by kind
        self.http = HttpServer(server, self.accept_batch, self._on_refused)

    def serve(self) -> None:
        """Serves connections until the parent process is gone."""
        self.http.listen()
        while os.getppid() == self.parent:
            self.http.poll(TICK_S)

    def close(self) -> None:
        self.http.close()
        self.writer.close()

    def accept_batch(self, body: bytes | bytearray | memoryview) -> bytes:
        """Checks and spools one Telemetry batch; returns the HTTP response to send."""
        verdict = intake.inspect(body)
        if verdict.payload is None:
            self._count_malformed()
            self._refuse("malformed")
            return _BAD
        self.too_deep_events += verdict.too_deep
        if verdict.dropped:
            self.dropped_events += verdict.dropped
            if _power_of_two(self.dropped_events):
                log.warning("dropped %d malformed telemetry event(s) (counted in Splunk as %s)",
                            self.dropped_events, intake.DROPPED_TYPE)
        if verdict.events == 0:
            return _OK  # an empty array: nothing to keep
        self._report_refusals()
        try:
            self.writer.append(memoryview(verdict.payload), verdict.events)
        except (OSError, ValueError) as err:  # ValueError: a record larger than the spool bound
            self.spool_failures += 1
            self._refuse("spool_failed")
            if _power_of_two(self.spool_failures):
                log.error("cannot spool %d telemetry batch(es) (answered 503): %s",
                          self.spool_failures, err)
            return _UNAVAILABLE
        return _OK

    def _count_malformed(self) -> None:
        self.malformed += 1
        if _power_of_two(self.malformed):
            log.warning("refused %d malformed telemetry request(s)", self.malformed)

    def _refuse(self, kind: str) -> None:
        self.refused[kind] = self.refused.get(kind, 0) + 1

    def _report_refusals(self) -> None:
        """Spools the counts of refused requests as one event of the extension's own."""
        if not self.refused:
            return
        notice = schema.encoder.encode(
            [{"time": intake.now_iso(), "type": REFUSED_TYPE, "record": {"requests": self.refused}}]
        )
        try:
            self.writer.append(notice, 1)
        except (OSError, ValueError):
            return  # kept for the next batch
        self.refused = {}

    def _on_refused(self, kind: str) -> None:
        if kind == "malformed":
            self._count_malformed()
        self._refuse(kind)


def _power_of_two(count: int) -> bool:
    """1, 2, 4, 8...: logs stay visible but never flood (they come back as telemetry)."""
    return count & (count - 1) == 0
