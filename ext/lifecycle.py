"""Main process after register: config, children, subscription, and the INVOKE/SHUTDOWN loop.

The flush policy lives here. With `sync` (default) the extension, before it calls event/next
for an invocation, waits until that invocation's platform.runtimeDone is spooled and everything
spooled up to it is accepted by HEC, within the flush budget: the logs are in Splunk before the
environment freezes. With `background` it never waits. On SHUTDOWN it waits briefly for the last
platform.report, then lets the sender drain until just before the deadline.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ext import config as config_module
from ext import control, errors, schema, supervisor, telemetry_api
from ext.spool import read_committed

if TYPE_CHECKING:
    from ext.config import Config
    from ext.extensions_api import ExtensionsApi

log = logging.getLogger(__name__)

# Lambda SIGKILLs whatever still runs at the SHUTDOWN deadline (lambda-protocol.md §3.4);
# exit this long before it so the exit is ours, not the platform's.
SHUTDOWN_MARGIN_S = 0.15
# Leave the function this much of its own timeout when flushing near the invoke deadline.
INVOKE_MARGIN_S = 0.05
# How long to wait at SHUTDOWN for the last invocation's platform.report (delivered in the window).
REPORT_WAIT_S = 0.5
COMMIT_POLL_S = 0.02


def run(api: ExtensionsApi, register_body: bytes, environ: Mapping[str, str]) -> int:
    """Everything after register; returns the process exit code."""
    try:
        config = config_module.load(environ)
    except errors.ConfigError as err:
        return _config_failed(api, err, environ)
    _configure_logging(config.log_level)
    function_name = _function_name(register_body, environ)
    try:
        main = MainLoop(api, config, function_name)
        main.start()
    except Exception as err:
        log.exception("startup failed")
        api.init_error(errors.STARTUP_FAILED, f"splunk-hec-extension startup failed: {err}")
        return 1
    return main.serve()


class MainLoop:
    def __init__(self, api: ExtensionsApi, config: Config, function_name: str) -> None:
        self.api = api
        self.config = config
        self.function_name = function_name
        self.server = _bind_listener(config)
        self.wake_r, self.wake_w = control.make_pipe()
        self.notify_r, self.notify_w = control.make_pipe()
        self.ctl_r, self.ctl_w = control.make_pipe()
        self.status_r, self.status_w = control.make_pipe()
        self.notify = control.MessageReader(self.notify_r)
        self.status = control.MessageReader(self.status_r)
        self.spooled: dict[str, int] = {}  # request id -> seq of its runtimeDone
        self.reports: set[str] = set()
        self.committed = -1
        self.hec_failing = False
        self.last_request: str | None = None
        self.listener = supervisor.Child("listener", self._run_listener, (
            self.server.fileno(), self.wake_w, self.notify_w))
        self.sender = supervisor.Child("sender", self._run_sender, (
            self.wake_r, self.ctl_r, self.status_w))

    def _all_fds(self) -> tuple[int, ...]:
        return (self.server.fileno(), self.wake_r, self.wake_w, self.notify_r, self.notify_w,
                self.ctl_r, self.ctl_w, self.status_r, self.status_w)

    def start(self) -> None:
        supervisor.spawn(self.listener, self._all_fds())
        supervisor.spawn(self.sender, self._all_fds())
        port = self.server.getsockname()[1]
        subscription = telemetry_api.build_subscription(self.config, port)
        if not telemetry_api.subscribe(self.api, subscription):
            log.warning("the Telemetry API is not supported here (202): nothing will be forwarded")

    def _run_listener(self) -> None:
        from ext.listener import Listener

        Listener(self.config, self.server, self.wake_w, self.notify_w).serve()

    def _run_sender(self) -> None:
        from ext.sender import Sender

        Sender(self.config, self.function_name, self.wake_r, self.ctl_r, self.status_w).run()

    def serve(self) -> int:
        """The event loop: one INVOKE or SHUTDOWN at a time until SHUTDOWN."""
        while True:
            event = schema.lifecycle_event.decode(self.api.next_event())
            self._restart_dead_children()
            if event.eventType == "SHUTDOWN":
                self.shutdown(event.deadlineMs, event.shutdownReason or "")
                return 0
            if event.eventType == "INVOKE" and event.requestId:
                self.last_request = event.requestId
                self.spooled.clear()  # older invocations' runtimeDone can no longer matter
                self.reports.clear()
                if self.config.flush == "sync":
                    self.flush_invocation(event.requestId, event.deadlineMs / 1000)

    def flush_invocation(self, request_id: str, deadline: float) -> None:
        """Waits (bounded) for the invocation's runtimeDone, then for HEC to accept up to it."""
        end = time.monotonic() + max(0.0, deadline - INVOKE_MARGIN_S - time.time())
        while request_id not in self.spooled:
            if not self._wait_messages(end):
                return
        target = self.spooled.pop(request_id)
        control.send(self.ctl_w, control.FLUSH, target)
        budget_end = min(end, time.monotonic() + self.config.flush_budget_ms / 1000)
        while not self._committed_through(target) and not self.hec_failing:
            if not self._wait_messages(budget_end, poll_s=COMMIT_POLL_S):
                return

    def shutdown(self, deadline_ms: int, reason: str) -> None:
        deadline = time.monotonic() + max(0.0, deadline_ms / 1000 - time.time()) - SHUTDOWN_MARGIN_S
        if self.last_request is not None:
            report_end = min(deadline - 0.3, time.monotonic() + REPORT_WAIT_S)
            while self.last_request not in self.reports:
                if not self._wait_messages(report_end):
                    break
        deadline_epoch_ms = int((time.time() + deadline - time.monotonic()) * 1000)
        control.send(self.ctl_w, control.DRAIN, deadline_epoch_ms)
        drained = supervisor.wait_exit(self.sender, deadline)
        if not drained:
            log.warning("shutdown (%s): deadline reached with events still spooled", reason)
        supervisor.stop([self.listener, self.sender], deadline)

    def _committed_through(self, seq: int) -> bool:
        if self.committed < seq:
            self.committed = max(self.committed, read_committed(self.config.spool_dir))
        return self.committed >= seq

    def _wait_messages(self, end: float, poll_s: float | None = None) -> bool:
        """Waits for listener/sender messages until `end`; False once it has passed."""
        left = end - time.monotonic()
        if left <= 0:
            return False
        timeout = left if poll_s is None else min(left, poll_s)
        ready, _, _ = select.select([self.notify_r, self.status_r], [], [], timeout)
        if self.notify_r in ready:
            for kind, words in self.notify.read():
                if kind == control.RUNTIME_DONE and len(words) == 2:
                    self.spooled[words[0]] = int(words[1])
                elif kind == control.REPORT and words:
                    self.reports.add(words[0])
        if self.status_r in ready:
            self._read_status()
        return True

    def _read_status(self) -> None:
        for kind, words in self.status.read():
            if kind == control.COMMITTED and words:
                self.committed = max(self.committed, int(words[0]))
            elif kind == control.FAILING:
                self.hec_failing = True
            elif kind == control.HEALTHY:
                self.hec_failing = False

    def _restart_dead_children(self) -> None:
        for child in supervisor.reap([self.listener, self.sender]):
            log.error("%s exited with %s; restarting it", child.role, child.exit_status)
            child.restarts += 1
            supervisor.spawn(child, self._all_fds())


