"""The local main job (`./dev demo`): sample function + this extension + emulator + embedded HEC.

A CLI, so it prints. It runs the sample function through N invocations in the Lambda emulator
with the real extension (launched by the layer's bootstrap), with an HEC outage, a timeout
and an out-of-memory kill along the way, shuts the sandbox down, then reports what Splunk (the
embedded receiver) holds: counts per sourcetype, metrics, alerts, latency from log line to HEC,
and anything lost or duplicated; it ends by drawing the dashboard's panels (PNG) from it.
Each invocation's row shows the extension's adaptive flush decision, from the line it logs on
its stderr at INFO ("flush-decision request_id=... wait=... reason=..."): whether it waited, why,
and for a backlog which earlier invocation it waited for; "-" when it logs none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ext.local.dashboard import render
from ext.local.hec import HecReceiver, HecToken
from ext.local.hec.store import list_metrics, open_reader
from ext.local.layer import make_local_opt
from ext.local.sandbox import Sandbox, SandboxConfig

REPO = Path(__file__).resolve().parents[2]
TOKEN = "d3m0d3m0-0000-4000-8000-000000000000"  # noqa: S105 - the demo's local receiver only
METRICS_INDEX = "lambda_metrics"
MODES = ("print", "logging", "json")
FLUSH_W = 36  # width of the flush-decision column


def build_config(opt_dir: Path | None, hec_url: str, timeout_s: float = 5.0,
                 limits: bool = True) -> SandboxConfig:
    """Sandbox for the sample function; `opt_dir` is the layer holding the extension.

    5 s, not 2: at 128 MB the init after the timeout's reset runs inside the next invocation,
    within its timeout, and this extension's takes ~2-2.6 s there (docs/deploy.md): with 2 s
    every invocation after the timeout timed out too, as it would in Lambda."""
    env = {
        "SPLUNK_HOST": hec_url,
        "SPLUNK_HEC_TOKEN": TOKEN,
        "SPLUNK_INDEX": "lambda",
        "SPLUNK_METRICS_INDEX": METRICS_INDEX,
        # The emulator has no /var/lang/bin/python3: run the launcher with this interpreter.
        "SPLUNK_EXTENSION_PYTHON": sys.executable,
        "SPLUNK_LOG_LEVEL": "INFO",  # the per-invocation flush decision is an INFO line
    }
    return SandboxConfig(function_dir=REPO / "function", handler="handler.handler",
                         opt_dir=opt_dir, env=env, timeout_s=timeout_s,
                         function_name="demo-orders", limits=limits)


def plan(invokes: int, lines: int) -> list[dict[str, Any]]:
    """One payload per invocation; the one two thirds in times out (a reset), and the one
    before the last runs out of memory (a reset too)."""
    payloads = []
    for n in range(invokes):
        payload: dict[str, Any] = {"lines": lines, "size": 60, "mode": MODES[n % len(MODES)],
                                   "tag": f"demo{n:03d}"}
        if invokes >= 6 and n == (2 * invokes) // 3:
            payload["timeout"] = True
        if invokes >= 6 and n == invokes - 2:
            payload["oom"] = True
        payloads.append(payload)
    return payloads


def run_demo(invokes: int, lines: int, workdir: Path, limits: bool = True) -> dict[str, Any]:
    """Runs everything; returns the figures the summary prints."""
    opt = make_local_opt(workdir / "opt")
    outage = range(invokes // 3, invokes // 3 + 2) if invokes >= 6 else range(0)
    written: dict[str, int] = {}
    rows = []
    with HecReceiver(workdir / "splunk.sqlite",
                     tokens=(HecToken(name="lambda", value=TOKEN,
                                      indexes=("lambda", METRICS_INDEX)),),
                     metrics_indexes=(METRICS_INDEX,)) as hec:
        with Sandbox(build_config(opt, hec.url, limits=limits)) as sb:
            ext_lines: list[str] = []
            sb.on_extension_output(ext_lines.append)
            print(f"emulator on {sb.api_address}, HEC receiver on {hec.url}")
            share = sb.inspect()["limits"]
            if share.get("applied"):
                print(f"Lambda's CPU share: {share['cpu_share']:.1%} of a core, memory limit "
                      f"{share['memory_limit_mb']} MB ({share['mechanism']})")
            print(f"{'invocation':<12}{'status':<9}{'duration':>10}{'post-runtime':>14}"
                  f"{'lines':>7}{'in Splunk before freeze':>26}  {'flush decision':<{FLUSH_W}}")
            names: dict[str, str] = {}  # request id -> invocation name
            for n, payload in enumerate(plan(invokes, lines)):
                note = _apply_outage(hec, n, outage)
                result = sb.invoke(payload)
                sb.sync_output()
                written[payload["tag"]] = lines
                stored = _stored_lines(hec, payload["tag"])
                post = "-" if result.post_runtime_ms is None else f"{result.post_runtime_ms:.1f} ms"
                names[result.request_id] = payload["tag"]
                decision = flush_decision(ext_lines, result.request_id, names)
                print(f"{payload['tag']:<12}{result.status:<9}{result.duration_ms:>8.1f}ms"
                      f"{post:>14}{lines:>7}{stored:>26}  {decision:<{FLUSH_W}}  {note}")
                rows.append((result, stored))
            hec.clear_faults()
            shutdown = sb.shutdown()
            ext_exit = shutdown.extensions.get("splunk-hec-extension")
            print(f"shutdown ({shutdown.reason}): extension "
                  f"{'exited by itself' if ext_exit and ext_exit.exited else 'was killed'}"
                  f" after {ext_exit.exit_ms if ext_exit else '?'} ms")
            inspect = sb.inspect()
        return _summarise(hec, written, inspect, workdir)


def flush_decision(lines: list[str], request_id: str,
                   names: dict[str, str] | None = None) -> str:
    """The extension's flush decision for `request_id`, from the newest of its decision lines
    for it: "wait: <reason>" or "no wait: <reason>", and for a backlog the earlier invocation
    waited for (by its name in `names`, else its request id); "-" if none."""
    if not request_id:
        return "-"
    for line in reversed(lines):
        _, marker, rest = line.partition("flush-decision ")
        if not marker:
            continue
        fields = dict(word.split("=", 1) for word in rest.split() if "=" in word)
        if fields.get("request_id") != request_id:
            continue
        text = f"{'wait' if fields.get('wait') == 'yes' else 'no wait'}: {fields.get('reason')}"
        awaited = fields.get("awaited_request_id")
        if awaited:
            text += f" (for {(names or {}).get(awaited, awaited)})"
        return text[:FLUSH_W]
    return "-"


def _apply_outage(hec: HecReceiver, n: int, outage: range) -> str:
    if n in outage:
        hec.set_fault("busy")
        return "<- HEC answers 503: the logs wait in the spool"
    if outage and n == outage.stop:
        hec.clear_faults()
        return "<- HEC is back: the spool drains"
    return ""


def _stored_lines(hec: HecReceiver, tag: str) -> int:
    return hec.count(sourcetype="aws:lambda:function", contains=f"{tag}:")


def _summarise(hec: HecReceiver, written: dict[str, int], inspect: dict[str, Any],
               workdir: Path) -> dict[str, Any]:
    events = hec.events(limit=10**7)
    lines: Counter[str] = Counter()
    latencies = []
    for event in events:
        if event.sourcetype == "aws:lambda:function":
            text = json.loads(event.event)
            if isinstance(text, str) and text.startswith("{"):
                text = json.loads(text)  # a JSON line printed in Text log format
            message = text.get("message", "") if isinstance(text, dict) else text
            tag, _, rest = str(message).split("\t")[-1].partition(":")
            lines[f"{tag}:{rest.partition(':')[0]}:"] += 1
        if event.time is not None:
            latencies.append((event.received_at - event.time) * 1000)
    expected = {f"{tag}:{i}:" for tag, count in written.items() for i in range(count)}
    got = set(lines)
    return {
        "by_sourcetype": Counter(e.sourcetype for e in events),
        "platform_types": Counter(json.loads(e.event)["type"] for e in events
                                  if e.sourcetype == "aws:lambda:platform"),
        "lines_written": len(expected),
        "lines_missing": len(expected - got),
        "lines_duplicated": sum(c - 1 for c in lines.values() if c > 1),
        "latency_ms": latencies,
        "init_ms": [i.get("duration_ms") for i in inspect.get("inits", [])],
        "metrics": Counter({m["metric"]: m["points"] for m in _metrics_of(workdir)}),
        "alerts": Counter(json.loads(e.event)["alert"] for e in events
                          if e.sourcetype == "aws:lambda:alert"),
        "db": str(workdir / "splunk.sqlite"),
    }


def _metrics_of(workdir: Path) -> list[dict[str, Any]]:
    store = open_reader(workdir / "splunk.sqlite")
    try:
        return list_metrics(store)
    finally:
        store.close()


def print_summary(summary: dict[str, Any]) -> None:
    print("\nWhat Splunk received")
    for sourcetype, count in sorted(summary["by_sourcetype"].items()):
        print(f"  {sourcetype:<28}{count:>7} events")
    types = ", ".join(f"{k} {v}" for k, v in sorted(summary["platform_types"].items()))
    print(f"  platform events: {types}")
    lat = sorted(summary["latency_ms"])
    if lat:
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"  latency, log line to HEC: p50 {statistics.median(lat):.1f} ms, p99 {p99:.1f} ms"
              " (includes the outage)")
    print(f"  init durations (ms): {', '.join(f'{m:.0f}' for m in summary['init_ms'] if m)}")
    lambda_metrics = {k: v for k, v in summary["metrics"].items() if k.startswith("aws.")}
    own = sum(1 for k in summary["metrics"] if k.startswith("splunk.extension."))
    print(f"  metrics in {METRICS_INDEX} (data points): "
          + ", ".join(f"{k.removeprefix('aws.lambda.')} {v}" for k, v in
                      sorted(lambda_metrics.items()))
          + f"; {own} splunk.extension.* metric names (self-metrics)")
    alerts = ", ".join(f"{k} {v}" for k, v in sorted(summary["alerts"].items())) or "none"
    print(f"  alerts (aws:lambda:alert): {alerts}")
    print(f"  function lines written {summary['lines_written']}, missing "
          f"{summary['lines_missing']}, duplicated {summary['lines_duplicated']}")
    print(f"\nThe events are in {summary['db']}; look at them with\n"
          f"  .venv/bin/python -m ext.local.hec query --db {summary['db']} counts\n"
          f"  .venv/bin/python -m ext.local.hec query --db {summary['db']} tail -n 5\n"
          f"  .venv/bin/python -m ext.local.hec query --db {summary['db']} metrics\n"
          f"  .venv/bin/python -m ext.local.hec query --db {summary['db']} mstats "
          "--metric aws.lambda.duration_ms --by function_name")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit 1 if any line the function wrote is missing from Splunk."""
    parser = argparse.ArgumentParser(prog="./dev demo", description=__doc__.splitlines()[0])
    parser.add_argument("--invokes", type=int, default=12)
    parser.add_argument("--lines", type=int, default=20, help="log lines per invocation")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the HEC store goes (default: a new temporary folder)")
    parser.add_argument("--no-limits", action="store_true",
                        help="whole cores instead of Lambda's CPU share at 128 MB")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="splunk-hec-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    summary = run_demo(args.invokes, args.lines, workdir, limits=not args.no_limits)
    print_summary(summary)
    panels = render(Path(summary["db"]), workdir / "dashboard")
    print("\nDashboard panels (docs/dashboard.md has their SPL), drawn from the receiver's store:")
    for path in panels:
        print(f"  {path}")
    return 1 if summary["lines_missing"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
