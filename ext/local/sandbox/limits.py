"""Lambda's CPU share and memory limit for one sandbox, applied through a cgroup (v1 or v2).

Emulator process only. Lambda gives an execution environment CPU in proportion to its memory
(1,769 MB = one vCPU, so 128 MB gets ~7% of a core) and caps the memory of all its processes
(runtime, function, extensions) at the configured size. Without this the emulator runs a 128 MB
function on whole cores and hides the cost of start-up and per-invocation work.

Each sandbox gets its own cgroup, a child of the emulator's own cgroup in each hierarchy, and
every process it launches joins that cgroup between fork and exec (so the limits apply from the
first instruction, and to the children the process forks later). Needs root (or a delegated
cgroup); where the machine does not allow it the sandbox runs unlimited and says so once.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ext.local.sandbox")

MB_PER_VCPU = 1769  # Lambda: one full vCPU at 1,769 MB, in proportion below and above
PERIOD_US = 100_000
MIN_QUOTA_US = 1_000  # the kernel's floor for cfs_quota_us
RMDIR_WAIT_S = 2.0
GROUP_PREFIX = "lambda-sandbox-"
_counter = itertools.count(1)
_noticed = False


class LimitsUnavailableError(Exception):
    """The machine does not let this process create a limited cgroup (the message says why)."""


def cpu_quota_us(memory_mb: int, period_us: int = PERIOD_US, cpus: int | None = None) -> int:
    """CFS quota per `period_us` giving `memory_mb / 1769` of a core, capped at the machine's."""
    cores = cpus if cpus is not None else (os.cpu_count() or 1)
    quota = math.ceil(period_us * memory_mb / MB_PER_VCPU)
    return max(MIN_QUOTA_US, min(quota, period_us * cores))


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy and this process's cgroup in it."""

    version: int  # 1 or 2
    controllers: frozenset[str]  # v1: the mount's controllers; v2: those enabled at our cgroup
    own_dir: Path  # directory of the emulator's own cgroup


