"""Main process after register: config, children, subscription, and the INVOKE/SHUTDOWN loop.

The flush policy lives here. With `sync` (default) the extension, before it calls event/next
for an invocation, waits until that invocation's platform.runtimeDone is spooled and everything
spooled up to it is accepted by HEC, within the flush budget: the logs are in Splunk before the
environment freezes. With `background` it never waits. On SHUTDOWN it waits briefly for the last
platform.report, then lets the sender drain until just before the deadline.

This module is on the cold-start path (until the first event/next): it uses C modules
(`_socket`, `select`) and a small JSON reader, and leaves msgspec, logging and urllib3 to the
children, which import them after the fork.
"""

from __future__ import annotations

import _socket
import select
import time

from ext import config as config_module
from ext import control, diagnostics, errors, minijson, supervisor, telemetry_api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ext.config import Config
    from ext.extensions_api import ExtensionsApi

# Lambda SIGKILLs whatever still runs at the SHUTDOWN deadline (lambda-protocol.md §3.4);
# exit this long before it so the exit is ours, not the platform's.
SHUTDOWN_MARGIN_S = 0.15
# Leave the function this much of its own timeout when flushing near the invoke deadline.
INVOKE_MARGIN_S = 0.05
# How long to wait at SHUTDOWN for the last invocation's platform.report (delivered in the window).
REPORT_WAIT_S = 0.5
LISTEN_BACKLOG = 16
STOP_CHILDREN_S = 0.5


def run(api: ExtensionsApi, environ: Mapping[str, str]) -> int:
    """Everything after register; returns the process exit code."""
    try:
        config = config_module.load(environ)
    except errors.ConfigError as err:
        return _config_failed(api, err, environ)
    diagnostics.set_level(config.log_level)
    function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME") or "unknown-function"
    try:
        main = MainLoop(api, config, function_name)
        main.start()
    except Exception as err:
        diagnostics.note("ERROR", f"startup failed: {err!r}")
        api.init_error(errors.STARTUP_FAILED, f"splunk-hec-extension startup failed: {err}")
        return 1
    try:
        return main.serve()
    except Exception as err:
        # After init, Lambda wants exit/error before the extension goes (lambda-protocol §1.3).
        diagnostics.note("ERROR", f"unrecoverable error: {err!r}")
        main.stop_children()
        try:
            api.exit_error(errors.RUNTIME_FAILED, f"splunk-hec-extension failed: {err}")
        except (OSError, errors.ApiError) as report_err:
            diagnostics.note("ERROR", f"could not report exit/error: {report_err!r}")
        return 1


