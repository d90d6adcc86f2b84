"""Configuration: every environment variable the extension reads, declared once in SETTINGS and
parsed and validated once by `load`.

SETTINGS is the one table of the variables a deployer sets: one row per variable with its name,
the Config field it fills, how its text is parsed, its default, its bounds, how the README shows
the default, whether its value may appear in a message, and its help text. `load`, its error
messages, Config's defaults and the README's configuration table (`scripts/config_table.py`,
checked by tests/unit/test_config_table.py) all come from it.

`load(environ)` runs in the main process right after register; it collects every problem into
one ConfigError naming each variable, so a deployer fixes them all in one round. The resulting
read-only Config is handed to the listener and sender processes; nothing else reads the
environment. On the cold-start path: no dataclasses, re, urllib or typing imports (together
they cost more than the rest of the extension's start), and the table is rows of constants:
objects built at import cost ~0.1 ms of CPU more per cold start (measured), rows almost nothing.
"""

from __future__ import annotations

import os

from ext.errors import ConfigError
from ext.main.extensions_api import on_managed_instances, on_snap_start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from re import Pattern
    from typing import Any

    # name, field, kind, default, limits, shown default, flags, help (see SETTINGS)
    Row = tuple[str, str, str, object, Any, str, str, str]

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
# Lambda's own port in the sandbox (the Runtime and Extensions APIs): the listener cannot bind it.
LAMBDA_API_PORT = 9001

_INDEX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
# An SSM parameter's name (`/` parts a hierarchy) and a version's or label's selector.
_SELECTOR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_PARAMETER_CHARS = _SELECTOR_CHARS | {"/"}
# Log levels from least to most severe; SPLUNK_MIN_LEVEL keeps lines at or above its rank.
LEVEL_RANKS = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "WARNING": 3, "ERROR": 4,
               "FATAL": 5, "CRITICAL": 5}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Variables the platform (Lambda, the AWS SDK conventions) defines; read, not part of SETTINGS.
AWS_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
AWS_REGION = "AWS_REGION"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name, not a secret
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"  # noqa: S105 - a variable name, not a secret
# The container credential provider's variables (AWS SDKs and Tools Reference, "Container
# credential provider"): Lambda sets the FULL_URI and the token instead of the three above when
# SnapStart is on, so that no credentials are cached in the snapshot (Lambda developer guide,
# "Activating and managing Lambda SnapStart").
AWS_CONTAINER_CREDENTIALS_FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
AWS_CONTAINER_CREDENTIALS_RELATIVE_URI = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
AWS_CONTAINER_AUTHORIZATION_TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"  # noqa: S105 - a name
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"  # noqa: S105
# Where a RELATIVE_URI points (ECS's task metadata address), and the hosts the SDKs let a
# FULL_URI name over plain http besides loopback addresses: ECS's, and EKS Pod Identity's IPv4
# and IPv6 addresses (botocore utils.ContainerMetadataFetcher, as the other SDKs).
CONTAINER_CREDENTIALS_HOST = "169.254.170.2"
CONTAINER_CREDENTIALS_HTTP_HOSTS = frozenset({CONTAINER_CREDENTIALS_HOST, "169.254.170.23",
                                              "fd00:ec2::23", "localhost"})
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
AWS_USE_FIPS_ENDPOINT = "AWS_USE_FIPS_ENDPOINT"
AWS_USE_DUALSTACK_ENDPOINT = "AWS_USE_DUALSTACK_ENDPOINT"
TMPDIR = "TMPDIR"

# The Lambda variables the sender's enrichment reads (ext/sender/enrichment.py); the extension
# sees the first four, the others only where the platform passes them (lambda-protocol.md §6.1).
ENRICHMENT_VARIABLES = (AWS_REGION, "AWS_LAMBDA_FUNCTION_VERSION",
                        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_INITIALIZATION_TYPE",
                        "AWS_EXECUTION_ENV", "AWS_LAMBDA_LOG_GROUP_NAME")
# The enrichment fields, all on by default; SPLUNK_ENRICH may name a subset.
ENRICHMENT_FIELDS: tuple[str, ...] = (
    "function_arn", "function_version", "aws_account_id", "aws_region", "memory_size_mb",
    "architecture", "runtime", "log_group", "environment_id", "init_type", "cold_start")
_FIELD_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# SPLUNK_FIELDS may not shadow what Splunk or the extension itself sets, the dimensions of its
# metrics and the field of its alerts included (ext/sender/metrics.py, derived.py,
# self_metrics.py): a field of the user's would take their place.
RESERVED_FIELDS = frozenset({
    "time", "host", "source", "sourcetype", "index", "event", "fields", "punct", "linecount",
    "splunk_server", "function_name", "telemetry_type", "request_id", "level", "function_arn",
    "function_version", "aws_account_id", "aws_region", "memory_size_mb", "architecture",
    "runtime", "log_group", "environment_id", "cold_start", "init_type",
    "status", "error_type", "phase", "alert", "reason",
    # A plain metric_name (or metric_type) key marks HEC's single-metric form, which needs
    # _value: beside the metric_name:<name> keys of a metric event it would spoil it.
    "metric_name", "metric_type",
})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

