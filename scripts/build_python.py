"""Build the layer's own CPython (with OpenSSL and zlib) from Debian source packages, per arch.

Every ELF file it produces needs at most glibc 2.26 (Amazon Linux 2), because Zig's C compiler
(`ziglang` from PyPI) links against the symbol set of that glibc version for both x86_64 and
aarch64. The result is a relocatable install tree (`bin/python3.13`, `lib/python3.13/...`), every
stdlib extension module built into the interpreter (MODULE_BUILDTYPE=static: no lib-dynload, one
ELF file), cached under `$SPLUNK_LAYER_CACHE` (default `~/.cache/splunk-layer-build`) in a
directory named after the hash of every input: source tarballs, Zig version, target, recipe.
A second build with the same inputs only looks the directory up.

Run alone (`python3 scripts/build_python.py --arch arm64`) to build or find the tree; it prints
the path. aarch64 is cross-compiled with the x86_64 interpreter (same version) as build Python,
so it builds that one first. Timings of each step of a cold build go to `build-times.json` in the
tree.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Bump when the recipe below changes in a way the other inputs do not capture.
RECIPE_VERSION = "2"
ZIG_VERSION = "0.14.1"
GLIBC = "2.26"
PYTHON_MINOR = "3.13"
# (source package, suite): python3.13 is in trixie; bookworm's OpenSSL 3.0 is the LTS branch.
SOURCES = {
    "python": ("python3.13", "trixie"),
    "openssl": ("openssl", "bookworm"),
    "zlib": ("zlib", "bookworm"),
}
TARGETS = {
    "x86_64": {"zig": f"x86_64-linux-gnu.{GLIBC}", "openssl": "linux-x86_64",
               "gnu": "x86_64-pc-linux-gnu"},
    "arm64": {"zig": f"aarch64-linux-gnu.{GLIBC}", "openssl": "linux-aarch64",
              "gnu": "aarch64-unknown-linux-gnu"},
}  # fmt: skip
# Lambda has no use for these, and most need libraries we do not build.
DISABLED_MODULES = (
    "_tkinter", "_curses", "_curses_panel", "readline", "_dbm", "_gdbm", "_sqlite3", "_uuid",
    "_lzma", "_bz2", "_ctypes", "_ctypes_test", "nis", "_crypt", "xxlimited", "xxlimited_35",
    "xxsubtype", "_xxtestfuzz", "_testcapi", "_testclinic", "_testclinic_limited",
    "_testimportmultiple", "_testmultiphase", "_testsinglephase", "_testbuffer",
    "_testinternalcapi", "_testlimitedcapi", "_testexternalinspection",
    # No /dev/shm on Lambda; asyncio and xml are pruned.
    "_posixshmem", "_multiprocessing", "_asyncio", "pyexpat", "_elementtree",
    "_multibytecodec", "_codecs_cn", "_codecs_hk", "_codecs_iso2022", "_codecs_jp",
    "_codecs_kr", "_codecs_tw", "_lsprof",
)  # fmt: skip
# msgspec imports decimal: without `_decimal` that is `_pydecimal`, ~6,000 lines of Python to
# import on every cold start (about a tenth of the extension's import work). 3.13 looks for a
# system libmpdec by default; the copy in CPython's tree needs no library we do not build.
# Computed gotos (the eval loop jumps from opcode to opcode instead of through one switch):
# configure learns that the compiler has them by running a program, which it cannot do when
# cross-compiling, and then builds the switch. Stated, so that the arm64 interpreter gets them
# as the x86_64 one does (tests/integration/test_bundled_layer.py checks both).
CONFIGURE_EXTRA = ("--with-system-libmpdec=no", "--with-computed-gotos")
# Static libraries only, and only what a TLS client and hashlib use: every algorithm less is
# compile time saved on every cold build (CPython's _ssl.c guards what it uses optionally).
OPENSSL_OPTIONS = (
    "no-shared", "no-tests", "no-engine", "no-module", "no-legacy", "no-dso", "no-afalgeng",
    "no-comp", "no-ssl3", "no-aria", "no-bf", "no-camellia", "no-cast", "no-cmp", "no-cms",
    "no-ct", "no-des", "no-dtls", "no-gost", "no-idea", "no-md4", "no-mdc2", "no-ocb",
    "no-ocsp", "no-rc2", "no-rc4", "no-rc5", "no-seed", "no-siphash", "no-siv", "no-sm2",
    "no-sm3", "no-sm4", "no-srp", "no-srtp", "no-ts", "no-whirlpool", "no-rfc3779", "no-ec2m",
)  # fmt: skip
# Amazon Linux keeps the system bundle under /etc/pki/tls: OPENSSLDIR/cert.pem resolves there.
OPENSSLDIR = "/etc/pki/tls"
# -g0: zig cc emits DWARF by default, which only costs time (the binaries are stripped).
CFLAGS = "-O2 -g0 -fPIC -ffile-prefix-map={src}=/src"
# OpenSSL's install prefix as compiled in (MODULESDIR, ENGINESDIR: never used, the build has no
# modules or engines) and the name the build paths get in sysconfig's data: the cache's real
# location must not reach the bytes, or two machines (or users) build different layers.
DEPS_PREFIX = "/splunk-layer-deps"
BUILD_ROOT_NAME = "/splunk-layer-build"
# Fixed build time (__DATE__ in sys.version, zip times): same inputs, same bytes.
SOURCE_DATE_EPOCH = "1700000000"
JOBS = str(os.cpu_count() or 2)


class BuildError(Exception):
    """A step of the from-source build failed; the message names it and points to its log."""


def cache_root() -> Path:
    configured = os.environ.get("SPLUNK_LAYER_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "splunk-layer-build"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run(cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> None:
    """Runs one build command, its output appended to `log`; raises BuildError on failure."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}  (in {cwd})\n")
        out.flush()
        done = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False)  # fmt: skip
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise BuildError(f"{' '.join(cmd[:3])} failed (log {log}):\n" + "\n".join(tail))


