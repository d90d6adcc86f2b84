"""Builds the fallback Lambda layer (`--python 3.12`, no bundled interpreter) for both
architectures with scripts/build_layer.py and inspects the zips (the default layer, with its own
Python, is tested in test_bundled_layer.py).

Runs the real script (pip downloads wheels for the target platform on first use; they are cached
in build/wheels so later runs stay offline). Checks the launcher, the compiled msgspec binary's
architecture, what is left out, the unzipped size and that two builds are byte-identical.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_layer.py"
NAME = "splunk-hec-extension"
PYTHON = "3.12"
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024

# Per architecture: the CPython extension-module suffix, the ELF e_machine and the wheel tag suffix.
ARCHES = {
    "x86_64": ("x86_64-linux-gnu", 62, "_x86_64"),
    "arm64": ("aarch64-linux-gnu", 183, "_aarch64"),
}


@dataclass(frozen=True)
class BuiltLayer:
    arch: str
    path: Path
    stdout: str

    def entries(self) -> list[zipfile.ZipInfo]:
        with zipfile.ZipFile(self.path) as archive:
            return archive.infolist()

    def names(self) -> list[str]:
        return [info.filename for info in self.entries()]

    def read(self, name: str) -> bytes:
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(name)

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def run_build(out: Path, arch: str, *extra: str, python: str = PYTHON) -> BuiltLayer:
    command = [sys.executable, str(SCRIPT), "--arch", arch, "--python", python, "--out", str(out)]
    result = subprocess.run(
        [*command, *extra], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr
    return BuiltLayer(arch, out, result.stdout)


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[BuiltLayer, BuiltLayer]]:
    """Each architecture built twice, into separate directories."""
    built = {}
    for arch in ARCHES:
        first = run_build(tmp_path_factory.mktemp("first") / f"{arch}.zip", arch)
        second = run_build(tmp_path_factory.mktemp("second") / f"{arch}.zip", arch)
        built[arch] = (first, second)
    return built


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_two_builds_give_the_same_hash(
    layers: dict[str, tuple[BuiltLayer, BuiltLayer]], arch: str
) -> None:
    first, second = layers[arch]
    assert first.sha256() == second.sha256()
    assert f"sha256     {first.sha256()}" in first.stdout


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_entries_are_sorted_with_fixed_times_and_modes(
    layers: dict[str, tuple[BuiltLayer, BuiltLayer]], arch: str
) -> None:
    layer = layers[arch][0]
    assert layer.names() == sorted(layer.names())
    for info in layer.entries():
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        mode = info.external_attr >> 16
        if info.is_dir():
            assert mode == 0o040755, info.filename
        elif info.filename.startswith("extensions/"):
            assert mode == 0o100755, info.filename
        else:
            assert mode == 0o100644, info.filename


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_launcher_is_the_executable_bootstrap_named_after_the_extension(
    layers: dict[str, tuple[BuiltLayer, BuiltLayer]], arch: str
) -> None:
    layer = layers[arch][0]
    launchers = [n for n in layer.names() if n.startswith("extensions/") and not n.endswith("/")]
    assert launchers == [f"extensions/{NAME}"]
    info = next(i for i in layer.entries() if i.filename == launchers[0])
    assert (info.external_attr >> 16) & stat.S_IXUSR
    assert layer.read(launchers[0]) == (REPO / "bootstrap").read_bytes()
    assert f"{NAME}/ext/__init__.py" in layer.names()


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_msgspec_binary_matches_the_architecture(
    layers: dict[str, tuple[BuiltLayer, BuiltLayer]], arch: str
) -> None:
    layer = layers[arch][0]
    so_suffix, elf_machine, wheel_platform = ARCHES[arch]
    binaries = [n for n in layer.names() if n.startswith(f"{NAME}/msgspec/_core")]
    assert binaries == [f"{NAME}/msgspec/_core.cpython-312-{so_suffix}.so"]
    elf = layer.read(binaries[0])[:20]
    assert elf[:4] == b"\x7fELF"
    assert elf[4] == 2  # ELFCLASS64
    assert int.from_bytes(elf[18:20], "little") == elf_machine
    wheel = next(n for n in layer.names() if n.startswith(f"{NAME}/msgspec-"))
    wheel_meta = layer.read(wheel.split(".dist-info/")[0] + ".dist-info/WHEEL").decode()
    tags = [line.split(": ", 1)[1] for line in wheel_meta.splitlines() if line.startswith("Tag:")]
    assert tags
    assert all(tag.startswith("cp312-cp312-manylinux") for tag in tags)
    assert all(tag.endswith(wheel_platform) for tag in tags)


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_no_tests_local_tooling_or_caches(
    layers: dict[str, tuple[BuiltLayer, BuiltLayer]], arch: str
) -> None:
    names = layers[arch][0].names()
    tag = f".cpython-{PYTHON.replace('.', '')}.pyc"
    for name in names:
        parts = name.rstrip("/").split("/")
        if name.endswith(".pyc"):
            # Bytecode ships only for the layer's interpreter (Lambda's /opt is read-only).
            assert parts[-2] == "__pycache__" and name.endswith(tag), name
        assert not name.endswith(".pyo"), name
        assert not {"tests", "test", "benchmarks", "function"} & set(parts), name
    prefix = f"{NAME}/ext/"
    modules = {n for n in names if n.startswith(prefix) and n.endswith(".py")}
    compiled = {n for n in names if n.startswith(prefix) and n.endswith(tag)}
    assert len(compiled) == len(modules)
    shipped = {n.removeprefix(prefix) for n in names
               if n.startswith(prefix) and n[-1] != "/" and "__pycache__" not in n}
    expected = {
        path.relative_to(REPO / "ext").as_posix()
        for path in (REPO / "ext").rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        and not path.relative_to(REPO / "ext").as_posix().startswith("local/")
    }
    assert shipped == expected
    assert not any(n.startswith(f"{prefix}local") for n in names)
    top_level = {n.split("/")[0] for n in names}
    assert top_level == {"extensions", NAME}


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_unzipped_size_is_under_the_lambda_limit(
    layers: dict[str, tuple[BuiltLayer, BuiltLayer]], arch: str
) -> None:
    layer = layers[arch][0]
    unzipped = sum(info.file_size for info in layer.entries())
    zipped = layer.path.stat().st_size
    print(f"layer {arch}: zipped {zipped} bytes, unzipped {unzipped} bytes")
    assert unzipped < LAMBDA_UNZIPPED_LIMIT_BYTES
    assert f"({unzipped} bytes)" in layer.stdout
    assert f"({zipped} bytes)" in layer.stdout


def test_launcher_execs_python_with_the_layer_path_and_its_own_name(tmp_path: Path) -> None:
    """Unpack a layer built under another name and run its launcher with a stub python3."""
    layer = run_build(tmp_path / "named.zip", "x86_64", "--name", "acme-hec")
    unpacked = tmp_path / "opt"
    with zipfile.ZipFile(layer.path) as archive:
        archive.extractall(unpacked)
    launcher = unpacked / "extensions" / "acme-hec"
    launcher.chmod(0o755)  # extractall drops modes; the zip's own mode is checked above
    assert (unpacked / "acme-hec" / "ext" / "__init__.py").is_file()
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    stub = stub_dir / "python3"
    stub.write_text('#!/bin/sh\necho "PYTHONPATH=$PYTHONPATH"\necho "ARGS=$*"\n')
    stub.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.pop("SPLUNK_EXTENSION_PYTHON", None)
    env["PATH"] = f"{stub_dir}{os.pathsep}{os.environ['PATH']}"
    result = subprocess.run(
        [str(launcher)], capture_output=True, text=True, env=env, timeout=30, check=True
    )
    assert result.stdout.splitlines() == [
        f"PYTHONPATH={unpacked}/acme-hec",
        "ARGS=-S -m ext acme-hec",
    ]


def host_arch() -> str:
    machine = platform.machine()
    if machine not in ("x86_64", "aarch64"):
        pytest.skip(f"no Lambda architecture matches host {machine}")
    return "arm64" if machine == "aarch64" else "x86_64"


# Imports every shipped ext module, then reports where the dependencies were found.
IMPORT_PROBE = """
import importlib, pkgutil, sys
import ext, msgspec, urllib3
for module in pkgutil.walk_packages(ext.__path__, "ext."):
    importlib.import_module(module.name)
