"""Admin endpoints of the embedded HEC receiver (/_admin/...): faults, tokens, stats, queries.

Lets a test in another process switch faults and read the store over plain HTTP (loopback only,
no auth). Runs in the handler thread of the request; answers JSON, never raises.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ext.local.hec.faults import make_fault
from ext.local.hec.model import HecToken
from ext.local.hec.protocol import HecReply, json_reply, not_found_reply

if TYPE_CHECKING:
    import socket

    from ext.local.hec.state import ReceiverState

_INT_FILTERS = {"request_id", "since_id"}
_FLOAT_FILTERS = {"received_after"}


def handle(  # noqa: PLR0917 - the request's parts, as the handler has them
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes,
    state: ReceiverState,
    connection: socket.socket | None = None,
) -> HecReply:
    """Answer one admin request; bad input gives 400 with {"error": ...}.

    `connection` is the one this request came on: abandoning connections spares it.
    """
    route = (method, path.removeprefix("/_admin"))
    if route == ("POST", "/connections/abandon"):
        return json_reply(200, {"abandoned": state.connections.abandon(keep=connection)})
    try:
        payload = json.loads(body) if body.strip() else {}
        return _route(route, query, payload, state)
    except (ValueError, TypeError, KeyError) as err:
        return json_reply(400, {"error": str(err)})


def _route(  # noqa: PLR0911 - a routing table
    route: tuple[str, str], query: dict[str, str], payload: Any, state: ReceiverState
) -> HecReply:
    match route:
        case ("POST", "/fault"):
            params = dict(payload.get("params") or {})
            params.update(
                {k: v for k, v in payload.items() if k not in {"mode", "count", "params", "append"}}
            )
            fault = make_fault(payload["mode"], payload.get("count"), **params)
            (state.faults.add if payload.get("append") else state.faults.set)(fault)
            return json_reply(200, {"faults": state.faults.snapshot()})
        case ("POST", "/fault/clear") | ("DELETE", "/fault"):
            state.faults.clear(payload.get("target") if isinstance(payload, dict) else None)
            return json_reply(200, {"faults": state.faults.snapshot()})
        case ("GET", "/faults"):
            return json_reply(200, {"faults": state.faults.snapshot()})
        case ("GET", "/stats"):
            stats = state.store.request_stats()
            stats["stored_events"] = state.store.count()
            stats["faults"] = state.faults.snapshot()
            stats["partial_prefix"] = state.partial_prefix
            stats["connections"] = state.connections.counts()
            return json_reply(200, stats)
        case ("GET", "/events"):
            limit = int(query.pop("limit", "1000"))
            newest = query.pop("newest", "") in {"1", "true"}
            found = state.store.events(limit=limit, newest=newest, **_filters(query))
            return json_reply(200, {"events": [e.to_json() for e in found]})
        case ("GET", "/count"):
            return json_reply(200, {"count": state.store.count(**_filters(query))})
        case ("GET", "/requests"):
            return json_reply(200, {"requests": state.store.requests(int(query.get("limit", 100)))})
        case ("GET", "/tokens"):
            return json_reply(200, {"tokens": [t.to_json() for t in state.tokens()]})
        case ("POST", "/tokens"):
            state.put_tokens(HecToken.from_json(t) for t in payload["tokens"])
            return json_reply(200, {"tokens": [t.to_json() for t in state.tokens()]})
        case ("POST", "/behaviour"):
            state.partial_prefix = bool(payload["partial_prefix"])
            return json_reply(200, {"partial_prefix": state.partial_prefix})
        case _:
            return not_found_reply()


def _filters(query: dict[str, str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for name, value in query.items():
        if name.startswith("fields."):
            filters.setdefault("fields", {})[name.removeprefix("fields.")] = value
        elif name in _INT_FILTERS:
            filters[name] = int(value)
        elif name in _FLOAT_FILTERS:
            filters[name] = float(value)
        else:
            filters[name] = value
    return filters
