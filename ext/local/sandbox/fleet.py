"""Processes of one sandbox: their environment, start, freeze/thaw, kill and memory measurement.

Emulator process only. Runtime = `python -m awslambdaric <handler>` in the function dir with its
output captured as `function` telemetry; extensions = executables of <opt>/extensions with their
output captured as `extension` telemetry (lambda-protocol 2.6, 6.1, 6.2).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ext.local.sandbox import custom_runtime, procs
from ext.local.sandbox import platform_records as platform
from ext.local.sandbox.model import SandboxConfig
from ext.local.sandbox.telemetry import TelemetryBus

MEMORY_RESCAN_S = 1.0
FREEZE_WAIT_S = 0.2


class Fleet:
    """Runtime and extension processes of the current init cycle."""

    def __init__(
        self,
        cfg: SandboxConfig,
        bus: TelemetryBus,
        work_dir: Path,
        tmp_dir: Path,
        on_exit: Callable[[procs.SandboxProcess], None],
        *,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.preexec = preexec  # joins the sandbox's cgroup (limits.py), or None
        self.bus = bus
        self.tmp_dir = tmp_dir
        self.bin_dir = work_dir / "lang" / "bin"
        procs.write_python_shim(self.bin_dir, cfg.python)
        self.on_exit = on_exit
        self.runtime: procs.SandboxProcess | None = None
        self.extensions: dict[str, procs.SandboxProcess] = {}
        self.json_logs = cfg.log_format.upper() == "JSON"
        self.instance_id = ""
        self.output_observers: list[Callable[[str], None]] = []  # extension lines, as written
        self._members: list[int] = []
        self._members_t = 0.0
        self._peak_kb = 0

    # -- environment -------------------------------------------------------------------------------

    def runtime_env(self, api_address: str) -> dict[str, str]:
        """Environment of the runtime process (lambda-protocol 6.1) plus the sandbox's TMPDIR."""
        cfg = self.cfg
        path_parts = [str(self.bin_dir)]
        if cfg.opt_dir is not None:
            path_parts.append(str(cfg.opt_dir / "bin"))
        path_parts.append(os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
        py_path = [str(cfg.function_dir)]
        if cfg.opt_dir is not None:
            py_path.append(str(cfg.opt_dir / "python"))
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        platform_vars = {
            "AWS_LAMBDA_RUNTIME_API": api_address,
            "AWS_LAMBDA_FUNCTION_NAME": cfg.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self.instance_id,
            "AWS_LAMBDA_INITIALIZATION_TYPE": cfg.initialization_type,
            "AWS_LAMBDA_LOG_FORMAT": "JSON" if self.json_logs else "Text",
            "AWS_REGION": cfg.region,
            "AWS_DEFAULT_REGION": cfg.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
            "_HANDLER": cfg.handler,
            "LAMBDA_TASK_ROOT": str(cfg.function_dir),
            "LAMBDA_RUNTIME_DIR": str(cfg.function_dir),
            "PATH": ":".join(path_parts),
            "PYTHONPATH": ":".join(py_path),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "TMPDIR": str(self.tmp_dir),
            "LAMBDA_SANDBOX_TMP": str(self.tmp_dir),
        }
        # Customer variables cannot override the reserved platform ones.
        env = {**dict(cfg.env), **platform_vars}
        if custom_runtime.is_custom(cfg.runtime):
            return custom_runtime.runtime_env(env, cfg.env, cfg.opt_dir)
        return env

    # -- launching ---------------------------------------------------------------------------------

    def start_extension(self, path: Path, api_address: str) -> procs.SandboxProcess:
        """Exec one extension file (no arguments) with the extension environment."""
        env = procs.extension_env(self.runtime_env(api_address))
        if self.cfg.managed_instances:
            # Extensions only. Lambda gives it to the runtime as well, but awslambdaric 4.2.2 then
            # forks that many workers from a parent that only joins them (tried here): a worker
            # that crashes leaves the parent alive, so a crash shows up as a timeout after
            # timeout_s, and the parent closes _LAMBDA_TELEMETRY_LOG_FD before forking (the
            # workers expect LMI's fd-provider socket instead), so logging loses its framing.
            # The emulator runs one invocation at a time and needs neither.
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.cfg.max_concurrency)
        cwd = self.cfg.opt_dir or self.cfg.function_dir
        proc = procs.launch(
            path.name,
            "extension",
            [str(path)],
            env=env,
            cwd=cwd,
            on_lines=self._extension_lines,
            on_exit=self.on_exit,
            preexec=self.preexec,
        )
        self.extensions[path.name] = proc
        return proc

    def start_runtime(self, api_address: str) -> procs.SandboxProcess:
        """Start awslambdaric; with framing, logging records come through a pipe (2.6)."""
        env = self.runtime_env(api_address)
        argv = [self.cfg.python, "-m", "awslambdaric", self.cfg.handler]
        custom = custom_runtime.is_custom(self.cfg.runtime)
        if custom:
            argv = custom_runtime.runtime_argv(self.cfg.function_dir, self.cfg.opt_dir)
        pass_fds: tuple[int, ...] = ()
        frame_read = -1
        if self.cfg.log_fd_framing and not custom:
            frame_read, frame_write = os.pipe()
            env["_LAMBDA_TELEMETRY_LOG_FD"] = str(frame_write)
            pass_fds = (frame_write,)
        try:
            proc = procs.launch(
                "runtime",
                "runtime",
                argv,
                env=env,
                cwd=self.cfg.function_dir,
                on_lines=self._function_lines,
                on_exit=self.on_exit,
                pass_fds=pass_fds,
                preexec=self.preexec,
            )
        except OSError:
            if frame_read >= 0:
                os.close(frame_read)
            raise
        finally:
            for fd in pass_fds:
                os.close(fd)
        if frame_read >= 0:
            pump = procs.pump_frames(frame_read, self._function_frames)
            proc.pumps.append(pump)
            proc.threads.append(pump.thread)
        self.runtime = proc
        return proc

    def _function_lines(self, lines: list[bytes]) -> None:
        if self.json_logs:
            records = [platform.log_record(line, True) for line in lines]
        else:
            records = [line.decode("utf-8", "replace") for line in lines]
        self.bus.emit_logs("function", records)

    def _function_frames(self, frames: list[procs.Frame]) -> None:
        records = [(t, platform.frame_record(ftype, msg)) for ftype, t, msg in frames]
        self.bus.emit_timed("function", records)

    def _extension_lines(self, lines: list[bytes]) -> None:
        for observe in self.output_observers:
            for line in lines:
                observe(line.decode("utf-8", "replace"))
        self.bus.emit_logs("extension", [platform.log_record(ln, self.json_logs) for ln in lines])

    # -- signals -----------------------------------------------------------------------------------

    def all(self) -> list[procs.SandboxProcess]:
        """Runtime first, then extensions."""
        return ([self.runtime] if self.runtime else []) + list(self.extensions.values())

    def signal_all(self, sig: int) -> None:
        """Signal every process group (freeze = SIGSTOP, thaw = SIGCONT)."""
        for proc in self.all():
            proc.signal_group(sig)

    def freeze(self) -> None:
        """SIGSTOP every process of the sandbox, descendants included; wait until leaders stop."""
        self.signal_all(signal.SIGSTOP)
        # Signal delivery is asynchronous: without this wait a leader may run on for a moment.
        deadline = time.monotonic() + FREEZE_WAIT_S
        for proc in self.all():
            while proc.alive() and procs.run_state(proc.pid) not in procs.STOPPED_STATES:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.0001)

    def thaw(self) -> None:
        """SIGCONT every process of the sandbox."""
        self.signal_all(signal.SIGCONT)

    def dead(self) -> procs.SandboxProcess | None:
        """A process that exited, if any."""
        for proc in self.all():
            if not proc.alive():
                return proc
        return None

    def clear(self) -> None:
        """Forget the processes after they were reaped (end of a shutdown)."""
        self.runtime = None
        self.extensions = {}
        self._members = []
        self._peak_kb = 0

    # -- memory ------------------------------------------------------------------------------------

    def max_memory_used_mb(self) -> int:
        """Peak RSS of the sandbox's processes so far, in MB (rescans descendants now and then)."""
        now = time.monotonic()
        if not self._members or now - self._members_t > MEMORY_RESCAN_S:
            self._members = procs.group_members({p.pid for p in self.all() if p.alive()})
            self._members_t = now
        self._peak_kb = max(self._peak_kb, procs.peak_rss_kb(self._members))
        return math.ceil(self._peak_kb / 1024)
