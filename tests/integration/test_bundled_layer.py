"""The layer with its own Python (issue 10): portable ELF files, no python3 needed, TLS, arm64.

Builds the real layers with scripts/build_layer.py (the interpreter comes from the cache that
scripts/build_python.py fills; see bundled_layer.py for the skip rule) and runs them: the x86_64
extension end to end in the emulator with a custom-runtime (shell) function and no python3 on
PATH, the arm64 interpreter under qemu-aarch64.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver, HecToken
from ext.sender import trust
from scripts import regex_snapshot
from tests.integration.bundled_layer import (
    NAME,
    REPO,
    Layer,
    build_bundled_layer,
    host_pythons,
    make_ca,
    prebuilt_or_build,
    python_version,
)
from tests.integration.conftest import TOKEN
from tests.integration.elf_versions import is_elf, machine, max_glibc, version_needs
from tests.integration.extension_harness import expected_lines, lines_of, platform_events, sandbox

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

ELF_MACHINE = {"x86_64": 62, "arm64": 183}
AMAZON_LINUX_BUNDLE = "pki/tls/certs/ca-bundle.crt"  # below /etc
# A function with no Python: its bootstrap needs sh (by absolute path), curl, and sleep.
FUNCTION_TOOLS = ("curl", "sleep")


class Layers(dict[str, Layer]):
    """Each architecture's layer, built (from the cache) on first use only, or the one ./dev test
    built for this checkout (bundled_layer.py)."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out

    def __missing__(self, arch: str) -> Layer:
        self[arch] = prebuilt_or_build(arch, self.out / f"{arch}.zip")
        return self[arch]


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Layer]:
    return Layers(tmp_path_factory.mktemp("bundled"))


