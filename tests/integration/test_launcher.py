"""The bootstrap launcher's choice of interpreter and environment, with stub interpreters.

Layout as in the layer: <opt>/extensions/<name> is the launcher, <opt>/<name>/python/bin/python3
the bundled interpreter (here a script that prints what it was given).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STUB = """#!/bin/sh
echo "EXE=$0"
echo "ARGS=$*"
echo "CWD=$(pwd)"
echo "PYTHONPATH=${PYTHONPATH-unset}"
echo "PYTHONHOME=${PYTHONHOME-unset}"
echo "SSL_CERT_FILE=${SSL_CERT_FILE-unset}"
echo "MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_-unset}"
"""
DEBIAN_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def make_opt(tmp_path: Path, name: str, bundled: bool) -> Path:
    opt = tmp_path / "opt"
    (opt / "extensions").mkdir(parents=True)
    launcher = opt / "extensions" / name
    shutil.copyfile(REPO / "bootstrap", launcher)
    launcher.chmod(0o755)
    bindir = opt / name / "python" / "bin"
    bindir.mkdir(parents=True)
    if bundled:
        (bindir / "python3").write_text(STUB)
        (bindir / "python3").chmod(0o755)
    return opt


def run(opt: Path, name: str, **env: str) -> dict[str, str]:
    base = {"PATH": os.environ["PATH"]}
    result = subprocess.run([str(opt / "extensions" / name)], env={**base, **env},
                            capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_bundled_interpreter_by_absolute_path_isolated_from_the_functions_python(
    tmp_path: Path,
) -> None:
    opt = make_opt(tmp_path, "acme-hec", bundled=True)
    seen = run(opt, "acme-hec", PYTHONPATH="/var/runtime:/opt/python", PYTHONHOME="/var/lang",
               PATH="/nonexistent")  # fmt: skip
    assert seen["EXE"] == f"{opt}/acme-hec/python/bin/python3"
    # Registered under the launcher's file name; -E: no PYTHON* variable of the function's
    # reaches it; -OO, as the layer's bytecode was compiled; its code from the working directory.
    assert seen["ARGS"] == "-S -E -OO -m ext acme-hec"
    assert seen["CWD"] == f"{opt}/acme-hec"
    assert seen["PYTHONPATH"] == f"{opt}/acme-hec"


def test_without_glibc_the_bundled_interpreter_is_not_run_and_the_reason_is_said(
    tmp_path: Path,
) -> None:
    # An Alpine (musl) image: the exec of the bundled interpreter would fail with a bare "not
    # found". The launcher's copy looks for loaders that are nowhere, as on such an image.
    opt = make_opt(tmp_path, "splunk-hec-extension", bundled=True)
    launcher = opt / "extensions" / "splunk-hec-extension"
    text = launcher.read_text()
    for loader in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"):
        assert text.count(loader) == 2  # the check, the message
        text = text.replace(f"-e {loader}", f"-e {tmp_path}/none{loader}")
    launcher.write_text(text)
    done = subprocess.run([str(launcher)], env={"PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1 and "EXE=" not in done.stdout
    assert "splunk-hec-extension: no glibc here" in done.stderr
    assert "Alpine or other musl image" in done.stderr


@pytest.mark.skipif(Path("/etc/pki/tls/cert.pem").exists(), reason="an Amazon Linux host")
@pytest.mark.skipif(not Path(DEBIAN_BUNDLE).is_file(), reason="no Debian-like CA bundle here")
def test_bundled_interpreter_gets_the_debian_bundle_when_amazon_linux_has_none(
    tmp_path: Path,
) -> None:
    opt = make_opt(tmp_path, "splunk-hec-extension", bundled=True)
    assert run(opt, "splunk-hec-extension")["SSL_CERT_FILE"] == DEBIAN_BUNDLE
    chosen = run(opt, "splunk-hec-extension", SSL_CERT_FILE="/custom.pem")
    assert chosen["SSL_CERT_FILE"] == "/custom.pem"


def test_explicit_interpreter_wins_and_keeps_the_pythonpath(tmp_path: Path) -> None:
    opt = make_opt(tmp_path, "splunk-hec-extension", bundled=True)
    other = tmp_path / "other-python"
    other.write_text(STUB)
    other.chmod(0o755)
    seen = run(opt, "splunk-hec-extension", SPLUNK_EXTENSION_PYTHON=str(other),
               PYTHONPATH="/extra")  # fmt: skip
    assert seen["EXE"] == str(other)
    assert seen["ARGS"] == "-S -OO -m ext splunk-hec-extension"  # local tooling: as bundled
    assert seen["CWD"] == os.getcwd()  # and where it was started
    assert seen["PYTHONPATH"] == f"{opt}/splunk-hec-extension:/extra"
    assert seen["SSL_CERT_FILE"] == "unset"


def test_without_a_bundled_interpreter_the_functions_python3_runs(tmp_path: Path) -> None:
    opt = make_opt(tmp_path, "splunk-hec-extension", bundled=False)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text(STUB)
    (bindir / "python3").chmod(0o755)
    seen = run(opt, "splunk-hec-extension", PATH=str(bindir))
    assert seen["EXE"] == str(bindir / "python3")
    # Its stdlib may ship no opt-2 bytecode (every cold start would compile it): no -OO, and
    # that layer's bytecode is compiled at the default level (build_layer.bytecode_tag).
    assert seen["ARGS"] == "-S -m ext splunk-hec-extension"
    assert seen["CWD"] == f"{opt}/splunk-hec-extension"  # not the function's code ahead of ours


@pytest.mark.parametrize("bundled", [True, False], ids=["bundled", "explicit"])
def test_large_buffers_go_back_to_the_system_unless_the_function_says_otherwise(
    tmp_path: Path, bundled: bool
) -> None:
    """glibc's mmap threshold is pinned at 128 KiB for the extension's interpreter, whichever it
    is (bench_memory: 0.6 MiB less PSS after 100 x 1,000 lines); a value in the function's
    environment wins."""
    opt = make_opt(tmp_path, "splunk-hec-extension", bundled=bundled)
    env: dict[str, str] = {}
    if not bundled:
        other = tmp_path / "other-python"
        other.write_text(STUB)
        other.chmod(0o755)
        env["SPLUNK_EXTENSION_PYTHON"] = str(other)
    assert run(opt, "splunk-hec-extension", **env)["MALLOC_MMAP_THRESHOLD_"] == "131072"
    chosen = run(opt, "splunk-hec-extension", MALLOC_MMAP_THRESHOLD_="65536", **env)
    assert chosen["MALLOC_MMAP_THRESHOLD_"] == "65536"
