"""Sandbox: one emulated Lambda execution environment and its library API.

Runs in the caller's process (tests, benchmarks, CLI). Orchestrates init (extensions, then the
runtime), invokes with real freeze/thaw, resets after timeout or crash, and the spindown shutdown,
following lambda-protocol section 3. API handling lives in control.py, processes in fleet.py.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ext.local.sandbox import limits, procs, wire
from ext.local.sandbox import platform_records as records
from ext.local.sandbox.control_plane import ControlPlane, Invocation
from ext.local.sandbox.exchanges import ExchangeLog
from ext.local.sandbox.faults import Faults
from ext.local.sandbox.fleet import Fleet
from ext.local.sandbox.httpd import ApiServer
from ext.local.sandbox.memory import OOM_ERROR_TYPE, MemoryGuard
from ext.local.sandbox.model import InvokeResult, SandboxConfig, ShutdownResult
from ext.local.sandbox.shutdown import run_shutdown
from ext.local.sandbox.telemetry import TelemetryBus
from ext.local.sandbox.waiting import Failure, await_ready


class Sandbox:
    """One execution environment: API server, processes, telemetry; see docs/emulator.md."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.cfg = cfg
        self._work = Path(tempfile.mkdtemp(prefix="lambda-sandbox-"))
        self.tmp_dir = cfg.tmp_dir or self._work / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.bus = TelemetryBus(cfg.telemetry_buffer_limit_bytes)
        self._log = ExchangeLog(cfg.exchange_log)
        self.cp = ControlPlane(cfg, self.bus, self._log)
        self.cp.on_runtime_done = self._emit_runtime_done
        self.cgroup = limits.create(cfg.memory_mb) if cfg.limits else None
        self.fleet = Fleet(cfg, self.bus, self._work, self.tmp_dir, self._on_exit,
                           preexec=self.cgroup.enter_hook() if self.cgroup else None)
        self._server = ApiServer(self.cp.handle)
        self.faults = Faults(self)
        self.ident = records.FunctionIdentity(
            cfg.function_name, "$LATEST", cfg.arn, "", cfg.memory_mb, "python:emulated"
        )
        # Lambda Managed Instances: the environment runs on between invocations (no freeze).
        self._lmi = cfg.managed_instances
        # SnapStart: init ends in a snapshot that one restore resumes (docs/emulator.md).
        self._snap = cfg.snap_start
        self._init_type = cfg.initialization_type
        self._lock = threading.RLock()
        self._initialised = False
        self._next_phase = "init"
        self._frozen = False
        self._pending_init_ms: float | None = None
        self._snapshot = False  # a snapshot was taken and not yet restored
        self._pending_restore_ms: float | None = None
        self._started = False
        self._closed = False
        self._stats: dict[str, list[dict[str, Any]]] = {
            "inits": [],
            "restores": [],
            "invocations": [],
            "shutdowns": [],
        }

    # -- public API ------------------------------------------------------------------------------

    @property
    def api_address(self) -> str:
        """host:port of the emulated APIs (AWS_LAMBDA_RUNTIME_API)."""
        return f"127.0.0.1:{self._server.port}"

    @property
    def exchanges(self) -> list[dict[str, Any]]:
        """Every API exchange so far (see exchanges.py for the fields)."""
        return self._log.entries

    @property
    def runtime_pid(self) -> int | None:
        """Pid of the live runtime process."""
        rt = self.fleet.runtime
        return rt.pid if rt is not None and rt.alive() else None

    def extension_pids(self) -> dict[str, int]:
        """Pid of each live extension process by name."""
        return {n: p.pid for n, p in self.fleet.extensions.items() if p.alive()}

    def start(self) -> Sandbox:
        """Start the API server (init runs on the first invoke or init())."""
        if not self._started:
            self._server.start()
            self._started = True
        return self

    def init(self) -> dict[str, Any]:
        """Run init now (if not done) and freeze; returns the init record of inspect().

        With snap_start the freeze is the snapshot: it lasts until restore() or the first invoke.
        """
        with self._lock:
            self.start()
            if not self._initialised:
                ok = self._init(self._next_phase)
                if ok and self._snap:
                    self._take_snapshot()
                elif ok:
                    self._pending_init_ms = self._stats["inits"][-1]["duration_ms"]
                    if not self._lmi:
                        self._freeze()
            return dict(self._stats["inits"][-1]) if self._stats["inits"] else {}

    @property
    def snapshot_taken(self) -> bool:
        """SnapStart: init's snapshot exists and was not restored yet (the sandbox is frozen)."""
        return self._snapshot

    def restore(self) -> dict[str, Any]:
        """SnapStart: resume init's snapshot as a new environment; returns its inspect() record.

        Runs init first if needed. On success the environment is frozen again until the first
        invoke (Lambda restores for an invoke; the test may act in between); on failure it is
        reset. One restore per snapshot: a second call raises RuntimeError.
        """
        with self._lock:
            if not self._snap:
                raise RuntimeError("restore() needs SandboxConfig(snap_start=True)")
            self.init()
            if not self._snapshot:
                raise RuntimeError("no snapshot to restore: init failed or it was restored")
            record = self._restore()
            if record["status"] == "success":
                self._pending_restore_ms = record["duration_ms"]
                self._freeze()
            return record

    def invoke(
        self, payload: bytes | dict[str, Any] | list[Any] | str | None = None
    ) -> InvokeResult:
        """Invoke once; returns when the invoke phase ended (frozen again, or reset done)."""
        with self._lock:
            self.start()
            if self._initialised and self.fleet.dead() is not None:
                # A process died while frozen (fault injection): Lambda resets the environment.
                self._reset("failure")
            if self._snap:
                return self._invoke_restored(wire.payload_bytes(payload))
            init_ms = self._pending_init_ms
            self._pending_init_ms = None
            # An init in the invoke (after a reset, or one that failed in the init phase) runs
            # within the function's timeout, which counts from the invoke's arrival: AWS, "Lambda
            # execution environment lifecycle" (the init "with the configured function
            # timeout"); RIE runs it inside doInvoke.
            arrived = (time.time(), time.monotonic())
            if not self._initialised:
                phase = self._next_phase
                within = arrived[1] + self.cfg.timeout_s if phase == "invoke" else None
                if not self._init(phase, within):
                    return InvokeResult.from_failed_init(self._stats["inits"][-1])
                init_ms = self._stats["inits"][-1]["duration_ms"]
                if phase != "invoke":
                    arrived = (time.time(), time.monotonic())
            self._thaw()
            return self._run_invoke(wire.payload_bytes(payload), init_ms, arrived=arrived)

    def shutdown(self, reason: str = "spindown") -> ShutdownResult:
        """SHUTDOWN every extension (deadline now+2000 ms), then SIGKILL whatever still runs."""
        with self._lock:
            result = self._shutdown(reason)
            self._next_phase = "init"
            return result

    def inspect(self) -> dict[str, Any]:
        """Measurements so far; JSON-serialisable."""
        return {
            "api_address": self.api_address,
            "tmp_dir": str(self.tmp_dir),
            "initialised": self._initialised,
            "frozen": self._frozen,
            "snapshot": self._snapshot,
            "inits": [dict(i) for i in self._stats["inits"]],
            "restores": [dict(r) for r in self._stats["restores"]],
            "invocations": [dict(i) for i in self._stats["invocations"]],
            "shutdowns": [dict(s) for s in self._stats["shutdowns"]],
            "event_counts": dict(self.bus.counts),
            "delivery": self.bus.subscriber_stats(),
            "extension_pids": self.extension_pids(),
            "runtime_pid": self.runtime_pid,
            "limits": self.cgroup.describe() if self.cgroup else {"applied": False},
        }

    def on_platform_event(self, callback: Callable[[str, Any], None]) -> None:
        """Call `callback(type, record)` synchronously for every platform.* event emitted."""
        self.bus.add_observer(callback)

    def on_extension_output(self, callback: Callable[[str], None]) -> None:
        """Call `callback(line)` for every line any extension writes to stdout or stderr."""
        self.fleet.output_observers.append(callback)

    def sync_output(self) -> None:
        """Hand on every output line the sandbox's processes have written so far."""
        for proc in self.fleet.all():
            proc.sync_output()

    def close(self) -> None:
        """Kill everything and stop the server; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for proc in self.fleet.all():
                proc.signal_group(signal.SIGCONT)
                proc.kill()
            self.bus.drop_subscribers(0.5)
            with self.cp.cv:
                self.cp.closing = True
                self.cp.retire_all()
            for proc in self.fleet.all():
                with contextlib.suppress(Exception):
                    proc.popen.wait(2.0)
                for thread in proc.threads:
                    thread.join(1.0)
            self._server.close()
            self._log.close()
            if self.cgroup is not None:
                self.cgroup.close()
            shutil.rmtree(self._work, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- process and state plumbing --------------------------------------------------------------

    def _on_exit(self, proc: procs.SandboxProcess) -> None:
        with self.cp.cv:
            self.cp.cv.notify_all()

    def _freeze(self) -> None:
        self.bus.set_paused(True)
        self.fleet.freeze()
        self._frozen = True

    def _thaw(self) -> None:
        if self._frozen:
            self.fleet.thaw()
            self._frozen = False
        self.bus.set_paused(False)

    def _await(self, ready: Callable[[], bool], deadline: float) -> Failure | None:
        return await_ready(self.cp, self.fleet, ready, deadline)

    # -- init ------------------------------------------------------------------------------------

    def _new_environment(self) -> None:
        """A new instanceId: at every init, and at a SnapStart restore (another environment)."""
        day = time.strftime("%Y/%m/%d", time.gmtime())
        self.fleet.instance_id = f"{day}/[$LATEST]{uuid.uuid4().hex}"
        self.ident = records.FunctionIdentity(
            self.cfg.function_name,
            "$LATEST",
            self.cfg.arn,
            self.fleet.instance_id,
            self.cfg.memory_mb,
            self.ident.runtime_version,
        )

    def _init(self, phase: str, deadline: float | None = None) -> bool:
        """Init cycle of lambda-protocol 3.1, done by monotonic `deadline` (default: the init
        timeout from now); returns success. On failure the sandbox is reset."""
        t0 = time.monotonic()
        deadline = t0 + self.cfg.init_timeout_s if deadline is None else deadline
        self._new_environment()
        files = procs.list_extensions(self.cfg.opt_dir)
        with self.cp.cv:
            self.cp.retire_all()
            self.cp.launched = {f.name for f in files}
            self.cp.registration_open = True
            self.cp.subscription_open = True
        self.bus.open_replay()
        self.bus.emit("platform.initStart", records.init_start(self.ident, phase, self._init_type))
        record: dict[str, Any] = {"phase": phase, "extensions": {}}
        failure: Failure | None = None
        for path in files:
            self.fleet.start_extension(path, self.api_address)
        names = [f.name for f in files]
        failure = self._await(lambda: all(self.cp.by_name(n) for n in names), deadline)
        if failure is None:
            rt = self.fleet.start_runtime(self.api_address)
            # With SnapStart, awslambdaric ends its init with restore/next instead.
            failure = self._await(lambda: self.cp.runtime_ready_t is not None, deadline)
            ready_t = self.cp.runtime_ready_t
            if ready_t is not None:
                record["runtime_first_next_ms"] = round((ready_t - rt.start_t) * 1000, 3)
        if failure is None:
            with self.cp.cv:
                self.cp.registration_open = False
            failure = self._await(
                lambda: all(e.first_next_t is not None for e in self.cp.extensions.values()),
                deadline,
            )
        with self.cp.cv:
            self.cp.subscription_open = False
            exts = list(self.cp.extensions.values())
        self.bus.close_replay()
        for ext in exts:
            proc = self.fleet.extensions.get(ext.name)
            record["extensions"][ext.name] = ext.timings(proc.start_t if proc else None)
        duration_ms = (time.monotonic() - t0) * 1000
        status, error_type = ("success", None) if failure is None else failure
        record.update(status=status, error_type=error_type, duration_ms=round(duration_ms, 3))
        self.bus.emit(
            "platform.initRuntimeDone",
            records.init_runtime_done(phase, status, error_type, self._init_type),
        )
        for ext in exts:
            self.bus.emit(
                "platform.extension", records.extension(ext.name, ext.events, ext.error_type)
            )
        self.bus.emit(
            "platform.initReport",
            records.init_report(phase, status, duration_ms, error_type, self._init_type),
        )
        self._stats["inits"].append(record)
        self._initialised = True
        if failure is not None:
            self._reset("failure")
            return False
        return True

    # -- SnapStart -------------------------------------------------------------------------------

    def _take_snapshot(self) -> None:
        """The snapshot of a finished init: the sandbox frozen as between invocations."""
        self._freeze()
        self._snapshot = True

    def _restore(self) -> dict[str, Any]:
        """Resume the snapshot (lambda-protocol 2.5): restoreStart, thaw, the runtime's
        after-restore hooks until its invocation/next, restoreRuntimeDone, restoreReport.

        Bounded by init_timeout_s (Lambda's restore phase has a 10 s limit too). A failed
        restore (restore/error, a crash, the deadline) resets the environment.
        """
        t0 = time.monotonic()
        self._snapshot = False
        snapshot_instance = self.ident.instance_id
        self._new_environment()
        self.bus.emit("platform.restoreStart", records.restore_start(self.ident))
        self._thaw()  # what the snapshot left undelivered now goes out
        with self.cp.cv:
            self.cp.release_restore()
        failure = self._await(
            lambda: self.cp.runtime_first_next_t is not None, t0 + self.cfg.init_timeout_s
        )
        duration_ms = (time.monotonic() - t0) * 1000
        if self.fleet.runtime is not None:
            self.fleet.runtime.sync_output()  # the hooks' log lines precede restoreRuntimeDone
        status, error_type = ("success", None) if failure is None else failure
        done = records.restore_runtime_done(status, error_type)
        self.bus.emit("platform.restoreRuntimeDone", done)
        self.bus.emit(
            "platform.restoreReport", records.restore_report(status, duration_ms, error_type)
        )
        record = {
            "status": status,
            "error_type": error_type,
            "duration_ms": round(duration_ms, 3),
            "instance_id": self.ident.instance_id,
            "snapshot_instance_id": snapshot_instance,
        }
        self._stats["restores"].append(record)
        if failure is not None:
            self._reset("failure")
        return dict(record)

    def _invoke_restored(self, payload: bytes) -> InvokeResult:
        """SnapStart invoke: init and snapshot if needed, restore if needed, then the invoke.

        The first invocation after a restore reports restoreDurationMs and no initDurationMs.
        """
        restore_ms = self._pending_restore_ms
        self._pending_restore_ms = None
        if not self._initialised:
            if not self._init(self._next_phase):
                return InvokeResult.from_failed_init(self._stats["inits"][-1])
            self._take_snapshot()
        if self._snapshot:
            record = self._restore()
            if record["status"] != "success":
                return InvokeResult.from_failed_restore(record)
            restore_ms = record["duration_ms"]
        self._thaw()
        return self._run_invoke(payload, None, restore_ms)

    # -- invoke ----------------------------------------------------------------------------------

    def _emit_runtime_done(self, inv: Invocation, failure: Failure | None = None) -> None:
        """platform.runtimeDone; called by the control plane when the runtime calls next."""
        runtime = self.fleet.runtime
        if runtime is not None:
            runtime.sync_output()  # its log lines precede runtimeDone, as they were written
        if self._lmi:
            # RIE-LMI's events API has no runtimeDone (SendInvokeStart, SendReport only); the
            # log lines handed on above still precede the invocation's platform.report.
            return
        end = inv.runtime_next_t or time.monotonic()
        handed = inv.handed_t or inv.start_t
        spans = []
        if inv.response_t is not None:
            spans.append(
                records.span("responseLatency", inv.handed_epoch, (inv.response_t - handed) * 1000)
            )
            spans.append(records.span("responseDuration", inv.response_epoch, 0.0))
            # The runtime's work after its response, until it asks for the next event: Lambda
            # reports it too (e.g. 15 ms for a Node.js function in a captured record).
            spans.append(records.span("runtimeOverhead", inv.response_epoch,
                                      max(0.0, end - inv.response_t) * 1000))
        status, error_type = failure or (inv.result_status or "error", inv.error_type)
        record = records.runtime_done(
            inv.request_id,
            status=status,
            error_type=error_type,
            duration_ms=(end - handed) * 1000,
            produced_bytes=len(inv.response),
            spans=spans,
            trace=records.trace_context(inv.trace_value, inv.span_id),
        )
        self.bus.emit("platform.runtimeDone", record)

    def _run_invoke(
        self, payload: bytes, init_ms: float | None, restore_ms: float | None = None,
        arrived: tuple[float, float] | None = None,
    ) -> InvokeResult:
        # The timeout counts from `arrived` (wall, monotonic), the invoke's arrival: by default
        # now, before an init in the invoke when there was one.
        t0 = time.monotonic()
        arrived_wall, arrived_mono = arrived or (time.time(), t0)
        trace_value, span_id = records.new_trace(time.time())
        deadline_ms = int((arrived_wall + self.cfg.timeout_s) * 1000)
        inv = Invocation(str(uuid.uuid4()), payload, deadline_ms, trace_value, span_id, t0)
        trace = records.trace_context(trace_value, span_id)
        self.bus.emit("platform.start", records.start(inv.request_id, self.ident, trace))
        body = records.invoke_event(inv.request_id, deadline_ms, self.cfg.arn, trace_value)
        with self.cp.cv:
            self.cp.invocation = inv
            self.cp.runtime_pending = inv
            targets = [e for e in self.cp.extensions.values() if "INVOKE" in e.events]
            for ext in targets:
                ext.pending = body
            self.cp.cv.notify_all()
        guard = self._memory_guard()
        failure = self._await(
            lambda: inv.runtime_next_t is not None and all(e.idle for e in targets),
            arrived_mono + self.cfg.timeout_s,
        )
        end = time.monotonic()
        out_of_memory = guard.stop() and failure is not None
        failure = ("error", OOM_ERROR_TYPE) if out_of_memory else failure
        if failure is None and inv.runtime_next_t is not None:
            # Invoke phase ends with the runtime's or the last extension's next (3.2).
            end = max([inv.runtime_next_t] + [e.last_next_t or 0.0 for e in targets])
        runtime_end = inv.runtime_next_t
        post_ms = None if runtime_end is None else max(0.0, (end - runtime_end) * 1000)
        duration_ms = (end - t0) * 1000
        if failure is not None and runtime_end is None:
            platform_status = "timeout" if failure[0] == "timeout" else "error"
            self._emit_runtime_done(inv, (platform_status, failure[1]))
        status = inv.result_status or "error"
        error_type = inv.error_type
        if failure is not None:
            status = "timeout" if failure[0] == "timeout" else "error"
            error_type = failure[1]
        if failure is None and not self._lmi:
            self.bus.set_paused(True)  # the report waits for the next thaw (lambda-protocol 3.2)
        memory = self._max_memory_used_mb(out_of_memory)
        overhead = (
            [] if post_ms is None else [records.span("extensionOverhead", time.time(), post_ms)]
        )
        report = records.report(
            inv.request_id,
            status=status,
            error_type=error_type,
            duration_ms=duration_ms,
            memory_mb=self.cfg.memory_mb,
            max_memory_used_mb=memory,
            init_duration_ms=init_ms,
            spans=overhead,
            trace=trace,
            restore_duration_ms=restore_ms,
        )
        self.bus.emit("platform.report", report)
        reset_reason = None
        frozen_at = None
        if failure is not None:
            reset_reason = "timeout" if failure[0] == "timeout" else "failure"
            self._reset(reset_reason)
        elif not self._lmi:
            self.fleet.freeze()
            self._frozen = True
            frozen_at = time.monotonic()
        result = InvokeResult(
            request_id=inv.request_id,
            status=status
            if failure is None
            else ("timeout" if reset_reason == "timeout" else "failure"),
            response=inv.response,
            error=inv.error,
            error_type=error_type,
            runtime_duration_ms=None
            if runtime_end is None or inv.handed_t is None
            else round((runtime_end - inv.handed_t) * 1000, 3),
            post_runtime_ms=None if post_ms is None else round(post_ms, 3),
            duration_ms=round(duration_ms, 3),
            init_duration_ms=init_ms,
            billed_duration_ms=report["metrics"]["billedDurationMs"],
            max_memory_used_mb=memory,
            reset_reason=reset_reason,
            restore_duration_ms=restore_ms,
        )
        # Monotonic seconds (CLOCK_MONOTONIC, comparable with other processes' time.monotonic()).
        times = {"started_at": t0, "frozen_at": frozen_at, "response": len(inv.response)}
        self._stats["invocations"].append(result.as_dict() | times)
        return result

    def _memory_guard(self) -> MemoryGuard:
        """Kills the function when its memory size is used up (memory.py)."""
        group = self.cgroup
        limited = group is not None and group.memory_limited
        return MemoryGuard(self.fleet.runtime, self.cfg.memory_mb,
                           group.anonymous_kb if group is not None and limited else None)

    def _max_memory_used_mb(self, out_of_memory: bool) -> int:
        memory = self.fleet.max_memory_used_mb()
        # The killed runtime's peak is gone with it; Lambda reports the memory size.
        return max(memory, self.cfg.memory_mb) if out_of_memory else memory

    # -- shutdown / reset ------------------------------------------------------------------------

    def _reset(self, reason: str) -> ShutdownResult:
        result = self._shutdown(reason)
        # A SnapStart init is never suppressed into an invoke: the emulator's only way to a new
        # environment is a new snapshot (Lambda would restore its one snapshot again).
        self._next_phase = "init" if self._snap else "invoke"
        return result

    def _shutdown(self, reason: str) -> ShutdownResult:
        if not self._initialised:
            return ShutdownResult(reason, 0, 0.0, ())
        self._frozen = False
        self._snapshot = False
        self._pending_restore_ms = None
        result = run_shutdown(self.cp, self.fleet, self.bus, reason, self.cfg)
        self._initialised = False
        self._stats["shutdowns"].append(result.as_dict())
        return result
