"""Build the Lambda layer zip: the launcher, the `ext` package, its runtime wheels, its Python.

Run alone (`python3 scripts/build_layer.py --arch arm64`) or by Terraform's external data source
(`--terraform`: JSON result on stdout, human report on stderr). By default (`--python bundled`)
the layer carries its own CPython (scripts/build_python.py: built from source for glibc 2.26,
cached outside the repo), so it runs on every Lambda runtime, Python or not. `--python 3.N`
is the fallback that uses the function's own python3 instead (Python runtimes of that version
only). Wheels are fetched for the target platform with pip's --platform/--only-binary, never
built for the host. The zip is deterministic: sorted entries, fixed timestamps and modes, so the
same inputs give the same hash.
"""

from __future__ import annotations

import argparse
import base64
import configparser
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import build_python

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NAME = "splunk-hec-extension"
LAUNCHER = REPO_ROOT / "bootstrap"
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
    """What the build produced, reported to the user and to Terraform."""

    path: Path
    name: str
    arch: str
    python: str
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    precompiled: bool = False
    bundled: bool = False

    @property
    def base64sha256(self) -> str:
        return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")

    def as_terraform_result(self) -> dict[str, str]:
        """Terraform's external data source accepts a flat map of strings only."""
        return {
            "path": str(self.path),
            "name": self.name,
            "arch": self.arch,
            "python": self.python,
            "sha256": self.sha256,
            "base64sha256": self.base64sha256,
            "zipped_bytes": str(self.zipped_bytes),
            "unzipped_bytes": str(self.unzipped_bytes),
        }


def read_requirements(setup_cfg: Path) -> list[str]:
    """Runtime requirements from setup.cfg `[options] install_requires`, all the layer ships."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    raw = parser.get("options", "install_requires", fallback="")
    requirements = [line.strip() for line in raw.splitlines() if line.strip()]
    if not requirements:
        raise BuildError(f"no install_requires in {setup_cfg}")
    return requirements


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


def install_dependencies(
    requirements: list[str], arch: str, python: str, target: Path, wheel_cache: Path
) -> None:
    """Install the requirements' wheels into `target` from `wheel_cache`, else from the index.

    Installing from the local cache first keeps repeated builds offline and pinned to the wheels
    already fetched, which is what makes rebuilds byte-identical.
    """
    platform_args = pip_target_args(arch, python)
    # --ignore-requires-python: pip would check the wheels against the host interpreter; the
    # target version was already applied when the wheels were selected (--python-version).
    install = [
        "install", "--target", str(target), "--no-compile", "--no-warn-script-location",
        "--ignore-requires-python", "--no-index", "--find-links", str(wheel_cache),
        *platform_args, *requirements,
    ]  # fmt: skip
    if wheel_cache.is_dir() and run_pip(install).returncode == 0:
        return
    wheel_cache.mkdir(parents=True, exist_ok=True)
    download = run_pip(["download", "--dest", str(wheel_cache), *platform_args, *requirements])
    if download.returncode != 0:
        raise BuildError(f"pip download failed:\n{download.stderr.strip()}")
    shutil.rmtree(target, ignore_errors=True)
    installed = run_pip(install)
    if installed.returncode != 0:
        raise BuildError(f"pip install failed:\n{installed.stderr.strip()}")


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
    """Copies the `ext` package, without local tooling and caches, beside the dependencies."""
    shutil.copytree(
        REPO_ROOT / PACKAGE, site_packages / PACKAGE,
        ignore=lambda _dir, names: [n for n in names if n in EXCLUDED_PACKAGE_DIRS
                                    or n.endswith((".pyc", ".pyo"))],
    )  # fmt: skip


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
            capture_output=True, text=True, check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == python:
            return candidate
    return None


def precompile(root: Path, python: str, name: str, interpreter: str | None = None) -> bool:
    """Compiles every module with the layer's own Python version, if that interpreter is here.

    /opt is read-only in Lambda, so without shipped bytecode every cold start would compile
    ext, urllib3 and msgspec again (tens of ms). unchecked-hash pycs carry no timestamps, which
    keeps the zip reproducible. Returns False (the layer still works) when python<ver> is absent.
    """
    interpreter = interpreter or find_interpreter(python)
    if interpreter is None:
        return False
    command = [
        interpreter, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
        "-d", f"/opt/{name}", str(root),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"compileall failed:\n{done.stdout}{done.stderr}")
    # The pyenv shim of a missing version, or a different interpreter, must not pass silently.
    tag = f".cpython-{python.replace('.', '')}.pyc"
    return any(p.name.endswith(tag) for p in root.rglob("*.pyc"))


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


def layer_entries(
    name: str, site_packages: Path, runtime: Path | None = None
) -> list[LayerEntry]:
    """The layer's full content: launcher, the ext package (minus local tooling), dependencies,
    and the bundled interpreter when there is one."""
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
    return sorted(entries, key=lambda entry: entry.arcname)


def write_zip(entries: list[LayerEntry], out: Path) -> int:
    """Write a reproducible zip; returns the total unzipped size in bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    unzipped = 0
    partial = out.with_name(out.name + ".partial")
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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_runtime(arch: str) -> tuple[Path, str]:
    """The pruned bundled interpreter for `arch`, and a host-runnable one of the same version
    (the x86_64 build) that compiles the layer's modules."""
    try:
        runtime = build_python.runtime(arch)
        compiler = build_python.runtime("x86_64") / "bin" / "python3"
    except (build_python.BuildError, subprocess.CalledProcessError, OSError) as err:
        raise BuildError(f"building the bundled Python failed: {err}") from err
    return runtime, str(compiler)