# Variables of SETTINGS the code refers to by name (the other rows spell theirs only there).
SPLUNK_HOST = "SPLUNK_HOST"
SPLUNK_HEC_TOKEN = "SPLUNK_HEC_TOKEN"  # noqa: S105 - a variable name, not a secret
SPLUNK_HEC_TOKEN_SECRET_ARN = "SPLUNK_HEC_TOKEN_SECRET_ARN"  # noqa: S105 - a variable name
SPLUNK_HEC_TOKEN_SECRET_KEY = "SPLUNK_HEC_TOKEN_SECRET_KEY"  # noqa: S105 - a variable name
SPLUNK_HEC_TOKEN_SSM_PARAMETER = "SPLUNK_HEC_TOKEN_SSM_PARAMETER"  # noqa: S105 - a variable name
SPLUNK_HEC_TOKEN_REFETCH_S = "SPLUNK_HEC_TOKEN_REFETCH_S"  # noqa: S105 - a variable name
SPLUNK_SPOOL_DIR = "SPLUNK_SPOOL_DIR"
SPLUNK_LISTENER_HOST = "SPLUNK_LISTENER_HOST"
SPLUNK_LISTENER_PORT = "SPLUNK_LISTENER_PORT"
SPLUNK_METRICS_INDEX = "SPLUNK_METRICS_INDEX"
SPLUNK_PLATFORM_EVENTS = "SPLUNK_PLATFORM_EVENTS"
SPLUNK_ON_CONFIG_ERROR = "SPLUNK_ON_CONFIG_ERROR"
SPLUNK_FLUSH = "SPLUNK_FLUSH"
SPLUNK_TELEMETRY_TYPES = "SPLUNK_TELEMETRY_TYPES"
TOKEN_SOURCES = (SPLUNK_HEC_TOKEN, SPLUNK_HEC_TOKEN_SECRET_ARN, SPLUNK_HEC_TOKEN_SSM_PARAMETER)
# The partitions other than aws, by the prefix of their regions' names: (prefix, partition, DNS
# suffix, dual-stack DNS suffix), from the AWS SDKs' partitions.json, where every partition has
# FIPS and dual-stack endpoints. A region that matches none is in aws, as the SDKs place it.
_PARTITIONS = (
    ("us-gov-", "aws-us-gov", "amazonaws.com", "api.aws"),
    ("cn-", "aws-cn", "amazonaws.com.cn", "api.amazonwebservices.com.cn"),
    ("eusc-", "aws-eusc", "amazonaws.eu", "api.amazonwebservices.eu"),
    ("us-iso-", "aws-iso", "c2s.ic.gov", "api.aws.ic.gov"),
    ("us-isob-", "aws-iso-b", "sc2s.sgov.gov", "api.aws.scloud"),
    ("eu-isoe-", "aws-iso-e", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"),
    ("us-isof-", "aws-iso-f", "csp.hci.ic.gov", "api.aws.hci.ic.gov"),
)
_AWS_PARTITION = ("aws", "amazonaws.com", "api.aws")
# Where a service's endpoint rules (its endpoint-rule-set-1.json in the SDKs) name another host
# than {service}[-fips].{region}.{DNS suffix or dual-stack DNS suffix}, by (service, partition,
# FIPS, dual-stack): Secrets Manager's usual endpoints there take IPv6 already, and GovCloud's
# SSM endpoint is FIPS-validated itself.
_ENDPOINT_EXCEPTIONS = {
    ("secretsmanager", "aws", False, True): "secretsmanager.{}.amazonaws.com",
    ("secretsmanager", "aws-cn", False, True): "secretsmanager.{}.amazonaws.com.cn",
    ("secretsmanager", "aws-us-gov", False, True): "secretsmanager.{}.amazonaws.com",
    ("secretsmanager", "aws", True, True): "secretsmanager-fips.{}.amazonaws.com",
    ("secretsmanager", "aws-us-gov", True, True): "secretsmanager-fips.{}.amazonaws.com",
    ("ssm", "aws-us-gov", True, False): "ssm.{}.amazonaws.com",
}
# Per fetched source: the service (its signing name and endpoint prefix) and its endpoint
# override, named as the AWS SDKs name it (AWS SDKs and Tools Reference, "Service-specific
# endpoints").
AWS_TOKEN_SERVICES = {
    SPLUNK_HEC_TOKEN_SECRET_ARN: ("secretsmanager", "AWS_ENDPOINT_URL_SECRETS_MANAGER"),
    SPLUNK_HEC_TOKEN_SSM_PARAMETER: ("ssm", "AWS_ENDPOINT_URL_SSM"),
}

# The table: one row per variable a deployer sets, in the README's order. Columns:
#   name     the environment variable; the four of the original sample (SPLUNK_HOST,
#            SPLUNK_HEC_TOKEN, SPLUNK_INDEX, DISPATCH_MIN_BATCH_SIZE) must keep working exactly
#   field    the Config field it fills ("": load() derives the fields from it by its own code)
#   kind     how its text is parsed: a key of _KINDS, which also says what a value should be
#   default  the field's value when the variable is unset (or blank)
#   limits   integers: the bounds (inclusive); choices: the choices, the first the default
#   shown    the README's default column ("": the default as a value of the variable)
#   flags    "secret": its value is never in a message; "redacted": only through redact_url;
#            "custom": load() reads it with its own code (it depends on other variables)
#   help     the README's text (Markdown)
SETTINGS: tuple[Row, ...] = (
    (SPLUNK_HOST, "", "hec_url", None, None, "required", "redacted custom",
     "HEC base URL, e.g. `https://splunk.example.com:8088` (https when no scheme; a path other "
     "than `/services/collector` is used as given; the host a DNS name, an IPv4 address or "
     "`[IPv6]`, an internationalized name in its `xn--` form: the layer has no `idna`)"),
    (SPLUNK_HEC_TOKEN, "hec_token", "hec_token", "", None, "one token source is required",
     "secret custom", "HEC token (printable ASCII, a GUID); never logged"),
    # The other two token sources: fetched at run time by the sender with the function's role.
    (SPLUNK_HEC_TOKEN_SECRET_ARN, "", "secret_arn", None, None, "", "custom",
     "instead: full ARN of a Secrets Manager secret holding the token, read at run time (below)"),
    (SPLUNK_HEC_TOKEN_SECRET_KEY, "token_secret_key", "text", None, None, "whole secret", "",
     "with a JSON secret: the key whose value is the token"),
    (SPLUNK_HEC_TOKEN_SSM_PARAMETER, "", "parameter", None, None, "", "custom",
     "instead: name or ARN of an SSM `SecureString` holding the token (the token alone; a "
     "name that is a GUID, a token pasted here, is refused, and a refused name not echoed)"),
    (SPLUNK_HEC_TOKEN_REFETCH_S, "token_refetch_s", "integer", 30, (1, 3_600), "", "custom",
     "least time between two reads of the secret after HEC rejected the token"),
    ("SPLUNK_INDEX", "index", "index", None, None, "token default", "",
     "index for every event"),
    ("DISPATCH_MIN_BATCH_SIZE", "dispatch_min_batch_size", "integer", 500, (1, 100_000), "", "",
     "minimum number of **events** before a non-final dispatch"),
    ("SPLUNK_DISPATCH_MAX_WAIT_MS", "dispatch_max_wait_ms", "integer", 1_000, (0, 600_000), "",
     "", "longest an event waits for the minimum batch (also `adaptive`'s linger)"),
    ("SPLUNK_SOURCE", "source", "text", None, None, "`lambda:<function>`", "", "HEC `source`"),
    ("SPLUNK_SOURCETYPE", "sourcetype", "text", None, None, "per kind (below)", "",
     "one sourcetype for everything, e.g. `_json`"),
    ("SPLUNK_HEC_HOST", "event_host", "text", None, None, "function name", "", "HEC `host`"),
    (SPLUNK_TELEMETRY_TYPES, "telemetry_types", "telemetry_types", TELEMETRY_KINDS, None, "",
     "", "Telemetry API types to subscribe to; without `platform` no invocation's end is "
     "seen, and `SPLUNK_FLUSH` is `background` (a warning says so)"),
    ("SPLUNK_ENRICH", "enrich", "enrich", ENRICHMENT_FIELDS, None, "`true`", "",
     "the function's identity and environment as indexed fields on every event "
     "([below](#what-arrives-in-splunk)); `false`: only `function_name`, `telemetry_type`, "
     "`request_id`, `level` (and `SPLUNK_FIELDS`); or the names of the fields wanted, e.g. "
     "`function_arn,cold_start,environment_id` (each costs its bytes on every event, see below)"),
    ("SPLUNK_FIELDS", "user_fields", "user_fields", (), None, "", "",
     "your own indexed fields on every event: `name=value` pairs separated by commas, e.g. "
     "`team=payments,env=prod` (names of letters, digits and `_`, not starting with `_` or a "
     "digit, not a field the extension or Splunk sets)"),
    ("SPLUNK_MIN_LEVEL", "min_level", "min_level", None, None, "", "",
     "drop function and extension log lines below this level (`TRACE`, `DEBUG`, `INFO`, `WARN`, "
     "`ERROR`, `FATAL`); lines without a level are kept "
     "([filters and masking](#filters-and-masking))"),
    # The value of these two is never echoed: a mask rule may quote what it hides.
    ("SPLUNK_DROP_REGEX", "drop_pattern", "drop_regex", None, None, "", "secret",
     "drop function and extension log lines this regular expression (Python syntax) matches "
     "anywhere"),
    ("SPLUNK_MASK", "mask_rules", "mask", (), None, "", "secret",
     "mask rules `regex=>replacement`, several separated by `;;`, e.g. "
     "`Bearer\\s+[A-Za-z0-9._~+/-]+=*=>Bearer [token];;AKIA[0-9A-Z]{16}=>[aws-key]`"),
    (SPLUNK_FLUSH, "flush", "choice", "adaptive", FLUSH_STRATEGIES, "", "",
     "`adaptive`, `sync` or `background` (above); on Lambda Managed Instances always "
     "`background`"),
    ("SPLUNK_MAX_LATENCY_MS", "max_latency_ms", "integer", 2_000, (100, 3_600_000), "", "",
     "`adaptive`: the line-to-Splunk latency it keeps while HEC is up (why 2 s: "
     "`ext/flush_policy.py`)"),
    ("SPLUNK_FLUSH_BUDGET_MS", "flush_budget_ms", "integer", 500, (0, 900_000), "", "",
     "longest the end-of-invocation flush may wait for HEC, counted from the runtime's end (see "
     "`sync` above); `0`: main never waits, but for up to three waits of 350 ms to judge a "
     "sender that seems hung ([docs/reliability.md](docs/reliability.md))"),
    ("SPLUNK_BUFFER_MAX_ITEMS", "buffer_max_items", "integer", 1_000, BUFFER_ITEMS_RANGE, "", "",
     "Telemetry API buffering: most events in one delivery (the three buffering values are "
     "always sent explicitly)"),
    ("SPLUNK_BUFFER_MAX_BYTES", "buffer_max_bytes", "integer", 262_144, BUFFER_BYTES_RANGE, "",
     "", "Telemetry API buffering: most bytes in one delivery"),
    ("SPLUNK_BUFFER_TIMEOUT_MS", "buffer_timeout_ms", "integer", 25, BUFFER_TIMEOUT_RANGE, "", "",
     "Telemetry API buffering: longest Lambda holds telemetry before delivering it"),
    (SPLUNK_SPOOL_DIR, "spool_dir", "text", "", None,
     "`/tmp/splunk-hec-extension/spool`", "custom", "spool directory (`$TMPDIR` is honoured)"),
    ("SPLUNK_SPOOL_MAX_MB", "spool_max_bytes", "megabytes", 64 * 2**20, (8, 10_240), "", "",
     "spool bound (less if /tmp has less room); beyond it new batches are refused (503, "
     "counted)"),
    ("SPLUNK_VERIFY_TLS", "verify_tls", "boolean", True, None, "", "",
     "TLS certificate verification"),
    ("SPLUNK_CA_BUNDLE", "ca_bundle", "ca_location", None, None, "system CAs", "",
     "the CAs that verify HEC: a PEM file (of a large one, only the CAs that can anchor HEC's "
     "chain are loaded: [TLS](docs/deploy.md#the-layer)) or a directory hashed by "
     "`openssl rehash`. Fastest: a file with only your endpoint's CA"),
    ("SPLUNK_CONNECT_TIMEOUT_MS", "connect_timeout_ms", "integer", 2_000, (50, 60_000), "", "",
     "HEC connect timeout"),
    ("SPLUNK_REQUEST_TIMEOUT_MS", "request_timeout_ms", "integer", 5_000, (100, 300_000), "", "",
     "HEC request timeout"),
    ("SPLUNK_MAX_REQUEST_BYTES", "max_request_bytes", "integer", 1_048_576,
     (4_096, 100 * 2**20), "", "", "uncompressed bound of one HEC request"),
    ("SPLUNK_GZIP_LEVEL", "gzip_level", "integer", 1, (0, 9), "", "",
     "0 disables gzip: 0.1-0.3 ms less CPU per invocation, ~6-9 KB more on the wire per "
     "invocation; only where transfer to HEC is free (the cost bullet at the top)"),
    ("SPLUNK_FORWARD_OWN_LOGS", "forward_own_logs", "boolean", False, None, "", "",
     "also forward this extension's own INFO/DEBUG lines (its warnings and errors are always "
     "forwarded, as `aws:lambda:extension` events)"),
    (SPLUNK_ON_CONFIG_ERROR, "on_config_error", "choice", "fail", CONFIG_ERROR_ACTIONS, "", "",
     "`fail`: report `init/error` (Lambda fails the init, the message names each bad variable); "
     "`disable`: log the error and stay dormant so the function keeps serving"),
    ("SPLUNK_LOG_LEVEL", "log_level", "log_level", "WARNING", None, "", "",
     "the extension's own log level (stderr → CloudWatch)"),
    (SPLUNK_LISTENER_HOST, "listener_host", "text", None, None, "`sandbox.localdomain`", "",
     "Telemetry listener address (`127.0.0.1` where `sandbox.localdomain` does not resolve)"),
    (SPLUNK_LISTENER_PORT, "listener_port", "integer", 0, (0, 65_535), "any free port", "",
     "Telemetry listener port (not 9001, Lambda's own)"),
    (SPLUNK_METRICS_INDEX, "metrics_index", "metrics_index", None, None, "", "",
     "a Splunk metrics index: `platform.report`, `runtimeDone`, `initReport` and "
     "`restoreReport` also become HEC metric events there (`aws.lambda.duration_ms`, "
     "`aws.lambda.max_memory_used_mb`, …: [docs/metrics.md](docs/metrics.md)), alerts get a "
     "counter, self-metrics are metrics"),
    (SPLUNK_PLATFORM_EVENTS, "platform_events", "boolean", True, None, "", "",
     "`false`: those four record types go only as metrics (needs `SPLUNK_METRICS_INDEX`)"),
    ("SPLUNK_SELF_METRICS", "self_metrics", "boolean", True, None, "", "",
     "the extension's own figures with an invocation batch and at shutdown (spool backlog and "
     "drops, HEC requests, retries, failures, latency, gzip, CPU and memory per process)"),
    # Each self-metrics event reads /proc for three processes, ~0.4 ms of CPU at 128 MB: too
    # much to pay on every invocation. One a minute: the span of the dashboard's panels
    # (docs/dashboard.md) and CloudWatch's standard resolution. At 10 s a function invoked about
    # every 10 s paid it at most invocations (docs/benchmarks.md 7b, the 10 s cell).
    ("SPLUNK_SELF_METRICS_INTERVAL_MS", "self_metrics_interval_ms", "integer", 60_000,
     (0, 3_600_000), "", "", "at most one self-metrics event per this interval (plus one at "
     "shutdown; counters add up in between): each costs ~0.4 ms of CPU at 128 MB. `0`: with "
     "every invocation batch"),
)
# AWS SDK conventions the token fetch honours; not the extension's own, so not in SETTINGS.
_IGNORE_ENDPOINTS: Row = (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, "", "sdk_boolean", False, None, "",
                          "", "")
_USE_FIPS: Row = (AWS_USE_FIPS_ENDPOINT, "", "sdk_boolean", False, None, "", "", "")
_USE_DUALSTACK: Row = (AWS_USE_DUALSTACK_ENDPOINT, "", "sdk_boolean", False, None, "", "", "")


class Config:
    """Validated settings, read-only once built: the same values must hold in every process of
    the extension. A field a row of SETTINGS fills and the constructor is not given takes the
    row's default; the others' defaults sit beside them."""

    hec_url: str  # scheme://host[:port] only (SPLUNK_HOST)
    hec_path: str
    hec_token: str  # "" when the token is fetched from AWS (token_source)
    token_source: str = "value"  # noqa: S105 - "value", "secretsmanager" or "ssm"
    token_reference: str = ""  # the secret ARN or the parameter name (names, not values)
    token_secret_key: str | None  # a key of a JSON secret; None: the whole string
    token_refetch_s: int
    aws_region: str = ""
    aws_endpoint: str = ""  # scheme://host[:port][/path] of token_source's API
    aws_credentials: tuple[str, str, str | None] | None = None  # key id, secret, session token
    # Without access keys (SnapStart): the container credentials endpoint's URL, the
    # Authorization token, the file to read it from at each fetch ("": none), as the SDKs read them.
    aws_container_credentials: tuple[str, str, str] | None = None
    function_name: str = "unknown-function"
    index: str | None
    dispatch_min_batch_size: int
    dispatch_max_wait_ms: int
    source: str | None  # None: "lambda:<function name>"
    sourcetype: str | None  # None: one per telemetry kind
    event_host: str | None  # None: the function name
    telemetry_types: tuple[str, ...]
    buffer_max_items: int
    buffer_max_bytes: int
    buffer_timeout_ms: int
    flush: str
    flush_budget_ms: int
    max_latency_ms: int  # adaptive: the bound it keeps while HEC is up (flush_policy.py)
    spool_dir: str
    spool_max_bytes: int
    verify_tls: bool
    ca_bundle: str | None
    connect_timeout_ms: int
    request_timeout_ms: int
    max_request_bytes: int
    gzip_level: int
    # Metrics, alerts and self-metrics (issue 13; ext/sender/metrics.py, docs/metrics.md).
    metrics_index: str | None  # None: no metric events (alerts and self-metrics as events)
    platform_events: bool  # False: report/runtimeDone/init figures go only as metrics
    self_metrics: bool
    self_metrics_interval_ms: int
    listener_host: str | None  # None: sandbox.localdomain if it resolves, else 127.0.0.1
    listener_port: int
    forward_own_logs: bool
    on_config_error: str
    log_level: str
    # Enrichment (ext/sender/enrichment.py): indexed fields on every event.
    enrich: tuple[str, ...]  # of the function's identity
    user_fields: tuple[tuple[str, str], ...]  # in order
    account_id: str = ""  # from register's response (Lambda-Extension-Accept-Feature)
    aws_environment: tuple[tuple[str, str], ...] = ()  # ENRICHMENT_VARIABLES that are set
    # Filters and masking, applied by the listener before the spool (ext/listener/filters.py).
    min_level: str | None  # upper case
    drop_pattern: Pattern[str] | None
    mask_rules: tuple[tuple[Pattern[str], str], ...]
    notices: tuple[str, ...] = ()  # settings taken otherwise than asked: logged at start
    # Lambda Managed Instances (ext/main/extensions_api.py): no INVOKE events, invocations at
    # once in one environment that is never frozen.
    managed_instances: bool = False
    # SnapStart (ext/main/extensions_api.py): the first event after this init comes in an
    # environment restored from its snapshot.
    snap_start: bool = False

    @property
    def sees_invocation_ends(self) -> bool:
        """The subscription carries platform events: an invocation's runtimeDone and report."""
        return "platform" in self.telemetry_types

    def __init__(self, **values: object) -> None:
        for name, value in values.items():
            if name not in Config.__annotations__:
                raise TypeError(f"unknown setting {name}")
            object.__setattr__(self, name, value)
        for _, field, _, default, _, _, _, _ in SETTINGS:  # here: no work at import
            if field and field not in values:
                object.__setattr__(self, field, default)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Config is read-only")

    def __repr__(self) -> str:
        # The token never appears in a repr, a log line or a traceback.
        hidden = {field for _, field, _, _, _, _, flags, _ in SETTINGS if "secret" in flags}
        hidden.update(("aws_credentials", "aws_container_credentials"))
        shown = {n: getattr(self, n) for n in Config.__annotations__ if n not in hidden}
        return f"Config({shown})"


_BY_NAME = {row[0]: row for row in SETTINGS}


def _integer(text: str, limits: tuple[int, int]) -> int:
    number = int(text)
    if not limits[0] <= number <= limits[1]:
        raise ValueError(text)
    return number


def _megabytes(text: str, limits: tuple[int, int]) -> int:
    return _integer(text, limits) * 2**20


def _boolean(text: str, _limits: None) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def _sdk_boolean(text: str, _limits: None) -> bool:
    # The AWS SDKs' own flags take true or false only: botocore reads any other value as false,
    # the Go and JavaScript SDKs refuse it. Refused here too, so "1" never means FIPS to the
    # extension and not to the function's SDK (or the other way round).
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


def _choice(text: str, choices: tuple[str, ...]) -> str:
    if text.lower() not in choices:
        raise ValueError(text)
    return text.lower()


def _text(text: str, _limits: None) -> str:
    return text


def _hec_url(value: str, _limits: None) -> tuple[str, str]:
    """Turns SPLUNK_HOST into (scheme://host[:port], path); https when no scheme is given."""
    text = value if "://" in value else f"https://{value}"
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    netloc, slash, path = rest.partition("/")
    if scheme not in ("http", "https") or any(c in text for c in "?#@ \t"):
        raise ValueError(value)
    # "https//h:8088" (a colon missed) would read as host "https"; http.client refuses a
    # path it cannot send as ASCII, at each request.
    if path.startswith("/") or not (path.isascii() and path.isprintable()):
        raise ValueError(value)
    _split_netloc(netloc)
    if netloc.endswith(":"):  # a port separator with no port ("[::1]" has colons, no port)
        raise ValueError(value)
    path = (slash + path).rstrip("/")
    if path in ("", "/services/collector"):
        path = HEC_EVENT_PATH
    return f"{scheme}://{netloc}", path


_HOST_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"


def _split_netloc(netloc: str) -> tuple[str, str]:
    """(host, port) of a URL's host[:port] ("[...]" unwrapped), or ValueError where urllib3
    would refuse it: each request would then fail, at every retry, instead of the init."""
    host, port = netloc, ""
    if netloc.startswith("["):  # an IPv6 literal
        close = netloc.find("]")
        if close < 0 or (netloc[close + 1 :] and not netloc[close + 1 :].startswith(":")):
            raise ValueError(netloc)
        host, port = netloc[1:close], netloc[close + 2 :]
        import _socket

        try:
            _socket.inet_pton(_socket.AF_INET6, host)
        except OSError:
            raise ValueError(netloc) from None
    else:
        host, _, port = netloc.partition(":")
        # A DNS name or an IPv4 address. urllib3 takes more (and reads "h\\x" as "h"), but
        # no such name resolves, and a non-ASCII one needs the idna module, not in the layer.
        if host.strip(_HOST_CHARACTERS):
            raise ValueError(netloc)
    # isascii: str.isdigit() also takes other scripts' digits, which int() reads and urllib3
    # refuses, and superscripts, which int() refuses with a bare ValueError.
    if not host or (port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65_536)):
        raise ValueError(netloc)
    return host, port


