"""Out-of-memory as Lambda reports it: the function past its memory size is killed, and the
invocation ends with `Runtime.OutOfMemory` (lambda-protocol 2.5, 3.5).

Emulator process only. A guard thread watches memory during each invocation and kills the
runtime (the function) when the memory size is used up. Without Lambda's limits (whole cores,
tests) it watches the runtime's resident memory against the memory size. With them (a cgroup,
limits.py) it watches the sandbox's anonymous memory against 90% of the limit: without swap, a
cgroup at its limit first evicts the processes' own code pages, and at Lambda's CPU share the
function then crawls for seconds (past short timeouts) before the kernel's OOM killer acts;
Lambda reports the OOM promptly. A runtime the kernel kills (SIGKILL the emulator did not send)
counts as an OOM too.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from ext.local.sandbox import procs

OOM_ERROR_TYPE = "Runtime.OutOfMemory"
POLL_S = 0.02
CGROUP_OOM_FRACTION = 0.9


def resident_kb(pid: int) -> int:
    """Current resident set (VmRSS) of `pid` in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


class MemoryGuard:
    """Watches one runtime process during one invocation; `stop()` says whether it ran out."""

    def __init__(self, runtime: procs.SandboxProcess | None, memory_mb: int,
                 sandbox_kb: Callable[[], int] | None = None) -> None:
        """`sandbox_kb`: the cgroup's anonymous memory; None watches the runtime's RSS."""
        self._runtime = runtime
        self._limit_kb = memory_mb * 1024
        if sandbox_kb is not None:
            self._limit_kb = int(self._limit_kb * CGROUP_OOM_FRACTION)
        self._used_kb = sandbox_kb
        self._stop = threading.Event()
        self.killed = False
        self._thread: threading.Thread | None = None
        if runtime is not None:
            self._thread = threading.Thread(target=self._watch, name="memory-guard", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        runtime = self._runtime
        assert runtime is not None
        while not self._stop.wait(POLL_S):
            if not runtime.alive():
                return
            used = self._used_kb() if self._used_kb is not None else resident_kb(runtime.pid)
            if used > self._limit_kb:
                self.killed = True
                runtime.signal_group(signal.SIGKILL)
                return

    def stop(self) -> bool:
        """Ends the watch; True when the runtime died of memory (the guard or the kernel)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        runtime = self._runtime
        if runtime is None or runtime.alive() or runtime.killed:
            return self.killed
        # Killed by SIGKILL and not by the emulator: the cgroup's OOM killer.
        return self.killed or runtime.popen.returncode == -signal.SIGKILL