@pytest.mark.parametrize("arch", sorted(ELF_MACHINE))
def test_every_elf_file_needs_at_most_glibc_2_26(layers: dict[str, Layer], arch: str) -> None:
    layer = layers[arch]
    elves = {}
    with zipfile.ZipFile(layer.zip_path) as archive:
        for info in archive.infolist():
            data = archive.read(info) if not info.is_dir() else b""
            if is_elf(data):
                elves[info.filename] = data
    # The interpreter (every stdlib module built in) and msgspec's compiled module, no more.
    assert f"{NAME}/python/bin/python3" in elves
    assert any(name.startswith(f"{NAME}/msgspec/_core.cpython-313-") for name in elves)
    for name, data in elves.items():
        assert machine(data) == ELF_MACHINE[arch], name
        needs = version_needs(data)
        assert max_glibc(needs) <= (2, 26), (name, needs)
        # Only glibc itself: no OpenSSL, zlib or libpython from the host.
        libraries = set(needs) - {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2",
                                  "libutil.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
        assert not libraries, (name, libraries)
    print(f"layer {arch}: zipped {layer.zip_path.stat().st_size} bytes, {len(elves)} ELF files")


@pytest.mark.parametrize("arch", sorted(ELF_MACHINE))
def test_the_licenses_of_what_the_interpreter_is_built_from_go_with_it(
    layers: dict[str, Layer], arch: str,
) -> None:
    # The PSF license asks that its notice be kept with the binary, Apache-2.0 (OpenSSL 3, linked
    # in) that a copy go with it; zlib's, linked in too.
    with zipfile.ZipFile(layers[arch].zip_path) as archive:
        texts = {name: archive.read(f"{NAME}/python/licenses/{name}.txt").decode()
                 for name in ("python", "openssl", "zlib")}
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in texts["python"]
    assert "Apache License" in texts["openssl"] and "Version 2.0" in texts["openssl"]
    assert "Jean-loup Gailly" in texts["zlib"]


@pytest.mark.parametrize("arch", sorted(ELF_MACHINE))
def test_a_second_build_by_another_host_python_is_byte_identical(
    layers: dict[str, Layer], arch: str, tmp_path: Path
) -> None:
    """Reproducible, and the host Python's version leaves no trace: the second build runs on the
    newest other Python version this machine has (the same one where it has no other)."""
    others = [p for p in host_pythons() if python_version(p) != python_version(sys.executable)]
    python = others[-1] if others else sys.executable
    again = build_bundled_layer(arch, tmp_path / "again.zip", python)
    print(f"{arch}: built again by Python {python_version(python)} ({python})")
    # Not `assert a == b` on the bytes: pytest's diff of two 10 MB sequences runs for an hour.
    if again.zip_path.read_bytes() != layers[arch].zip_path.read_bytes():
        differing = zip_differences(layers[arch].zip_path, again.zip_path)
        pytest.fail(f"the second build differs: {differing}")


def zip_differences(first: Path, second: Path) -> list[str]:
    """The entries two zips do not share byte for byte (content, or the zip's own metadata)."""
    import zipfile

    with zipfile.ZipFile(first) as a, zipfile.ZipFile(second) as b:
        entries_a = {i.filename: (i.CRC, i.date_time, i.external_attr) for i in a.infolist()}
        entries_b = {i.filename: (i.CRC, i.date_time, i.external_attr) for i in b.infolist()}
    names = sorted(set(entries_a) | set(entries_b))
    return [n for n in names if entries_a.get(n) != entries_b.get(n)][:20] or ["zip metadata"]


def no_python_path(folder: Path) -> str:
    """A PATH holding only the tools the shell function needs, checked to hold no python."""
    folder.mkdir(parents=True, exist_ok=True)
    for tool in FUNCTION_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed by function/bootstrap"
        (folder / tool).symlink_to(found)
    path = str(folder)
    for python in ("python3", "python", "python3.13", "python3.11"):
        assert shutil.which(python, path=path) is None
    return path


def tls_hec(folder: Path, cert: Path, key: Path) -> HecReceiver:
    tokens = (HecToken(name="lambda", value=TOKEN, indexes=("main", "lambda")),)
    return HecReceiver(folder / "hec.sqlite", tokens=tokens, tls_cert=cert, tls_key=key)


def test_unzipped_layer_runs_end_to_end_with_a_shell_function_and_no_python(
    layers: dict[str, Layer], tmp_path: Path
) -> None:
    opt = layers["x86_64"].unpack(tmp_path / "opt")
    ca, cert, key = make_ca(tmp_path / "pki")
    decoy, _, _ = make_ca(tmp_path / "decoy", "decoy")
    # Among many CAs, as a system bundle: the bundled 3.13 chooses the CA by a probe handshake.
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"".join(make_ca(tmp_path / f"other{n}", f"other {n}")[0].read_bytes()
                                for n in range(trust.LOAD_WHOLE_MAX)) + ca.read_bytes())
    env = {
        "PATH": no_python_path(tmp_path / "bin"),
        "SPLUNK_HEC_TOKEN": TOKEN,
        # Every line before its freeze is what `sync` promises (the default, adaptive, lets dense
        # invocations' lines ride with the next one).
        "SPLUNK_FLUSH": "sync",
        # SPLUNK_CA_BUNDLE wins over the OpenSSL default, even one pointing at another CA.
        "SPLUNK_CA_BUNDLE": str(bundle),
        "SSL_CERT_FILE": str(decoy),
        # The function's Python settings never reach the bundled interpreter: this one alone
        # would hide its stdlib; a urllib3 in the working directory would shadow its own.
        "PYTHONPLATLIBDIR": "lib64",
        "PYTHONPATH": str(tmp_path / "function-code"),
    }
    (tmp_path / "function-code" / "urllib3").mkdir(parents=True)
    (tmp_path / "function-code" / "urllib3" / "__init__.py").write_text("raise ImportError\n")
    counts = [1 + (n * 37) % 60 for n in range(20)]
    with tls_hec(tmp_path, cert, key) as hec:
        env["SPLUNK_HOST"] = hec.url
        assert hec.url.startswith("https://")
        with sandbox(opt, env, runtime="provided.al2023") as sb:
            for n, count in enumerate(counts):
                result = sb.invoke({"lines": count, "tag": f"c{n}"})
                assert result.status == "success", result
                # Frozen now: the lines must be in HEC already.
                assert lines_of(hec, f"c{n}") == expected_lines(f"c{n}", count)
            shutdown = sb.shutdown()
        assert shutdown.extensions[NAME].exited
        for n, count in enumerate(counts):
            assert lines_of(hec, f"c{n}") == expected_lines(f"c{n}", count)
        kinds = collections.Counter(str(e["type"]) for e in platform_events(hec))
    assert kinds["platform.runtimeDone"] == len(counts)
    assert kinds["platform.report"] == len(counts)  # the last one drained at SHUTDOWN


