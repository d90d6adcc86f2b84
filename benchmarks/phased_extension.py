"""Runs the extension with a CPU counter around each of a few named functions per process
(local tooling, never shipped): where an invocation's CPU goes, without cProfile's overhead on
every call (cProfile inflates call-heavy code ~2.5x; a counter costs ~1 us per counted call).

Used as the extension's interpreter (bench_invocation_cost --phases): the launcher's arguments
(`-S -m ext <name>`) are taken as they come. After each fork the child wraps the functions of
PHASES for its role (listener, then sender) with counters of its own thread's CPU time
(`time.thread_time_ns`), and writes <EXT_PROFILE_DIR>/<role>-<pid>.json ({label: [ns, calls]})
when it ends: through os._exit, or on SIGTERM (how the listener is stopped at shutdown). A
function's time includes what it calls, so nested phases overlap: read them as shares of the
process's CPU, each against its parent.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import child_hooks  # type: ignore[import-not-found]  # beside this file: run as a script

OUT = os.environ.get("EXT_PROFILE_DIR", ".")
# Per role: (module, attribute path) of each function counted; the label is the attribute path.
PHASES: dict[str, list[tuple[str, str]]] = {
    "listener": [
        ("ext.listener.http_server", "HttpServer.poll"),
        ("ext.listener.http_server", "HttpServer._on_readable"),
        ("ext.listener.http_server", "HttpServer._read_head"),
        ("ext.listener.http_server", "HttpServer._finish"),
        ("ext.listener.process", "Listener.accept_batch"),
        ("ext.listener.intake", "inspect"),
        ("ext.spool.writer", "SpoolWriter.append"),
    ],
    "sender": [
        ("ext.sender.process", "Sender.step"),
        ("ext.sender.process", "Sender._service_control"),
        ("ext.sender.process", "Sender._wait"),
        ("ext.sender.process", "Sender._read_more"),
        ("ext.sender.process", "Sender._hand_over"),
        ("ext.sender.process", "Sender._answer"),
        ("ext.spool.reader", "SpoolReader.read"),
        ("ext.spool.reader", "SpoolReader._observe_refusals"),
        ("ext.spool.reader", "SpoolReader._writer_moved_on"),
        ("ext.spool.reader", "SpoolReader.commit"),
        ("ext.sender.envelope", "EnvelopeBuilder.envelope"),
        ("ext.sender.batching", "Gathering.take"),
        ("ext.sender.courier", "Courier.deliver_now"),
        ("ext.sender.hec", "HecClient.post"),
        ("ext.sender.hec_wire", "read_answer"),
    ],
}
counters: dict[str, list[int]] = {}


def counted(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    entry = counters.setdefault(label, [0, 0])

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time_ns()
        try:
            return function(*args, **kwargs)
        finally:
            entry[0] += time.thread_time_ns() - start
            entry[1] += 1

    return wrapper


def install(role: str) -> None:
    """Wraps the role's functions where they are looked up: as a class or module attribute."""
    counters.clear()
    for module_name, path in PHASES.get(role, []):
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, name, counted(path, getattr(owner, name)))


def dump() -> None:
    if child_hooks.role() == "main":
        return
    with open(os.path.join(OUT, f"{child_hooks.role()}-{os.getpid()}.json"), "w") as out:
        json.dump(counters, out)


if __name__ == "__main__":
    child_hooks.run(install, dump)
