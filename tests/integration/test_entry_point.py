"""`python -m ext` outside Lambda: one clear line and a named exit code, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.lambda_api_stub import ScriptedApi, reply

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def run_extension(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"}
    return subprocess.run([sys.executable, "-m", "ext"], cwd=REPO, env={**base, **env},
                          capture_output=True, text=True, timeout=30, check=False)


def test_without_the_runtime_api_variable() -> None:
    result = run_extension()
    assert result.returncode == 2
    assert "AWS_LAMBDA_RUNTIME_API is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_runtime_api_that_refuses_connections() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_extension(AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"AWS_LAMBDA_RUNTIME_API='127.0.0.1:{port}'" in result.stderr
    assert "refused" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_a_refused_registration_is_one_line() -> None:
    api = ScriptedApi([[reply(403, b'{"errorMessage":"Extension limit (10) reached",'
                                  b'"errorType":"Extension.TooManyExtensions"}')]])
    try:
        result = run_extension(AWS_LAMBDA_RUNTIME_API=api.address)
    finally:
        api.close()
    assert result.returncode == 2
    assert "/register answered 403" in result.stderr and "TooManyExtensions" in result.stderr
    assert "Traceback" not in result.stderr
