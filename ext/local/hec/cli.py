"""Command line of the embedded HEC receiver: `serve` (tokens from flags or a JSON config file)
and `query` (counts, tail, search) over the SQLite store, for tests and demo users.

`serve` prints one JSON line {"url", "port", "db", "pid", "admin"} once it accepts connections,
then runs until SIGTERM/SIGINT. This is a CLI, so it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ext.local.hec.model import DEFAULT_TOKENS, HecLimits, HecToken
from ext.local.hec.receiver import HecReceiver
from ext.local.hec.store import (
    AGGREGATES,
    GROUP_COLUMNS,
    list_metrics,
    metric_stats,
    open_reader,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ext.local.hec.model import StoredEvent
    from ext.local.hec.store import EventStore

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_token_spec(spec: str) -> HecToken:
    """`name=value[,index=a][,index=b][,default_index=x][,ack=1][,enabled=0][,metric_index=m]
    [,sourcetype=s][,source=s][,query_auth=1]` -> HecToken; raises ValueError."""
    first, *options = spec.split(",")
    name, sep, value = first.partition("=")
    if not sep or not name or not value:
        raise ValueError(f"token spec must start with name=value: {spec!r}")
    indexes: list[str] = []
    metric_indexes: list[str] = []
    extra: dict[str, Any] = {}
    for option in options:
        key, sep, val = option.partition("=")
        if not sep:
            raise ValueError(f"token option must be key=value: {option!r}")
        if key == "index":
            indexes.append(val)
        elif key == "metric_index":
            metric_indexes.append(val)
        elif key in ("default_index", "sourcetype", "source"):
            extra[key] = val
        elif key in ("ack", "enabled", "query_auth"):
            extra["allow_query_auth" if key == "query_auth" else key] = _flag(val)
        else:
            raise ValueError(f"unknown token option {key!r}")
    return HecToken(
        name=name,
        value=value,
        indexes=tuple(indexes),
        metric_indexes=tuple(metric_indexes),
        **extra,
    )


def _flag(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ext.local.hec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the receiver until SIGTERM/SIGINT")
    serve.add_argument("--db", required=True, type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument(
        "--token",
        action="append",
        default=[],
        type=parse_token_spec,
        help="name=value[,index=..][,ack=1]...; repeatable",
    )
    serve.add_argument("--config", type=Path, help='JSON: {"tokens":[...],"limits":{...}}')
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument("--partial-prefix", action="store_true")
    serve.add_argument("--metrics-index", action="append", default=[],
                       help="an index that is a metrics index; repeatable")
    serve.add_argument("--max-content-length", type=int)
    serve.add_argument("--max-event-size", type=int)
    query = sub.add_parser("query", help="look at what arrived")
    query.add_argument("--db", required=True, type=Path)
    query.add_argument("--json", action="store_true", help="JSON lines output")
    views = query.add_subparsers(dest="view", required=True)
    counts = views.add_parser("counts")
    counts.add_argument("--by", choices=sorted(GROUP_COLUMNS), default="sourcetype")
    tail = views.add_parser("tail")
    tail.add_argument("-n", type=int, default=20)
    search = views.add_parser("search")
    for name in ("index", "sourcetype", "source", "host", "channel", "contains"):
        search.add_argument(f"--{name}")
    search.add_argument("--token-name")
    search.add_argument("--field", action="append", default=[], help="k=v on indexed fields")
    search.add_argument("-n", type=int, default=100)
    metrics = views.add_parser("metrics", help="metric names with data points and dimensions")
    metrics.add_argument("--index")
    mstats = views.add_parser("mstats", help="aggregate one metric, like Splunk's mstats")
    mstats.add_argument("--metric", required=True, help="e.g. aws.lambda.duration_ms")
    mstats.add_argument("--agg", default="count,avg,p50,p95,p99,max",
                        help=f"comma-separated: {','.join(AGGREGATES)}")
    mstats.add_argument("--by", action="append", default=[], help="dimension; repeatable")
    mstats.add_argument("--where", action="append", default=[], help="k=v on dimensions")
    mstats.add_argument("--span", type=float, help="time bucket in seconds")
    mstats.add_argument("--index")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m ext.local.hec`."""
    args = _build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return _query(args)


