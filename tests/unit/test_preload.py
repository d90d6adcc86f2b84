"""The main process's preload of the children's modules (ext/main/preload.py), each probe in a
fresh `python -S`: what a process has imported cannot be undone in the test's own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import urllib3

from ext.main import preload

REPO = Path(__file__).resolve().parents[2]
# The layer's sys.path: the extension and its two dependencies, no site-packages.
PATHS = [str(REPO), str(Path(msgspec.__file__).parents[1]), str(Path(urllib3.__file__).parents[1])]


def run_probe(code: str) -> object:
    probe = f"import json, sys\nsys.path[:0] = {PATHS!r}\n{code}"
    done = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_children_modules_load_without_importlib_metadata() -> None:
    out = run_probe(
        "from ext.main import preload\n"
        "preload.import_children_modules()\n"
        "import urllib3\n"
        "pool = urllib3.PoolManager()\n"
        "print(json.dumps({'metadata': 'importlib.metadata' in sys.modules,\n"
        "                  'zipfile': 'zipfile' in sys.modules,\n"
        "                  'probe': hasattr(sys.modules['urllib3.http2'], 'probe'),\n"
        "                  'http2_init_ran': hasattr(sys.modules['urllib3.http2'],\n"
        "                                            'inject_into_urllib3'),\n"
        "                  'sender': 'ext.sender.process' in sys.modules,\n"
        "                  'listener': 'ext.listener.process' in sys.modules}))")
    assert out == {"metadata": False, "zipfile": False, "probe": True, "http2_init_ran": False,
                   "sender": True, "listener": True}


def test_without_the_preload_urllib3_does_import_importlib_metadata() -> None:
    # The cut above is real only while urllib3 does this: the day it stops, drop the entry.
    out = run_probe("import urllib3\nprint(json.dumps('importlib.metadata' in sys.modules))")
    assert out is True


def test_register_without_init_leaves_loaded_and_unknown_packages_alone() -> None:
    out = run_probe(
        "from ext.main.preload import register_without_init\n"
        "found = [register_without_init('no_such_package_xyz.sub'),\n"
        "         register_without_init('urllib3.no_such_subpackage'),\n"
        "         register_without_init('urllib3.connection')]  # a module, not a package\n"
        "import urllib3\n"
        "found.append(register_without_init('urllib3.http2'))\n"
        "found.append(hasattr(sys.modules['urllib3.http2'], 'inject_into_urllib3'))\n"
        "print(json.dumps(found))")
    assert out == [False, False, False, False, True]


def test_the_skipped_inits_are_subpackages_of_top_level_packages() -> None:
    for name in preload.UNUSED_PACKAGE_INITS:
        assert name.count(".") == 1, name


def test_the_preload_runs_no_collection_and_leaves_the_collector_as_it_found_it() -> None:
    # Collector back on with everything loaded still young: the next allocation collected it all.
    out = run_probe(
        "import gc\n"
        "from ext.main import preload\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(phase))\n"
        "preload.import_children_modules()\n"
        "after_on = gc.isenabled()\n"
        "young = [[] for _ in range(100)]  # what main allocates next: no collection of it all\n"
        "during = len(runs)\n"
        "gc.disable()\n"
        "preload.import_children_modules()  # loaded already: nothing to do but the switch\n"
        "print(json.dumps([during, after_on, gc.isenabled(),\n"
        "                  'ext.sender.token_source' in sys.modules]))")
    assert out == [0, True, False, True]


def test_the_same_imports_with_the_collector_on_do_collect() -> None:
    # What the test above asserts is a change only while these imports make collections.
    out = run_probe(
        "import gc\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(phase))\n"
        "import ext.listener.process, ext.sender.process\n"
        "print(json.dumps(len(runs)))")
    assert isinstance(out, int) and out > 0


def test_register_without_init_says_when_it_registered() -> None:
    out = run_probe(
        "from ext.main.preload import register_without_init\n"
        "first = register_without_init('urllib3.http2')\n"
        "again = register_without_init('urllib3.http2')\n"
        "print(json.dumps([first, again, 'urllib3.http2' in sys.modules]))")
    assert out == [True, False, True]