def _valid_netloc(netloc: str) -> bool:
    try:
        _split_netloc(netloc)
    except ValueError:
        return False
    return True


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


def _hec_token(text: str, _limits: None) -> str:
    problem = token_problem(text)
    if problem:
        raise ValueError(problem)
    return text


def _secret_arn(text: str, _limits: None) -> str:
    # arn:<partition>:secretsmanager:<region>:<account>:secret:<name>; another service's ARN
    # (an SSM parameter's, pasted here) would fail only at run time, every event held.
    # A secret's name holds no colon (letters, digits and /_+=.@-): ECS's reference form,
    # `...:secret:<name>:<json-key>:<stage>:<version>`, is no ARN GetSecretValue takes.
    parts = text.split(":")
    if (len(parts) != 7 or parts[0] != "arn" or parts[2] != "secretsmanager"
            or parts[5] != "secret" or not all(parts[1:5]) or not parts[6]):
        raise ValueError(text)
    return text


def _parameter(text: str, _limits: None) -> str:
    # A name, or arn:<partition>:ssm:<region>:<account>:parameter/<name>; either may end in a
    # :<version> or :<label> selector. SSM names hold letters, digits and _.-/ only: a space, a
    # second colon or `ARN:` in capitals would fail GetParameter at every read, events held.
    name = text
    if text.startswith("arn:"):
        parts = text.split(":", 5)
        if (len(parts) != 6 or parts[2] != "ssm" or not all(parts[1:5])
                or not parts[5].startswith("parameter/") or parts[5] == "parameter/"):
            raise ValueError(text)
        name = parts[5][len("parameter"):]
    base, colon, selector = name.partition(":")
    if (not base or not set(base) <= _PARAMETER_CHARS
            or (colon and not (selector and set(selector) <= _SELECTOR_CHARS))):
        raise ValueError(text)
    # A GUID is a valid name, and what a HEC token looks like: pasted here, it would be logged
    # at every failed read ("GetParameter on <token>: ParameterNotFound").
    if _is_guid(base.lstrip("/")):
        raise ValueError(text)
    return text


