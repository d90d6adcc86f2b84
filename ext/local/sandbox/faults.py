"""Fault knobs of a sandbox for tests: slow/failing telemetry delivery, killing processes.

Emulator process only. Function timeouts come from SandboxConfig.timeout_s and handler crashes
from the sample function's payload; these knobs cover what a payload cannot express.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ext.local.sandbox.procs import SandboxProcess
    from ext.local.sandbox.sandbox import Sandbox


REAP_WAIT_S = 2.0


class Faults:
    """Fault injection for one Sandbox (`sb.faults`)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    @property
    def telemetry_delay_s(self) -> float:
        """Seconds slept before every telemetry POST attempt (a slow listener).

        Slept in wall time, frozen time included, and read as each sleep starts: an attempt
        started before a freeze is sent when its sleep ends, into the stopped listener, whose
        kernel queues it; the listener can read it as soon as it is thawed, before the next
        INVOKE is even handed out. A new value applies from the next attempt on, not to a
        sleep under way."""
        return self._sb.bus.faults.delay_s

    @telemetry_delay_s.setter
    def telemetry_delay_s(self, value: float) -> None:
        self._sb.bus.faults.delay_s = value

    @property
    def shutdown_delivery_delay_s(self) -> float:
        """Seconds into the SHUTDOWN window before pending telemetry is delivered (Lambda may
        deliver the last platform.report late in the window)."""
        return self._sb.bus.faults.shutdown_delay_s

    @shutdown_delivery_delay_s.setter
    def shutdown_delivery_delay_s(self, value: float) -> None:
        self._sb.bus.faults.shutdown_delay_s = value

    @property
    def shutdown_buffered(self) -> bool:
        """In the SHUTDOWN window, telemetry is buffered as before it (the subscription's
        timeoutMs, maxItems, maxBytes) instead of delivered at once: what Lambda does then is
        not documented, and a record written just before SHUTDOWN then comes after it."""
        return self._sb.bus.faults.shutdown_buffered

    @shutdown_buffered.setter
    def shutdown_buffered(self, value: bool) -> None:
        self._sb.bus.faults.shutdown_buffered = value

    def hold_telemetry(self) -> None:
        """Start no telemetry POST attempt, thawed or not, until `release_telemetry()` or
        SHUTDOWN (or a reset): the listener gets its telemetry when the test says (a POST
        already sent is not recalled)."""
        self._sb.bus.hold(True)

    def release_telemetry(self) -> None:
        """Lift `hold_telemetry()`: what was held is delivered at once (unless frozen)."""
        self._sb.bus.hold(False)

    def fail_telemetry(self, attempts: int) -> None:
        """Make the next `attempts` telemetry POST attempts fail (a failing listener)."""
        with self._sb.bus.faults.lock:
            self._sb.bus.faults.fail_attempts = attempts

    def drop_runtime_done(self, count: int = 1) -> None:
        """Drop the next `count` platform.runtimeDone records from every subscriber's delivery,
        each replaced by a platform.logsDropped (reason: the consumer fell behind) in its place
        and counted in the subscriber's dropped_records/dropped_bytes. Lambda drops what a
        subscriber does not take fast enough, and the records lost may hold an invocation's
        end; here the loss is exact, so a test knows which end is missing. Observers
        (`on_platform_event`) and `inspect()` event counts still see the record emitted."""
        with self._sb.bus.faults.lock:
            self._sb.bus.faults.drop_runtime_done = count

    def drop_start_and_runtime_done(self, count: int = 1) -> None:
        """Drop both the platform.start and the platform.runtimeDone of the next `count`
        invocations from every subscriber's delivery: one platform.logsDropped (droppedRecords
        2, reason: the consumer fell behind) where the runtimeDone would have been, counted in
        dropped_records/dropped_bytes. A subscriber then reads the invocation's lines and the
        notice, and nothing that names the invocation. (An invocation that never emits its
        runtimeDone has its start reported alone, at the next start.) Observers and
        `inspect()` event counts still see both records emitted."""
        with self._sb.bus.faults.lock:
            self._sb.bus.faults.drop_start_and_runtime_done = count

    def kill_extension(self, name: str) -> None:
        """SIGKILL extension `name` and its descendants, and wait until it is reaped."""
        _kill_and_reap(self._sb.fleet.extensions[name])

    def crash_runtime(self) -> None:
        """SIGKILL the runtime process group and wait until it is reaped."""
        runtime = self._sb.fleet.runtime
        if runtime is not None:
            _kill_and_reap(runtime)


def _kill_and_reap(proc: SandboxProcess) -> None:
    proc.kill()
    deadline = time.monotonic() + REAP_WAIT_S
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.001)  # the waiter thread records the exit
