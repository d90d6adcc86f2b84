"""What configuration costs the cold start: CPU time of `import ext.config` in a fresh
`python -S` (the main process imports it before register), of the first `load()` and of a warm
`load()`, over a typical Lambda environment.

CPU time (thread_time), not wall time: it is what a 128 MB function's ~7% share of a core
stretches, and it does not count waiting for a busy machine. The package is copied out and
compiled to unchecked-hash .pyc files, as the layer ships it (scripts/build_layer.py).
`--against REV` measures a git revision's ext/ the same way, interleaved (issue 15: the table of
settings against the code before it).

Run: `nice -n 10 python -m benchmarks.bench_config [--quick] [--against REV]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks import common

ENVIRONMENT = {
    "SPLUNK_HOST": "https://splunk.example.com:8088",
    "SPLUNK_HEC_TOKEN": "11111111-2222-3333-4444-555555555555",
    "SPLUNK_INDEX": "lambda", "SPLUNK_FLUSH": "sync", "DISPATCH_MIN_BATCH_SIZE": "100",
    "SPLUNK_FIELDS": "team=payments,env=prod", "AWS_REGION": "eu-west-1",
    "AWS_LAMBDA_FUNCTION_NAME": "orders", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "PATH": "/usr/local/bin:/usr/bin/:/bin", "LAMBDA_TASK_ROOT": "/var/task", "TZ": ":UTC",
}
PROBE = (
    "import json, sys, time\n"
    "t = time.thread_time_ns()\n"
    "import ext.config as c\n"
    "imported = time.thread_time_ns() - t\n"
    "env = json.loads(sys.argv[1])\n"
    "t = time.thread_time_ns()\n"
    "c.load(env)\n"
    "first = time.thread_time_ns() - t\n"
    "t = time.thread_time_ns()\n"
    "for _ in range(500):\n"
    "    c.load(env)\n"
    "print(imported / 1e3, first / 1e3, (time.thread_time_ns() - t) / 500 / 1e3)\n"
)


def package_copy(folder: Path, revision: str | None) -> Path:
    """ext/ (of the working tree, or of `revision`) in `folder`, compiled as the layer is."""
    if revision is None:
        shutil.copytree(common.REPO / "ext", folder / "ext",
                        ignore=shutil.ignore_patterns("__pycache__", "local"))
    else:
        archive = subprocess.run(["git", "archive", revision, "ext"], cwd=common.REPO,
                                 capture_output=True, check=True).stdout
        folder.mkdir()
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        shutil.rmtree(folder / "ext" / "local", ignore_errors=True)
    subprocess.run([sys.executable, "-S", "-m", "compileall", "-q", "--invalidation-mode",
                    "unchecked-hash", str(folder / "ext")], check=True, capture_output=True)
    return folder


def sample(root: Path) -> tuple[float, float, float]:
    """(import, first load, warm load) in µs of CPU, from one fresh interpreter."""
    out = subprocess.run([sys.executable, "-S", "-c", PROBE, json.dumps(ENVIRONMENT)],
                         cwd=root, capture_output=True, text=True, check=True).stdout
    imported, first, warm = (float(v) for v in out.split())
    return imported, first, warm


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (CI smoke)")
    parser.add_argument("--against", metavar="REV", help="also measure this git revision's ext/")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else 80
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"working tree": package_copy(Path(tmp, "tree"), None)}
        if args.against:
            cases[args.against] = package_copy(Path(tmp, "rev"), args.against)
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
        for _ in range(rounds):  # interleaved: a busy moment touches every case alike
            for name, root in cases.items():
                samples[name].append(sample(root))
    results = {}
    for name, values in samples.items():
        imported, first, warm = zip(*values, strict=True)
        results[name] = {"import_us_p50": statistics.median(imported),
                         "first_load_us_p50": statistics.median(first),
                         "warm_load_us_p50": statistics.median(warm),
                         "import_plus_first_load_us_p50": statistics.median(
                             i + f for i, f, _ in values),
                         "rounds": rounds}
    common.print_table(
        "ext.config: CPU time in a fresh `python -S` (median, µs)",
        ["ext/", "import ext.config", "first load()", "import + first load()", "warm load()"],
        [[name, r["import_us_p50"], r["first_load_us_p50"], r["import_plus_first_load_us_p50"],
          r["warm_load_us_p50"]] for name, r in results.items()])
    common.write_result("config", results, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