def _is_guid(text: str) -> bool:
    return (len(text) == 36 and all(text[i] == "-" for i in (8, 13, 18, 23))
            and all(c in "0123456789abcdefABCDEF" for c in text.replace("-", "")))


def _index_name(text: str, _limits: None) -> str:
    if len(text) > 80 or text[0] == "-" or not set(text) <= _INDEX_CHARS:
        raise ValueError(text)
    return text


def _telemetry_types(text: str, _limits: None) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in text.split(",") if k.strip()))
    if not kinds or any(k not in TELEMETRY_KINDS for k in kinds):
        raise ValueError(text)
    return kinds


def _enrich(text: str, _limits: None) -> tuple[str, ...]:
    lowered = text.lower()
    if lowered in _TRUE:
        return ENRICHMENT_FIELDS
    if lowered in _FALSE:
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in lowered.split(",") if n.strip()))
    if not names or any(n not in ENRICHMENT_FIELDS for n in names):
        raise ValueError(text)
    return names


def _user_fields(text: str, _limits: None) -> tuple[tuple[str, str], ...]:
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


def _min_level(text: str, _limits: None) -> str:
    upper = text.upper()
    if upper not in LEVEL_RANKS:
        raise ValueError(text)
    return upper


def _log_level(text: str, _limits: None) -> str:
    upper = text.upper()
    if upper == "WARN":  # as SPLUNK_MIN_LEVEL takes it, and most loggers spell it
        return "WARNING"
    if upper not in _LOG_LEVELS:
        raise ValueError(text)
    return upper