def _serve(args: argparse.Namespace) -> int:
    config: dict[str, Any] = json.loads(args.config.read_text()) if args.config else {}
    tokens = [*(HecToken.from_json(t) for t in config.get("tokens", [])), *args.token]
    limit_args = dict(config.get("limits", {}))
    for name in ("max_content_length", "max_event_size"):
        if getattr(args, name) is not None:
            limit_args[name] = getattr(args, name)
    known = {f.name for f in dataclass_fields(HecLimits)}
    limits = HecLimits(**{k: v for k, v in limit_args.items() if k in known})
    receiver = HecReceiver(
        args.db,
        tokens or DEFAULT_TOKENS,
        args.host,
        args.port,
        args.tls_cert,
        args.tls_key,
        limits,
        args.partial_prefix or bool(config.get("partial_prefix")),
        [*config.get("metrics_indexes", []), *args.metrics_index],
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with receiver:
        ready = {
            "url": receiver.url,
            "port": receiver.port,
            "db": str(receiver.db_path),
            "admin": receiver.url + "/_admin/",
            "pid": _pid(),
            "tokens": [t.name for t in receiver.state.tokens()],
        }
        print(json.dumps(ready), flush=True)
        while not stop.wait(0.5):
            continue
    return 0


def _pid() -> int:
    return os.getpid()


def _query(args: argparse.Namespace) -> int:
    try:
        store = open_reader(args.db)
    except FileNotFoundError:
        print(f"no such store: {args.db}", file=sys.stderr)
        return 2
    try:
        if args.view == "counts":
            rows = store.counts_by(args.by)
            for value, n in rows:
                print(
                    json.dumps({args.by: value, "count": n}) if args.json else f"{n:>10}  {value}"
                )
            return 0
        if args.view in ("metrics", "mstats"):
            return _metrics_view(store, args)
        if args.view == "tail":
            found = list(reversed(store.events(limit=args.n, newest=True)))
        else:
            filters: dict[str, Any] = {
                name: getattr(args, name)
                for name in (
                    "index",
                    "sourcetype",
                    "source",
                    "host",
                    "channel",
                    "contains",
                    "token_name",
                )
                if getattr(args, name) is not None
            }
            if args.field:
                filters["fields"] = dict(f.split("=", 1) for f in args.field)
            found = store.events(limit=args.n, **filters)
        for event in found:
            print(json.dumps(event.to_json()) if args.json else _line(event))
        return 0
    finally:
        store.close()


def _metrics_view(store: EventStore, args: argparse.Namespace) -> int:
    if args.view == "metrics":
        found = list_metrics(store, args.index)
        for entry in found:
            print(json.dumps(entry) if args.json else
                  f"{entry['points']:>8}  {entry['metric']:<44} index={','.join(entry['indexes'])}"
                  f"  dimensions={','.join(entry['dimensions'])}")
        return 0
    aggregates = [a.strip() for a in args.agg.split(",") if a.strip()]
    unknown = [a for a in aggregates if a not in AGGREGATES]
    if unknown:
        print(f"unknown aggregate {unknown[0]!r}; known: {', '.join(AGGREGATES)}", file=sys.stderr)
        return 2
    where = dict(w.split("=", 1) for w in args.where)
    rows = metric_stats(store, args.metric, aggregates, args.by, where, args.span, args.index)
    for row in rows:
        print(json.dumps(row) if args.json else "  ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return 0


def _line(event: StoredEvent) -> str:
    return (
        f"#{event.id} req={event.request_id}.{event.seq} index={event.index} "
        f"sourcetype={event.sourcetype} source={event.source} host={event.host}  {event.event}"
    )
