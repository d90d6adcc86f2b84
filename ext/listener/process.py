"""Listener process: receives Telemetry API POSTs and spools each batch before answering 2xx.

Holds the spool's writer role; its HTTP server (`ext.listener.http_server`: one thread, an epoll
loop, limits on everything, memory bounded whatever arrives, requests whose sender gave up not
spooled) hands it each complete request body. Answers: 200 once the batch is spooled; 400 for a body
that is not a JSON array; 503 when the spool append fails (Lambda then retries), never 200; the HTTP
errors of `ext.listener.http_server`. What of a body is kept is `ext.listener.intake`'s decision,
then `ext.listener.filters`' (SPLUNK_MIN_LEVEL, SPLUNK_DROP_REGEX, SPLUNK_MASK: nothing masked or
dropped reaches the disk; the drops are reported in a `splunk-extension.filtered` event with the
batch that ends an invocation); refusals are counted and reported to Splunk in a spool record of
their own (`splunk-extension.intake-refused`) ahead of the next batch (after it once the spool
refused an append: a notice the full spool refuses would count as lost telemetry).

It only takes in: the sender, which reads every record anyway, learns where invocations end. It
never logs per request: its own stderr would come back to it as `extension` telemetry.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import msgspec

from ext import schema
from ext.listener import filters, intake
from ext.listener.http_intake import response
from ext.listener.http_server import HttpServer
from ext.spool import SpoolWriter

if TYPE_CHECKING:
    import socket

    from ext.config import Config

log = logging.getLogger(__name__)

REFUSED_TYPE = "splunk-extension.intake-refused"
# Filter drops are reported with the batch that ends an invocation (runtimeDone or report),
# so at most one notice per invocation, or after this long with drops still unreported.
FILTER_REPORT_S = 60.0
# A batch without a runtimeDone lets the sender read it later, with the next one (one pass, not
# two) unless it is this large: building its envelopes while the function still runs overlaps
# work that a later read would add after the runtime's end, where a waiting flush bills it. Below
# this, a pass of its own costs the sender about what building the batch does (~0.1-0.2 ms).
READ_AT_ONCE_BYTES = 16_384
# The longest such a batch's wake-up of the sender is held (SpoolWriter.append) waiting for the
# next batch, the one with the runtimeDone (or SPLUNK_DISPATCH_MAX_WAIT_MS if shorter). Held here,
# not by the sender, so that the sender is not woken to learn that it may wait: the platform.report
# that arrives alone as the environment thaws would otherwise cost it a pass per invocation.
# With the start's batch 25 ms or more after the INVOKE, in a long invocation it comes just before
# the sender is to tell main that the invocation runs (0.3 s into main's default wait), so the pass
# it brings tells it (ext/flush_policy.py RUNNING_AT, ext/sender/process.py RUNNING_SLACK_S), not
# one more pass.
DEFER_WAKE_S = 0.25

_OK = response(200)
_BAD = response(400)
_UNAVAILABLE = response(503)


class Listener:
    def __init__(self, config: Config, server: socket.socket, wake_fd: int) -> None:
        self.writer = SpoolWriter(
            config.spool_dir, max_bytes=config.spool_max_bytes, wake_fd=wake_fd,
            defer_wake_s=min(DEFER_WAKE_S, config.dispatch_max_wait_ms / 1000),
        )
        self.parent = os.getppid()
        # SnapStart, until an invocation ends (there is none before the restore): Lambda
        # snapshots the environment at a moment no process is told of, and what the sender had
        # not sent by then is sent again by every environment restored from it. No wake-up is
        # held meanwhile (ext/sender/process.py sends what it reads at once, as long).
        self.before_snapshot = config.snap_start
        self.malformed = 0
        self.spool_failures = 0
        self.dropped_events = 0  # elements of accepted batches that intake did not keep
        self.too_deep_events = 0  # elements intake kept as text, nested too deep
        self.refused: dict[str, int] = {}  # not yet reported to Splunk, by kind
        self.filter = filters.LineFilter(config)
        self.filtered: dict[str, int] = {}  # filter drops not yet reported to Splunk, by reason
        self.filtered_total: dict[str, int] = {}  # every filter drop since start, by reason
        self.filtered_since = 0.0  # monotonic time of the oldest unreported filter drop
        self._notice: tuple[dict[str, int], bytes] | None = None  # the last drops' notice made
        self.http = HttpServer(server, self.accept_batch, self._on_refused)

    def serve(self) -> None:
        """Serves connections until the parent process is gone (looked at with the server's
        timers, every TICK_S while a request is in progress, else every IDLE_TICK_S: not a
        system call per request), and writes the sender's held wake-up when it is due."""
        self.http.listen()
        http, writer = self.http, self.writer
        while os.getppid() == self.parent:
            ticked = False
            while not ticked:
                wait = http.wait_s()
                if writer.wake_due is not None:
                    wait = min(wait, max(0.0, writer.wake_due - time.monotonic()))
                ticked = http.poll(wait)
                if writer.wake_due is not None:
                    writer.wake_if_due(time.monotonic())

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
        payload, events = verdict.payload, verdict.events
        drops: dict[str, int] = {}
        noticed = False  # the batch carries the filter drops' notice
        if self.filter.active and events:
            payload, events, drops, noticed = self._filtered(verdict)
        if events == 0:
            self._count_filtered(drops, reported=False)
            return _OK  # an empty array, or nothing left: nothing to keep
        # After a refused append the spool is likely full: the notice then goes after the batch,
        # once the batch was kept. Tried first, it would be refused too, and the writer counts
        # every refused record as lost telemetry (one more lost batch per POST while full).
        spool_full = "spool_failed" in self.refused
        if not spool_full:
            self._report_refusals()
        try:
            self.writer.append(memoryview(payload), events, read_now=(
                verdict.ends_invocation or len(payload) >= READ_AT_ONCE_BYTES
                or self.before_snapshot))
        except (OSError, ValueError) as err:  # ValueError: a record larger than the spool bound
            self.spool_failures += 1
            self._refuse("spool_failed")
            if _power_of_two(self.spool_failures):
                log.error("cannot spool %d telemetry batch(es) (answered 503): %s",
                          self.spool_failures, err)
            return _UNAVAILABLE
        if spool_full:
            self._report_refusals()
        if verdict.ends_invocation:
            self.before_snapshot = False
        self._count_filtered(drops, reported=noticed)
        return _OK

    def _filtered(self, verdict: intake.Verdict) -> tuple[bytes | bytearray | memoryview, int,
                                                          dict[str, int], bool]:
        """The batch after SPLUNK_MIN_LEVEL, SPLUNK_DROP_REGEX and SPLUNK_MASK, with a notice
        of the drops so far when it ends an invocation (or they wait too long)."""
        assert verdict.payload is not None
        payload, events = verdict.payload, verdict.events
        decoded = verdict.decoded
        if decoded is None:  # intake rebuilt the batch: decode what it kept
            try:
                decoded = schema.intake_batch.decode(payload)
            except (msgspec.DecodeError, RecursionError):
                decoded = []
        outcome = self.filter.apply(decoded)
        drops: dict[str, int] = {}
        if outcome is not None:
            payload, events, drops = outcome.payload, outcome.events, outcome.dropped
        pending = dict(self.filtered)
        for reason, count in drops.items():
            pending[reason] = pending.get(reason, 0) + count
        due = verdict.notable or (
            bool(self.filtered) and time.monotonic() - self.filtered_since >= FILTER_REPORT_S)
        if pending and due:
            # The notice made for the same counts before is reused: a batch the spool refused
            # comes again from Lambda, and the writer knows a retry only by identical bytes.
            if self._notice is None or self._notice[0] != pending:
                self._notice = (pending, filters.notice(pending, intake.now_iso()))
            notice = self._notice[1]
            body = bytes(payload).rstrip()
            payload = body[:-1] + b"," + notice + b"]" if events else b"[" + notice + b"]"
            return payload, events + 1, drops, True
        return payload, events, drops, False

    def _count_filtered(self, drops: dict[str, int], reported: bool) -> None:
        """Once the batch is taken: its drops are pending, or every pending one was reported."""
        for reason, count in drops.items():
            self.filtered_total[reason] = self.filtered_total.get(reason, 0) + count
        if reported:
            self.filtered = {}
            self._notice = None
            return
        if drops and not self.filtered:
            self.filtered_since = time.monotonic()
        for reason, count in drops.items():
            self.filtered[reason] = self.filtered.get(reason, 0) + count

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
