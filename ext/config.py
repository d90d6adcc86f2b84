"""Configuration: every environment variable the extension reads, parsed and validated once.

`load(environ)` runs in the main process right after register; it collects every problem into
one ConfigError naming each variable, so a deployer fixes them all in one round. The resulting
read-only Config is handed to the listener and sender processes; nothing else reads the
environment. On the cold-start path: no dataclasses, re, urllib or typing imports (together
they cost more than the rest of the extension's start).
"""

from __future__ import annotations

import os

from ext.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from re import Pattern
    from typing import TypeVar

    T = TypeVar("T")

# The four names of the original sample; they must keep working exactly.
SPLUNK_HOST = "SPLUNK_HOST"
SPLUNK_HEC_TOKEN = "SPLUNK_HEC_TOKEN"  # noqa: S105 - a variable name, not a secret
SPLUNK_INDEX = "SPLUNK_INDEX"
DISPATCH_MIN_BATCH_SIZE = "DISPATCH_MIN_BATCH_SIZE"
# The other two token sources: fetched at run time by the sender with the function's role.
SPLUNK_HEC_TOKEN_SECRET_ARN = "SPLUNK_HEC_TOKEN_SECRET_ARN"  # noqa: S105 - a variable name
SPLUNK_HEC_TOKEN_SECRET_KEY = "SPLUNK_HEC_TOKEN_SECRET_KEY"  # noqa: S105 - a variable name
SPLUNK_HEC_TOKEN_SSM_PARAMETER = "SPLUNK_HEC_TOKEN_SSM_PARAMETER"  # noqa: S105 - a variable name
TOKEN_SOURCES = (SPLUNK_HEC_TOKEN, SPLUNK_HEC_TOKEN_SECRET_ARN, SPLUNK_HEC_TOKEN_SSM_PARAMETER)
# Per source: the service (its signing name and endpoint prefix) and its endpoint override, named
# as the AWS SDKs name it (AWS SDKs and Tools Reference, "Service-specific endpoints").
AWS_TOKEN_SERVICES = {
    SPLUNK_HEC_TOKEN_SECRET_ARN: ("secretsmanager", "AWS_ENDPOINT_URL_SECRETS_MANAGER"),
    SPLUNK_HEC_TOKEN_SSM_PARAMETER: ("ssm", "AWS_ENDPOINT_URL_SSM"),
}

TELEMETRY_KINDS: tuple[str, ...] = ("platform", "function", "extension")
FLUSH_STRATEGIES = ("adaptive", "sync", "background")
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

_INDEX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
# Log levels from least to most severe; SPLUNK_MIN_LEVEL keeps lines at or above its rank.
LEVEL_RANKS = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "WARNING": 3, "ERROR": 4,
               "FATAL": 5, "CRITICAL": 5}
# The Lambda variables the sender's enrichment reads (ext/enrichment.py); the extension sees the
# first four, the others only where the platform passes them (lambda-protocol.md §6.1).
ENRICHMENT_VARIABLES = ("AWS_REGION", "AWS_LAMBDA_FUNCTION_VERSION",
                        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_INITIALIZATION_TYPE",
                        "AWS_EXECUTION_ENV", "AWS_LAMBDA_LOG_GROUP_NAME")
# The enrichment fields, all on by default; SPLUNK_ENRICH may name a subset.
ENRICHMENT_FIELDS: tuple[str, ...] = (
    "function_arn", "function_version", "aws_account_id", "aws_region", "memory_size_mb",
    "architecture", "runtime", "log_group", "environment_id", "init_type", "cold_start")
_NO_FIELDS: tuple[tuple[str, str], ...] = ()
_FIELD_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# SPLUNK_FIELDS may not shadow what Splunk or the extension itself sets.
RESERVED_FIELDS = frozenset({
    "time", "host", "source", "sourcetype", "index", "event", "fields", "punct", "linecount",
    "splunk_server", "function_name", "telemetry_type", "request_id", "level", "function_arn",
    "function_version", "aws_account_id", "aws_region", "memory_size_mb", "architecture",
    "runtime", "log_group", "environment_id", "cold_start", "init_type",
})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

