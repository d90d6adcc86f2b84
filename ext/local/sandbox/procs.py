"""Sandbox processes: environment, launch, output capture, freeze/thaw, kill, memory.

Emulator process only. Every sandbox process (runtime and each extension) leads its own process
group, so SIGSTOP/SIGCONT/SIGKILL reach its descendants too (our extension forks children).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Variables only the runtime sees (lambda-protocol 6.1); keys starting with "_" are dropped too.
RUNTIME_ONLY_VARS = frozenset(
    {
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_XRAY_CONTEXT_MISSING",
        "AWS_XRAY_DAEMON_ADDRESS",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)
READ_CHUNK = 256 * 1024

LinesSink = Callable[[list[bytes]], None]


def extension_env(runtime_env: Mapping[str, str]) -> dict[str, str]:
    """The extension environment: the function's minus runtime-only and `_`-prefixed keys."""
    return {
        k: v for k, v in runtime_env.items() if k not in RUNTIME_ONLY_VARS and not k.startswith("_")
    }


def write_python_shim(bin_dir: Path, python: str) -> None:
    """Put `python3`/`python` on the sandbox PATH that run `python` (like /var/lang/bin/python3).

    A script rather than a symlink: a symlink to a venv interpreter loses the venv.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("python3", "python"):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
        shim.chmod(0o755)


def list_extensions(opt_dir: Path | None) -> list[Path]:
    """Executable regular files directly in <opt_dir>/extensions, in name order."""
    if opt_dir is None:
        return []
    ext_dir = opt_dir / "extensions"
    if not ext_dir.is_dir():
        return []
    return sorted(p for p in ext_dir.iterdir() if p.is_file() and os.access(p, os.X_OK))


class Pump:
    """Reads a pipe in a thread and hands each chunk to `on_chunk`; `sync()` drains it now.

    Reads and hand-offs happen under one lock, so after `sync()` returns every byte written
    to the pipe before the call has been handed on. The control plane syncs the runtime's
    output before it emits platform.runtimeDone: the runtime wrote its log lines before it
    called invocation/next, so they must reach subscribers before runtimeDone does.
    """

    def __init__(self, fd: int, on_chunk: Callable[[bytes], None], on_eof: Callable[[], None],
                 name: str) -> None:
        self.fd = fd
        self._on_chunk = on_chunk
        self._on_eof = on_eof
        self._lock = threading.Lock()
        self._eof = False
        os.set_blocking(fd, False)
        self.thread = threading.Thread(target=self._run, name=f"pump-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self._eof:
                select.select([self.fd], [], [])
                self._read_available()
        finally:
            with self._lock:
                os.close(self.fd)

    def sync(self) -> None:
        """Hands on everything readable now (bounded: the writer is the stopped runtime)."""
        self._read_available()

    def _read_available(self) -> None:
        with self._lock:
            while not self._eof:
                try:
                    chunk = os.read(self.fd, READ_CHUNK)
                except BlockingIOError:
                    return
                except OSError:
                    chunk = b""
                if not chunk:
                    self._eof = True
                    self._on_eof()
                    return
                self._on_chunk(chunk)


def pump_lines(fd: int, sink: LinesSink, name: str) -> Pump:
    """Read `fd` until EOF, hand complete lines (without b"\\n") to `sink` in batches."""
    rest = b""

    def on_chunk(chunk: bytes) -> None:
        nonlocal rest
        data = rest + chunk if rest else chunk
        lines = data.split(b"\n")
        rest = lines.pop()
        if lines:
            sink(lines)

    def on_eof() -> None:
        if rest:
            sink([rest])

    return Pump(fd, on_chunk, on_eof, name)


FRAME_HEADER = 16
Frame = tuple[int, float, bytes]  # (frame type, epoch seconds, message)
FramesSink = Callable[[list[Frame]], None]


def pump_frames(fd: int, sink: FramesSink) -> Pump:
    """Read awslambdaric's framed log protocol (lambda-protocol 2.6) from `fd` until EOF."""
    buf = bytearray()

    def on_chunk(chunk: bytes) -> None:
        buf.extend(chunk)
        frames, used = split_frames(buf)
        if used:
            del buf[:used]
        if frames:
            sink(frames)

    return Pump(fd, on_chunk, lambda: None, "frames")


