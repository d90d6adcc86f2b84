"""The emulator reports an out-of-memory kill as Lambda does (lambda-protocol 2.5, 3.5): the
runtime past its memory size is killed, runtimeDone and report say `error` with
`Runtime.OutOfMemory` and max memory used at the memory size, and the environment is reset.
With Lambda's limits (a cgroup) the kernel kills it; without, the emulator's guard does."""

from __future__ import annotations

from typing import Any

import pytest

from ext.local.sandbox import Sandbox, SandboxConfig
from tests.integration.sandbox_helpers import FUNCTION_DIR

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("limits", [False, True], ids=["guard", "cgroup"])
def test_oom_is_reported_as_lambda_does_and_resets(limits: bool) -> None:
    config = SandboxConfig(function_dir=FUNCTION_DIR, handler="handler.handler", opt_dir=None,
                           env={}, timeout_s=3.0, memory_mb=128, limits=limits)
    seen: list[tuple[str, Any]] = []
    with Sandbox(config) as sb:
        if limits and not sb.inspect()["limits"].get("memory_limit_mb"):
            pytest.skip("no cgroup memory limit on this machine")
        sb.on_platform_event(lambda kind, record: seen.append((kind, record)))
        ok = sb.invoke({"lines": 1})
        oom = sb.invoke({"lines": 1, "oom": True})
        after = sb.invoke({"lines": 1})
    assert ok.status == after.status == "success"
    assert (oom.status, oom.error_type, oom.reset_reason) == (
        "failure", "Runtime.OutOfMemory", "failure")
    assert oom.duration_ms < 3_000  # killed promptly, not timed out (nor thrashing)
    records = {kind: r for kind, r in seen if isinstance(r, dict)
               and r.get("requestId") == oom.request_id}
    assert records["platform.runtimeDone"]["status"] == "error"
    assert records["platform.runtimeDone"]["errorType"] == "Runtime.OutOfMemory"
    report = records["platform.report"]
    assert (report["status"], report["errorType"]) == ("error", "Runtime.OutOfMemory")
    assert report["metrics"]["maxMemoryUsedMB"] == report["metrics"]["memorySizeMB"] == 128
    # The environment was reset: the next invocation re-ran init (phase "invoke", lambda 3.5).
    inits = [r for kind, r in seen if kind == "platform.initStart"]
    assert [r["phase"] for r in inits][-1] == "invoke"


def test_a_crash_is_not_an_oom() -> None:
    config = SandboxConfig(function_dir=FUNCTION_DIR, handler="handler.handler", opt_dir=None,
                           env={}, timeout_s=10.0, limits=False)
    with Sandbox(config) as sb:
        crashed = sb.invoke({"lines": 1, "crash": True})
    assert (crashed.status, crashed.error_type) == ("failure", "Runtime.ExitError")
