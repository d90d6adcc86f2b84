"""Builds the fallback Lambda layer (`--python 3.12`, no bundled interpreter) for both
architectures with scripts/build_layer.py and inspects the zips (the default layer, with its own
Python, is tested in test_bundled_layer.py; here only that its bytes do not depend on the host
Python that runs the script).

Runs the real script (pip downloads the locked wheels for the target platform on first use; they
are cached in build/wheels so later runs stay offline). Checks the launcher, the compiled msgspec
binary's architecture, what is left out, the unzipped size, that two builds are byte-identical,
and that a wheel or lock hash that does not match fails the build.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    shipped = {
        n.removeprefix(prefix)
        for n in names
        if n.startswith(prefix) and n[-1] != "/" and "__pycache__" not in n
    }
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


def failed_build(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--arch", "x86_64", "--python", PYTHON,
               "--out", str(tmp_path / "refused.zip"), *extra]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert not (tmp_path / "refused.zip").exists()
    return result


def warm_wheel_cache(tmp_path: Path) -> Path:
    """A private copy of the wheel cache for x86_64 / PYTHON (the `layers` builds filled it),
    holding only the locked versions: a cache that outlived an older lock keeps other wheels."""
    cache = tmp_path / "wheels"
    pins = re.findall(r"^([a-z0-9-]+)==(\S+) \\$", (REPO / "requirements-layer.txt").read_text(),
                      re.MULTILINE)
    locked = tuple(f"{name.replace('-', '_')}-{version}-" for name, version in pins)
    tag = f"cp{PYTHON.replace('.', '')}-x86_64"
    shutil.copytree(REPO / "build" / "wheels" / tag, cache / tag,
                    ignore=lambda _, names: [n for n in names if not n.startswith(locked)])
    return cache


def test_a_wheel_whose_hash_is_not_locked_fails_the_build(
    layers: dict[str, tuple[BuiltLayer, BuiltLayer]], tmp_path: Path
) -> None:
    cache = warm_wheel_cache(tmp_path)
    (wheel,) = (cache / f"cp{PYTHON.replace('.', '')}-x86_64").glob("urllib3-*.whl")
    # The same wheel, one entry more: what a republished or tampered file would be.
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.writestr("urllib3/extra.py", "")
    result = failed_build(tmp_path, "--wheel-cache", str(cache))
    assert f"{wheel} has sha256 {hashlib.sha256(wheel.read_bytes()).hexdigest()}" in result.stderr
    assert "requirements-layer.txt does not list" in result.stderr


def test_a_changed_hash_in_the_lock_fails_the_build(
    layers: dict[str, tuple[BuiltLayer, BuiltLayer]], tmp_path: Path
) -> None:
    cache = warm_wheel_cache(tmp_path)
    lock = (REPO / "requirements-layer.txt").read_text()
    (wheel,) = (cache / f"cp{PYTHON.replace('.', '')}-x86_64").glob("msgspec-*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert digest in lock
    changed = tmp_path / "requirements-layer.txt"
    changed.write_text(lock.replace(digest, digest[:-1] + ("0" if digest[-1] != "0" else "1")))
    result = failed_build(tmp_path, "--wheel-cache", str(cache), "--lock", str(changed))
    assert f"has sha256 {digest}, which {changed} does not list" in result.stderr


def test_the_lock_pins_every_runtime_requirement_with_hashes() -> None:
    lock = (REPO / "requirements-layer.txt").read_text()
    pins = re.findall(r"^([a-z0-9-]+)==(\S+) \\$", lock, re.MULTILINE)
    setup = (REPO / "setup.cfg").read_text().split("install_requires =", 1)[1].split("\n\n")[0]
    required = {re.split(r"[<>=!~ ]", line.strip())[0].lower()
                for line in setup.splitlines() if line.strip()}  # fmt: skip
    assert {name for name, _ in pins} == required
    # One hash per locked target at least: msgspec has a binary wheel per Python and arch.
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", lock)) >= 1 + 3 * 2


def test_a_lock_that_misses_a_requirement_fails_the_build(tmp_path: Path) -> None:
    lock = (REPO / "requirements-layer.txt").read_text()
    only_msgspec = tmp_path / "lock.txt"
    only_msgspec.write_text(lock.split("urllib3==")[0])
    result = failed_build(tmp_path, "--lock", str(only_msgspec))
    assert "but setup.cfg requires ['msgspec', 'urllib3']" in result.stderr


def test_rejects_unsupported_python(tmp_path: Path) -> None:
    command = [sys.executable, str(SCRIPT), "--python", "3.9", "--out", str(tmp_path / "x.zip")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "3.11 or newer" in result.stderr
    assert not (tmp_path / "x.zip").exists()


def test_sample_function_zip_is_reproducible_with_its_bootstrap_executable(tmp_path: Path) -> None:
    digests = []
    for name in ("one.zip", "two.zip"):
        command = [sys.executable, str(SCRIPT), "--function-zip", "--out", str(tmp_path / name)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
        assert f"sha256     {digests[-1]}" in result.stdout
    assert digests[0] == digests[1]
    with zipfile.ZipFile(tmp_path / "one.zip") as archive:
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
    expected = {p.name for p in (REPO / "function").iterdir() if p.is_file()}
    assert set(modes) == expected
    assert modes["handler.py"] == 0o100644
    assert modes["bootstrap"] == 0o100755  # the custom-runtime sample must stay executable


def load_build_layer(monkeypatch: pytest.MonkeyPatch) -> Any:
    import importlib.util

    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # it imports build_python beside it
    spec = importlib.util.spec_from_file_location("build_layer_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("pip_fails", [False, True])
def test_a_fetched_wheel_enters_the_cache_whole_or_not_at_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pip_fails: bool
) -> None:
    # Two builds may fetch into one cache at once (the arm64 build takes the x86_64 wheels
    # too): pip writes elsewhere, the wheel is renamed in only once complete.
    build_layer = load_build_layer(monkeypatch)
    cache = tmp_path / "cp313-x86_64"
    seen: list[list[str]] = []

    def pip(args: list[str]) -> subprocess.CompletedProcess[str]:
        dest = Path(args[args.index("--dest") + 1])
        seen.append(sorted(p.name for p in cache.iterdir() if p.suffix == ".whl"))
        assert dest.parent.parent == cache and dest != cache
        dest.mkdir()
        (dest / "urllib3-2.8.0-py3-none-any.whl").write_bytes(b"half" if pip_fails else b"whole")
        return subprocess.CompletedProcess(args, 1 if pip_fails else 0, "", "no network")

    monkeypatch.setattr(build_layer, "run_pip", pip)
    package = build_layer.LockedPackage("urllib3", "2.8.0", frozenset({"0" * 64}))
    if pip_fails:
        with pytest.raises(build_layer.BuildError, match="no network"):
            build_layer.fetch_wheel(package, "x86_64", "3.13", cache)
        assert list(cache.iterdir()) == []
    else:
        build_layer.fetch_wheel(package, "x86_64", "3.13", cache)
        assert [p.name for p in cache.iterdir()] == ["urllib3-2.8.0-py3-none-any.whl"]
        assert (cache / "urllib3-2.8.0-py3-none-any.whl").read_bytes() == b"whole"
    assert seen == [[]]


def test_only_the_package_s_modules_go_into_the_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A layer may be shared across accounts: a developer's `.env`, an editor's backup or a
    # merge's `.orig` left in a checkout must not ship with it.
    build_layer = load_build_layer(monkeypatch)
    checkout = tmp_path / "checkout"
    files = ["__init__.py", "config.py", ".env", "config.py.orig", "config.py~",
             "sender/__init__.py", "sender/hec.py", "sender/.hec.py.swp",
             "local/demo.py", "__pycache__/config.cpython-313.pyc", "sender/x.pyo"]
    for name in files:
        path = checkout / "ext" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    monkeypatch.setattr(build_layer, "REPO_ROOT", checkout)
    site = tmp_path / "site"
    site.mkdir()
    build_layer.stage_package(site)
    staged = sorted(p.relative_to(site / "ext").as_posix()
                    for p in (site / "ext").rglob("*") if p.is_file())
    assert staged == ["__init__.py", "config.py", "sender/__init__.py", "sender/hec.py"]