def overlay_launcher(opt: Path, etc_extra: Path, wrapped: Path) -> Path:
    """An /opt whose only extension runs the real launcher in a mount namespace where /etc also
    shows `etc_extra` (an overlay: the host's /etc is not changed)."""
    (opt / "extensions").mkdir(parents=True)
    wrapper = opt / "extensions" / NAME
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {unshare} -m /bin/sh -c '{mount} -t overlay overlay "
        f"-o lowerdir={etc_extra}:/etc /etc && exec {wrapped}/extensions/{NAME}'\n"
    )
    wrapper.chmod(0o755)
    return opt


def can_overlay_etc() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as empty:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c",
             f"mount -t overlay overlay -o lowerdir={empty}:/etc /etc"],
            capture_output=True, check=False,
        )  # fmt: skip
    return probe.returncode == 0


@pytest.mark.skipif(not can_overlay_etc(), reason="needs root and overlay mounts (unshare -m)")
@pytest.mark.parametrize("ca_placed", [True, False])
def test_tls_finds_the_ca_where_amazon_linux_keeps_its_bundle(
    layers: dict[str, Layer], tmp_path: Path, ca_placed: bool
) -> None:
    assert not Path("/etc/pki/tls/cert.pem").exists(), "this host has an Amazon Linux bundle"
    real_opt = layers["x86_64"].unpack(tmp_path / "real")
    ca, cert, key = make_ca(tmp_path / "pki")
    etc_extra = tmp_path / "etc"
    if ca_placed:
        (etc_extra / AMAZON_LINUX_BUNDLE).parent.mkdir(parents=True)
        shutil.copyfile(ca, etc_extra / AMAZON_LINUX_BUNDLE)
    else:
        etc_extra.mkdir()
    opt = overlay_launcher(tmp_path / "opt", etc_extra, real_opt)
    env = {"PATH": no_python_path(tmp_path / "bin"), "SPLUNK_HEC_TOKEN": TOKEN,
           "SPLUNK_FLUSH_BUDGET_MS": "1500", "SPLUNK_FLUSH": "sync"}  # fmt: skip
    with tls_hec(tmp_path, cert, key) as hec:
        env["SPLUNK_HOST"] = hec.url
        with sandbox(opt, env, runtime="provided.al2023") as sb:
            assert sb.invoke({"lines": 5, "tag": "al"}).status == "success"
            delivered = lines_of(hec, "al")
            sb.shutdown()
    # Without the CA in the system bundle the certificate is never trusted: nothing arrives.
    assert delivered == (expected_lines("al", 5) if ca_placed else [])


def arm64_runner() -> list[str]:
    """The command prefix that runs an arm64 program here (qemu-user); skips without one."""
    qemu, sysroot = shutil.which("qemu-aarch64"), Path("/usr/aarch64-linux-gnu")
    if qemu is None or not (sysroot / "lib").is_dir():
        pytest.skip("needs qemu-aarch64 (qemu-user) and an arm64 glibc (libc6-arm64-cross)")
    return [qemu, "-L", str(sysroot)]


ARM64_PROBE = """
import json, ssl, sys
import msgspec, urllib3
assert msgspec.json.decode(msgspec.json.encode({"a": [1]})) == {"a": [1]}
pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=sys.argv[2])
body = json.dumps({"event": "from arm64"}).encode()
reply = pool.request("POST", sys.argv[1] + "/services/collector/event", body=body,
                     headers={"Authorization": "Splunk " + sys.argv[3]}, retries=False)
print(reply.status, ssl.OPENSSL_VERSION, sys.version.split()[0], sys.platform)
"""