class Config:
    """Validated settings; defaults sit beside the fields and match the README table.

    Read-only once built: the same values must hold in every process of the extension.
    """

    hec_url: str  # scheme://host[:port] only
    hec_path: str
    hec_token: str  # "" when the token is fetched from AWS (token_source)
    token_source: str = "value"  # noqa: S105 - "value", "secretsmanager" or "ssm"
    token_reference: str = ""  # the secret ARN or the parameter name (names, not values)
    token_secret_key: str | None = None  # a key of a JSON secret; None: the whole string
    token_refetch_s: int = 30  # least time between two fetches after HEC rejected the token
    aws_region: str = ""
    aws_endpoint: str = ""  # scheme://host[:port] of token_source's API
    aws_credentials: tuple[str, str, str | None] | None = None  # key id, secret, session token
    function_name: str = "unknown-function"
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
    flush: str = "adaptive"
    flush_budget_ms: int = 500
    max_latency_ms: int = 2_000  # adaptive: the bound it keeps while HEC is up (flush_policy.py)
    spool_dir: str = ""
    spool_max_bytes: int = 64 * 2**20
    verify_tls: bool = True
    ca_bundle: str | None = None
    connect_timeout_ms: int = 2_000
    request_timeout_ms: int = 5_000
    max_request_bytes: int = 1_048_576
    gzip_level: int = 1
    # Metrics, alerts and self-metrics (issue 13; ext/metrics.py, docs/metrics.md).
    metrics_index: str | None = None  # None: no metric events (alerts and self-metrics as events)
    platform_events: bool = True  # False: report/runtimeDone/init figures go only as metrics
    self_metrics: bool = True
    # At most one self-metrics event per this many ms (and one at shutdown): each reads /proc
    # for three processes, ~0.4 ms of CPU at 128 MB, too much to pay on every invocation.
    self_metrics_interval_ms: int = 10_000
    listener_host: str | None = None  # None: sandbox.localdomain if it resolves, else 127.0.0.1
    listener_port: int = 0
    forward_own_logs: bool = False
    on_config_error: str = "fail"
    log_level: str = "WARNING"
    # Enrichment (ext/enrichment.py): indexed fields on every event.
    enrich: tuple[str, ...] = ENRICHMENT_FIELDS  # of the function's identity (SPLUNK_ENRICH)
    user_fields: tuple[tuple[str, str], ...] = ()  # SPLUNK_FIELDS, in order
    account_id: str = ""  # from register's response (Lambda-Extension-Accept-Feature)
    aws_environment: tuple[tuple[str, str], ...] = ()  # ENRICHMENT_VARIABLES that are set
    # Filters and masking, applied by the listener before the spool (ext/filters.py).
    min_level: str | None = None  # SPLUNK_MIN_LEVEL, upper case
    drop_pattern: Pattern[str] | None = None  # SPLUNK_DROP_REGEX
    mask_rules: tuple[tuple[Pattern[str], str], ...] = ()  # SPLUNK_MASK

    def __init__(self, **values: object) -> None:
        for name, value in values.items():
            if name not in Config.__annotations__:
                raise TypeError(f"unknown setting {name}")
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Config is read-only")

    def __repr__(self) -> str:
        # The token never appears in a repr, a log line or a traceback.
        hidden = ("hec_token", "aws_credentials", "mask_rules", "drop_pattern")  # may quote secrets
        shown = {n: getattr(self, n) for n in Config.__annotations__ if n not in hidden}
        return f"Config({shown})"


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
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    netloc, slash, path = rest.partition("/")
    if scheme not in ("http", "https") or any(c in text for c in "?#@ \t"):
        raise ValueError(value)
    host, port = netloc, ""
    if netloc.startswith("["):  # an IPv6 literal
        close = netloc.find("]")
        if close < 0 or (netloc[close + 1 :] and not netloc[close + 1 :].startswith(":")):
            raise ValueError(value)
        host, port = netloc[: close + 1], netloc[close + 2 :]
    elif ":" in netloc:
        host, _, port = netloc.partition(":")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65_536)):
        raise ValueError(value)
    if ":" in netloc and not port:
        raise ValueError(value)
    path = (slash + path).rstrip("/")
    if path in ("", "/services/collector"):
        path = HEC_EVENT_PATH
    return f"{scheme}://{netloc}", path


def _telemetry_types(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in text.split(",") if k.strip()))
    if not kinds or any(k not in TELEMETRY_KINDS for k in kinds):
        raise ValueError(text)
    return kinds


def default_spool_dir(environ: Mapping[str, str]) -> str:
    """Lambda's /tmp, or TMPDIR when set (the local emulator gives each sandbox its own)."""
    tmp = environ.get("TMPDIR") or "/tmp"  # noqa: S108 - Lambda's only writable disk
    return os.path.join(tmp, EXTENSION_DIR_NAME, "spool")


def load(environ: Mapping[str, str], account_id: str = "") -> Config:
    """Builds the Config from `environ` (and the account id register answered, if any);
    raises ConfigError listing every bad variable."""
    r = _Reader(environ)
    hec_url, hec_path = "", HEC_EVENT_PATH
    host = r.raw(SPLUNK_HOST)
    if host is None:
        r.problems.append(f"{SPLUNK_HOST} is required (the HEC base URL, e.g. https://splunk:8088)")
    else:
        try:
            hec_url, hec_path = _split_hec_url(host)
        except ValueError:
            # Never echo credentials or a query a deployer put in the URL (issue 16).
            r.problems.append(
                f"{SPLUNK_HOST}={redact_url(host)!r} is not valid: expected a URL like "
                "https://host:8088, without credentials or a query"
            )
    token = _token_settings(r)

    def index_name(text: str) -> str:
        if len(text) > 80 or text[0] == "-" or not set(text) <= _INDEX_CHARS:
            raise ValueError(text)
        return text

    ca_bundle = r.raw("SPLUNK_CA_BUNDLE")
    if ca_bundle is not None and not os.path.isfile(ca_bundle):
        r.problems.append(f"SPLUNK_CA_BUNDLE={ca_bundle!r} is not a readable file")
    level = r.parse(
        "SPLUNK_LOG_LEVEL", "WARNING", _log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
    spool_dir = r.raw("SPLUNK_SPOOL_DIR") or default_spool_dir(environ)
    unwritable = _unwritable_dir(spool_dir)
    if unwritable:
        r.problems.append(f"SPLUNK_SPOOL_DIR={spool_dir!r} cannot hold the spool: {unwritable}")
    config = Config(
        hec_url=hec_url,
        hec_path=hec_path,
        **token,
        function_name=environ.get("AWS_LAMBDA_FUNCTION_NAME") or "unknown-function",
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
        flush=r.choice("SPLUNK_FLUSH", "adaptive", FLUSH_STRATEGIES),
        flush_budget_ms=r.integer("SPLUNK_FLUSH_BUDGET_MS", 500, 0, 900_000),
        max_latency_ms=r.integer("SPLUNK_MAX_LATENCY_MS", 2_000, 100, 3_600_000),
        spool_dir=spool_dir,
        spool_max_bytes=r.integer("SPLUNK_SPOOL_MAX_MB", 64, 8, 10_240) * 2**20,
        verify_tls=r.boolean("SPLUNK_VERIFY_TLS", True),
        ca_bundle=ca_bundle,
        connect_timeout_ms=r.integer("SPLUNK_CONNECT_TIMEOUT_MS", 2_000, 50, 60_000),
        request_timeout_ms=r.integer("SPLUNK_REQUEST_TIMEOUT_MS", 5_000, 100, 300_000),
        max_request_bytes=r.integer("SPLUNK_MAX_REQUEST_BYTES", 1_048_576, 4_096, 100 * 2**20),
        gzip_level=r.integer("SPLUNK_GZIP_LEVEL", 1, 0, 9),
        **_metrics_settings(r, index_name),
        listener_host=r.raw("SPLUNK_LISTENER_HOST"),
        listener_port=r.integer("SPLUNK_LISTENER_PORT", 0, 0, 65_535),
        forward_own_logs=r.boolean("SPLUNK_FORWARD_OWN_LOGS", False),
        on_config_error=r.choice("SPLUNK_ON_CONFIG_ERROR", "fail", CONFIG_ERROR_ACTIONS),
        log_level=level,
        enrich=r.parse("SPLUNK_ENRICH", ENRICHMENT_FIELDS, _enrich,
                       "true, false, or a comma-separated list of "
                       + ", ".join(ENRICHMENT_FIELDS)),
        user_fields=r.parse("SPLUNK_FIELDS", _NO_FIELDS, _user_fields,
                            "comma-separated name=value pairs, e.g. team=payments,env=prod "
                            "(names: letters, digits and _, not starting with _ or a digit, "
                            "not a field the extension or Splunk sets)"),
        account_id=account_id if account_id.isdigit() else "",
        aws_environment=tuple((name, environ[name].strip()) for name in ENRICHMENT_VARIABLES
                              if environ.get(name, "").strip()),
        min_level=r.parse("SPLUNK_MIN_LEVEL", None, _min_level,
                          "one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL"),
        **_pattern_settings(r),
    )
    if config.listener_port == 9001:
        r.problems.append("SPLUNK_LISTENER_PORT=9001 is reserved by Lambda")
    if r.problems:
        raise ConfigError(r.problems)
    return config


def _metrics_settings(r: _Reader, index_name: Callable[[str], str]) -> dict[str, object]:
    """SPLUNK_METRICS_INDEX, SPLUNK_PLATFORM_EVENTS and SPLUNK_SELF_METRICS[_INTERVAL_MS]."""
    metrics_index = r.parse("SPLUNK_METRICS_INDEX", None, index_name,
                            "a Splunk metrics index name (a-z, 0-9, _ and -)")
    platform_events = r.boolean("SPLUNK_PLATFORM_EVENTS", True)
    if not platform_events and r.raw("SPLUNK_METRICS_INDEX") is None:
        r.problems.append("SPLUNK_PLATFORM_EVENTS=false needs SPLUNK_METRICS_INDEX: without a "
                          "metrics index the platform figures would reach Splunk nowhere")
    return {"metrics_index": metrics_index, "platform_events": platform_events,
            "self_metrics": r.boolean("SPLUNK_SELF_METRICS", True),
            "self_metrics_interval_ms": r.integer("SPLUNK_SELF_METRICS_INTERVAL_MS", 10_000, 0,
                                                  3_600_000)}


def redact_url(url: str) -> str:
    """`url` with any user:password@ and any query or fragment replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    for mark in "?#":
        if mark in rest:
            rest = rest[: rest.index(mark)] + mark + "***"
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return scheme + sep + netloc + slash + path


def token_problem(token: str) -> str | None:
    """Why `token` cannot be a HEC token (never quoting it), or None if it can.

    HEC tokens are GUIDs; anything outside visible ASCII cannot travel in an HTTP header
    (http.client encodes headers as Latin-1) and would fail every request, so it is refused here.
    """
    if not token:
        return "is empty"
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        return "must be printable ASCII without spaces (a HEC token is a GUID)"
    return None


def _token_settings(r: _Reader) -> dict[str, object]:
    """The token source's Config fields; exactly one source must be set."""
    given = [name for name in TOKEN_SOURCES if r.raw(name) is not None]
    if len(given) != 1:
        found = f" ({' and '.join(given)} are set)" if given else ""
        r.problems.append(f"set exactly one of {', '.join(TOKEN_SOURCES)}{found}")
        return {"hec_token": ""}
    source = given[0]
    value = r.raw(source) or ""
    key = r.raw(SPLUNK_HEC_TOKEN_SECRET_KEY)
    if key is not None and source != SPLUNK_HEC_TOKEN_SECRET_ARN:
        r.problems.append(f"{SPLUNK_HEC_TOKEN_SECRET_KEY} needs {SPLUNK_HEC_TOKEN_SECRET_ARN}")
    if source == SPLUNK_HEC_TOKEN:
        problem = token_problem(value)
        if problem:
            r.problems.append(f"{SPLUNK_HEC_TOKEN} {problem}")
        return {"hec_token": value}
    service, endpoint_variable = AWS_TOKEN_SERVICES[source]
    if source == SPLUNK_HEC_TOKEN_SECRET_ARN and not value.startswith("arn:"):
        r.problems.append(f"{source}={value!r} is not valid: expected the secret's full ARN")
    region = r.raw("AWS_REGION") or r.raw("AWS_DEFAULT_REGION") or ""
    key_id, secret = r.raw("AWS_ACCESS_KEY_ID"), r.raw("AWS_SECRET_ACCESS_KEY")
    missing = [name for name, got in (("AWS_REGION", region), ("AWS_ACCESS_KEY_ID", key_id),
                                      ("AWS_SECRET_ACCESS_KEY", secret)) if not got]
    if missing:
        r.problems.append(f"{source} needs the function's role credentials: "
                          f"{', '.join(missing)} not set")
    return {
        "hec_token": "",
        "token_source": service,
        "token_reference": value,
        "token_secret_key": key,
        "token_refetch_s": r.integer("SPLUNK_HEC_TOKEN_REFETCH_S", 30, 1, 3_600),
        "aws_region": region,
        "aws_endpoint": _aws_endpoint(r, endpoint_variable, service, region),
        "aws_credentials": (key_id or "", secret or "", r.raw("AWS_SESSION_TOKEN")),
    }


def _aws_endpoint(r: _Reader, service_variable: str, service: str, region: str) -> str:
    """The API endpoint as the AWS SDKs pick it: the service's variable, then AWS_ENDPOINT_URL,
    then the public regional endpoint; AWS_IGNORE_CONFIGURED_ENDPOINT_URLS turns off the first two.
    """
    if not r.boolean("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", False):
        for name in (service_variable, "AWS_ENDPOINT_URL"):
            url = r.raw(name)
            if url is None:
                continue
            scheme, sep, rest = url.partition("://")
            netloc = rest.partition("/")[0]
            if scheme.lower() not in ("http", "https") or not sep or not netloc or "@" in netloc:
                r.problems.append(f"{name}={redact_url(url)!r} is not valid: expected a URL "
                                  "like https://host[:port]")
                return ""
            return f"{scheme.lower()}://{netloc}"
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{service}.{region}.{suffix}"


def _unwritable_dir(path: str) -> str | None:
    """Why the extension could not create and write `path`, or None (checked without writing)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def _user_fields(text: str) -> tuple[tuple[str, str], ...]:
    pairs: dict[str, str] = {}
    for item in text.split(","):
        name, equals, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if (not equals or not value or not name or len(name) > 64 or len(value) > 1_024
                or name[0] == "_" or name[0].isdigit() or not set(name) <= _FIELD_NAME_CHARS
                or name.lower() in RESERVED_FIELDS or name.lower().startswith("date_")
                or name in pairs):
            raise ValueError(text)
        pairs[name] = value
    return tuple(pairs.items())


def _enrich(text: str) -> tuple[str, ...]:
    lowered = text.lower()
    if lowered in _TRUE:
        return ENRICHMENT_FIELDS
    if lowered in _FALSE:
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in lowered.split(",") if n.strip()))
    if not names or any(n not in ENRICHMENT_FIELDS for n in names):
        raise ValueError(text)
    return names


def _min_level(text: str) -> str:
    upper = text.upper()
    if upper not in LEVEL_RANKS:
        raise ValueError(text)
    return upper


def _pattern_settings(r: _Reader) -> dict[str, object]:
    """SPLUNK_DROP_REGEX and SPLUNK_MASK, compiled (and `re` imported) only when set."""
    drop, mask = r.raw("SPLUNK_DROP_REGEX"), r.raw("SPLUNK_MASK")
    if drop is None and mask is None:
        return {}
    from ext import rules

    settings: dict[str, object] = {}
    for name, text, compile_ in (("SPLUNK_DROP_REGEX", drop, rules.compile_drop),
                                 ("SPLUNK_MASK", mask, rules.compile_masks)):
        if text is None:
            continue
        try:
            settings["drop_pattern" if name == "SPLUNK_DROP_REGEX" else "mask_rules"] = (
                compile_(text))
        except rules.RuleError as err:
            # The value is not echoed: a mask rule may quote what it hides.
            r.problems.append(f"{name} is not valid: {err}")
    return settings


def _log_level(text: str) -> str:
    upper = text.upper()
    if upper not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(text)
    return upper


def config_error_action(environ: Mapping[str, str]) -> str:
    """What to do when load() fails; read on its own so a bad config cannot hide it."""
    value = (environ.get("SPLUNK_ON_CONFIG_ERROR") or "fail").strip().lower()
    return value if value in CONFIG_ERROR_ACTIONS else "fail"
