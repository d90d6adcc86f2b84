"""The Lambda dashboard: its panels' SPL, the Splunk Dashboard Studio definition, and the same
panels rendered to PNG from the embedded receiver's store (Splunk is not available here).

Local tooling. `python -m ext.local.dashboard --definition docs/dashboard/lambda-dashboard.json`
writes the Dashboard Studio JSON (generated from PANELS, so SPL and definition never drift);
`render(db, out_dir)` draws the PNGs (the demo calls it). Metric names: docs/metrics.md.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ext.local.hec.store import (
    EventStore,
    first_metric_time,
    metric_points,
    metric_stats,
    open_reader,
)

MX = "index=$metrics_index$ function_name=$function$"


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: its id, title, Splunk visualization and SPL."""

    key: str
    title: str
    viz: str
    spl: str


# The loss panel's figures: (metric, aggregate, label).
LOSSES = (("hec.quarantined_events", "sum", "refused_by_hec"),
          ("hec.quarantine_lost_events", "sum", "refused_not_kept"),
          ("telemetry.dropped_records", "max", "dropped_by_lambda"),
          ("invocations.ends_lost", "max", "invocation_ends_lost"),
          ("process.listener.restarts", "max", "listener_restarts"),
          ("process.sender.restarts", "max", "sender_restarts"),
          ("process.sender.hangs", "max", "sender_hangs"))
_LOSS_STATS = " ".join(f"{agg}(splunk.extension.{metric}) AS {label}"
                       for metric, agg, label in LOSSES)

PANELS = (
    Panel("invocations", "Invocations and errors", "splunk.column",
          f"| mstats sum(aws.lambda.invocations) AS invocations sum(aws.lambda.errors) AS errors "
          f"WHERE {MX} span=1m"),
    Panel("alerts", "Timeouts, out-of-memory, init failures, resets", "splunk.column",
          f"| mstats sum(aws.lambda.alerts) AS alerts WHERE {MX} BY alert"),
    Panel("duration", "Duration p50 / p95 / p99 per function (ms)", "splunk.column",
          "| mstats perc50(aws.lambda.duration_ms) AS p50 perc95(aws.lambda.duration_ms) AS p95 "
          f"perc99(aws.lambda.duration_ms) AS p99 WHERE {MX} BY function_name"),
    Panel("billed", "Billed vs actual duration (ms)", "splunk.line",
          "| mstats sum(aws.lambda.billed_duration_ms) AS billed_ms "
          f"sum(aws.lambda.duration_ms) AS actual_ms WHERE {MX} span=1m "
          "| eval billed_over_actual_pct=round(100*(billed_ms-actual_ms)/actual_ms, 1)"),
    Panel("memory", "Memory headroom (MB)", "splunk.line",
          "| mstats max(aws.lambda.max_memory_used_mb) AS max_used_mb "
          f"max(aws.lambda.memory_size_mb) AS memory_size_mb WHERE {MX} span=1m "
          "| eval headroom_mb=memory_size_mb-max_used_mb"),
    Panel("cold_starts", "Cold starts and init duration", "splunk.column",
          "| mstats sum(aws.lambda.cold_starts) AS cold_starts "
          "avg(aws.lambda.init_duration_ms) AS avg_init_ms max(aws.lambda.init_duration_ms) "
          f"AS max_init_ms WHERE {MX} BY function_name"),
    Panel("per_function", "Per function", "splunk.table",
          "| mstats sum(aws.lambda.invocations) AS invocations sum(aws.lambda.errors) AS errors "
          "perc95(aws.lambda.duration_ms) AS p95_ms max(aws.lambda.memory_used_pct) "
          f"AS max_memory_pct sum(aws.lambda.cold_starts) AS cold_starts WHERE {MX} "
          "BY function_name | sort - invocations"),
    Panel("health", "Extension health: backlog, HEC latency, CPU", "splunk.line",
          "| mstats max(splunk.extension.spool.unsent_events) AS unsent_events "
          "max(splunk.extension.spool.oldest_unsent_age_ms) AS oldest_unsent_ms "
          "max(splunk.extension.spool.dropped_events) AS dropped_events "
          "max(splunk.extension.hec.latency_p99_ms) AS hec_p99_ms "
          "sum(splunk.extension.hec.failures.retry) AS hec_retryable_failures "
          "max(splunk.extension.process.sender.cpu_ms) AS sender_cpu_ms "
          f"WHERE {MX} span=1m"),
    # Each figure here is data Splunk will not get, or a process that failed: all 0 when well.
    # Deltas are summed; totals (per sender process, or over the environment's life) take the
    # largest one seen.
    Panel("losses", "Extension: events refused or dropped, restarts, hangs", "splunk.column",
          f"| mstats {_LOSS_STATS} WHERE {MX} BY function_name"),
)


