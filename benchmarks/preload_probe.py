"""The main process's import work before its first event/next, on the layer's own interpreter
(benchmarks/ab.py's `preload`): a version of the extension built into an x86_64 layer, unzipped,
and timed in fresh starts.

What is timed (CPU of the process, `time.process_time`), in a `python3 -E -S -OO` of the bundled
interpreter started in the layer's code folder, as the launcher starts it: the imports main makes
before register, the preload of the children's modules (ext/main/preload.py), a thousand small
allocations after it (so a collection the preload leaves due is counted) and the HEC pool the
sender makes after the fork (its host check compiles what urllib3 left to its first use). The
cold start pays this once, ~14x its whole-core time at a 128 MB CPU share; the rest of the init
(the interpreter's own start, register, the forks) is not in it.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ext.local.layer import EXTENSION_NAME, unpack_layer

PROBE = (
    "import sys, time\n"
    "started = time.process_time()\n"
    "sys.path.insert(0, '')\n"
    "import ext.__main__, ext.main.extensions_api, ext.main.lifecycle\n"
    "from ext.main import preload\n"
    "preload.import_children_modules()\n"
    "young = [[] for _ in range(1000)]\n"
    "import urllib3\n"
    "urllib3.HTTPSConnectionPool('hec.example.com', 443)\n"
    "print((time.process_time() - started) * 1000, len(sys.modules))\n"
)
_LAYERS: dict[Path, Path] = {}  # a checkout -> its unzipped layer's code folder


def layer_code(tree: Path) -> Path:
    """The code folder of `tree`'s x86_64 layer, built and unzipped once per run (removed at
    exit); the bundled interpreter comes from the layer cache, so a build takes seconds."""
    tree = tree.resolve()
    if tree not in _LAYERS:
        out = Path(tempfile.mkdtemp(prefix="preload-layer-"))
        atexit.register(shutil.rmtree, out, True)
        zip_path = out / "layer.zip"
        build = [sys.executable, str(tree / "scripts" / "build_layer.py"), "--arch", "x86_64",
                 "--out", str(zip_path)]
        subprocess.run(build, check=True, capture_output=True)
        unpack_layer(zip_path, out / "opt")
        _LAYERS[tree] = out / "opt" / EXTENSION_NAME
    return _LAYERS[tree]


def run(code: Path, probe: str = PROBE) -> str:
    """What `probe` prints, run as the launcher starts the layer's interpreter in `code`."""
    done = subprocess.run([str(code / "python" / "bin" / "python3"), "-E", "-S", "-OO", "-c",
                           probe], cwd=code, capture_output=True, text=True, check=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    return done.stdout


def preload_ms(code: Path) -> tuple[float, int]:
    """One start: the CPU ms of the work above, and how many modules it left loaded."""
    ms, modules = run(code).split()
    return float(ms), int(modules)
