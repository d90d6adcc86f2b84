"""Configuration: every environment variable the extension reads, parsed and validated once.

`load(environ)` runs in the main process right after register; it collects every problem into
one ConfigError naming each variable, so a deployer fixes them all in one round. The resulting
frozen Config is handed to the listener and sender processes; nothing else reads the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from ext.errors import ConfigError

# The four names of the original sample; they must keep working exactly.
SPLUNK_HOST = "SPLUNK_HOST"
SPLUNK_HEC_TOKEN = "SPLUNK_HEC_TOKEN"  # noqa: S105 - a variable name, not a secret
SPLUNK_INDEX = "SPLUNK_INDEX"
DISPATCH_MIN_BATCH_SIZE = "DISPATCH_MIN_BATCH_SIZE"

TELEMETRY_KINDS = ("platform", "function", "extension")
FLUSH_STRATEGIES = ("sync", "background")
CONFIG_ERROR_ACTIONS = ("fail", "disable")
HEC_EVENT_PATH = "/services/collector/event"
EXTENSION_DIR_NAME = "splunk-hec-extension"
# Every line the extension logs carries this marker, so the sender can keep its own
# stderr (which Lambda feeds back as `extension` telemetry) out of Splunk by default.
OWN_LOG_MARKER = "[splunk-hec-ext]"

# Telemetry API buffering bounds (lambda-protocol.md §2.1); values outside answer 400.
BUFFER_ITEMS_RANGE = (1_000, 10_000)
BUFFER_BYTES_RANGE = (262_144, 1_048_576)
BUFFER_TIMEOUT_RANGE = (25, 30_000)

_INDEX_RE = re.compile(r"^[a-z0-9_][a-z0-9_\-]{0,79}$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Config:
    """Validated settings; defaults sit beside the fields and match the README table."""

    hec_url: str  # scheme://host[:port] only
    hec_path: str
    hec_token: str
    index: str | None = None
    dispatch_min_batch_size: int = 500
    dispatch_max_wait_ms: int = 1_000
    source: str | None = None  # None: "lambda:<function name>"
    sourcetype: str | None = None  # None: one per telemetry kind
    event_host: str | None = None  # None: the function name
    telemetry_types: tuple[str, ...] = TELEMETRY_KINDS
    buffer_max_items: int = 1_000
    buffer_max_bytes: int = 262_144
    buffer_timeout_ms: int = 25
    flush: str = "sync"
    flush_budget_ms: int = 500
    spool_dir: str = ""
    spool_max_bytes: int = 64 * 2**20
    verify_tls: bool = True
    ca_bundle: str | None = None
    connect_timeout_ms: int = 2_000
    request_timeout_ms: int = 5_000
    max_request_bytes: int = 1_048_576
    gzip_level: int = 1
    listener_host: str | None = None  # None: sandbox.localdomain if it resolves, else 127.0.0.1
    listener_port: int = 0
    forward_own_logs: bool = False
    on_config_error: str = "fail"
    log_level: str = "WARNING"


class _Reader:
    """Parses variables one by one, recording problems instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def parse(self, name: str, default: T, convert: Callable[[str], T], expect: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return convert(value)
        except ValueError:
            self.problems.append(f"{name}={value!r} is not valid: expected {expect}")
            return default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        def convert(text: str) -> int:
            number = int(text)
            if not low <= number <= high:
                raise ValueError(text)
            return number

        return self.parse(name, default, convert, f"an integer from {low} to {high}")

    def boolean(self, name: str, default: bool) -> bool:
        def convert(text: str) -> bool:
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(text)

        return self.parse(name, default, convert, "true or false")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def convert(text: str) -> str:
            if text.lower() not in choices:
                raise ValueError(text)
            return text.lower()

        return self.parse(name, default, convert, " or ".join(choices))


def _split_hec_url(value: str) -> tuple[str, str]:
    """Turns SPLUNK_HOST into (scheme://host[:port], path); https when no scheme is given."""
    text = value if "://" in value else f"https://{value}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(value)
    _ = parts.port  # raises ValueError on a malformed port
    path = parts.path.rstrip("/")
    if path in ("", "/services/collector"):
        path = HEC_EVENT_PATH
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(value)
    return f"{parts.scheme}://{parts.netloc}", path


def _telemetry_types(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in text.split(",") if k.strip()))
    if not kinds or any(k not in TELEMETRY_KINDS for k in kinds):
        raise ValueError(text)
    return kinds


def default_spool_dir(environ: Mapping[str, str]) -> str:
    """Lambda's /tmp, or TMPDIR when set (the local emulator gives each sandbox its own)."""
    tmp = environ.get("TMPDIR") or "/tmp"  # noqa: S108 - Lambda's only writable disk
    return os.path.join(tmp, EXTENSION_DIR_NAME, "spool")


