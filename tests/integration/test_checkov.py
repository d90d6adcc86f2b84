"""Static checks of terraform/: checkov with zero failed checks, and `terraform fmt`.

checkov is heavy and has pins of its own, so it lives in a separate venv, created on first run
from the package registry and reused. The venv is kept outside the checkout, in the user's cache
(like the layer build's, scripts/build_python.py), so a fresh clone (CI) does not spend minutes
installing it again. The test skips only when that registry cannot be reached; any other install
problem fails it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# The first run installs checkov (minutes on a busy machine); later runs reuse the venv.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
CHECKOV_VERSION = "3.3.30"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
CHECKOV_VENV = CACHE / f"splunk-checkov-{CHECKOV_VERSION}"
CHECKOV_BIN = CHECKOV_VENV / "bin" / "checkov"
INSTALLED_STAMP = CHECKOV_VENV / f".installed-checkov-{CHECKOV_VERSION}"
SKIP_COMMENT = re.compile(r"#checkov:skip=(?P<check>[A-Z0-9_]+)(?::(?P<reason>.*))?")


def pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=540, check=False)


def registry_reachable(python: Path, scratch: Path) -> bool:
    """A bare download of checkov's own wheel: fails only when the index cannot be reached."""
    probe = pip(
        python, "download", "--no-deps", "--dest", str(scratch), f"checkov=={CHECKOV_VERSION}"
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def checkov(tmp_path_factory: pytest.TempPathFactory) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    # Another checkout's test run may be installing the same venv right now.
    with open(CACHE / f"splunk-checkov-{CHECKOV_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return install_checkov(tmp_path_factory)


def install_checkov(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if INSTALLED_STAMP.exists() and CHECKOV_BIN.exists():
        return CHECKOV_BIN
    shutil.rmtree(CHECKOV_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True, timeout=120)
    python = CHECKOV_VENV / "bin" / "python"
    installed = pip(python, "install", "--quiet", f"checkov=={CHECKOV_VERSION}")
    if installed.returncode != 0:
        if not registry_reachable(python, tmp_path_factory.mktemp("probe")):
            pytest.skip("package registry unreachable: cannot install checkov")
        pytest.fail(f"checkov install failed:\n{installed.stderr}")
    INSTALLED_STAMP.touch()
    return CHECKOV_BIN


def run_checkov(checkov: Path) -> dict[str, Any]:
    # --skip-download: no calls to the vendor's platform (guidelines, severities); checks are local.
    command = [
        str(checkov), "--directory", str(TERRAFORM), "--framework", "terraform",
        "--skip-download", "--output", "json",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode in (0, 1), result.stderr  # 1 = failed checks, reported below
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.fixture(scope="module")
def checkov_report(checkov: Path) -> dict[str, Any]:
    return run_checkov(checkov)


def skip_comments() -> list[tuple[Path, str, str]]:
    found = []
    for path in sorted(TERRAFORM.rglob("*.tf")):
        for match in SKIP_COMMENT.finditer(path.read_text(encoding="utf-8")):
            found.append((path, match.group("check"), (match.group("reason") or "").strip()))
    return found


def test_checkov_reports_zero_failed_checks(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{check['check_id']} {check['resource']} {check['file_path']}: {check['check_name']}"
        for check in checkov_report["results"]["failed_checks"]
    ]
    assert failed == []
    assert summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 20  # the scan really covered the resources
    print(
        f"checkov {summary['checkov_version']}: {summary['passed']} passed, "
        f"{summary['skipped']} skipped, {summary['failed']} failed"
    )


def test_every_skipped_check_is_named_in_the_code_with_a_reason(
    checkov_report: dict[str, Any],
) -> None:
    comments = skip_comments()
    for path, check, reason in comments:
        assert len(reason) > 15, f"{path.name}: skip of {check} gives no reason"
    skipped = checkov_report["results"]["skipped_checks"]
    for check in skipped:
        assert check["check_result"].get("suppress_comment"), check["check_id"]
    # No stale skips: each comment suppresses a check that would otherwise run.
    assert {check for _, check, _ in comments} == {check["check_id"] for check in skipped}
    assert len(comments) == len(skipped)


def test_terraform_files_are_formatted() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform binary not installed")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"}
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout
