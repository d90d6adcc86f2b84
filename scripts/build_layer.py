"""Build the Lambda layer zip: the launcher, the `ext` package, its runtime wheels, its Python.

Run as `python3 scripts/build_layer.py --arch arm64` (Terraform takes the zip's path). By default
(`--python bundled`) the layer carries its own CPython (scripts/build_python.py: built from source
for glibc 2.26, cached outside the repo), so it runs on every Lambda runtime, Python or not.
`--python 3.N` is the fallback that uses the function's own python3 instead (Python runtimes of
that version only).

The dependencies are exactly the wheels pinned, with their sha256, in requirements-layer.txt: a
wheel whose hash is not there fails the build (`--update-lock` rewrites the file). Wheels are
unpacked by this script, not installed by the host's pip. For the bundled layer, the host Python
only fetches what is missing: unpacking, bytecode and the zip are done by the layer's own
interpreter (its x86_64 build), so the zip does not depend on which Python runs this script. The
zip is deterministic: sorted entries, fixed timestamps and modes.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import build_python

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NAME = "splunk-hec-extension"
LAUNCHER = REPO_ROOT / "bootstrap"
SAMPLE_FUNCTION = REPO_ROOT / "function"
LOCK_FILE = REPO_ROOT / "requirements-layer.txt"
# The Python versions and architectures whose wheels the lock pins (bundled: 3.13).
LOCKED_PYTHONS = ("3.11", "3.12", "3.13")
PACKAGE = "ext"
# ext/local is the emulator, HEC receiver and demo: developer tooling, never shipped.
EXCLUDED_PACKAGE_DIRS = frozenset({"local", "tests", "__pycache__"})
EXCLUDED_DIR_NAMES = frozenset({"tests", "test"})
EXCLUDED_SUFFIXES = (".pyo",)

# Lambda's manylinux baseline: glibc 2.17 wheels run on both AL2 (python3.11) and AL2023 runtimes.
PLATFORMS = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_17_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_17_aarch64"),
}
MIN_PYTHON = (3, 11)
BUNDLED = "bundled"
# The bundled interpreter's place in the layer, below /opt/<name>/ (the launcher's choice too).
RUNTIME_DIR = "python"
# The layer's modules are compiled, and its regex cache recorded, by the x86_64 build of the
# bundled interpreter (bundled_runtime): the host's.
COMPILER_ARCH = "x86_64"
REGEX_SNAPSHOT = REPO_ROOT / "scripts" / "regex_snapshot.py"

# 1980-01-01 is the earliest date a zip entry can hold; fixed modes make the archive reproducible.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
MODE_EXECUTABLE = 0o100755
MODE_FILE = 0o100644
MODE_DIR = 0o040755
ZIP_UNIX_SYSTEM = 3
# Lambda's limit on the unzipped size of a function plus all its layers.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024


class BuildError(Exception):
    """The layer cannot be built (bad input, pip failure, missing launcher)."""


@dataclass(frozen=True)
class LayerEntry:
    """One file or directory of the layer, as it will appear under /opt."""

    arcname: str
    source: Path | None  # None for a directory entry
    mode: int


@dataclass(frozen=True)
class LayerReport:
    """What the build produced, reported to the user."""

    path: Path
    name: str
    arch: str
    python: str
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    compiled_by: str
    bundled: bool = False


@dataclass(frozen=True)
class LockedPackage:
    """One pinned dependency: its version and the sha256 of every wheel the build may use."""

    name: str
    version: str
    hashes: frozenset[str]


def normalize(name: str) -> str:
    """PEP 503 name: what wheel file names and the lock compare by."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(setup_cfg: Path) -> list[str]:
    """Runtime requirements from setup.cfg `[options] install_requires`, all the layer ships."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    raw = parser.get("options", "install_requires", fallback="")
    requirements = [line.strip() for line in raw.splitlines() if line.strip()]
    if not requirements:
        raise BuildError(f"no install_requires in {setup_cfg}")
    return requirements


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    if match is None:
        raise BuildError(f"cannot read the requirement {requirement!r}")
    return normalize(match.group(0))


def read_lock(path: Path) -> dict[str, LockedPackage]:
    """The pinned packages of a requirements file in pip's hash-checking form."""
    if not path.is_file():
        raise BuildError(f"{path} is missing (python3 scripts/build_layer.py --update-lock)")
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    locked: dict[str, LockedPackage] = {}
    pinned = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = pinned.fullmatch(line)
        if match is None:
            raise BuildError(f"{path}: not a pinned, hashed requirement: {line!r}")
        hashes = frozenset(re.findall(r"sha256:([0-9a-f]{64})", match.group(3)))
        name = normalize(match.group(1))
        locked[name] = LockedPackage(name, match.group(2), hashes)
    return locked


def check_lock_covers(
    requirements: list[str], locked: dict[str, LockedPackage], lock: Path
) -> None:
    """The lock pins exactly setup.cfg's install_requires (a dependency added there must be
    locked before it ships)."""
    wanted = {requirement_name(r) for r in requirements}
    if wanted != set(locked):
        raise BuildError(f"{lock} pins {sorted(locked)} but setup.cfg requires {sorted(wanted)}: "
                         "run python3 scripts/build_layer.py --update-lock")  # fmt: skip


def parse_python_version(text: str) -> str:
    """`bundled`, or a `3.N` version string no older than the oldest runtime supported."""
    if text == BUNDLED:
        return text
    match = re.fullmatch(r"3\.(\d{1,2})", text)
    if match is None or (3, int(match.group(1))) < MIN_PYTHON:
        raise argparse.ArgumentTypeError(
            f"expected {BUNDLED!r} or 3.11 or newer as MAJOR.MINOR, got {text!r}"
        )
    return text


def pip_target_args(arch: str, python: str) -> list[str]:
    """pip options selecting binary wheels for the Lambda platform instead of the host."""
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for platform in PLATFORMS[arch]:
        args += ["--platform", platform]
    return args


def run_pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def wheel_fits(filename: str, arch: str, python: str) -> bool:
    """Whether a wheel file name's tags run on Lambda's `arch` with CPython `python`."""
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) not in (5, 6):
        return False
    py_tags, abi_tags, platform_tags = (set(part.split(".")) for part in parts[-3:])
    version = python.replace(".", "")
    machine = "aarch64" if arch == "arm64" else "x86_64"
    if not py_tags & {f"cp{version}", f"py{version}", "py3", "cp3"} and "abi3" not in abi_tags:
        return False
    if not abi_tags & {f"cp{version}", "abi3", "none"}:
        return False

    def platform_fits(tag: str) -> bool:
        if tag == "any" or tag in PLATFORMS[arch]:
            return True
        glibc = re.fullmatch(rf"manylinux_2_(\d+)_{machine}", tag)
        return glibc is not None and int(glibc.group(1)) <= 17

    return any(platform_fits(tag) for tag in platform_tags)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locked_wheels(
    locked: dict[str, LockedPackage], arch: str, python: str, wheel_cache: Path, *,
    lock: Path, download: bool,
) -> list[Path]:  # fmt: skip
    """One wheel per locked package for the target, its sha256 checked against the lock.

    Taken from `wheel_cache`, else (when `download`) fetched by pip with --require-hashes. A
    wheel of the pinned version whose hash the lock does not list fails the build: the same
    lock must always give the same zip.
    """
    chosen: list[Path] = []
    for package in sorted(locked.values(), key=lambda p: p.name):
        prefix = f"{package.name.replace('-', '_')}-{package.version}-"

        def candidates(package_prefix: str = prefix) -> list[Path]:
            found = wheel_cache.glob("*.whl") if wheel_cache.is_dir() else []
            return sorted(w for w in found if normalize(w.name).startswith(
                normalize(package_prefix)) and wheel_fits(w.name, arch, python))  # fmt: skip

        wheels = candidates()
        if not wheels and download:
            fetch_wheel(package, arch, python, wheel_cache)
            wheels = candidates()
        if not wheels:
            raise BuildError(f"no {package.name}=={package.version} wheel for {arch} "
                             f"python{python} in {wheel_cache}")  # fmt: skip
        for wheel in wheels:
            digest = sha256_of(wheel)
            if digest not in package.hashes:
                raise BuildError(
                    f"{wheel} has sha256 {digest}, which {lock} does not list for "
                    f"{package.name}=={package.version}: refusing to build a different layer "
                    "(remove the file to fetch the locked one again, or run --update-lock "
                    "on purpose)"
                )
        chosen.append(wheels[0])
    return chosen


def fetch_wheel(package: LockedPackage, arch: str, python: str, wheel_cache: Path) -> None:
    """pip download of the one locked wheel for the target, hash-checked by pip as well.

    Downloaded beside the cache and renamed into it: two builds may fetch into one cache at
    once (the arm64 build also takes the x86_64 wheels, write_regex_cache), and neither must
    find the other's file half written."""
    wheel_cache.mkdir(parents=True, exist_ok=True)
    hashes = " ".join(f"--hash=sha256:{h}" for h in sorted(package.hashes))
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=wheel_cache) as scratch:
        requirement = Path(scratch) / "requirement.txt"
        requirement.write_text(f"{package.name}=={package.version} {hashes}\n")
        fetched = Path(scratch) / "wheels"
        done = run_pip(["download", "--no-deps", "--require-hashes", "--dest", str(fetched),
                        "-r", str(requirement), *pip_target_args(arch, python)])  # fmt: skip
        if done.returncode != 0:
            raise BuildError(f"pip download of {package.name}=={package.version} failed:\n"
                             f"{done.stderr.strip()}")  # fmt: skip
        for wheel in fetched.glob("*.whl"):
            os.replace(wheel, wheel_cache / wheel.name)


def unpack_wheel(wheel: Path, target: Path) -> None:
    """Installs a wheel into `target` as pip --target does for these wheels: its files as they
    are (RECORD included), `<name>.data/purelib|platlib` merged in; nothing else allowed."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            parts = Path(info.filename).parts
            if info.filename.startswith("/") or ".." in parts:
                raise BuildError(f"{wheel.name}: unsafe path {info.filename!r}")
            if parts and parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    raise BuildError(f"{wheel.name}: {info.filename} is not a library file")
                parts = parts[2:]
            if info.is_dir():
                continue
            dest = target.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archive.read(info))


def update_lock(requirements: list[str], lock: Path, scratch: Path) -> None:
    """Rewrites the lock: the newest versions setup.cfg allows (pip's choice, the same for every
    target or it fails), with the sha256 of each target's wheel."""
    hashes: dict[tuple[str, str], set[str]] = {}
    for python in LOCKED_PYTHONS:
        for arch in sorted(PLATFORMS):
            dest = scratch / f"{python}-{arch}"
            done = run_pip(["download", "--no-deps", "--dest", str(dest),
                            *pip_target_args(arch, python), *requirements])  # fmt: skip
            if done.returncode != 0:
                raise BuildError(f"pip download failed:\n{done.stderr.strip()}")
            for wheel in dest.glob("*.whl"):
                name, version = wheel.name.split("-")[:2]
                hashes.setdefault((normalize(name), version), set()).add(sha256_of(wheel))
    names = [name for name, _ in hashes]
    if len(names) != len(set(names)):
        raise BuildError(f"targets resolved different versions: {sorted(hashes)}")
    lines = [
        "# The layer's runtime dependencies (setup.cfg install_requires), pinned with the sha256",
        "# of every wheel scripts/build_layer.py may ship (python "
        + ", ".join(LOCKED_PYTHONS)
        + "; x86_64, arm64).",
        "# The build refuses any other wheel. Regenerate on purpose only:",
        "#   python3 scripts/build_layer.py --update-lock",
    ]
    for (name, version), digests in sorted(hashes.items()):
        pins = " \\\n".join(f"    --hash=sha256:{d}" for d in sorted(digests))
        lines.append(f"{name}=={version} \\\n{pins}")
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")


def is_shipped(relative: Path) -> bool:
    """False for test directories, and for bytecode not compiled for the layer's interpreter."""
    if any(part in EXCLUDED_DIR_NAMES for part in relative.parts[:-1]):
        return False
    if relative.suffix == ".pyc" and (
        relative.parent.name != "__pycache__" or ".cpython-" not in relative.name
    ):
        return False
    return not relative.name.endswith(EXCLUDED_SUFFIXES) and relative.name not in EXCLUDED_DIR_NAMES


def stage_package(site_packages: Path) -> None:
    """Copies the `ext` package's modules, without local tooling and caches, beside the
    dependencies. Only `.py` files: whatever else a checkout holds there (a `.env`, an editor's
    backup, a `.orig`) would go into a layer that may be shared across accounts."""
    def ignored(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if n in EXCLUDED_PACKAGE_DIRS
                or (not n.endswith(".py") and not (Path(directory) / n).is_dir())]

    shutil.copytree(REPO_ROOT / PACKAGE, site_packages / PACKAGE, ignore=ignored)


def find_interpreter(python: str) -> str | None:
    """A working python<ver> on PATH, or in a pyenv installation; None when there is none."""
    candidates = [shutil.which(f"python{python}")]
    pyenv_root = Path.home() / ".pyenv" / "versions"
    candidates += sorted(str(p) for p in pyenv_root.glob(f"{python}.*/bin/python{python}"))
    for candidate in candidates:
        if candidate is None:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == python:
            return candidate
    return None


def bytecode_tag(python: str, bundled: bool) -> str:
    """The name ending of the bytecode the layer ships: `opt-2` (as `python -OO` looks for it)
    for the bundled interpreter, which the launcher runs with -OO; the default level for the
    function's own python3, which it runs without (its stdlib may have no opt-2 bytecode)."""
    level = ".opt-2" if bundled else ""
    return f".cpython-{python.replace('.', '')}{level}.pyc"


def precompile(root: Path, python: str, name: str, interpreter: str,
               bundled: bool = False) -> None:  # fmt: skip
    """Compiles every module with `interpreter`, which must be the layer's Python version.

    /opt is read-only in Lambda, so without shipped bytecode every cold start would compile
    ext, urllib3 and msgspec again (tens of ms). unchecked-hash pycs carry no timestamps and a
    fixed hash seed fixes the order of set constants, which keeps the zip reproducible. One
    optimisation level only, the one the launcher runs (`bytecode_tag`).
    """
    level = ["-o", "2"] if bundled else []
    command = [
        interpreter, "-S", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
        *level, "-d", f"/opt/{name}", str(root),
    ]  # fmt: skip
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise BuildError(f"compileall failed:\n{done.stdout}{done.stderr}")
    # A pyenv shim of a missing version, or a different interpreter, must not pass silently.
    tag = bytecode_tag(python, bundled)
    if not any(p.name.endswith(tag) for p in root.rglob("*.pyc")):
        raise BuildError(f"{interpreter} did not write {tag} bytecode: not Python {python}")


def write_regex_cache(site_packages: Path, interpreter: str, host_deps: Path | None) -> None:
    """Records the regular expressions a cold start compiles into the staged `ext` package
    (ext/main/regex_cache.py), with the layer's interpreter run as the launcher runs it.

    `host_deps` holds the dependencies built for the interpreter's own architecture when the
    layer's are for another (arm64): their modules compile the same patterns, and the compiled
    form is the same on both (one CPython version, 4-byte regex code words, 64-bit)."""
    paths = [str(host_deps)] if host_deps is not None else []
    # The host's dependencies first: the staged msgspec may be another architecture's.
    # -B: the recording writes no bytecode of its own (precompile writes the layer's).
    command = [interpreter, "-E", "-S", "-B", "-OO", str(REGEX_SNAPSHOT), *paths,
               str(site_packages)]  # fmt: skip
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env,
                          cwd=site_packages)  # fmt: skip
    if done.returncode != 0:
        raise BuildError(f"recording the regex cache failed:\n{done.stdout}{done.stderr}")


def tree_entries(
    root: Path, prefix: str, skip_top: frozenset[str] = frozenset()
) -> list[LayerEntry]:
    """Entries for every shipped file and directory under `root`, placed under `prefix`."""
    entries: list[LayerEntry] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in skip_top or not is_shipped(relative):
            continue
        if path.is_symlink():
            raise BuildError(f"symlinks are not shipped: {path}")
        arcname = f"{prefix}/{relative.as_posix()}"
        if path.is_dir():
            entries.append(LayerEntry(arcname + "/", None, MODE_DIR))
        else:
            entries.append(LayerEntry(arcname, path, MODE_FILE))
    return entries


def runtime_entries(runtime: Path, prefix: str) -> list[LayerEntry]:
    """The bundled interpreter tree under `prefix`; only its bin/ files are executable."""
    entries = [LayerEntry(prefix + "/", None, MODE_DIR)]
    for path in sorted(runtime.rglob("*")):
        relative = path.relative_to(runtime)
        arcname = f"{prefix}/{relative.as_posix()}"
        if path.is_symlink():
            raise BuildError(f"symlinks are not shipped: {path}")
        if path.is_dir():
            entries.append(LayerEntry(arcname + "/", None, MODE_DIR))
        else:
            executable = relative.parts[0] == "bin"
            entries.append(LayerEntry(arcname, path, MODE_EXECUTABLE if executable else MODE_FILE))
    return entries


def layer_entries(name: str, site_packages: Path, runtime: Path | None = None,
                  licenses: Path | None = None) -> list[LayerEntry]:
    """The layer's full content: launcher, the ext package (minus local tooling), dependencies,
    and the bundled interpreter when there is one, with the licenses of what it is built from
    (`licenses`) in its `licenses/`."""
    if not LAUNCHER.is_file():
        raise BuildError(f"launcher missing: {LAUNCHER}")
    # The launcher puts /opt/<name> (not /opt/python) on PYTHONPATH, so our urllib3 never shadows
    # the function's own.
    entries = [
        LayerEntry("extensions/", None, MODE_DIR),
        LayerEntry(f"extensions/{name}", LAUNCHER, MODE_EXECUTABLE),
        LayerEntry(f"{name}/", None, MODE_DIR),
    ]
    # pip --target may add bin/ for console scripts; the extension runs none of them.
    entries += tree_entries(site_packages, name, frozenset({"bin", RUNTIME_DIR}))
    if runtime is not None:
        entries += runtime_entries(runtime, f"{name}/{RUNTIME_DIR}")
    if licenses is not None:
        prefix = f"{name}/{RUNTIME_DIR}/licenses"
        entries += [LayerEntry(prefix + "/", None, MODE_DIR), *tree_entries(licenses, prefix)]
    return sorted(entries, key=lambda entry: entry.arcname)


def write_zip(entries: list[LayerEntry], out: Path) -> int:
    """Write a reproducible zip; returns the total unzipped size in bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    unzipped = 0
    # Per process: ./dev layer runs for two architectures at once, both writing the function zip.
    partial = out.with_name(f"{out.name}.{os.getpid()}.partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for entry in entries:
            info = zipfile.ZipInfo(entry.arcname, date_time=ZIP_EPOCH)
            info.create_system = ZIP_UNIX_SYSTEM
            info.external_attr = entry.mode << 16
            if entry.source is None:
                archive.writestr(info, b"")
                continue
            data = entry.source.read_bytes()
            unzipped += len(data)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=9)
    partial.replace(out)
    return unzipped


def bundled_runtime(arch: str) -> tuple[Path, str]:
    """The pruned bundled interpreter for `arch`, and a host-runnable one of the same version
    (the x86_64 build) that compiles the layer's modules."""
    try:
        runtime = build_python.runtime(arch)
        compiler = build_python.runtime(COMPILER_ARCH) / "bin" / "python3"
    except (build_python.BuildError, subprocess.CalledProcessError, OSError) as err:
        raise BuildError(f"building the bundled Python failed: {err}") from err
    return runtime, str(compiler)


def build_function_zip(out: Path) -> str:
    """The sample function's deployment package (terraform/ deploys it), reproducible like the
    layer; returns its sha256."""
    entries = [
        LayerEntry(e.arcname.removeprefix("function/"), e.source,
                   MODE_EXECUTABLE if e.source and os.access(e.source, os.X_OK) else e.mode)
        for e in tree_entries(SAMPLE_FUNCTION, "function")
        if "__pycache__" not in e.arcname and not e.arcname.endswith(".pyc")
    ]  # fmt: skip
    write_zip(entries, out)
    return sha256_of(out)


def interpreter_version(interpreter: str) -> str:
    probe = subprocess.run([interpreter, "-S", "-c", "import sys; print(sys.version.split()[0])"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    return probe.stdout.strip() or "unknown"


def build_layer(
    name: str, arch: str, python: str, out: Path, wheel_cache: Path, *,
    lock: Path = LOCK_FILE, runtime: Path | None = None, compiler: str | None = None,
    download: bool = True, host_wheel_cache: Path | None = None,
) -> LayerReport:  # fmt: skip
    """Build the layer zip at `out` with `compiler` (the layer's interpreter for the bundled
    layer, python<ver> for the fallback); raises BuildError. `host_wheel_cache` holds the
    locked wheels for COMPILER_ARCH, which record the bundled layer's regex cache when `arch`
    is another."""
    requirements = read_requirements(REPO_ROOT / "setup.cfg")
    locked = read_lock(lock)
    check_lock_covers(requirements, locked, lock)
    target_python = build_python.PYTHON_MINOR if python == BUNDLED else python
    wheels = locked_wheels(locked, arch, target_python, wheel_cache, lock=lock, download=download)
    if compiler is None:
        raise BuildError(f"python{target_python} not found: it compiles the layer's bytecode "
                         f"(install it, e.g. with pyenv)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="layer-") as scratch:
        site_packages = Path(scratch) / "site-packages"
        site_packages.mkdir()
        for wheel in wheels:
            unpack_wheel(wheel, site_packages)
        stage_package(site_packages)
        if runtime is not None:
            host_deps = None
            if arch != COMPILER_ARCH:
                host_deps = Path(scratch) / "host-deps"
                host_deps.mkdir()
                cache = host_wheel_cache if host_wheel_cache is not None else wheel_cache
                for wheel in locked_wheels(locked, COMPILER_ARCH, target_python, cache,
                                           lock=lock, download=download):  # fmt: skip
                    unpack_wheel(wheel, host_deps)
            write_regex_cache(site_packages, compiler, host_deps)
        precompile(site_packages, target_python, name, compiler, bundled=runtime is not None)
        licenses = build_python.licenses() if runtime is not None else None
        unzipped = write_zip(layer_entries(name, site_packages, runtime, licenses), out)
    if unzipped > LAMBDA_UNZIPPED_LIMIT_BYTES:
        raise BuildError(f"layer unzips to {unzipped} bytes, over Lambda's 250 MB limit")
    return LayerReport(
        path=out.resolve(),
        name=name,
        arch=arch,
        python=target_python,
        sha256=sha256_of(out),
        zipped_bytes=out.stat().st_size,
        unzipped_bytes=unzipped,
        compiled_by=f"{compiler} (Python {interpreter_version(compiler)})",
        bundled=runtime is not None,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="x86_64")
    parser.add_argument(
        "--python", type=parse_python_version, default=BUNDLED,
        help="'bundled' (default: the layer's own CPython, every runtime) or 3.N (fallback: "
        "the function's python3 of that version)",
    )  # fmt: skip
    parser.add_argument("--name", default=DEFAULT_NAME, help="extension name (launcher file name)")
    parser.add_argument(
        "--out", type=Path, help="zip path (default dist/<name>-<arch>[-py<ver>].zip)"
    )
    parser.add_argument(
        "--wheel-cache", type=Path, default=REPO_ROOT / "build" / "wheels",
        help="directory of downloaded wheels, reused by later builds",
    )  # fmt: skip
    parser.add_argument(
        "--lock",
        type=Path,
        default=LOCK_FILE,
        help="pinned, hashed requirements (default requirements-layer.txt)",
    )
    parser.add_argument(
        "--function-zip", action="store_true",
        help="write the sample function's zip instead (default dist/sample-function.zip)",
    )  # fmt: skip
    parser.add_argument(
        "--update-lock", action="store_true",
        help="rewrite the lock from setup.cfg with PyPI's current wheels, then exit",
    )  # fmt: skip
    # Internal: the second stage, run by the bundled interpreter itself.
    parser.add_argument("--layer-runtime", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", args.name):
        parser.error(f"--name must be letters, digits, '-' or '_': {args.name!r}")
    if args.out is None and args.function_zip:
        args.out = REPO_ROOT / "dist" / "sample-function.zip"
    if args.out is None:
        suffix = "" if args.python == BUNDLED else f"-py{args.python}"
        args.out = REPO_ROOT / "dist" / f"{args.name}-{args.arch}{suffix}.zip"
    return args


def print_report(report: LayerReport, stream: TextIO) -> None:
    zipped, unzipped = report.zipped_bytes, report.unzipped_bytes
    print(f"layer      {report.path}", file=stream)
    bundled = " (bundled)" if report.bundled else ""
    print(f"target     {report.arch} python{report.python}{bundled} name={report.name}",
          file=stream)  # fmt: skip
    print(f"compiled   by {report.compiled_by}", file=stream)
    print(f"zipped     {zipped / 1e6:8.3f} MB ({zipped} bytes)", file=stream)
    print(f"unzipped   {unzipped / 1e6:8.3f} MB ({unzipped} bytes)", file=stream)
    print(f"sha256     {report.sha256}", file=stream)


def hand_over_to_layer_python(args: argparse.Namespace, argv: Iterable[str], wheel_cache: Path,
                              ) -> int:  # fmt: skip
    """First stage of the bundled build, on the host Python: the interpreter (built or found in
    the cache) and the locked wheels (fetched if missing); then this script again, run by the
    layer's own interpreter, does the rest, so the zip's bytes do not depend on the host."""
    version = build_python.PYTHON_MINOR
    runtime, compiler = bundled_runtime(args.arch)
    locked = read_lock(args.lock)
    check_lock_covers(read_requirements(REPO_ROOT / "setup.cfg"), locked, args.lock)
    locked_wheels(locked, args.arch, version, wheel_cache, lock=args.lock, download=True)
    if args.arch != COMPILER_ARCH:  # they record the regex cache (write_regex_cache)
        locked_wheels(locked, COMPILER_ARCH, version, host_wheel_cache(args, version),
                      lock=args.lock, download=True)  # fmt: skip
    command = [compiler, "-S", str(Path(__file__).resolve()), *argv,
               "--layer-runtime", str(runtime)]  # fmt: skip
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONHASHSEED": "0",
        "HOME": str(Path.home()),
        **{k: v for k, v in os.environ.items() if k in ("SPLUNK_LAYER_CACHE", "XDG_CACHE_HOME")},
    }
    return subprocess.run(command, env=env, check=False).returncode


def host_wheel_cache(args: argparse.Namespace, version: str) -> Path:
    return Path(args.wheel_cache) / cache_dir_name(version, COMPILER_ARCH)


def cache_dir_name(version: str, arch: str) -> str:
    # Wheels are platform-specific: one cache per target keeps the choice exact.
    return f"cp{version.replace('.', '')}-{arch}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    version = build_python.PYTHON_MINOR if args.python == BUNDLED else args.python
    wheel_cache = args.wheel_cache / cache_dir_name(version, args.arch)
    try:
        if args.function_zip:
            print(f"function   {args.out.resolve()}\nsha256     {build_function_zip(args.out)}")
            return 0
        if args.update_lock:
            with tempfile.TemporaryDirectory(prefix="lock-") as scratch:
                update_lock(read_requirements(REPO_ROOT / "setup.cfg"), args.lock, Path(scratch))
            print(f"wrote {args.lock}")
            return 0
        if args.python == BUNDLED and args.layer_runtime is None:
            return hand_over_to_layer_python(args, argv, wheel_cache)
        runtime: Path | None = args.layer_runtime
        compiler = sys.executable if runtime is not None else find_interpreter(args.python)
        report = build_layer(args.name, args.arch, args.python, args.out, wheel_cache,
                             lock=args.lock, runtime=runtime, compiler=compiler,
                             download=args.layer_runtime is None,
                             host_wheel_cache=host_wheel_cache(args, version))  # fmt: skip
    except BuildError as err:
        print(f"build_layer: {err}", file=sys.stderr)
        return 1
    print_report(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