@dataclass(frozen=True)
class Toolchain:
    """Wrapper scripts that make `zig cc` look like a cross gcc to autoconf and OpenSSL."""

    bindir: Path
    target: str

    @property
    def cc(self) -> str:
        return str(self.bindir / "cc")

    def env(self, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        env.update(CC=self.cc, AR=str(self.bindir / "ar"), RANLIB=str(self.bindir / "ranlib"),
                   SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, LC_ALL="C", TZ="UTC")  # fmt: skip
        return env


def ensure_zig(root: Path) -> Path:
    """The Zig binary of the pinned `ziglang` wheel, installed once into the cache."""
    target = root / f"zig-{ZIG_VERSION}"
    zig = target / "ziglang" / "zig"
    if not zig.is_file():
        partial = root / f"zig-{ZIG_VERSION}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(partial), f"ziglang=={ZIG_VERSION}"],
            check=True,
        )  # fmt: skip
        partial.rename(target)
    return zig


def make_toolchain(zig: Path, target: str, where: Path, cache: Path) -> Toolchain:
    """Writes cc/ar/ranlib wrappers; zig cc without -O would add UBSan traps, hence the flag.

    `cache` is Zig's own cache (its glibc stubs per target): shared by every build, it holds
    no result of ours.
    """
    where.mkdir(parents=True, exist_ok=True)
    scripts = {
        # -Wno-date-time: zig makes __DATE__ an error; SOURCE_DATE_EPOCH fixes its value.
        "cc": f'exec "{zig}" cc -target {target} -fno-sanitize=undefined -Wno-date-time "$@"',
        "ar": f'exec "{zig}" ar "$@"',
        "ranlib": f'exec "{zig}" ranlib "$@"',
    }
    for name, body in scripts.items():
        path = where / name
        path.write_text(
            "#!/bin/sh\n"
            f'export ZIG_GLOBAL_CACHE_DIR="{cache}" ZIG_LOCAL_CACHE_DIR="{cache}"\n{body}\n'
        )
        path.chmod(0o755)
    return Toolchain(where, target)


