"""Helpers for the tests of the layer with its own Python: build (cached) or skip, unpack, CA.

Building the interpreter from source takes tens of minutes on a cold cache (`.ci/run` does it
before the tests); with the cache it takes seconds. Without the toolchain the tests skip with the
reason, unless SPLUNK_LAYER_REQUIRED=1 (CI), which turns that into a failure.

`./dev test` builds the layers into dist/ just before the tests (scripts/prepare_layers.sh) and
names that folder in SPLUNK_LAYER_PREBUILT: the tests then inspect and run those zips, the ones
that ship, instead of building the same bytes once more (each build zips ~18 MB at level 9).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from ext.local.layer import unpack_layer

REPO = Path(__file__).resolve().parents[2]
NAME = "splunk-hec-extension"
BUILD_TIMEOUT_S = 3600
PREBUILT_ENV = "SPLUNK_LAYER_PREBUILT"


def load_build_python() -> ModuleType:
    """scripts/build_python.py as a module (scripts/ is not a package)."""
    path = REPO / "scripts" / "build_python.py"
    spec = importlib.util.spec_from_file_location("build_python", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_python", module)
    spec.loader.exec_module(module)
    return module


def unavailable(reason: str) -> None:
    """Skip, or fail when the environment says the bundled-Python tests must run (CI)."""
    if os.environ.get("SPLUNK_LAYER_REQUIRED") == "1":
        pytest.fail(f"SPLUNK_LAYER_REQUIRED=1 but {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Layer:
    arch: str
    zip_path: Path
    report: str

    def unpack(self, dest: Path) -> Path:
        """Extracts like Lambda does into `dest` (its /opt), modes included; returns `dest`."""
        return unpack_layer(self.zip_path, dest)


def prebuilt_or_build(arch: str, out: Path) -> Layer:
    """The layer ./dev test built from this checkout into $SPLUNK_LAYER_PREBUILT, else a build."""
    folder = os.environ.get(PREBUILT_ENV)
    if folder:
        path = Path(folder) / f"{NAME}-{arch}.zip"
        assert path.is_file(), f"{PREBUILT_ENV}={folder} but {path} is missing"
        return Layer(arch, path, f"prebuilt {path}")
    return build_bundled_layer(arch, out)


def build_bundled_layer(arch: str, out: Path, python: str = sys.executable) -> Layer:
    """A build by `python`, a host interpreter (it only fetches: the layer's own interpreter
    unpacks, compiles and zips, so the host's version must not show in the result)."""
    builder = load_build_python()
    missing = builder.missing_tools()
    if missing and builder.cached_runtime(arch) is None:
        unavailable(f"cannot build the bundled Python for {arch}: missing {', '.join(missing)}")
    command = [python, str(REPO / "scripts" / "build_layer.py"), "--arch", arch,
               "--out", str(out)]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stderr
    return Layer(arch, out, result.stdout)


def make_ca(folder: Path, name: str = "ca") -> tuple[Path, Path, Path]:
    """A local CA and a server certificate it signed for 127.0.0.1: (ca.pem, cert, key).

    With the extensions a real CA sets: Python 3.13 verifies with VERIFY_X509_STRICT.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = folder / f"{name}-key.pem", folder / f"{name}.pem"
    key, csr, cert = folder / "server-key.pem", folder / "server.csr", folder / "server.pem"
    config = folder / "openssl.cnf"
    config.write_text(
        "[req]\ndistinguished_name = dn\n[dn]\n"
        "[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[server]\nbasicConstraints = CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid, issuer\n"
    )

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-config", str(config), "-extensions", "ca", "-newkey", "rsa:2048",
            "-nodes", "-days", "2", "-subj", f"/CN=test {name}", "-keyout", str(ca_key),
            "-out", str(ca))  # fmt: skip
    openssl("req", "-new", "-config", str(config), "-newkey", "rsa:2048", "-nodes",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(config), "-extensions", "server",
            "-out", str(cert))  # fmt: skip
    return ca, cert, key


def host_pythons() -> list[str]:
    """Interpreters on this machine that can run the build script (3.11+), one per version,
    oldest first."""
    candidates = [sys.executable, *sorted(str(p) for p in Path("/usr/bin").glob("python3.1[1-9]"))]
    candidates += sorted(str(p) for p in (Path.home() / ".pyenv" / "versions").glob(
        "3.1[1-9].*/bin/python3"))  # fmt: skip
    by_version: dict[tuple[int, ...], str] = {}
    for candidate in candidates:
        version = python_version(candidate)
        if version >= (3, 11):
            by_version.setdefault(version, candidate)
    return [by_version[v] for v in sorted(by_version)]


def python_version(python: str) -> tuple[int, ...]:
    """(major, minor, micro) of the interpreter `python`; () when it does not run."""
    probe = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:3])"],
                           capture_output=True, text=True, timeout=30, check=False)
    return tuple(map(int, probe.stdout.split())) if probe.returncode == 0 else ()
