"""Emulator: Lambda's CPU share and memory limit through a per-sandbox cgroup (limits.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ext.local.sandbox import Sandbox, limits
from ext.local.sandbox.limits import SandboxCgroup, cpu_quota_us
from tests.integration.sandbox_helpers import tp_config

pytestmark = pytest.mark.integration

HOG = '''
def handler(event, context):
    block = bytearray(int(event["mb"]) << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1  # touch every page: resident, charged to the cgroup
    return {"mb": event["mb"]}
'''


def _cgroup_or_skip(memory_mb: int = 128) -> SandboxCgroup:
    if os.geteuid() != 0:
        pytest.skip("cgroup limits need root")
    try:
        return SandboxCgroup(memory_mb)
    except (limits.LimitsUnavailableError, OSError) as err:
        pytest.skip(f"no writable cgroup with cpu and memory on this machine: {err}")


@pytest.fixture
def require_cgroup() -> None:
    _cgroup_or_skip().close()


def _limit_files(group: dict[str, object]) -> dict[str, str]:
    found = {}
    for folder in map(Path, group["groups"]):  # type: ignore[call-overload]
        for name in ("cpu.cfs_quota_us", "cpu.max", "memory.limit_in_bytes", "memory.max"):
            if (folder / name).exists():
                found[name] = (folder / name).read_text().strip()
    return found


def _cgroup_lines(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def test_every_sandbox_process_runs_in_its_limited_cgroup(
    tmp_path: Path, require_cgroup: None
) -> None:
    cfg, _ = tp_config(tmp_path, memory_mb=256, limits=True, timeout_s=5.0)
    with Sandbox(cfg) as sb:
        result = sb.invoke({"lines": 2})
        assert result.status == "success"
        described = sb.inspect()["limits"]
        assert described["applied"] is True
        assert described["memory_limit_mb"] == 256
        assert described["cpu_quota_us"] == cpu_quota_us(256)
        files = _limit_files(described)
        quota = files.get("cpu.cfs_quota_us") or files["cpu.max"].split()[0]
        assert int(quota) == cpu_quota_us(256)
        memory = files.get("memory.limit_in_bytes") or files["memory.max"]
        assert int(memory) == 256 << 20
        groups = [Path(g) for g in described["groups"]]
        pids = [sb.runtime_pid, *sb.extension_pids().values()]
        for pid in pids:
            assert pid is not None
            lines = _cgroup_lines(pid)
            assert all(f"/{g.name}\n" in lines for g in groups), lines
        sb.shutdown()
    assert not any(g.exists() for g in groups), "the sandbox's cgroups are removed at close"


def test_busy_function_is_throttled_to_its_share(tmp_path: Path, require_cgroup: None) -> None:
    cfg, _ = tp_config(tmp_path, memory_mb=128, limits=True, timeout_s=30.0, opt_dir=None)
    with Sandbox(cfg) as sb:
        sb.invoke({"lines": 1})
        groups = [Path(g) for g in sb.inspect()["limits"]["groups"]]
        stat_file = next(g / "cpu.stat" for g in groups if (g / "cpu.stat").exists())

        def throttled() -> int:
            fields = dict(line.split() for line in stat_file.read_text().splitlines())
            return int(fields["nr_throttled"])

        before = throttled()
        result = sb.invoke({"lines": 20_000, "size": 100})  # far more than 7.2 ms of CPU
        assert result.status == "success"
        assert throttled() > before


def test_memory_beyond_the_limit_fails_the_invocation(
    tmp_path: Path, require_cgroup: None
) -> None:
    function = tmp_path / "function"
    function.mkdir()
    (function / "hog.py").write_text(HOG)
    cfg, _ = tp_config(tmp_path, memory_mb=128, limits=True, timeout_s=30.0, opt_dir=None,
                       function_dir=function, handler="hog.handler")
    with Sandbox(cfg) as sb:
        assert sb.invoke({"mb": 16}).status == "success"
        over = sb.invoke({"mb": 256})
        assert over.status == "failure" and over.reset_reason == "failure"
        assert sb.invoke({"mb": 16}).status == "success"  # the environment was reset


def test_limits_off_leaves_the_processes_where_the_emulator_is(tmp_path: Path) -> None:
    cfg, _ = tp_config(tmp_path, limits=False, opt_dir=None)
    with Sandbox(cfg) as sb:
        sb.invoke({"lines": 1})
        assert sb.inspect()["limits"] == {"applied": False}
        assert _cgroup_lines(sb.runtime_pid or 0) == _cgroup_lines(os.getpid())



def test_empty_groups_of_dead_emulators_are_swept(require_cgroup: None) -> None:
    first = SandboxCgroup(128)
    try:
        stale = [d.parent / f"{limits.GROUP_PREFIX}999999999-1" for d in first.dirs]
        for folder in stale:
            folder.mkdir()
    finally:
        first.close()
    second = SandboxCgroup(128)
    try:
        assert not any(folder.exists() for folder in stale)
    finally:
        second.close()