def _drop_regex(text: str, _limits: None) -> Pattern[str]:
    # `re` is imported (by ext.rules) only when a pattern is set: off the cold-start path.
    from ext import rules

    return rules.compile_drop(text)  # its RuleError says why without quoting the value


def _mask(text: str, _limits: None) -> tuple[tuple[Pattern[str], str], ...]:
    from ext import rules

    return rules.compile_masks(text)


def _ca_location(text: str, _limits: None) -> str:
    if not (os.path.isfile(text) or os.path.isdir(text)):
        raise ValueError("not a readable file or directory")
    return text


# SETTINGS' kinds: how a variable's text becomes its field's value (raising ValueError when it
# cannot), and what a value should be, for the error message; None: the parser's ValueError says
# why, worded without the value.
_KINDS: dict[str, tuple[Callable[[str, Any], object], str | None]] = {
    "integer": (_integer, "an integer from {0} to {1}"),
    "megabytes": (_megabytes, "an integer from {0} to {1}"),
    "boolean": (_boolean, "true or false"),
    "sdk_boolean": (_sdk_boolean, "true or false"),
    "choice": (_choice, ""),  # the choices: "a, b or c"
    "text": (_text, "any text"),
    "hec_url": (_hec_url, "a URL like https://host:8088, without credentials or a query"),
    "hec_token": (_hec_token, None),
    "secret_arn": (_secret_arn, "a Secrets Manager secret's ARN, "
                                "arn:<partition>:secretsmanager:<region>:<account>:secret:<name>"),
    "parameter": (_parameter, "a parameter's name (letters, digits, _ . - and /), or its ARN, "
                              "arn:<partition>:ssm:<region>:<account>:parameter/<name>, "
                              "either with an optional :<version> or :<label>"),
    "index": (_index_name, "a Splunk index name (a-z, 0-9, _ and -)"),
    "metrics_index": (_index_name, "a Splunk metrics index name (a-z, 0-9, _ and -)"),
    "telemetry_types": (_telemetry_types,
                        "a comma-separated list of " + ", ".join(TELEMETRY_KINDS)),
    "enrich": (_enrich, "true, false, or a comma-separated list of "
               + ", ".join(ENRICHMENT_FIELDS)),
    "user_fields": (_user_fields, "comma-separated name=value pairs, e.g. team=payments,env=prod "
                    "(names: letters, digits and _, not starting with _ or a digit, not a field "
                    "the extension or Splunk sets)"),
    "min_level": (_min_level, "one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL"),
    "log_level": (_log_level, ", ".join(_LOG_LEVELS[:-1]) + " or " + _LOG_LEVELS[-1]),
    "drop_regex": (_drop_regex, None),
    "mask": (_mask, None),
    "ca_location": (_ca_location, None),
}


