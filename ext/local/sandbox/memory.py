"""Out-of-memory as Lambda reports it: the function past its memory size is killed, and the
invocation ends with `Runtime.OutOfMemory` (lambda-protocol 2.5, 3.5).

Emulator process only. With Lambda's limits applied (limits.py) the kernel's OOM killer ends
the runtime when the sandbox's cgroup is full; without them (whole cores, tests) a guard thread
watches the runtime process's resident memory during each invocation and kills it past the
memory size, as the limit would. Either way an OOM is a runtime killed by SIGKILL that the
emulator itself did not send for another reason.
"""

from __future__ import annotations

import signal
import threading

from ext.local.sandbox import procs

OOM_ERROR_TYPE = "Runtime.OutOfMemory"
POLL_S = 0.02


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

    def __init__(self, runtime: procs.SandboxProcess | None, memory_mb: int, watch: bool) -> None:
        self._runtime = runtime
        self._limit_kb = memory_mb * 1024
        self._stop = threading.Event()
        self.killed = False
        self._thread: threading.Thread | None = None
        if watch and runtime is not None:
            self._thread = threading.Thread(target=self._watch, name="memory-guard", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        runtime = self._runtime
        assert runtime is not None
        while not self._stop.wait(POLL_S):
            if not runtime.alive():
                return
            if resident_kb(runtime.pid) > self._limit_kb:
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