def split_frames(buf: bytes | bytearray) -> tuple[list[Frame], int]:
    """Parse complete frames at the start of `buf`; return them and the bytes consumed."""
    frames: list[Frame] = []
    pos = 0
    end = len(buf)
    while end - pos >= FRAME_HEADER:
        length = int.from_bytes(buf[pos + 4 : pos + 8], "big")
        if end - pos - FRAME_HEADER < length:
            break
        ftype = int.from_bytes(buf[pos : pos + 4], "big")
        micros = int.from_bytes(buf[pos + 8 : pos + 16], "big")
        msg = bytes(buf[pos + FRAME_HEADER : pos + FRAME_HEADER + length])
        frames.append((ftype, micros / 1e6, msg))
        pos += FRAME_HEADER + length
    return frames, pos


@dataclass
class SandboxProcess:
    """One launched process (group leader) of the sandbox."""

    name: str
    kind: str  # "runtime" | "extension"
    popen: subprocess.Popen[bytes]
    start_t: float
    exit_t: float | None = None
    killed: bool = False
    threads: list[threading.Thread] = field(default_factory=list)
    pumps: list[Pump] = field(default_factory=list)

    def sync_output(self) -> None:
        """Hands on every output byte the process has written so far."""
        for pump in self.pumps:
            pump.sync()

    @property
    def pid(self) -> int:
        """Process id (== its process group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True until the leader has been reaped."""
        return self.exit_t is None

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the whole process group; a vanished group is fine."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the group (leader and descendants)."""
        if self.alive():
            self.killed = True
        self.signal_group(signal.SIGKILL)


def launch(
    name: str,
    kind: str,
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    on_lines: LinesSink,
    on_exit: Callable[[SandboxProcess], None],
    pass_fds: tuple[int, ...] = (),
    preexec: Callable[[], None] | None = None,
) -> SandboxProcess:
    """Start `argv` in a new session with stdout+stderr piped to `on_lines`; `preexec` runs in
    the child before exec (joining the sandbox's cgroup)."""
    read_fd, write_fd = os.pipe()
    try:
        popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            start_new_session=True,
            pass_fds=pass_fds,
            close_fds=True,
            # Only writes to descriptors opened before the fork (limits.py): no lock is taken.
            preexec_fn=preexec,  # noqa: PLW1509
        )
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    proc = SandboxProcess(name, kind, popen, time.monotonic())
    pump = pump_lines(read_fd, on_lines, name)
    proc.pumps.append(pump)
    proc.threads.append(pump.thread)

    def wait_exit() -> None:
        popen.wait()
        proc.exit_t = time.monotonic()
        on_exit(proc)

    waiter = threading.Thread(target=wait_exit, name=f"wait-{name}", daemon=True)
    waiter.start()
    proc.threads.append(waiter)
    return proc


def group_members(pgids: set[int]) -> list[int]:
    """Pids of every live process whose process group is in `pgids` (scans /proc)."""
    members: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # Fields after the ")" of the command name: state ppid pgrp ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) in pgids:
            members.append(int(entry.name))
    return members


STOPPED_STATES = frozenset("TtZX?")


def run_state(pid: int) -> str:
    """Scheduler state letter of `pid` from /proc ('T' stopped, 'Z' zombie); '?' if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return "?"
    return chr(stat[stat.rfind(b")") + 2])


def peak_rss_kb(pids: list[int]) -> int:
    """Sum of VmHWM (peak resident set) over `pids`; vanished pids count 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"VmHWM:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return total