def parse(row: Row, text: str) -> object:
    """The value of `row`'s field for the variable's (stripped, non-blank) `text`; raises
    ValueError when the text is not valid."""
    _, _, kind, _, limits, _, _, _ = row
    return _KINDS[kind][0](text, limits)


def _problem(row: Row, text: str, err: ValueError) -> str:
    """The error message for `text`, which `row`'s parser refused with `err`."""
    name, _, kind, _, limits, _, flags, _ = row
    expect = _KINDS[kind][1]
    if expect is None:
        reason = str(err)
    elif kind == "choice":
        reason = "expected " + " or ".join(limits)
    else:
        reason = "expected " + expect.format(*limits or ())
    # A secret's "ARN" that does not start like one may be the token itself, pasted into the
    # wrong variable: not echoed either.
    if "secret" in flags or kind in ("secret_arn", "parameter"):
        return f"{name} is not valid: {reason}"
    # Never echo credentials or a query a deployer put in a URL (issue 16).
    shown = redact_url(text) if "redacted" in flags else text
    return f"{name}={shown!r} is not valid: {reason}"


class _Reader:
    """Parses variables one by one, recording problems instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.notices: list[str] = []  # settings taken otherwise than asked (Config.notices)

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def read(self, row: Row) -> object:
        """The row's value, or its default when unset or not valid (a problem recorded)."""
        name, _, kind, default, limits, _, _, _ = row
        value = self.raw(name)
        if value is None:
            return default
        try:
            return _KINDS[kind][0](value, limits)
        except ValueError as err:
            self.problems.append(_problem(row, value, err))
            return default


def default_spool_dir(environ: Mapping[str, str]) -> str:
    """Lambda's /tmp, or TMPDIR when set (the local emulator gives each sandbox its own)."""
    tmp = environ.get(TMPDIR) or "/tmp"  # noqa: S108 - Lambda's only writable disk
    return os.path.join(tmp, EXTENSION_DIR_NAME, "spool")


def load(environ: Mapping[str, str], account_id: str = "") -> Config:
    """Builds the Config from `environ` (and the account id register answered, if any);
    raises ConfigError listing every bad variable."""
    r = _Reader(environ)
    hec_url, hec_path = "", HEC_EVENT_PATH
    if r.raw(SPLUNK_HOST) is None:
        r.problems.append(f"{SPLUNK_HOST} is required (the HEC base URL, "
                          "e.g. https://splunk:8088)")
    else:
        endpoint = r.read(_BY_NAME[SPLUNK_HOST])
        if isinstance(endpoint, tuple):
            hec_url, hec_path = endpoint
    values = _token_settings(r)
    for row in SETTINGS:
        _, field, _, _, _, _, flags, _ = row
        if "custom" not in flags:
            values[field] = r.read(row)
    notices = r.notices
    kinds = values.get("telemetry_types")
    if isinstance(kinds, tuple) and "platform" not in kinds and values["flush"] != "background":
        # Without platform events no invocation's end is ever seen: every waited flush would
        # wait its whole budget (billed) for a runtimeDone that cannot come.
        notices.append(f"{SPLUNK_FLUSH}={values['flush']} needs platform in "
                       f"{SPLUNK_TELEMETRY_TYPES} to see an invocation end: flushing in the "
                       "background instead")
        values["flush"] = "background"
    managed_instances = on_managed_instances(environ)
    if managed_instances and values["flush"] != "background":
        # No INVOKE event marks an invocation to wait for, and nothing freezes the sender:
        # it drains as the telemetry comes (DISPATCH_MIN_BATCH_SIZE, SPLUNK_DISPATCH_MAX_WAIT_MS).
        if r.raw(SPLUNK_FLUSH) is not None:
            notices.append(f"{SPLUNK_FLUSH}={values['flush']} does not apply on Lambda Managed "
                           "Instances (no INVOKE events, nothing frozen): flushing in the "
                           "background")
        values["flush"] = "background"
    spool_dir = r.raw(SPLUNK_SPOOL_DIR) or default_spool_dir(environ)
    unwritable = _unwritable_dir(spool_dir)
    if unwritable:
        r.problems.append(f"{SPLUNK_SPOOL_DIR}={spool_dir!r} cannot hold the spool: {unwritable}")
    config = Config(
        hec_url=hec_url,
        hec_path=hec_path,
        spool_dir=spool_dir,
        function_name=environ.get(AWS_LAMBDA_FUNCTION_NAME) or Config.function_name,
        account_id=account_id if account_id.isdigit() else "",
        aws_environment=tuple((name, environ[name].strip()) for name in ENRICHMENT_VARIABLES
                              if environ.get(name, "").strip()),
        notices=tuple(notices),
        managed_instances=managed_instances,
        snap_start=on_snap_start(environ),
        **values,
    )
    if config.listener_port == LAMBDA_API_PORT:
        r.problems.append(f"{SPLUNK_LISTENER_PORT}={LAMBDA_API_PORT} is reserved by Lambda")
    if not config.platform_events and r.raw(SPLUNK_METRICS_INDEX) is None:
        r.problems.append(f"{SPLUNK_PLATFORM_EVENTS}=false needs {SPLUNK_METRICS_INDEX}: "
                          "without a metrics index the platform figures would reach Splunk "
                          "nowhere")
    if r.problems:
        raise ConfigError(r.problems)
    return config


def _token_settings(r: _Reader) -> dict[str, object]:
    """The token source's Config fields; exactly one source must be set."""
    given = [name for name in TOKEN_SOURCES if r.raw(name) is not None]
    if len(given) != 1:
        found = f" ({' and '.join(given)} are set)" if given else ""
        r.problems.append(f"set exactly one of {', '.join(TOKEN_SOURCES)}{found}")
        return {}
    source = given[0]
    value = r.raw(source) or ""
    if r.raw(SPLUNK_HEC_TOKEN_SECRET_KEY) is not None and source != SPLUNK_HEC_TOKEN_SECRET_ARN:
        r.problems.append(f"{SPLUNK_HEC_TOKEN_SECRET_KEY} needs {SPLUNK_HEC_TOKEN_SECRET_ARN}")
    if source == SPLUNK_HEC_TOKEN:
        return {"hec_token": r.read(_BY_NAME[SPLUNK_HEC_TOKEN])}
    service, endpoint_variable = AWS_TOKEN_SERVICES[source]
    r.read(_BY_NAME[source])  # checks the reference's form; the field keeps it as given
    # Secrets and parameters are regional: one named by an ARN is read in the ARN's region
    # (through that region's endpoint, signed for it), which may not be the function's.
    region = _arn_region(value) or r.raw(AWS_REGION) or r.raw(AWS_DEFAULT_REGION) or ""
    if not region:
        r.problems.append(f"{source} needs the function's region: {AWS_REGION} not set")
    credentials = _role_credentials(r, source)
    return {
        "token_source": service,
        "token_reference": value,
        # Read only with a fetched token: with a token value it has no use.
        "token_refetch_s": r.read(_BY_NAME[SPLUNK_HEC_TOKEN_REFETCH_S]),
        "aws_region": region,
        "aws_endpoint": _aws_endpoint(r, endpoint_variable, service, region),
        **credentials,
    }


def _role_credentials(r: _Reader, source: str) -> dict[str, object]:
    """Where the role's credentials come from, in botocore's order: the access key variables
    (any Lambda function but SnapStart's), then the container credentials endpoint."""
    key_id, secret = r.raw(AWS_ACCESS_KEY_ID), r.raw(AWS_SECRET_ACCESS_KEY)
    relative, full = r.raw(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI), r.raw(
        AWS_CONTAINER_CREDENTIALS_FULL_URI)
    if key_id or (relative is None and full is None):
        missing = [name for name, got in ((AWS_ACCESS_KEY_ID, key_id),
                                          (AWS_SECRET_ACCESS_KEY, secret)) if not got]
        if missing:
            # With SnapStart Lambda sets no access keys, only the container variables; an access
            # key id set beside them is taken, as botocore takes it, and must be complete.
            why = (f"nor {AWS_CONTAINER_CREDENTIALS_FULL_URI}, which Lambda sets instead under "
                   "SnapStart" if key_id is None else
                   f"{AWS_ACCESS_KEY_ID} is set: the container credentials are not used")
            r.problems.append(f"{source} needs the function's role credentials: "
                              f"{', '.join(missing)} not set ({why})")
        return {"aws_credentials": (key_id or "", secret or "", r.raw(AWS_SESSION_TOKEN))}
    # A RELATIVE_URI wins over a FULL_URI, as in botocore.
    if relative is not None:
        url = f"http://{CONTAINER_CREDENTIALS_HOST}{relative}"
    else:
        url = _container_url(r, full or "")
    token, token_file = r.raw(AWS_CONTAINER_AUTHORIZATION_TOKEN), r.raw(
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)
    if token is not None and token_file is None and ("\r" in token or "\n" in token):
        # Never quoted: it is a secret. botocore refuses it too (not a legal header value).
        r.problems.append(f"{AWS_CONTAINER_AUTHORIZATION_TOKEN} is not valid: a line break "
                          "cannot travel in the Authorization header")
    return {"aws_container_credentials": (url, token or "", token_file or "")}


