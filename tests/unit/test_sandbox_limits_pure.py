"""Pure parts of the emulator's CPU share and memory limit (ext/local/sandbox/limits.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from ext.local.sandbox import limits
from ext.local.sandbox.limits import PERIOD_US, cpu_quota_us


def test_quota_is_the_memory_share_of_one_core() -> None:
    assert cpu_quota_us(1769, cpus=2) == PERIOD_US
    assert cpu_quota_us(128, cpus=2) == 7236  # 7.2 ms per 100 ms, the figure
    assert cpu_quota_us(512, cpus=2) == 28943
    assert cpu_quota_us(10240, cpus=2) == 2 * PERIOD_US  # capped at the machine's cores
    assert cpu_quota_us(1, cpus=2) == limits.MIN_QUOTA_US


def test_cgroup_path_is_joined_below_the_mount_root() -> None:
    mount = Path("/sys/fs/cgroup/memory")
    assert limits._join(mount, "/", "/") == mount
    assert limits._join(mount, "/", "/a/b") == mount / "a" / "b"
    # In a container the mount shows a sub-tree: its root is not "/".
    assert limits._join(mount, "/docker/x", "/docker/x/a") == mount / "a"
    assert limits._join(mount, "/docker/x", "/docker/x") == mount


def test_without_root_the_sandbox_runs_unlimited_with_one_notice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(limits, "_noticed", False)
    with caplog.at_level(logging.WARNING, logger="ext.local.sandbox"):
        assert limits.create(128) is None
        assert limits.create(512) is None
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1
    assert "WITHOUT Lambda's CPU share" in notices[0] and "not running as root" in notices[0]


def test_a_failed_attempt_leaves_no_group_behind(tmp_path: Path) -> None:
    # Plain folders stand in for cgroup hierarchies: the group folder can be made, but it has
    # no cgroup.procs (the kernel would have made one), so joining it cannot be prepared.
    v2 = limits.Hierarchy(2, frozenset({"cpu", "memory"}), tmp_path / "unified")
    cpu = limits.Hierarchy(1, frozenset({"cpu"}), tmp_path / "cpu")
    memory = limits.Hierarchy(1, frozenset({"memory"}), tmp_path / "memory")
    for folder in (v2.own_dir, cpu.own_dir, memory.own_dir):
        folder.mkdir()
    (v2.own_dir / "cgroup.subtree_control").write_text("cpu memory\n")
    with pytest.raises(limits.LimitsUnavailableError, match=r"cgroup v2.*cgroup v1"):
        limits.SandboxCgroup(128, [v2, cpu, memory])
    for folder in (v2.own_dir, cpu.own_dir, memory.own_dir):
        assert list(folder.iterdir()) == (
            [folder / "cgroup.subtree_control"] if folder == v2.own_dir else []
        )
