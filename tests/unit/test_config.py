from __future__ import annotations

import pytest

from ext import config
from ext.errors import ConfigError

BASE = {"SPLUNK_HOST": "splunk.example.com:8088", "SPLUNK_HEC_TOKEN": "abc-123"}


def load(**extra: str) -> config.Config:
    return config.load({**BASE, **extra})


def problems(**extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.load({k: v for k, v in {**BASE, **extra}.items() if v != "<unset>"})
    return str(info.value)


def test_original_four_names_work() -> None:
    cfg = load(SPLUNK_INDEX="lambda_logs", DISPATCH_MIN_BATCH_SIZE="25")
    assert cfg.hec_url == "https://splunk.example.com:8088"
    assert cfg.hec_path == "/services/collector/event"
    assert cfg.hec_token == "abc-123"
    assert cfg.index == "lambda_logs"
    assert cfg.dispatch_min_batch_size == 25


def test_defaults() -> None:
    cfg = config.load({**BASE, "TMPDIR": "/sandbox/tmp"})
    assert cfg.index is None
    assert cfg.flush == "adaptive"
    assert cfg.max_latency_ms == 2_000
    assert cfg.telemetry_types == ("platform", "function", "extension")
    assert cfg.verify_tls is True
    assert cfg.spool_dir == "/sandbox/tmp/splunk-hec-extension/spool"
    assert (cfg.buffer_max_items, cfg.buffer_max_bytes, cfg.buffer_timeout_ms) == (1000, 262144, 25)


def test_spool_dir_defaults_to_lambda_tmp() -> None:
    assert config.load(BASE).spool_dir == "/tmp/splunk-hec-extension/spool"


@pytest.mark.parametrize(
    ("value", "url", "path"),
    [
        ("http://localhost:8088", "http://localhost:8088", "/services/collector/event"),
        ("https://h/services/collector", "https://h", "/services/collector/event"),
        (
            "https://h:443/services/collector/event/1.0",
            "https://h:443",
            "/services/collector/event/1.0",
        ),
        ("h.example", "https://h.example", "/services/collector/event"),
    ],
)
def test_host_forms(value: str, url: str, path: str) -> None:
    cfg = load(SPLUNK_HOST=value)
    assert (cfg.hec_url, cfg.hec_path) == (url, path)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SPLUNK_HOST", "<unset>"),
        ("SPLUNK_HOST", "ftp://x"),
        ("SPLUNK_HOST", "https://h:notaport"),
        ("SPLUNK_HEC_TOKEN", "<unset>"),
        ("SPLUNK_HEC_TOKEN", "has space"),
        ("SPLUNK_INDEX", "Bad Index!"),
        ("DISPATCH_MIN_BATCH_SIZE", "0"),
        ("DISPATCH_MIN_BATCH_SIZE", "ten"),
        ("SPLUNK_FLUSH", "sometimes"),
        ("SPLUNK_MAX_LATENCY_MS", "50"),
        ("SPLUNK_VERIFY_TLS", "maybe"),
        ("SPLUNK_TELEMETRY_TYPES", "platform,metrics"),
        ("SPLUNK_BUFFER_TIMEOUT_MS", "10"),
        ("SPLUNK_BUFFER_MAX_ITEMS", "20000"),
        ("SPLUNK_CA_BUNDLE", "/nonexistent/ca.pem"),
        ("SPLUNK_LISTENER_PORT", "9001"),
        ("SPLUNK_LOG_LEVEL", "chatty"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    assert variable in problems(**{variable: value})


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        config.load({"DISPATCH_MIN_BATCH_SIZE": "-1"})
    names = " ".join(info.value.problems)
    for variable in ("SPLUNK_HOST", "SPLUNK_HEC_TOKEN", "DISPATCH_MIN_BATCH_SIZE"):
        assert variable in names


def test_token_value_never_in_error() -> None:
    secret = "s3cr3t-token-value"
    with pytest.raises(ConfigError) as info:
        config.load({"SPLUNK_HEC_TOKEN": secret, "SPLUNK_HOST": "ftp://bad"})
    assert secret not in str(info.value)


def test_types_deduplicated_and_case_insensitive() -> None:
    assert load(SPLUNK_TELEMETRY_TYPES="Function, platform,function").telemetry_types == (
        "function",
        "platform",
    )


def test_config_error_action() -> None:
    assert config.config_error_action({}) == "fail"
    assert config.config_error_action({"SPLUNK_ON_CONFIG_ERROR": "DISABLE"}) == "disable"
    assert config.config_error_action({"SPLUNK_ON_CONFIG_ERROR": "bogus"}) == "fail"


def test_config_error_pickles() -> None:
    import pickle

    err = ConfigError(["A is bad", "B is bad"])
    assert pickle.loads(pickle.dumps(err)).problems == err.problems
