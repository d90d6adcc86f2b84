"""Imports the children's modules in the main process, before it forks them, and nothing more.

Run once, after register and the subscription (neither waits for it). Every module imported here
is paid for once: its pages are shared by the three processes and `gc.freeze` (supervisor.spawn)
keeps the collector off them, where a child that imported it itself would pay again. What no
process ever runs still costs its memory once, so what a dependency imports without need is left
out (benchmarks/bench_memory.py measures each import).
"""

from __future__ import annotations

import gc
import sys

from ext.main import regex_cache

# Packages whose `__init__` the extension does not need while it needs their submodules:
# urllib3.connection imports `urllib3.http2.probe`, and the package's `__init__` imports
# importlib.metadata (zipfile, csv, tempfile, importlib.resources...: 23 modules, ~1 MiB of
# objects, 10-15 ms on a whole core) for `inject_into_urllib3`, the opt-in to HTTP/2 over the h2
# package, which the extension never calls (docs/memory.md).
UNUSED_PACKAGE_INITS = ("urllib3.http2",)


def import_children_modules() -> None:
    """Imports what the listener and the sender run, without the package inits they never use,
    the regular expressions they compile taken from the layer's cache where it ships one
    (ext/main/regex_cache.py), with the cyclic collector off meanwhile; what they loaded is then
    frozen (`gc.freeze`, as supervisor.spawn does before each fork) and the collector left as
    it was found.

    Each collection during the imports traverses the objects loaded so far again, for the few
    cycles the imports leave behind; and turned back on with them all still young, the collector
    would traverse them all at the next allocation. Both cost ~11% of the preload's CPU
    (bundled Python 3.13), paid at every cold start, ~14x at a 128 MB CPU share. The cycles stay
    (~0.1 MiB, frozen and never written to: shared by the three processes)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        regex_cache.restore_shipped()
        for name in UNUSED_PACKAGE_INITS:
            register_without_init(name)
        import ext.listener.process
        import ext.sender.process
        import ext.sender.token_source  # noqa: F401  # every sender's HEC client loads it
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def register_without_init(name: str) -> bool:
    """Puts `name`, a subpackage of a top-level package, in sys.modules without running its
    `__init__`, so its submodules import as usual; False (nothing done) when it is loaded
    already or not found.

    The parent package is only located, not imported: importing it is what runs the
    `__init__` (urllib3/__init__ imports urllib3.connection, which imports urllib3.http2)."""
    if name in sys.modules:
        return False
    from importlib.machinery import PathFinder
    from importlib.util import module_from_spec

    parent_name, _, _ = name.rpartition(".")
    parent = PathFinder.find_spec(parent_name)
    if parent is None or parent.submodule_search_locations is None:
        return False
    spec = PathFinder.find_spec(name, list(parent.submodule_search_locations))
    if spec is None or spec.submodule_search_locations is None:
        return False
    sys.modules[name] = module_from_spec(spec)
    return True