def _container_url(r: _Reader, url: str) -> str:
    """AWS_CONTAINER_CREDENTIALS_FULL_URI if the SDKs would call it: https to any host, http to a
    loopback address or one of CONTAINER_CREDENTIALS_HTTP_HOSTS (the credentials would
    otherwise cross a network in clear text); else "" and a problem naming the variable."""
    scheme, sep, rest = url.partition("://")
    netloc = rest
    for mark in "/?#":
        netloc = netloc.partition(mark)[0]
    try:
        host = _split_netloc(netloc)[0].lower()
    except ValueError:
        host = ""
    if not sep or scheme.lower() not in ("http", "https") or not host or "@" in netloc:
        reason = "expected a URL like http://127.0.0.1:9001/path"
    elif scheme.lower() == "http" and not (_is_loopback(host)
                                           or host in CONTAINER_CREDENTIALS_HTTP_HOSTS):
        reason = ("over http the AWS SDKs call only a loopback address or "
                  + ", ".join(sorted(CONTAINER_CREDENTIALS_HTTP_HOSTS)))
    else:
        return url
    r.problems.append(f"{AWS_CONTAINER_CREDENTIALS_FULL_URI}={redact_url(url)!r} is not "
                      f"valid: {reason}")
    return ""


def _is_loopback(host: str) -> bool:
    """An IPv4 address in 127.0.0.0/8 or the IPv6 ::1, in any spelling inet_pton takes. botocore
    asks the ipaddress module, which imports collections and functools (~30 ms, python -S)."""
    import _socket

    for family, loopback in ((_socket.AF_INET, None), (_socket.AF_INET6, b"\0" * 15 + b"\1")):
        try:
            packed = _socket.inet_pton(family, host)
        except OSError:
            continue
        return packed[0] == 127 if loopback is None else packed == loopback
    return False


def _arn_region(reference: str) -> str | None:
    """The region of an ARN (arn:partition:service:region:account:resource), or None."""
    parts = reference.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[3]:
        return parts[3]
    return None


def _aws_endpoint(r: _Reader, service_variable: str, service: str, region: str) -> str:
    """The API endpoint as the AWS SDKs pick it: the service's variable, then AWS_ENDPOINT_URL,
    then the regional endpoint (FIPS, dual-stack or both as asked);
    AWS_IGNORE_CONFIGURED_ENDPOINT_URLS turns off the first two."""
    fips, dualstack = bool(r.read(_USE_FIPS)), bool(r.read(_USE_DUALSTACK))
    if not r.read(_IGNORE_ENDPOINTS):
        for name in (service_variable, AWS_ENDPOINT_URL):
            url = r.raw(name)
            if url is not None:
                return _configured_endpoint(r, name, url, fips, dualstack)
    partition, dns, dualstack_dns = next(
        (p[1:] for p in _PARTITIONS if region.startswith(p[0])), _AWS_PARTITION)
    exception = _ENDPOINT_EXCEPTIONS.get((service, partition, fips, dualstack))
    if exception:
        return "https://" + exception.format(region)
    name = f"{service}-fips" if fips else service
    return f"https://{name}.{region}.{dualstack_dns if dualstack else dns}"


def _configured_endpoint(r: _Reader, name: str, url: str, fips: bool, dualstack: bool) -> str:
    """`url` as the SDKs use it: as given, its path included (a proxy in front of a VPC endpoint
    may route on it), FIPS and dual-stack not applied (AWS SDKs and Tools Reference, "Dual-stack
    and FIPS endpoints": a configured endpoint overrides them, as botocore does)."""
    scheme, sep, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    # A query or fragment is refused rather than cut: cutting it sends the call elsewhere.
    if (scheme.lower() not in ("http", "https") or not sep or "@" in netloc
            or "?" in rest or "#" in rest or not _valid_netloc(netloc)):
        r.problems.append(f"{name}={redact_url(url)!r} is not valid: expected a URL "
                          "like https://host[:port][/path]")
        return ""
    endpoint = f"{scheme.lower()}://{netloc}" + (f"/{path}" if path else "")
    for flag, variable in ((fips, AWS_USE_FIPS_ENDPOINT), (dualstack, AWS_USE_DUALSTACK_ENDPOINT)):
        if flag:
            r.notices.append(f"{variable}=true does not apply to {name}: the token is read "
                             f"from {endpoint}")
    return endpoint


def redact_url(url: str) -> str:
    """`url` with any user:password@ and any query or fragment replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _is_scheme(scheme):  # "user:pa://ss@h" has none: all of it is redacted
        scheme, sep, rest = "", "", url
    # Credentials first, up to the last "@" wherever it is: a password pasted unencoded may
    # hold "/", "?" or "#", which would otherwise end the host part before its "@".
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    for mark in "?#":
        if mark in rest:
            rest = rest[: rest.index(mark)] + mark + "***"
    return scheme + sep + rest


def _is_scheme(text: str) -> bool:
    """RFC 3986: a letter, then letters, digits, "+", "-" or "."."""
    return (text[:1].isascii() and text[:1].isalpha()
            and all(c.isascii() and (c.isalnum() or c in "+-.") for c in text))


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


def config_error_action(environ: Mapping[str, str]) -> str:
    """What to do when load() fails; read on its own so a bad config cannot hide it."""
    return str(_Reader(environ).read(_BY_NAME[SPLUNK_ON_CONFIG_ERROR]))