def test_arm64_interpreter_under_qemu_imports_and_speaks_tls(
    layers: dict[str, Layer], tmp_path: Path
) -> None:
    qemu = arm64_runner()
    opt = layers["arm64"].unpack(tmp_path / "opt")
    ca, cert, key = make_ca(tmp_path / "pki")
    python = opt / NAME / "python" / "bin" / "python3"
    with tls_hec(tmp_path, cert, key) as hec:
        result = subprocess.run(
            [*qemu, str(python), "-S", "-c", ARM64_PROBE, hec.url, str(ca), TOKEN],
            env={"PYTHONPATH": str(opt / NAME), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        stored = [e.event for e in hec.events(limit=10)]
    assert result.returncode == 0, result.stderr
    status, details = result.stdout.split(maxsplit=1)
    assert status == "200", result.stdout
    assert details.startswith("OpenSSL 3."), details
    assert details.split()[-2:][0].startswith("3.13."), details
    assert details.split()[-1] == "linux"
    assert stored == ['"from arm64"']


@pytest.mark.parametrize("arch", sorted(ELF_MACHINE))
def test_the_eval_loop_dispatches_with_computed_gotos(
    layers: dict[str, Layer], arch: str, tmp_path: Path
) -> None:
    # A cross-compiled CPython falls back to the switch unless configure is told (the arm64
    # build did, before build_python.py said so).
    python = layers[arch].unpack(tmp_path / "opt") / NAME / "python" / "bin" / "python3"
    probe = "import sysconfig; print(sysconfig.get_config_var('HAVE_COMPUTED_GOTOS'))"
    command = [str(python), "-S", "-c", probe]
    if arch != "x86_64":
        command[:0] = arm64_runner()
    result = subprocess.run(command, env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                            text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_function_bootstrap_is_executable_and_shell() -> None:
    bootstrap = REPO / "function" / "bootstrap"
    assert os.access(bootstrap, os.X_OK)
    assert bootstrap.read_text().startswith("#!/bin/sh\n")


# Imports every shipped ext module (each of them must find the stdlib modules it needs in the
# pruned stdlib), then reports where its dependencies and the stdlib came from.
IMPORT_PROBE = """
import importlib, pkgutil, ssl, sys
import ext, msgspec, urllib3
for module in pkgutil.walk_packages(ext.__path__, "ext."):
    importlib.import_module(module.name)
import urllib3.contrib  # the package itself; its optional backends need other libraries
import json  # os is frozen into the interpreter; json comes from the stdlib directory
print(msgspec.__file__, urllib3.__file__, json.__file__, sys.executable, sep="\\n")
"""


def test_every_ext_module_imports_with_the_pruned_stdlib(
    layers: dict[str, Layer], tmp_path: Path
) -> None:
    opt = layers["x86_64"].unpack(tmp_path / "opt")
    root = opt / NAME
    result = subprocess.run(
        [str(root / "python" / "bin" / "python3"), "-S", "-c", IMPORT_PROBE],
        env={"PYTHONPATH": str(root), "PATH": "/nonexistent"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # e.g. no "Could not find platform libraries" warning
    msgspec_file, urllib3_file, json_file, executable = result.stdout.splitlines()
    assert msgspec_file.startswith(f"{root}/msgspec/")
    assert urllib3_file.startswith(f"{root}/urllib3/")
    assert json_file == f"{root}/python/lib/python3.13/json/__init__.pyc"  # sourceless
    assert executable == f"{root}/python/bin/python3"


# As the launcher runs it (-S -E -OO): every module the extension loads must come from bytecode the
# layer ships for that level (/opt is read-only: a missing one is compiled at every cold start),
# and the stdlib's bytecode carries no docstrings whatever the level.
OPTIMIZED_PROBE = """
import importlib, json, os, pkgutil, sys
import ext
for module in pkgutil.walk_packages(ext.__path__, "ext."):
    importlib.import_module(module.name)
from ext.main import preload
preload.import_children_modules()
root = sys.argv[1]
ours = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith(
    root + "/") and not m.__file__.startswith(root + "/python/")]
print(json.dumps({"optimize": sys.flags.optimize, "modules": len(ours),
                  "compiled_at_start": sorted(m.__name__ for m in ours
                                              if m.__file__.endswith(".py")
                                              and not os.path.isfile(m.__cached__)),
                  "stdlib_docstrings": [m.__name__ for m in (json, importlib) if m.__doc__]}))
"""


def test_as_the_launcher_runs_it_every_module_comes_from_shipped_bytecode(
    layers: dict[str, Layer], tmp_path: Path
) -> None:
    import json

    opt = layers["x86_64"].unpack(tmp_path / "opt")
    root = opt / NAME
    launcher = (opt / "extensions" / NAME).read_text()
    assert '-S $isolate $optimize -m ext "$name"' in launcher and "optimize=-OO" in launcher
    result = subprocess.run(
        # -B: writes no bytecode, as on Lambda's read-only /opt (here it would fill the gaps).
        [str(root / "python" / "bin" / "python3"), "-S", "-OO", "-B", "-c",
         OPTIMIZED_PROBE, str(root)],
        env={"PYTHONPATH": str(root), "PATH": "/nonexistent"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["optimize"] == 2
    assert found["modules"] > 50  # ext, msgspec and urllib3
    assert found["compiled_at_start"] == []
    assert found["stdlib_docstrings"] == []


def test_the_preload_probe_runs_on_the_layer_and_loads_no_calendar(
    layers: dict[str, Layer], tmp_path: Path
) -> None:
    """benchmarks/preload_probe.py (benchmarks.ab preload) times main's imports as the launcher
    starts the layer's interpreter; on its Python 3.13 nothing loads calendar or locale any more
    (3.11's email package did, for the same cold start)."""
    from benchmarks import preload_probe

    root = layers["x86_64"].unpack(tmp_path / "opt") / NAME
    ms, modules = preload_probe.preload_ms(root)
    assert ms > 0 and modules > 150
    probe = preload_probe.PROBE.replace(
        "print((time.process_time() - started) * 1000, len(sys.modules))",
        "print(sorted({'calendar', 'locale', 'ext.sender.process'} & set(sys.modules)))")
    assert preload_probe.run(root, probe).strip() == "['ext.sender.process']"


# Main's cold start as the build records it (scripts/regex_snapshot.py), counting what `re`
# compiles in it.
REGEX_PROBE = (
    "import sys\n"
    "sys.path.insert(0, '')\n"
    "from re import _compiler\n"
    "compile_pattern, compiled = _compiler.compile, []\n"
    "_compiler.compile = lambda p, flags=0: compiled.append(p) or compile_pattern(p, flags)\n"
    f"{regex_snapshot.COLD_START}"
    "_compiler.compile = compile_pattern\n"
    "import re\n"
    "unequal = [key[1] for key, p in re._cache.items() if compile_pattern(key[1], key[2]) != p]\n"
    "print(repr([compiled, unequal, len(re._cache)]))\n"
)


@pytest.mark.parametrize("arch", sorted(ELF_MACHINE))
def test_the_cold_start_compiles_no_regex_and_those_it_finds_are_re_s_own(
    layers: dict[str, Layer], arch: str, tmp_path: Path
) -> None:
    """The regex cache (ext/main/regex_cache.py): recorded by the x86_64 interpreter for both
    layers, used by each one's own, as the launcher starts it."""
    import ast

    root = layers[arch].unpack(tmp_path / "opt") / NAME
    command = [str(root / "python" / "bin" / "python3"), "-E", "-S", "-OO", "-B", "-c",
               REGEX_PROBE]  # fmt: skip
    if arch != "x86_64":
        command[:0] = arm64_runner()
    result = subprocess.run(command, cwd=root, env={"PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    compiled, unequal, cached = ast.literal_eval(result.stdout)
    assert (compiled, unequal) == ([], [])
    assert cached > 20