def cached_sources(root: Path) -> dict[str, Path]:
    """The upstream tarballs already downloaded, by key (python, openssl, zlib)."""
    found: dict[str, Path] = {}
    for key, (package, _suite) in SOURCES.items():
        matches = [m for m in sorted((root / "src").glob(f"{package}_*.orig.tar.*"))
                   if not m.name.endswith(".asc")]  # fmt: skip
        if matches:
            found[key] = matches[-1]
    return found


def missing_tools() -> list[str]:
    """What a cold build needs and this machine lacks (empty when it can build)."""
    missing = [tool for tool in ("make", "perl") if shutil.which(tool) is None]
    if len(cached_sources(cache_root())) < len(SOURCES) and shutil.which("apt-get") is None:
        missing.append("apt-get (for the Debian source packages)")
    return missing


def fetch_sources(root: Path) -> dict[str, Path]:
    """The upstream (orig) tarball of each Debian source package, downloaded once.

    Only the upstream tarballs are built: Debian's patches adapt the packages to Debian's own
    layout (multiarch paths, system libraries), which a relocatable interpreter must not have.
    """
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    for key, (package, suite) in SOURCES.items():
        if key in cached_sources(root):
            continue
        done = subprocess.run(
            ["apt-get", "source", "--download-only", "-q", f"{package}/{suite}"],
            cwd=src, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if key not in cached_sources(root):
            raise BuildError(
                f"apt-get source {package}/{suite} gave no tarball (is there a deb-src line "
                f"for {suite}? see .ci/run):\n{done.stderr.strip()}"
            )
    return cached_sources(root)


def build_key(arch: str, sources: dict[str, Path]) -> str:
    """Hash of every input of the from-source build: what makes the cache entry valid."""
    inputs = {
        "recipe": RECIPE_VERSION, "zig": ZIG_VERSION, "target": TARGETS[arch],
        "prefixes": [DEPS_PREFIX, BUILD_ROOT_NAME],
        "sources": {k: sha256_file(v) for k, v in sorted(sources.items())},
        "disabled": DISABLED_MODULES, "configure": CONFIGURE_EXTRA,
        "openssl": OPENSSL_OPTIONS, "openssldir": OPENSSLDIR,
        "cflags": CFLAGS, "epoch": SOURCE_DATE_EPOCH,
    }  # fmt: skip
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def deps_key(arch: str, sources: dict[str, Path]) -> str:
    """Hash of the inputs of zlib and OpenSSL alone: a CPython-only change keeps them."""
    inputs = {
        "recipe": RECIPE_VERSION, "zig": ZIG_VERSION, "target": TARGETS[arch],
        "prefixes": [DEPS_PREFIX, BUILD_ROOT_NAME],
        "sources": {k: sha256_file(sources[k]) for k in ("openssl", "zlib")},
        "openssl": OPENSSL_OPTIONS, "openssldir": OPENSSLDIR, "cflags": CFLAGS,
        "epoch": SOURCE_DATE_EPOCH,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def extract(tarball: Path, into: Path) -> Path:
    """Unpacks a source tarball into a fresh directory; returns its single top directory."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="tar")
    (top,) = [p for p in into.iterdir() if p.is_dir()]
    return top


@dataclass(frozen=True)
class Workspace:
    """Directories of one cold build: sources, the install tree, the log; and the static
    zlib/OpenSSL prefix, cached on its own (`deps-<arch>-<deps key>`)."""

    work: Path
    deps: Path

    @property
    def install(self) -> Path:
        return self.work / "install"

    @property
    def log(self) -> Path:
        return self.work / "build.log"


def build_zlib(tc: Toolchain, tarball: Path, ws: Workspace) -> None:
    src = extract(tarball, ws.work / "zlib")
    deps, log = ws.deps, ws.log
    env = tc.env(dict(os.environ))
    env["CFLAGS"] = CFLAGS.format(src=src)
    run(["./configure", "--static", f"--prefix={deps}"], src, log, env)
    run(["make", f"-j{JOBS}", "libz.a"], src, log, env)
    run(["make", "install"], src, log, env)


def build_openssl(tc: Toolchain, arch: str, tarball: Path, ws: Workspace) -> None:
    src = extract(tarball, ws.work / "openssl")
    deps, log = ws.deps, ws.log
    env = tc.env(dict(os.environ))
    cmd = ["perl", "./Configure", TARGETS[arch]["openssl"], *OPENSSL_OPTIONS,
           f"--prefix={DEPS_PREFIX}", "--libdir=lib", f"--openssldir={OPENSSLDIR}",
           *CFLAGS.format(src=src).split()]  # fmt: skip
    run(cmd, src, log, env)
    # libcrypto.a and libssl.a only (build_libs would also build the apps' helper library).
    run(["make", f"-j{JOBS}", "build_generated", "crypto/buildinf.h"], src, log, env)
    # OpenSSL_version(OPENSSL_CFLAGS) quotes the compile command, with the cache's paths in it.
    _scrub_compiler_flags(src / "crypto" / "buildinf.h", {str(src): "/src",
                                                          str(ws.work.parent): BUILD_ROOT_NAME})
    run(["make", f"-j{JOBS}", "libcrypto.a", "libssl.a"], src, log, env)
    staging = ws.work / "openssl-install"
    run(["make", "install_dev", f"DESTDIR={staging}"], src, log, env)
    shutil.copytree(staging / DEPS_PREFIX.lstrip("/"), deps, dirs_exist_ok=True)


def build_cpython(tc: Toolchain, arch: str, tarball: Path, ws: Workspace,
                  build_python: Path | None) -> None:  # fmt: skip
    src = extract(tarball, ws.work / "python")
    deps, install, log = ws.deps, ws.install, ws.log
    env = tc.env(dict(os.environ))
    env.update(
        MODULE_BUILDTYPE="static",
        CFLAGS=CFLAGS.format(src=src), LDFLAGS="-s",
        # Only our own zlib/OpenSSL: never the host's libraries through pkg-config.
        PKG_CONFIG_PATH="", PKG_CONFIG_LIBDIR=str(deps / "lib" / "pkgconfig"),
        ZLIB_CFLAGS=f"-I{deps}/include", ZLIB_LIBS=f"-L{deps}/lib -lz",
    )  # fmt: skip
    for module in DISABLED_MODULES:
        env[f"py_cv_module_{module}"] = "n/a"
    cmd = ["./configure", "--prefix=/python", "--without-ensurepip", "--disable-test-modules",
           f"--with-openssl={deps}", "--with-openssl-rpath=no", "--without-static-libpython",
           "--with-lto=no", "--without-doc-strings", *CONFIGURE_EXTRA]  # fmt: skip
    if build_python is not None:
        cmd += ["--build=x86_64-pc-linux-gnu", f"--host={TARGETS[arch]['gnu']}",
                f"--with-build-python={build_python}"]  # fmt: skip
        # Facts about the target that a cross configure cannot probe by running a program.
        env.update(ac_cv_file__dev_ptmx="yes", ac_cv_file__dev_ptc="no",
                   ac_cv_buggy_getaddrinfo="no")  # fmt: skip
    run(cmd, src, log, env)
    run(["make", f"-j{JOBS}"], src, log, env)
    # The install's bytecode (3 optimisation levels, whole stdlib) would be thrown away: the layer
    # build prunes, then compiles once. The Makefile ignores compileall's exit status, so an
    # option compileall rejects skips that step.
    run(["make", "install", f"DESTDIR={install}", "COMPILEALL_OPTS=--skip"], src, log, env)
    _scrub_build_paths(install, {str(src): "/src", str(deps): DEPS_PREFIX,
                                 str(ws.work.parent): BUILD_ROOT_NAME})


def _scrub_compiler_flags(header: Path, names: dict[str, str]) -> None:
    """Rewrites mkbuildinf.pl's `compiler_flags` (one character literal per byte) with `names`
    in place of the paths they map."""
    text = header.read_text()
    start = text.index("compiler_flags[] = {") + len("compiler_flags[] = {")
    end = text.index("'\\0'", start)
    chars = re.findall(r"'(\\.|[^\\'])',", text[start:end])
    flags = "".join(c[-1] for c in chars)
    for path, name in sorted(names.items(), key=lambda item: -len(item[0])):
        flags = flags.replace(path, name)
    literals = "".join("'\\" + c + "'," if c in "\\'" else f"'{c}'," for c in flags)
    header.write_text(text[:start] + "\n    " + literals + "\n    " + text[end:])


def _scrub_build_paths(install: Path, names: dict[str, str]) -> None:
    """sysconfig's data records the configure command and flags, with the cache's paths in
    them: those paths are replaced by fixed names (the layer never builds extensions)."""
    for data in install.rglob("_sysconfigdata_*.py"):
        text = data.read_text()
        for path, name in sorted(names.items(), key=lambda item: -len(item[0])):
            text = text.replace(path, name)
        data.write_text(text)


def build(arch: str, quiet: bool = False) -> Path:
    """The cached install tree for `arch` (its `python` directory), built when missing."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    sources = fetch_sources(root)
    key = build_key(arch, sources)
    final = root / f"cpython-{arch}-{key}"
    if (final / "python" / "bin" / f"python{PYTHON_MINOR}").is_file():
        return final / "python"
    # One builder per tree: a concurrent build of the same tree (CI and a test, or the arm64
    # build waiting for its x86_64 build Python) waits here, then finds the result.
    with (root / f"cpython-{arch}-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "python" / "bin" / f"python{PYTHON_MINOR}").is_file():
            _build_locked(arch, quiet, root, sources, final)
    return final / "python"


def _build_locked(
    arch: str, quiet: bool, root: Path, sources: dict[str, Path], final: Path
) -> None:
    key = final.name.rsplit("-", 1)[1]
    work = root / f"work-{arch}-{key}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ws = Workspace(work, root / f"deps-{arch}-{deps_key(arch, sources)}")
    deps_done = ws.deps / "build-times.json"
    times: dict[str, object] = json.loads(deps_done.read_text()) if deps_done.is_file() else {}

    def step(name: str, action: Callable[[], None]) -> None:
        if not quiet:
            print(f"build_python [{arch}]: {name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        action()
        times[name] = round(time.monotonic() - start, 1)

    zig = ensure_zig(root)
    tc = make_toolchain(zig, TARGETS[arch]["zig"], work / "toolchain", root / "zig-cache")
    if not deps_done.is_file():
        shutil.rmtree(ws.deps, ignore_errors=True)
        step("zlib", lambda: build_zlib(tc, sources["zlib"], ws))
        step("openssl", lambda: build_openssl(tc, arch, sources["openssl"], ws))
        deps_done.write_text(json.dumps(times, indent=1) + "\n")  # written last: complete
    build_python = None
    if arch != "x86_64":
        # aarch64 is cross-compiled: configure needs a runnable CPython of the same version
        # (it freezes the bootstrap modules with it). SPLUNK_LAYER_BUILD_PYTHON names one to use
        # instead of building the x86_64 interpreter first.
        given = os.environ.get("SPLUNK_LAYER_BUILD_PYTHON")
        build_python = Path(given) if given else build("x86_64", quiet) / "bin" / "python3.13"
        # The build runs the new stdlib on it: only the very same release works (3.13.0 fails
        # on 3.13.5's linecache, for one).
        wanted = sources["python"].name.split("_")[1].split(".orig")[0]
        found = subprocess.run([str(build_python), "-c", "import platform as p; "
                                "print(p.python_version())"], capture_output=True, text=True,
                               check=False).stdout.strip()  # fmt: skip
        if found != wanted:
            raise BuildError(f"build Python {build_python} is {found or 'unusable'}, not {wanted}")
    step("cpython", lambda: build_cpython(tc, arch, sources["python"], ws, build_python))
    (ws.install / "python" / "build-times.json").write_text(json.dumps(times, indent=1) + "\n")
    shutil.copyfile(ws.log, ws.install / "python" / "build.log")
    partial = root / f"cpython-{arch}-{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    ws.install.rename(partial)
    partial.rename(final)
    shutil.rmtree(work, ignore_errors=True)


# What the layer's interpreter leaves out of the stdlib: GUI, REPL, tests, packaging and servers
# the extension never uses. multiprocessing goes too: Lambda has no /dev/shm.
PRUNED_STDLIB = frozenset({
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "pydoc_data", "unittest", "venv",
    "sqlite3", "dbm", "curses", "xmlrpc", "wsgiref", "multiprocessing", "asyncio", "ctypes",
    "_pyrepl", "lib2to3", "xml", "site-packages", "__phello__", "pydoc.py", "doctest.py",
    "turtle.py", "tabnanny.py", "pdb.py", "cProfile.py", "profile.py", "trace.py", "timeit.py",
    "imaplib.py", "poplib.py", "smtplib.py", "ftplib.py", "nntplib.py", "mailbox.py",
    "webbrowser.py", "zipapp.py", "tomllib", "_pydecimal.py", "config-3.13-x86_64-linux-gnu",
    "config-3.13-aarch64-linux-gnu", "LICENSE.txt",
})  # fmt: skip
# The stdlib's bytecode is compiled as `python -OO` would (no docstrings, no asserts), the
# level the launcher runs the bundled interpreter at. Sourceless bytecode beside its module
# (`json/__init__.pyc`) is loaded whatever the interpreter's level, so this one level serves all.
STDLIB_OPTIMIZE = 2
# Must exist even empty: without it getpath warns about missing platform libraries.
KEPT_EMPTY = "lib-dynload"


def runtime_dir(built: Path) -> Path:
    """Where the pruned tree of the install tree `built` lives (named after the pruning and
    the bytecode's optimisation level)."""
    blob = (json.dumps(sorted(PRUNED_STDLIB)).encode() + RECIPE_VERSION.encode()
            + f"-o{STDLIB_OPTIMIZE}".encode())
    return built.parent / f"runtime-{hashlib.sha256(blob).hexdigest()[:12]}"


def cached_runtime(arch: str) -> Path | None:
    """The pruned tree for `arch` if the cache holds it (and the x86_64 one that compiles)."""
    root = cache_root()
    sources = cached_sources(root)
    if len(sources) < len(SOURCES):
        return None
    found = None
    for needed in {arch, "x86_64"}:
        tree = runtime_dir(root / f"cpython-{needed}-{build_key(needed, sources)}" / "python")
        if not (tree / "bin" / "python3").is_file():
            return None
        if needed == arch:
            found = tree
    return found


# Each upstream source's license, shipped beside the interpreter built from it: the PSF license
# asks that its notice be kept with the binary, Apache-2.0 (OpenSSL 3) that a copy go with it.
LICENSE_FILES = {"python": "LICENSE", "openssl": "LICENSE.txt", "zlib": "LICENSE"}


def licenses() -> Path:
    """A folder of the upstream sources' licenses (`python.txt`, `openssl.txt`, `zlib.txt`),
    read from their tarballs once and cached beside the builds."""
    sources = fetch_sources(cache_root())
    key = hashlib.sha256(json.dumps(sorted(p.name for p in sources.values())).encode())
    final = cache_root() / f"licenses-{key.hexdigest()[:16]}"
    # One writer at a time: both layers are built at once (prepare_layers.sh).
    with final.with_name(final.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((final / f"{name}.txt").is_file() for name in LICENSE_FILES):
            shutil.rmtree(final, ignore_errors=True)
            final.mkdir(parents=True)
            for name, member_name in LICENSE_FILES.items():
                (final / f"{name}.txt").write_bytes(_top_file(sources[name], member_name))
    return final


def _top_file(tarball: Path, name: str) -> bytes:
    """The file `name` at the top of a source tarball's tree (`<package>-<version>/<name>`).
    With tar(1): the layer's own interpreter, which runs the layer build, has neither bz2 nor
    lzma."""
    listing = subprocess.run(["tar", "-tf", str(tarball)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    member = next((m for m in listing if m.count("/") == 1 and m.endswith("/" + name)), None)
    data = b"" if member is None else subprocess.run(
        ["tar", "-xOf", str(tarball), member], capture_output=True, check=True).stdout
    if not data:
        raise BuildError(f"no {name} at the top of {tarball.name}")
    return data


def runtime(arch: str, quiet: bool = False) -> Path:
    """The pruned, precompiled interpreter tree the layer ships (`bin/python3`, `lib/...`).

    Cached next to the build it comes from. The stdlib ships as sourceless, unchecked-hash
    bytecode: /opt is read-only, so source would only cost size, and pycs without timestamps
    keep the tree reproducible.
    """
    built = build(arch, quiet)
    final = runtime_dir(built)
    if (final / "bin" / "python3").is_file():
        return final
    # One maker per tree: two builds at once (both layers of prepare_layers.sh, each building
    # the arm64 tree) once shared one `.partial` folder, and one renamed a tree the other had
    # half deleted (4 of 152 stdlib files: an interpreter without `encodings`).
    with final.with_name(final.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "bin" / "python3").is_file():
            _make_runtime(arch, quiet, built, final)
    return final


def _make_runtime(arch: str, quiet: bool, built: Path, final: Path) -> None:
    compiler = built if arch == "x86_64" else build("x86_64", quiet)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "bin").mkdir(parents=True)
    shutil.copy2(built / "bin" / f"python{PYTHON_MINOR}", partial / "bin" / "python3")
    stdlib = built / "lib" / f"python{PYTHON_MINOR}"
    target = partial / "lib" / f"python{PYTHON_MINOR}"
    shutil.copytree(
        stdlib, target,
        ignore=lambda d, names: [n for n in names if n in PRUNED_STDLIB or n == "__pycache__"]
        if Path(d) == stdlib else [n for n in names if n == "__pycache__"],
    )  # fmt: skip
    for path in target.rglob("*"):
        if path.is_file() and path.suffix not in (".py",):
            path.unlink()
    (target / KEPT_EMPTY).mkdir(exist_ok=True)
    # -b: legacy placement (module.pyc beside module.py), importable once the source is gone.
    subprocess.run(
        [str(compiler / "bin" / f"python{PYTHON_MINOR}"), "-S", "-m", "compileall", "-q", "-b",
         "-o", str(STDLIB_OPTIMIZE), "--invalidation-mode", "unchecked-hash",
         "-d", f"/python/lib/python{PYTHON_MINOR}", str(target)],
        check=True, env={"PATH": "/usr/bin:/bin", "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
    )  # fmt: skip
    for source in target.rglob("*.py"):
        source.unlink()
    partial.rename(final)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(TARGETS), default="x86_64")
    parser.add_argument("--full", action="store_true",
                        help="the whole install tree, not the pruned layer runtime")
    parser.add_argument("--fetch", action="store_true",
                        help="only download the sources and Zig (before parallel builds)")
    args = parser.parse_args(argv)
    try:
        if args.fetch:
            root = cache_root()
            root.mkdir(parents=True, exist_ok=True)
            fetch_sources(root)
            print(ensure_zig(root))
            return 0
        print(build(args.arch) if args.full else runtime(args.arch))
    except BuildError as err:
        print(f"build_python: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