def build_layer(name: str, arch: str, python: str, out: Path, wheel_cache: Path) -> LayerReport:
    """Build the layer zip at `out`; raises BuildError."""
    requirements = read_requirements(REPO_ROOT / "setup.cfg")
    runtime: Path | None = None
    compiler: str | None = None
    if python == BUNDLED:
        runtime, compiler = bundled_runtime(arch)
    target_python = build_python.PYTHON_MINOR if python == BUNDLED else python
    with tempfile.TemporaryDirectory(prefix="layer-") as scratch:
        site_packages = Path(scratch) / "site-packages"
        install_dependencies(requirements, arch, target_python, site_packages, wheel_cache)
        stage_package(site_packages)
        precompiled = precompile(site_packages, target_python, name, compiler)
        unzipped = write_zip(layer_entries(name, site_packages, runtime), out)
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
        precompiled=precompiled,
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
        "--out", type=Path, help="zip path (default dist/<name>-<arch>-py<ver>.zip)"
    )
    parser.add_argument(
        "--wheel-cache", type=Path, default=REPO_ROOT / "build" / "wheels",
        help="directory of downloaded wheels, reused by later builds",
    )  # fmt: skip
    parser.add_argument(
        "--terraform", action="store_true",
        help="external data source mode: read the query from stdin, print a JSON result",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", args.name):
        parser.error(f"--name must be letters, digits, '-' or '_': {args.name!r}")
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
    print(f"zipped     {zipped / 1e6:8.3f} MB ({zipped} bytes)", file=stream)
    print(f"unzipped   {unzipped / 1e6:8.3f} MB ({unzipped} bytes)", file=stream)
    print(f"sha256     {report.sha256}", file=stream)
    if not report.precompiled:
        print(f"warning    python{report.python} not found: no bytecode shipped; every cold start"
              " compiles the modules (install that Python version to precompile)", file=stream)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.terraform:
        sys.stdin.read()  # Terraform writes its query there; everything comes from argv instead.
    # Wheels are platform-specific: one cache per target keeps pip's --find-links choice exact.
    version = build_python.PYTHON_MINOR if args.python == BUNDLED else args.python
    wheel_cache = args.wheel_cache / f"cp{version.replace('.', '')}-{args.arch}"
    try:
        report = build_layer(args.name, args.arch, args.python, args.out, wheel_cache)
    except BuildError as err:
        print(f"build_layer: {err}", file=sys.stderr)
        return 1
    print_report(report, sys.stderr if args.terraform else sys.stdout)
    if args.terraform:
        print(json.dumps(report.as_terraform_result(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