def definition() -> dict[str, Any]:
    """The Splunk Dashboard Studio definition of PANELS (two columns, global inputs)."""
    data_sources = {f"ds_{p.key}": {"type": "ds.search", "name": p.title,
                                    "options": {"query": p.spl}} for p in PANELS}
    visualizations = {f"viz_{p.key}": {"type": p.viz, "title": p.title,
                                       "dataSources": {"primary": f"ds_{p.key}"}} for p in PANELS}
    structure = [{"item": f"viz_{p.key}", "type": "block",
                  "position": {"x": (n % 2) * 720, "y": (n // 2) * 320, "w": 720, "h": 320}}
                 for n, p in enumerate(PANELS)]
    return {
        "title": "AWS Lambda (Splunk HEC extension)",
        "description": "Invocations, errors, timeouts and OOMs, duration, billing, memory, cold "
                       "starts per function, and the extension's own health (docs/metrics.md).",
        "inputs": {
            "input_time": {"type": "input.timerange", "title": "Time",
                           "options": {"token": "time", "defaultValue": "-24h@h,now"}},
            "input_metrics_index": {"type": "input.text", "title": "Metrics index",
                                    "options": {"token": "metrics_index",
                                                "defaultValue": "lambda_metrics"}},
            "input_function": {"type": "input.text", "title": "Function (wildcards)",
                               "options": {"token": "function", "defaultValue": "*"}},
        },
        "defaults": {"dataSources": {"ds.search": {"options": {"queryParameters": {
            "earliest": "$time.earliest$", "latest": "$time.latest$"}}}}},
        "dataSources": data_sources,
        "visualizations": visualizations,
        "layout": {"type": "grid", "globalInputs": ["input_time", "input_metrics_index",
                                                    "input_function"],
                   "options": {"width": 1440, "height": 320 * math.ceil(len(PANELS) / 2)},
                   "structure": structure},
    }


# -- PNG rendering from the receiver's store ----------------------------------------------------

def render(db: Path, out_dir: Path, index: str | None = None) -> list[Path]:
    """Draws every panel from the store at `db` into `out_dir`; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    store = open_reader(db)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return [_draw(store, panel, out_dir / f"dashboard_{panel.key}.png", index)
                for panel in PANELS]
    finally:
        store.close()


def _draw(store: EventStore, panel: Panel, path: Path, index: str | None) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 3.4), dpi=100)
    DRAWERS[panel.key](store, ax, index)
    ax.set_title(f"{panel.title}\n(from the embedded receiver, as: {panel.spl[:60]}...)",
                 fontsize=8)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def _start(store: EventStore) -> float:
    """Time of the first metric event: every panel's x axis counts seconds from it."""
    return first_metric_time(store) or 0.0


def _series(store: EventStore, metric: str, index: str | None) -> tuple[list[float], list[float]]:
    start = _start(store)
    points = [(t, v) for t, _, v in metric_points(store, metric, index=index) if t is not None]
    return [t - start for t, _ in points], [v for _, v in points]


def _invocations(store: EventStore, ax: Any, index: str | None) -> None:
    start = math.floor(_start(store))
    for n, (metric, label) in enumerate((("aws.lambda.invocations", "invocations"),
                                         ("aws.lambda.errors", "errors"))):
        rows = metric_stats(store, metric, ["sum"], span_s=1.0, index=index)
        ax.bar([r["_time"] - start + (n - 0.5) * 0.4 for r in rows],
               [r[f"sum({metric})"] for r in rows], width=0.4, label=label)
    ax.set_xlabel("seconds (1 s buckets)")


def _alerts(store: EventStore, ax: Any, index: str | None) -> None:
    rows = metric_stats(store, "aws.lambda.alerts", ["sum"], ["alert"], index=index)
    names = [r["alert"] for r in rows] or ["none"]
    bars = ax.bar(names, [r["sum(aws.lambda.alerts)"] for r in rows] or [0])
    ax.bar_label(bars, fmt="%d", fontsize=7)
    ax.set_ylabel("alerts")


def _duration(store: EventStore, ax: Any, index: str | None) -> None:
    rows = metric_stats(store, "aws.lambda.duration_ms", ["p50", "p95", "p99"],
                        ["function_name"], index=index)
    for n, pct in enumerate(("p50", "p95", "p99")):
        xs = [i + (n - 1) * 0.25 for i in range(len(rows))]
        bars = ax.bar(xs, [r[f"{pct}(aws.lambda.duration_ms)"] for r in rows], 0.25, label=pct)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(rows)), [r["function_name"] for r in rows])
    ax.set_ylabel("ms")


def _billed(store: EventStore, ax: Any, index: str | None) -> None:
    _lines(store, ax, index, (("aws.lambda.billed_duration_ms", "billed"),
                              ("aws.lambda.duration_ms", "actual")), "ms per invocation")
    ax.set_yscale("log")


def _memory(store: EventStore, ax: Any, index: str | None) -> None:
    _lines(store, ax, index, (("aws.lambda.memory_size_mb", "memory size"),
                              ("aws.lambda.max_memory_used_mb", "max used")), "MB")


def _lines(store: EventStore, ax: Any, index: str | None,
           metrics: tuple[tuple[str, str], ...], unit: str) -> None:
    """One line per metric over time (seconds since the first point)."""
    for metric, label in metrics:
        xs, ys = _series(store, metric, index)
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    ax.set_xlabel("seconds")
    ax.set_ylabel(unit)


def _cold_starts(store: EventStore, ax: Any, index: str | None) -> None:
    xs, ys = _series(store, "aws.lambda.init_duration_ms", index)
    bars = ax.bar(xs, ys, width=0.4, label=f"init duration of {len(ys)} cold starts")
    ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xlabel("seconds")
    ax.set_ylabel("init duration, ms")


def _per_function(store: EventStore, ax: Any, index: str | None) -> None:
    columns = [("aws.lambda.invocations", "sum", "invocations"), ("aws.lambda.errors", "sum",
               "errors"), ("aws.lambda.duration_ms", "p95", "p95 ms"),
               ("aws.lambda.memory_used_pct", "max", "max memory %"),
               ("aws.lambda.cold_starts", "sum", "cold starts")]
    table: dict[str, list[str]] = {}
    for metric, agg, _ in columns:
        for row in metric_stats(store, metric, [agg], ["function_name"], index=index):
            table.setdefault(row["function_name"], []).append(f"{row[f'{agg}({metric})']:.4g}")
    ax.axis("off")
    if table:
        ax.table(cellText=[[name, *cells] for name, cells in table.items()],
                 colLabels=["function", *(label for _, _, label in columns)], loc="center")


def _health(store: EventStore, ax: Any, index: str | None) -> None:
    for metric, label in (("splunk.extension.spool.unsent_events", "unsent events"),
                          ("splunk.extension.hec.latency_p99_ms", "HEC p99 ms"),
                          ("splunk.extension.process.sender.cpu_ms", "sender CPU ms"),
                          ("splunk.extension.spool.oldest_unsent_age_ms", "oldest unsent ms")):
        xs, ys = _series(store, metric, index)
        ax.plot(xs, ys, marker=".", label=label)
    ax.set_xlabel("seconds")
    ax.set_yscale("symlog")


def _losses(store: EventStore, ax: Any, index: str | None) -> None:
    values = []
    for metric, agg, _ in LOSSES:
        name = f"splunk.extension.{metric}"
        rows = metric_stats(store, name, [agg], [], index=index)
        values.append(rows[0][f"{agg}({name})"] if rows else 0)
    bars = ax.bar([label.replace("_", " ") for _, _, label in LOSSES], values)
    ax.bar_label(bars, fmt="%d", fontsize=7)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.set_ylim(0, max(1.0, *values) * 1.2)  # zeros, the healthy case, sit on the axis
    ax.set_ylabel("events / records / times")


DRAWERS: dict[str, Callable[[EventStore, Any, str | None], None]] = {
    "invocations": _invocations, "alerts": _alerts, "duration": _duration, "billed": _billed,
    "memory": _memory, "cold_starts": _cold_starts, "per_function": _per_function,
    "health": _health, "losses": _losses,
}


def main(argv: Sequence[str] | None = None) -> int:
    """`--definition PATH` writes the Dashboard Studio JSON; `--db D --out DIR` draws PNGs."""
    parser = argparse.ArgumentParser(prog="python -m ext.local.dashboard", description=__doc__)
    parser.add_argument("--definition", type=Path)
    parser.add_argument("--db", type=Path)
    parser.add_argument("--out", type=Path, default=Path("dashboard"))
    args = parser.parse_args(argv)
    if args.definition:
        args.definition.parent.mkdir(parents=True, exist_ok=True)
        args.definition.write_text(json.dumps(definition(), indent=2) + "\n")
        print(f"wrote {args.definition}")
    if args.db:
        for path in render(args.db, args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