def _own_paths() -> dict[str, str]:
    """Controller list (v1, comma-joined; "" for v2) -> our cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        paths[controllers] = path
    return paths


def discover() -> list[Hierarchy]:
    """Mounted cgroup hierarchies that carry the cpu or memory controller, from mountinfo."""
    own = _own_paths()
    found: list[Hierarchy] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        fstype, root, mount = extra[0], fields[3], Path(fields[4])
        if fstype == "cgroup":
            options = set(extra[2].split(","))
            ctrls = frozenset(options & {"cpu", "memory"})
            # The hierarchy's line in /proc/self/cgroup lists exactly its mount's controllers.
            key = next((k for k in own if k and set(k.split(",")) <= options), None)
            if not ctrls or key is None:
                continue
            found.append(Hierarchy(1, ctrls, _join(mount, root, own[key])))
        elif fstype == "cgroup2" and "" in own:
            own_dir = _join(mount, root, own[""])
            try:
                ctrls = frozenset((own_dir / "cgroup.controllers").read_text().split())
            except OSError:
                continue
            if ctrls & {"cpu", "memory"}:
                found.append(Hierarchy(2, ctrls & {"cpu", "memory"}, own_dir))
    return found


def _join(mount: Path, root: str, path: str) -> Path:
    """Directory of cgroup `path` in a hierarchy mounted at `mount` showing its `root`."""
    rel = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
    return mount if rel in ("", ".") else mount / rel


class SandboxCgroup:
    """The cgroup(s) of one sandbox: limits written at creation, removed by `close()`."""

    def __init__(self, memory_mb: int, hierarchies: list[Hierarchy] | None = None) -> None:
        self.memory_mb = memory_mb
        self.quota_us = cpu_quota_us(memory_mb)
        self.dirs: list[Path] = []
        self._fds: list[int] = []
        self.version = 0
        self.missing: list[str] = []
        self.memory_dir: Path | None = None
        name = f"{GROUP_PREFIX}{os.getpid()}-{next(_counter)}"
        try:
            self._create(name, discover() if hierarchies is None else hierarchies)
        except BaseException:
            self.close()
            raise

    def _create(self, name: str, hierarchies: list[Hierarchy]) -> None:
        v2 = [h for h in hierarchies if h.version == 2]
        v1 = [h for h in hierarchies if h.version == 1]
        errors: list[str] = []
        if v2:
            try:
                self._create_v2(name, v2[0])
                return
            except OSError as err:
                self.close()  # nothing half-made may stay behind for v1
                self.missing = []
                errors.append(f"cgroup v2 at {v2[0].own_dir}: {err.strerror or err}")
        if v1:
            try:
                self._create_v1(name, v1)
                return
            except OSError as err:
                self.close()
                errors.append(f"cgroup v1: {err.strerror or err}")
        raise LimitsUnavailableError("; ".join(errors) or "no cgroup hierarchy with cpu or memory")

    def _create_v1(self, name: str, hierarchies: list[Hierarchy]) -> None:
        cpu = next((h for h in hierarchies if "cpu" in h.controllers), None)
        memory = next((h for h in hierarchies if "memory" in h.controllers), None)
        if cpu is not None:
            group = self._mkdir(cpu.own_dir / name)
            _write(group / "cpu.cfs_period_us", str(PERIOD_US))
            _write(group / "cpu.cfs_quota_us", str(self.quota_us))
        else:
            self.missing.append("cpu")
        if memory is not None:
            group = self._mkdir(memory.own_dir / name)
            self.memory_dir = group
            limit = str(self.memory_mb << 20)
            _write(group / "memory.limit_in_bytes", limit)
            with contextlib.suppress(OSError):  # only with swap accounting: no swapping past it
                _write(group / "memory.memsw.limit_in_bytes", limit)
        else:
            self.missing.append("memory")
        self.version = 1

    def _create_v2(self, name: str, hierarchy: Hierarchy) -> None:
        wanted = sorted(hierarchy.controllers & {"cpu", "memory"})
        control = hierarchy.own_dir / "cgroup.subtree_control"
        enabled = set(control.read_text().split())
        if set(wanted) - enabled:
            _write(control, " ".join(f"+{c}" for c in wanted))
        group = self._mkdir(hierarchy.own_dir / name)
        if "cpu" in wanted:
            _write(group / "cpu.max", f"{self.quota_us} {PERIOD_US}")
        else:
            self.missing.append("cpu")
        if "memory" in wanted:
            self.memory_dir = group
            _write(group / "memory.max", str(self.memory_mb << 20))
            with contextlib.suppress(OSError):  # only with swap accounting
                _write(group / "memory.swap.max", "0")
        else:
            self.missing.append("memory")
        self.version = 2

    def _mkdir(self, group: Path) -> Path:
        _sweep_stale(group.parent)
        group.mkdir()
        self.dirs.append(group)
        self._fds.append(os.open(group / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        return group

    @property
    def memory_limited(self) -> bool:
        """The memory limit is applied (the kernel's OOM killer enforces it)."""
        return "memory" not in self.missing

    def anonymous_kb(self) -> int:
        """Memory of the sandbox that only the OOM killer can take back (anonymous and shmem,
        e.g. tmpfs files), in KiB; 0 without a memory group."""
        if self.memory_dir is None:
            return 0
        keys = (b"total_rss", b"total_shmem") if self.version == 1 else (b"anon", b"shmem")
        total = 0
        try:
            with open(self.memory_dir / "memory.stat", "rb") as fh:
                for line in fh:
                    name, _, value = line.partition(b" ")
                    if name in keys:
                        total += int(value)
        except (OSError, ValueError):
            return 0
        return total // 1024

    @property
    def cpu_share(self) -> float:
        """Fraction of one core the sandbox may use (0 when the cpu limit is not applied)."""
        return 0.0 if "cpu" in self.missing else self.quota_us / PERIOD_US

    def describe(self) -> dict[str, object]:
        """What inspect() reports about the limits."""
        return {
            "applied": True,
            "mechanism": f"cgroup v{self.version}",
            "cpu_share": round(self.cpu_share, 4),
            "cpu_quota_us": None if "cpu" in self.missing else self.quota_us,
            "cpu_period_us": PERIOD_US,
            "memory_limit_mb": None if "memory" in self.missing else self.memory_mb,
            "groups": [str(d) for d in self.dirs],
        }

    def enter_hook(self) -> Callable[[], None]:
        """A `preexec_fn` that moves the new process into the sandbox's cgroups before exec.

        Only os.getpid and os.write on descriptors opened beforehand: safe between fork and exec.
        """
        fds = tuple(self._fds)

        def enter() -> None:
            pid = str(os.getpid()).encode()
            for fd in fds:
                os.write(fd, pid)

        return enter

    def pids(self) -> set[int]:
        """Processes currently in the sandbox's cgroups."""
        found: set[int] = set()
        for group in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (group / "cgroup.procs").read_text().split())
        return found

    def close(self) -> None:
        """Kill whatever is left in the cgroups and remove them; idempotent."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        deadline = time.monotonic() + RMDIR_WAIT_S
        for group in reversed(self.dirs):
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        log.warning("could not remove cgroup %s: %s", group, err)
                        break
                for pid in self.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.005)
        self.dirs = []


def _sweep_stale(parent: Path) -> None:
    """Remove empty sandbox cgroups left by emulator processes that died without close()."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            owner = entry.name.removeprefix(GROUP_PREFIX).partition("-")[0]
            dead = owner.isdigit() and not os.path.exists(f"/proc/{owner}")
            if entry.name.startswith(GROUP_PREFIX) and dead:
                with contextlib.suppress(OSError):
                    entry.rmdir()  # fails, harmlessly, while processes remain in it


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def create(memory_mb: int) -> SandboxCgroup | None:
    """The sandbox's cgroup with Lambda's limits, or None (with a one-time notice) if impossible."""
    global _noticed
    reason = ""
    if os.geteuid() != 0:
        reason = "not running as root"
    else:
        try:
            group = SandboxCgroup(memory_mb)
        except (LimitsUnavailableError, OSError) as err:
            reason = str(err)
        else:
            if group.missing and not _noticed:
                _noticed = True
                log.warning("lambda sandbox: no %s limit on this machine (cgroup v%d lacks it)",
                            " or ".join(group.missing), group.version)
            return group
    if not _noticed:
        _noticed = True
        log.warning(
            "lambda sandbox: runs WITHOUT Lambda's CPU share and memory limit (%s); figures "
            "measured here overstate the CPU a small function gets", reason)
    return None
