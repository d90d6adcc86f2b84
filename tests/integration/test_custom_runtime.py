"""The emulator's custom runtime mode (provided.al2023): the function is an executable bootstrap
that loops on the Runtime API itself (function/bootstrap: sh and curl), with no Python for it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver
from ext.local.sandbox import Sandbox, SandboxConfig, custom_runtime
from tests.integration.extension_harness import (
    expected_lines,
    extension_env,
    lines_of,
    platform_events,
    sandbox,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("curl") is None, reason="function/bootstrap needs curl"),
]

PROBE = """#!/bin/sh
# Reports its environment as its only log line, then serves invocations like function/bootstrap.
echo "env PYTHONPATH=${PYTHONPATH-unset} EXEC=${AWS_EXECUTION_ENV-unset} PATH=$PATH"
exec "$(dirname "$0")/real-bootstrap"
"""


def shell_sandbox(opt: Path, hec: HecReceiver, function: Path) -> Sandbox:
    return Sandbox(SandboxConfig(function_dir=function, handler="unused", opt_dir=opt,
                                 env=extension_env(hec), runtime="provided.al2023"))  # fmt: skip


def test_shell_function_with_the_extension_delivers_every_line(
    hec: HecReceiver, local_opt: Path
) -> None:
    sizes = [(3, 32), (40, 10), (1, 200)]
    with sandbox(local_opt, extension_env(hec), runtime="provided.al2023") as sb:
        for n, (count, size) in enumerate(sizes):
            result = sb.invoke({"lines": count, "size": size, "tag": f"sh{n}"})
            assert result.status == "success", result
            assert result.response.startswith(b'{"tag":"sh%d","lines":%d' % (n, count))
            assert lines_of(hec, f"sh{n}") == expected_lines(f"sh{n}", count, size)
        assert sb.shutdown().extensions["splunk-hec-extension"].exited
    kinds = [e["type"] for e in platform_events(hec)]
    assert kinds.count("platform.report") == len(sizes)


def test_custom_runtime_environment_has_no_python_and_lambdas_path(
    hec: HecReceiver, local_opt: Path, tmp_path: Path
) -> None:
    function = tmp_path / "function"
    function.mkdir()
    shutil.copy2(Path(__file__).resolve().parents[2] / "function" / "bootstrap",
                 function / "real-bootstrap")  # fmt: skip
    (function / "bootstrap").write_text(PROBE)
    (function / "bootstrap").chmod(0o755)
    with shell_sandbox(local_opt, hec, function) as sb:
        assert sb.invoke({"lines": 1, "tag": "p"}).status == "success"
        sb.shutdown()
    (line,) = [x for x in lines_of(hec) if x.startswith("env ")]
    expected_path = custom_runtime.DEFAULT_PATH.replace("/opt/bin", f"{local_opt}/bin")
    assert line == f"env PYTHONPATH=unset EXEC=unset PATH={expected_path}"


def test_missing_bootstrap_fails_the_init(
    hec: HecReceiver, local_opt: Path, tmp_path: Path
) -> None:
    with pytest.raises(custom_runtime.CustomRuntimeError, match="no executable bootstrap"):
        custom_runtime.bootstrap_path(tmp_path, None)
    with shell_sandbox(local_opt, hec, tmp_path) as sb:
        result = sb.invoke({"lines": 1})
    assert result.status == "failure"
    assert result.error_type is not None and result.error_type.startswith("Runtime.")
