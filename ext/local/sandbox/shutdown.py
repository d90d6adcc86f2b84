"""Shutdown of one init cycle (spindown, or the shutdown part of a reset). Emulator process only.

lambda-protocol 3.4/3.5: thaw, SIGTERM the runtime and wait for its exit (SIGKILL when its 300 ms
share ends), then SHUTDOWN with deadlineMs = start + 2,000 ms to extensions subscribed to it (others
are SIGKILLed then), pending telemetry flushed during the window, SIGKILL of every process group
still alive at the deadline. The runtime first, then the extensions, as RIE does
(rapid/shutdown.go: shutdownRuntime, then shutdownAgents): what the runtime logs while it shuts
down is written before any extension hears of the shutdown.
"""

from __future__ import annotations

import signal
import time

from ext.local.sandbox import platform_records as records
from ext.local.sandbox.control_plane import ControlPlane
from ext.local.sandbox.fleet import Fleet
from ext.local.sandbox.model import ProcessExit, SandboxConfig, ShutdownResult
from ext.local.sandbox.procs import SandboxProcess
from ext.local.sandbox.telemetry import TelemetryBus

REAP_TIMEOUT_S = 2.0


def _notify_extensions(cp: ControlPlane, fleet: Fleet, body: bytes) -> list[SandboxProcess]:
    """Hand SHUTDOWN to subscribed extensions, SIGKILL the rest; return those we wait for."""
    waiting: list[SandboxProcess] = []
    with cp.cv:
        cp.registration_open = False
        cp.subscription_open = False
        cp.runtime_pending = None
        for name, proc in fleet.extensions.items():
            ext = cp.by_name(name)
            if ext is not None and "SHUTDOWN" in ext.events and not ext.finished and proc.alive():
                ext.pending = body
                waiting.append(proc)
            else:
                proc.kill()
        cp.cv.notify_all()
    return waiting


def _stop_runtime(cp: ControlPlane, runtime: SandboxProcess, kill_at: float) -> None:
    """SIGTERM the runtime and wait for its exit; SIGKILL it when its share is spent."""
    runtime.signal_group(signal.SIGTERM)
    with cp.cv:
        while runtime.alive():
            now = time.monotonic()
            if now >= kill_at:
                runtime.kill()
                return
            cp.cv.wait(max(0.0005, kill_at - now))  # an exit notifies cp.cv


def _wait_window(cp: ControlPlane, waiting: list[SandboxProcess], stop_at: float) -> None:
    """Wait until every extension waited for exited, or the deadline."""
    with cp.cv:
        while any(p.alive() for p in waiting):
            now = time.monotonic()
            if now >= stop_at:
                return
            cp.cv.wait(max(0.0005, stop_at - now))


def run_shutdown(
    cp: ControlPlane, fleet: Fleet, bus: TelemetryBus, reason: str, cfg: SandboxConfig
) -> ShutdownResult:
    """Shut the current cycle down; afterwards no process of it is alive and state is retired."""
    t0 = time.monotonic()
    has_external = bool(fleet.extensions)
    budget_ms = cfg.shutdown_budget_ms if has_external else 0
    deadline_ms = int(time.time() * 1000) + budget_ms
    stop_at = t0 + budget_ms / 1000
    runtime = fleet.runtime
    fleet.thaw()
    bus.begin_shutdown(stop_at)
    if runtime is not None and runtime.alive():
        runtime_share = cfg.runtime_shutdown_ms / 1000 if has_external else 0.0
        _stop_runtime(cp, runtime, t0 + runtime_share)
    waiting = _notify_extensions(cp, fleet, records.shutdown_event(reason, deadline_ms))
    _wait_window(cp, waiting, stop_at)
    everyone = fleet.all()
    for proc in everyone:
        proc.kill()  # leaders still alive and any descendants left behind by exited leaders
    reap_by = time.monotonic() + REAP_TIMEOUT_S
    for proc in everyone:
        proc.popen.wait(max(0.01, reap_by - time.monotonic()))
        for thread in proc.threads:
            thread.join(max(0.01, reap_by - time.monotonic()))
    bus.drop_subscribers()
    with cp.cv:
        cp.retire_all()
    exits = tuple(
        ProcessExit(
            name=p.name,
            kind=p.kind,
            exited=not p.killed,
            killed=p.killed,
            exit_code=p.popen.returncode,
            exit_ms=None if p.exit_t is None else round(max(0.0, p.exit_t - t0) * 1000, 3),
        )
        for p in everyone
    )
    fleet.clear()
    return ShutdownResult(reason, deadline_ms, round((time.monotonic() - t0) * 1000, 3), exits)