assert msgspec.json.decode(msgspec.json.encode({"a": [1]})) == {"a": [1]}
print(ext.__file__, msgspec.__file__, urllib3.__file__, sep="\\n")
"""


def test_layer_built_for_the_host_imports_with_its_own_dependencies_only(tmp_path: Path) -> None:
    """Like the launcher: python -S with PYTHONPATH=/opt/<name>, so no site-packages of ours."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    layer = run_build(tmp_path / "host.zip", host_arch(), python=python)
    unpacked = tmp_path / "opt"
    with zipfile.ZipFile(layer.path) as archive:
        archive.extractall(unpacked)
    root = unpacked / NAME
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["PYTHONPATH"] = str(root)
    result = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    locations = result.stdout.splitlines()
    assert len(locations) == 3
    for location in locations:
        assert location.startswith(f"{root}/"), location


def test_terraform_mode_prints_one_json_result(tmp_path: Path) -> None:
    out = tmp_path / "tf.zip"
    # The fallback flavour keeps this test fast; the bundled one shares the same code path.
    command = [sys.executable, str(SCRIPT), "--terraform", "--arch", "arm64", "--python", PYTHON,
               "--out", str(out)]  # fmt: skip
    result = subprocess.run(
        command,
        input='{"ignored": "query"}',
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert all(isinstance(value, str) for value in answer.values())
    digest = hashlib.sha256(out.read_bytes()).digest()
    assert answer["path"] == str(out.resolve())
    assert answer["base64sha256"] == base64.b64encode(digest).decode()
    assert answer["sha256"] == digest.hex()
    assert "unzipped" in result.stderr


def test_rejects_unsupported_python(tmp_path: Path) -> None:
    command = [sys.executable, str(SCRIPT), "--python", "3.9", "--out", str(tmp_path / "x.zip")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "3.11 or newer" in result.stderr
    assert not (tmp_path / "x.zip").exists()
