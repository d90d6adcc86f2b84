"""HEC wire vocabulary: paths, status codes with their HTTP statuses and texts, reply bodies.

Pure data and tiny builders, used by the receiver's request handler (any thread). The code table
is hec.md section 1.10 (Splunk "Possible error codes"); the HTML pages mimic what a local Splunk
returned for 413/415/bad gzip (hec.md 3.5). No I/O here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

PATH_COLLECTOR = "/services/collector"
EVENT_PATHS = frozenset({PATH_COLLECTOR, f"{PATH_COLLECTOR}/event", f"{PATH_COLLECTOR}/event/1.0"})
RAW_PATHS = frozenset({f"{PATH_COLLECTOR}/raw", f"{PATH_COLLECTOR}/raw/1.0"})
ACK_PATHS = frozenset({f"{PATH_COLLECTOR}/ack", f"{PATH_COLLECTOR}/ack/1.0"})
HEALTH_PATHS = frozenset({f"{PATH_COLLECTOR}/health", f"{PATH_COLLECTOR}/health/1.0"})
ADMIN_PREFIX = "/_admin/"

HEADER_CHANNEL = "X-Splunk-Request-Channel"
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
HTML_CONTENT_TYPE = "text/html; charset=UTF-8"

# code -> (HTTP status, text); hec.md 1.10.
HEC_CODES: dict[int, tuple[int, str]] = {
    0: (200, "Success"),
    1: (403, "Token disabled"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    7: (400, "Incorrect index"),
    8: (500, "Internal server error"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"),
    16: (400, "Query string authorization is not enabled"),
    17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
    19: (503, "HEC is unhealthy, ack service unavailable"),
    20: (503, "HEC is unhealthy, queues are full, ack service unavailable"),
    21: (400, "Invalid token"),
    22: (400, "Token disabled"),
    23: (503, "Server is shutting down"),
    24: (200, "HEC queue is approaching its capacity limit"),
    25: (200, "HEC ACK is approaching its capacity limit"),
    26: (429, "HEC queue is at capacity and cannot process any more requests"),
    27: (429, "HEC ACK channel is at capacity and cannot process any more requests"),
}
# Codes whose reply names the failing event (hec.md 1.11).
EVENT_SCOPED_CODES = frozenset({6, 7, 12, 13, 15})
NOT_FOUND_TEXT = "The requested URL was not found on this server."


@dataclass(frozen=True)
class HecReply:
    """One HTTP answer: status, body bytes, extra headers, and whether to close the connection."""

    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    code: int | None = None  # the HEC code carried, for the request log


def hec_reply(
    code: int,
    *,
    event_number: int | None = None,
    ack_id: int | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> HecReply:
    """The standard `{"text","code"}` reply for an HEC code, with optional event number / ackId."""
    status, text = HEC_CODES[code]
    body: dict[str, object] = {"text": text, "code": code}
    if event_number is not None:
        body["invalid-event-number"] = event_number
    if ack_id is not None:
        body["ackId"] = ack_id
    return HecReply(status, json_bytes(body), headers=headers, code=code)


def json_reply(status: int, payload: object, *, code: int | None = None) -> HecReply:
    """A JSON reply with an arbitrary payload (ack answers, admin endpoints, 404 JSON)."""
    return HecReply(status, json_bytes(payload), code=code)


def not_found_reply() -> HecReply:
    """Unknown path: Splunk answers JSON with code 404 (hec.md 1.1, measured by hecpoc)."""
    return json_reply(404, {"text": NOT_FOUND_TEXT, "code": 404}, code=404)


def html_reply(status: int, title: str, detail: str, *, close: bool = False) -> HecReply:
    """Generic HTML error page, as splunkd returns for 413, 415 and malformed gzip."""
    page = (
        '<!doctype html><html><head><meta http-equiv="content-type" '
        f'content="text/html; charset=UTF-8"><title>{status} {title}</title></head>'
        f"<body><h1>{title}</h1><p>{detail}</p></body></html>"
    )
    return HecReply(status, page.encode(), content_type=HTML_CONTENT_TYPE, close=close)


def json_bytes(payload: object) -> bytes:
    """Compact JSON encoding used for every JSON reply."""
    return json.dumps(payload, separators=(",", ":")).encode()
