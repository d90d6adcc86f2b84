"""Validation of Telemetry API subscription requests (PUT /2022-07-01/telemetry), pure code.

Turns a request body into a Subscription or a SubscriptionError carrying the 400 ValidationError
message (lambda-protocol 2.1, 2.3: buffering ranges, types, HTTP destination on the sandbox host).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ext.local.sandbox import wire

# (default, min, max) per buffering field; telemetry-api-reference table.
MAX_ITEMS = (1000, 1000, 10000)
MAX_BYTES = (262144, 262144, 1048576)
TIMEOUT_MS = (1000, 25, 30000)
RESERVED_PORT = 9001


class SubscriptionError(ValueError):
    """The body fails validation; `str(err)` is the ValidationError message."""


@dataclass(frozen=True, slots=True)
class Buffering:
    """Batching limits of one subscriber."""

    max_items: int = MAX_ITEMS[0]
    max_bytes: int = MAX_BYTES[0]
    timeout_ms: int = TIMEOUT_MS[0]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A validated subscription: what to send, how to batch it and where to POST it."""

    schema_version: str
    types: tuple[str, ...]
    buffering: Buffering
    uri: str
    host: str
    port: int
    path: str


def _int_field(buffering: dict[str, Any], key: str, bounds: tuple[int, int, int]) -> int:
    default, low, high = bounds
    value = buffering.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SubscriptionError(f"buffering.{key} must be an integer")
    if not low <= value <= high:
        raise SubscriptionError(f"buffering.{key} must be between {low} and {high}")
    return value


def parse_buffering(raw: Any) -> Buffering:
    """Validate the optional `buffering` object; absent fields take their defaults."""
    if raw is None:
        return Buffering()
    if not isinstance(raw, dict):
        raise SubscriptionError("buffering must be an object")
    return Buffering(
        max_items=_int_field(raw, "maxItems", MAX_ITEMS),
        max_bytes=_int_field(raw, "maxBytes", MAX_BYTES),
        timeout_ms=_int_field(raw, "timeoutMs", TIMEOUT_MS),
    )


def parse_types(raw: Any) -> tuple[str, ...]:
    """Validate `types`: a non-empty list drawn from platform/function/extension."""
    if not isinstance(raw, list) or not raw:
        raise SubscriptionError("types should not be empty")
    for item in raw:
        if item not in wire.TELEMETRY_TYPES:
            raise SubscriptionError(f"types: unknown type {item!r}")
    return tuple(dict.fromkeys(raw))


def parse_destination(raw: Any) -> tuple[str, str, int, str]:
    """Validate an HTTP destination on the sandbox host; return (uri, host, port, path)."""
    if not isinstance(raw, dict):
        raise SubscriptionError("destination must be an object")
    if raw.get("protocol") != "HTTP":
        raise SubscriptionError("destination.protocol must be HTTP")
    uri = raw.get("URI")
    if not isinstance(uri, str) or not uri:
        raise SubscriptionError("destination.URI is required")
    parts = urlsplit(uri)
    if parts.scheme != "http":
        raise SubscriptionError("destination.URI scheme must be http")
    host = parts.hostname or ""
    # Lambda delivers only inside the execution environment (RIE-LMI accepts exactly these hosts).
    if host not in wire.SANDBOX_HOSTS:
        raise SubscriptionError("destination.URI host must be sandbox.localdomain")
    try:
        port = parts.port
    except ValueError as err:
        raise SubscriptionError("URI port is not valid") from err
    if port is None:
        raise SubscriptionError("URI port is not provided")
    if port == RESERVED_PORT:
        raise SubscriptionError("URI port 9001 is reserved")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return uri, host, port, path


def parse_subscription(
    body: bytes, schema_versions: frozenset[str] = wire.SCHEMA_VERSIONS
) -> Subscription:
    """Validate a whole subscription body against the accepted `schema_versions` (Lambda Managed
    Instances accept only wire.LMI_SCHEMA_VERSIONS); raises SubscriptionError."""
    try:
        doc = wire.decode(body)
    except msgspec.DecodeError as err:
        raise SubscriptionError(f"body is not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise SubscriptionError("body must be a JSON object")
    schema = doc.get("schemaVersion")
    if schema not in schema_versions:
        raise SubscriptionError(f"schemaVersion {schema!r} is not supported")
    types = parse_types(doc.get("types"))
    buffering = parse_buffering(doc.get("buffering"))
    uri, host, port, path = parse_destination(doc.get("destination"))
    return Subscription(schema, types, buffering, uri, host, port, path)