def _bind_listener(config: Config) -> socket.socket:
    host = config.listener_host or _default_listener_host()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, config.listener_port))
    server.listen(16)
    server.set_inheritable(True)
    return server


def _default_listener_host() -> str:
    """sandbox.localdomain in Lambda; loopback where it does not resolve (local emulator)."""
    try:
        return socket.gethostbyname(telemetry_api.DESTINATION_HOST)
    except OSError:
        return "127.0.0.1"


def _function_name(register_body: bytes, environ: Mapping[str, str]) -> str:
    try:
        name = schema.register_response.decode(register_body).functionName
    except ValueError:
        name = ""
    return name or environ.get("AWS_LAMBDA_FUNCTION_NAME", "unknown-function")


def _config_failed(api: ExtensionsApi, err: errors.ConfigError, environ: Mapping[str, str]) -> int:
    _configure_logging("WARNING")
    message = "splunk-hec-extension configuration: " + "; ".join(err.problems)
    log.error("%s", message)
    if config_module.config_error_action(environ) == "disable":
        log.error("SPLUNK_ON_CONFIG_ERROR=disable: forwarding nothing; the function runs on")
        while True:
            event = schema.lifecycle_event.decode(api.next_event())
            if event.eventType == "SHUTDOWN":
                return 0
    api.init_error(errors.CONFIG_INVALID, message)
    return 1


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format=f"{config_module.OWN_LOG_MARKER} %(levelname)s main: %(message)s",
        force=True,
    )
    # urllib3 logs every request at DEBUG; forwarded as our own `extension` telemetry that
    # would be one more request per request, a feedback loop. Its warnings still show.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, logging.getLevelName(level)))

