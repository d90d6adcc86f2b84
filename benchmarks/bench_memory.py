"""Memory (issue 7 item 6, issue 12 item 6): RSS and PSS of every extension process (main,
listener, sender) after 100 invocations of 1,000 lines, from /proc/<pid>/smaps_rollup, and where
the MiB go: by kind of mapping, by flush strategy, and what each import adds.

PSS splits pages shared between the forked processes fairly, so the PSS sum is the extension's
real footprint; the RSS sum counts shared pages once per process. Its anonymous part (Python
objects, the C heap) is shared only between the extension's own forks; its file part (libpython,
OpenSSL) is shared with every process on this machine that maps the same files, so it moves with
what else runs: compare steps by the anonymous part. The default flush strategy is measured
first, then each other one in a fresh sandbox: under `sync` the sender is idle at each freeze,
under the others data waits for later thaws, so each freeze finds its buffers full, by an
amount that varies with the machine's load. For reference the same figures of an idle bare
`python -S` of the same interpreter are measured in the same run.
Run: `.venv/bin/python -m benchmarks.bench_memory [--quick]` -> results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.rig import (
    Rig,
    extension_processes,
    extension_rig,
    footprint_kb,
    memory_kb,
    private_kb_by_mapping,
    pss_kb_by_backing,
)
from ext.local.layer import EXTENSION_NAME, make_local_opt

TARGETS = {"pss_total_mib": 22.0}  # issue 12 (issue 7 asked for 35)
DEFAULT_FLUSH = "adaptive"  # ext/config.py SPLUNK_FLUSH
OTHER_FLUSHES = ("sync", "background")
FULL_PLAN = (100, 1_000)  # invocations, lines per invocation
QUICK_PLAN = (5, 100)


def extension_memory(rig: Rig, invocations: int, lines: int,
                     extra_env: dict[str, str] | None = None
                     ) -> tuple[dict[str, Any], dict[str, int]]:
    """Memory of each process (main, listener, sender), and the footprint of all three."""
    sb = rig.sandbox(rig.env(**(extra_env or {})), timeout_s=30.0)
    try:
        for n in range(invocations):
            result = sb.invoke({"lines": lines, "tag": f"M{n}"})
            if result.status != "success":
                raise RuntimeError(f"invoke failed: {result}")
        # Frozen now (SIGSTOP): the figures cannot move while they are read.
        pids = extension_processes(sb)
        processes = {role: memory_kb(pid) | {"uss_by_mapping_kb": private_kb_by_mapping(pid),
                                             "pss_by_backing_kb": pss_kb_by_backing(pid)}
                     for role, pid in pids.items()}
        footprint = footprint_kb(list(pids.values()))
        sb.shutdown()
    finally:
        sb.close()
    return processes, footprint


def bare_python_memory() -> dict[str, int]:
    """Memory of an idle `python -S` (imports nothing beyond the interpreter's start-up)."""
    proc = subprocess.Popen([sys.executable, "-S", "-c", "import sys; print(1, flush=True); "
                             "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        proc.stdout.readline()
        return memory_kb(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()


# Imports in the order the children pull them in; each step is measured after the ones above,
# at the launcher's -OO. The last two steps are what the extension no longer loads: what the
# package inits the main process leaves out (ext/main/preload.py) would add (urllib3.http2's
# imports importlib.metadata), and dataclasses (with inspect, ast and dis), which the spool and
# the sender's batches used before they became msgspec Structs.
IMPORT_STEPS = ("logging", "msgspec", "ssl", "http.client", "urllib3", "ext.listener.process",
                "ext.sender.process", "importlib.metadata", "dataclasses")
_IMPORT_PROBE = """
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
traced = sys.argv[3] == "traced"
if traced:
    import tracemalloc
def mem():
    if traced:
        return {'objects_kb': tracemalloc.get_traced_memory()[0] // 1024}
    out = {}
    with open('/proc/self/smaps_rollup') as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                out[parts[0].rstrip(':')] = int(parts[1])
    return {'rss_kb': out['Rss'], 'uss_kb': out['Private_Clean'] + out['Private_Dirty']}
from ext.main import preload
for name in preload.UNUSED_PACKAGE_INITS:
    preload.register_without_init(name)
if traced:
    tracemalloc.start()
steps = [['(python -S)', mem(), 0]]
for name in json.loads(sys.argv[2]):
    before = len(sys.modules)
    __import__(name)
    steps.append([name, mem(), len(sys.modules) - before])
print(json.dumps(steps))
"""


def import_costs() -> list[dict[str, Any]]:
    """Memory each import step adds to a fresh `python -S` (cumulative order): RSS and USS
    (touched pages: they come in steps of whole pages and arenas), and the bytes of Python
    objects it allocated (tracemalloc, in a second interpreter: tracing costs memory too)."""
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as tmp:
        # The layer's sys.path: the extension and its two dependencies, nothing else of this
        # environment (msgspec imports typing_extensions, and with it inspect, where it can).
        paths = [str(make_local_opt(Path(tmp)) / EXTENSION_NAME)]

        def probe(mode: str) -> list[Any]:
            done = subprocess.run([sys.executable, "-S", "-OO", "-c", _IMPORT_PROBE,
                                   json.dumps(paths),
                                   json.dumps(IMPORT_STEPS), mode], capture_output=True,
                                  text=True, check=True, timeout=60)
            return list(json.loads(done.stdout))

        steps, traced = probe("pages"), probe("traced")
    out = []
    for (name, mem, modules), (_, prev, _), (_, obj, _), (_, obj_prev, _) in zip(
            steps[1:], steps, traced[1:], traced, strict=False):
        out.append({"import": name, "modules": modules,
                    "rss_kb": mem["rss_kb"] - prev["rss_kb"],
                    "uss_kb": mem["uss_kb"] - prev["uss_kb"],
                    "objects_kb": obj["objects_kb"] - obj_prev["objects_kb"]})
    base = steps[0][1]
    return [{"import": "(python -S)", "modules": 0, **base, "objects_kb": 0}, *out]


def strategy_memory(rig: Rig, invocations: int, lines: int, flush: str,
                    extra_env: dict[str, str] | None) -> dict[str, float]:
    """PSS total, its anonymous part and the sender's USS with SPLUNK_FLUSH=`flush`."""
    processes, _ = extension_memory(rig, invocations, lines,
                                    {**(extra_env or {}), "SPLUNK_FLUSH": flush})
    return {"pss_total_mib": sum(p["pss_kb"] for p in processes.values()) / 1024,
            "anonymous_pss_mib": sum(p["pss_by_backing_kb"]["anonymous"]
                                     for p in processes.values()) / 1024,
            "sender_uss_mib": processes["sender"]["uss_kb"] / 1024}


def measure(invocations: int, lines: int,
            extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    with extension_rig() as rig:
        processes, footprint = extension_memory(rig, invocations, lines, extra_env)
        flush = (extra_env or {}).get("SPLUNK_FLUSH", DEFAULT_FLUSH)
        strategies = {name: strategy_memory(rig, invocations, lines, name, extra_env)
                      for name in (DEFAULT_FLUSH, *OTHER_FLUSHES) if name != flush}
    total = {key: sum(p[key] for p in processes.values()) for key in ("rss_kb", "pss_kb",
                                                                         "uss_kb")}
    anonymous = sum(p["pss_by_backing_kb"]["anonymous"] for p in processes.values())
    strategies = {flush: {"pss_total_mib": total["pss_kb"] / 1024,
                          "anonymous_pss_mib": anonymous / 1024,
                          "sender_uss_mib": processes["sender"]["uss_kb"] / 1024},
                  **strategies}
    return {"invocations": invocations, "lines_per_invocation": lines, "flush": flush,
            "processes": processes, "total": total, "footprint": footprint,
            "pss_total_mib": total["pss_kb"] / 1024, "rss_total_mib": total["rss_kb"] / 1024,
            "anonymous_pss_mib": anonymous / 1024, "strategies": strategies,
            "bare_python_no_site": bare_python_memory(), "imports": import_costs()}


def report(results: dict[str, Any]) -> None:
    rows = [[role, m["rss_kb"] / 1024, m["pss_kb"] / 1024, m["uss_kb"] / 1024]
            for role, m in results["processes"].items()]
    t = results["total"]
    rows.append(["total", t["rss_kb"] / 1024, t["pss_kb"] / 1024, t["uss_kb"] / 1024])
    bare = results["bare_python_no_site"]
    rows.append(["(bare python -S, idle)", bare["rss_kb"] / 1024, bare["pss_kb"] / 1024,
                 bare["uss_kb"] / 1024])
    common.print_table(
        f"Memory after {results['invocations']} invocations of "
        f"{results['lines_per_invocation']:,} lines, SPLUNK_FLUSH={results.get('flush')} (MiB); "
        f"target PSS total <= "
        f"{TARGETS['pss_total_mib']} MiB: "
        f"{common.verdict(results['pss_total_mib'], TARGETS['pss_total_mib'])}",
        ["process", "RSS", "PSS", "USS"], rows)
    if "footprint" in results:
        f = results["footprint"]
        print(f"footprint (anonymous by PSS + each file's pages once, see rig.footprint_kb): "
              f"{f['footprint_kb'] / 1024:.2f} MiB = {f['anonymous_pss_kb'] / 1024:.2f} "
              f"anonymous + {f['file_once_kb'] / 1024:.2f} file pages\n")
    if "anonymous_pss_mib" in results:
        print(f"anonymous PSS (Python objects, C heap, stacks; not shared with other programs): "
              f"{results['anonymous_pss_mib']:.2f} MiB\n")
    if "strategies" in results:
        common.print_table("By flush strategy (each in a fresh sandbox, same plan; MiB)",
                           ["SPLUNK_FLUSH", "PSS total", "anonymous PSS", "sender USS"],
                           [[name, m["pss_total_mib"], m["anonymous_pss_mib"],
                             m["sender_uss_mib"]] for name, m in results["strategies"].items()])
    kinds = list(next(iter(results["processes"].values()))["uss_by_mapping_kb"])
    common.print_table("USS by kind of mapping (MiB)", ["process", *kinds],
                       [[role, *(m["uss_by_mapping_kb"][k] / 1024 for k in kinds)]
                        for role, m in results["processes"].items()])
    common.print_table("What each import adds to a fresh python -S -OO (MiB; in this order; "
                       "the last two are not loaded by the extension)",
                       ["import", "modules", "RSS", "USS", "objects"],
                       [[i["import"], i["modules"], i["rss_kb"] / 1024, i["uss_kb"] / 1024,
                         i.get("objects_kb", 0) / 1024] for i in results.get("imports", [])])


def chart(results: dict[str, Any], folder: Path) -> None:
    procs = results["processes"]
    groups = [*procs, "total"]
    series = {key.split("_")[0].upper(): [procs[r][key] / 1024 for r in procs]
              + [results["total"][key] / 1024] for key in ("rss_kb", "pss_kb")}
    target = TARGETS["pss_total_mib"]
    common.bar_chart(folder / "memory.png", "Extension memory by process", groups, series,
                     "MiB", {f"PSS target {target:g} MiB": target})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_memory", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of the function (repeatable)")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    results = measure(*(QUICK_PLAN if args.quick else FULL_PLAN), extra)
    return common.publish("memory", results, quick=args.quick, targets=TARGETS,
                          report=report, chart=chart)


if __name__ == "__main__":
    raise SystemExit(main())