def load(environ: Mapping[str, str]) -> Config:
    """Builds the Config from `environ`; raises ConfigError listing every bad variable."""
    r = _Reader(environ)
    hec_url, hec_path = "", HEC_EVENT_PATH
    host = r.raw(SPLUNK_HOST)
    if host is None:
        r.problems.append(f"{SPLUNK_HOST} is required (the HEC base URL, e.g. https://splunk:8088)")
    else:
        hec_url, hec_path = r.parse(
            SPLUNK_HOST, ("", HEC_EVENT_PATH), _split_hec_url, "a URL like https://host:8088"
        )
    token = r.raw(SPLUNK_HEC_TOKEN) or ""
    if not token:
        r.problems.append(f"{SPLUNK_HEC_TOKEN} is required")
    elif any(c.isspace() for c in token):
        r.problems.append(f"{SPLUNK_HEC_TOKEN} must not contain white space")

    def index_name(text: str) -> str:
        if not _INDEX_RE.match(text):
            raise ValueError(text)
        return text

    ca_bundle = r.raw("SPLUNK_CA_BUNDLE")
    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        r.problems.append(f"SPLUNK_CA_BUNDLE={ca_bundle!r} is not a readable file")
    level = r.parse(
        "SPLUNK_LOG_LEVEL", "WARNING", _log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
    config = Config(
        hec_url=hec_url,
        hec_path=hec_path,
        hec_token=token,
        index=r.parse(SPLUNK_INDEX, None, index_name, "a Splunk index name (a-z, 0-9, _ and -)"),
        dispatch_min_batch_size=r.integer(DISPATCH_MIN_BATCH_SIZE, 500, 1, 100_000),
        dispatch_max_wait_ms=r.integer("SPLUNK_DISPATCH_MAX_WAIT_MS", 1_000, 0, 600_000),
        source=r.raw("SPLUNK_SOURCE"),
        sourcetype=r.raw("SPLUNK_SOURCETYPE"),
        event_host=r.raw("SPLUNK_HEC_HOST"),
        telemetry_types=r.parse(
            "SPLUNK_TELEMETRY_TYPES", TELEMETRY_KINDS, _telemetry_types,
            "a comma-separated list of platform, function, extension",
        ),
        buffer_max_items=r.integer("SPLUNK_BUFFER_MAX_ITEMS", 1_000, *BUFFER_ITEMS_RANGE),
        buffer_max_bytes=r.integer("SPLUNK_BUFFER_MAX_BYTES", 262_144, *BUFFER_BYTES_RANGE),
        buffer_timeout_ms=r.integer("SPLUNK_BUFFER_TIMEOUT_MS", 25, *BUFFER_TIMEOUT_RANGE),
        flush=r.choice("SPLUNK_FLUSH", "sync", FLUSH_STRATEGIES),
        flush_budget_ms=r.integer("SPLUNK_FLUSH_BUDGET_MS", 500, 0, 900_000),
        spool_dir=r.raw("SPLUNK_SPOOL_DIR") or default_spool_dir(environ),
        spool_max_bytes=r.integer("SPLUNK_SPOOL_MAX_MB", 64, 8, 10_240) * 2**20,
        verify_tls=r.boolean("SPLUNK_VERIFY_TLS", True),
        ca_bundle=ca_bundle,
        connect_timeout_ms=r.integer("SPLUNK_CONNECT_TIMEOUT_MS", 2_000, 50, 60_000),
        request_timeout_ms=r.integer("SPLUNK_REQUEST_TIMEOUT_MS", 5_000, 100, 300_000),
        max_request_bytes=r.integer("SPLUNK_MAX_REQUEST_BYTES", 1_048_576, 4_096, 100 * 2**20),
        gzip_level=r.integer("SPLUNK_GZIP_LEVEL", 1, 0, 9),
        listener_host=r.raw("SPLUNK_LISTENER_HOST"),
        listener_port=r.integer("SPLUNK_LISTENER_PORT", 0, 0, 65_535),
        forward_own_logs=r.boolean("SPLUNK_FORWARD_OWN_LOGS", False),
        on_config_error=r.choice("SPLUNK_ON_CONFIG_ERROR", "fail", CONFIG_ERROR_ACTIONS),
        log_level=level,
    )
    if config.listener_port == 9001:
        r.problems.append("SPLUNK_LISTENER_PORT=9001 is reserved by Lambda")
    if r.problems:
        raise ConfigError(r.problems)
    return config


def _log_level(text: str) -> str:
    upper = text.upper()
    if upper not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(text)
    return upper


def config_error_action(environ: Mapping[str, str]) -> str:
    """What to do when load() fails; read on its own so a bad config cannot hide it."""
    value = (environ.get("SPLUNK_ON_CONFIG_ERROR") or "fail").strip().lower()
    return value if value in CONFIG_ERROR_ACTIONS else "fail"