class Event:
    """The fields of an Extensions API event that the loop uses."""

    def __init__(self, body: bytes) -> None:
        parsed = minijson.loads(body)
        fields = parsed if isinstance(parsed, dict) else {}
        self.kind = str(fields.get("eventType", ""))
        request_id = fields.get("requestId")
        self.request_id = request_id if isinstance(request_id, str) else None
        deadline = fields.get("deadlineMs")
        self.deadline_ms = deadline if isinstance(deadline, int | float) else 0
        self.reason = str(fields.get("shutdownReason") or "")


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
        self.spooled: dict[str, int] = {}  # request id -> seq of its spooled runtimeDone
        self.reports: set[str] = set()
        self.committed = -1
        self.hec_failing = False
        self.last_request: str | None = None
        level = config.log_level
        self.listener = supervisor.Child(
            "listener", self._run_listener, (self.server.fileno(), self.wake_w, self.notify_w),
            level)
        self.sender = supervisor.Child(
            "sender", self._run_sender, (self.wake_r, self.ctl_r, self.status_w), level)

    def _all_fds(self) -> tuple[int, ...]:
        return (self.server.fileno(), self.wake_r, self.wake_w, self.notify_r, self.notify_w,
                self.ctl_r, self.ctl_w, self.status_r, self.status_w)

    def start(self) -> None:
        supervisor.spawn(self.listener, self._all_fds())
        supervisor.spawn(self.sender, self._all_fds())
        port = self.server.getsockname()[1]
        subscription = telemetry_api.build_subscription(self.config, port)
        if not telemetry_api.subscribe(self.api, subscription):
            diagnostics.note("WARNING", "the Telemetry API is not supported here (202): "
                                        "nothing will be forwarded")

    def _run_listener(self) -> None:
        import socket

        from ext.listener import Listener

        server = socket.socket(fileno=self.server.detach())
        Listener(self.config, server, self.wake_w, self.notify_w).serve()

    def _run_sender(self) -> None:
        from ext.sender import Sender

        Sender(self.config, self.function_name, self.wake_r, self.ctl_r, self.status_w).run()

    def serve(self) -> int:
        """The event loop: one INVOKE or SHUTDOWN at a time until SHUTDOWN."""
        while True:
            event = Event(self.api.next_event())
            self._restart_dead_children()
            if event.kind == "SHUTDOWN":
                self.shutdown(event.deadline_ms, event.reason)
                return 0
            if event.kind == "INVOKE" and event.request_id:
                self.last_request = event.request_id
                self.spooled.clear()  # older invocations' runtimeDone can no longer matter
                self.reports.clear()
                if self.config.flush == "sync":
                    self.flush_invocation(event.request_id, event.deadline_ms / 1000)

    def flush_invocation(self, request_id: str, deadline: float) -> None:
        """Waits (bounded) for the invocation's runtimeDone, then for HEC to accept up to it."""
        end = time.monotonic() + max(0.0, deadline - INVOKE_MARGIN_S - time.time())
        while request_id not in self.spooled:
            if not self._wait_messages(end):
                return
        target = self.spooled.pop(request_id)
        if self.committed >= target:
            return
        # Even while HEC is failing, the flush makes the sender try once more at once; it
        # answers FAILING if that attempt fails too, which ends this wait early.
        self.hec_failing = False
        control.send(self.ctl_w, control.FLUSH, target)
        budget_end = min(end, time.monotonic() + self.config.flush_budget_ms / 1000)
        while self.committed < target and not self.hec_failing:
            if not self._wait_messages(budget_end):
                return

    def shutdown(self, deadline_ms: float, reason: str) -> None:
        left_s = deadline_ms / 1000 - time.time() - SHUTDOWN_MARGIN_S
        deadline = time.monotonic() + max(0.0, left_s)
        if self.last_request is not None:
            report_end = min(deadline - 0.3, time.monotonic() + REPORT_WAIT_S)
            while self.last_request not in self.reports:
                if not self._wait_messages(report_end):
                    break
        deadline_epoch_ms = int((time.time() + deadline - time.monotonic()) * 1000)
        control.send(self.ctl_w, control.DRAIN, deadline_epoch_ms)
        if not supervisor.wait_exit(self.sender, deadline):
            diagnostics.note("WARNING", f"shutdown ({reason}): deadline reached with events "
                                        "still spooled")
        supervisor.stop([self.listener, self.sender], deadline)

    def stop_children(self) -> None:
        supervisor.stop([self.listener, self.sender], time.monotonic() + STOP_CHILDREN_S)

    def _wait_messages(self, end: float) -> bool:
        """Waits for listener/sender messages until `end`; False once it has passed."""
        left = end - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self.notify_r, self.status_r], [], [], left)
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
            diagnostics.note("ERROR", f"{child.role} exited with {child.exit_status}; "
                                      "restarting it")
            child.restarts += 1
            supervisor.spawn(child, self._all_fds())


def _bind_listener(config: Config) -> _socket.socket:
    host = config.listener_host or _default_listener_host()
    server = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    server.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    server.bind((host, config.listener_port))
    server.listen(LISTEN_BACKLOG)
    return server


def _default_listener_host() -> str:
    """sandbox.localdomain in Lambda; loopback where it does not resolve (local emulator)."""
    try:
        return _socket.gethostbyname(telemetry_api.DESTINATION_HOST)
    except OSError:
        return "127.0.0.1"


def _config_failed(api: ExtensionsApi, err: errors.ConfigError, environ: Mapping[str, str]) -> int:
    message = "splunk-hec-extension configuration: " + "; ".join(err.problems)
    diagnostics.note("ERROR", message)
    if config_module.config_error_action(environ) == "disable":
        diagnostics.note("ERROR", "SPLUNK_ON_CONFIG_ERROR=disable: forwarding nothing; "
                                  "the function runs on")
        while Event(api.next_event()).kind != "SHUTDOWN":
            pass
        return 0
    api.init_error(errors.CONFIG_INVALID, message)
    return 1
