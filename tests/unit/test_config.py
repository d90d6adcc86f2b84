from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext import config
from ext.errors import ConfigError
from ext.main.extensions_api import INITIALIZATION_TYPE, MANAGED_INSTANCES

BASE = {"SPLUNK_HOST": "splunk.example.com:8088", "SPLUNK_HEC_TOKEN": "abc-123"}
LMI = {INITIALIZATION_TYPE: MANAGED_INSTANCES}


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
        ("https://[fd00::5]/services/collector", "https://[fd00::5]", "/services/collector/event"),
        ("[::1]:8088", "https://[::1]:8088", "/services/collector/event"),
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
        ("SPLUNK_HOST", "https://h:"),
        ("SPLUNK_HOST", "https://[::1]:"),
        ("SPLUNK_HOST", "https://[::1"),
        ("SPLUNK_HOST", "https//splunk.example.com:8088"),
        ("SPLUNK_HOST", "https;//splunk.example.com:8088"),
        ("SPLUNK_HOST", "https://splunk%:8088"),
        ("SPLUNK_HOST", "h\\x:8088"),
        ("SPLUNK_HOST", "https://spłunk.example.com"),
        ("SPLUNK_HOST", "https://h:8088/services/collector/\x00"),
        ("SPLUNK_HOST", "https://h:8088/services/collector/é"),
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


@pytest.mark.parametrize("value", [
    "11111111-2222-3333-4444-55555555AAAA",  # a GUID: the shape of a HEC token
    "/11111111-2222-3333-4444-555555555555",
    "arn:aws:ssm:us-east-1:123456789012:parameter/11111111-2222-3333-4444-555555555555",
    "tok+en/with=signs",  # refused for its characters: not echoed either
])
def test_a_token_pasted_as_the_ssm_parameter_is_refused_and_never_echoed(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load({**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": value})
    assert "SPLUNK_HEC_TOKEN_SSM_PARAMETER" in str(info.value)
    assert value not in str(info.value) and "555555" not in str(info.value)


def test_a_parameter_path_may_end_in_a_guid_of_its_own() -> None:
    name = "/splunk/tokens/11111111-2222-3333-4444-555555555555"
    assert config.load({**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": name}).token_reference \
        == name


def test_types_deduplicated_and_case_insensitive() -> None:
    assert load(SPLUNK_TELEMETRY_TYPES="Function, platform,function").telemetry_types == (
        "function",
        "platform",
    )


@pytest.mark.parametrize("flush", [None, "sync", "adaptive"])
def test_without_platform_events_the_flush_is_in_the_background_and_says_so(
    flush: str | None,
) -> None:
    # No platform event, no runtimeDone: a waited flush would wait its whole budget, billed.
    extra = {"SPLUNK_FLUSH": flush} if flush else {}
    cfg = load(SPLUNK_TELEMETRY_TYPES="function,extension", **extra)
    assert cfg.flush == "background" and not cfg.sees_invocation_ends
    (notice,) = cfg.notices
    assert f"SPLUNK_FLUSH={flush or 'adaptive'}" in notice and "SPLUNK_TELEMETRY_TYPES" in notice
    assert load(SPLUNK_TELEMETRY_TYPES="function", SPLUNK_FLUSH="background").notices == ()
    with_platform = load(SPLUNK_TELEMETRY_TYPES="platform", **extra)
    assert with_platform.flush == (flush or "adaptive") and with_platform.notices == ()
    assert with_platform.sees_invocation_ends


@pytest.mark.parametrize("asked", [None, "sync", "adaptive", "background"])
def test_on_managed_instances_every_strategy_flushes_in_the_background(asked: str | None) -> None:
    env = {**BASE, **LMI, **({"SPLUNK_FLUSH": asked} if asked else {})}
    loaded = config.load(env)
    assert loaded.managed_instances
    assert loaded.flush == "background"
    told = [notice for notice in loaded.notices if "SPLUNK_FLUSH" in notice]
    # Only a strategy the deployer asked for, and cannot have, is worth a warning.
    assert told == ([] if asked in (None, "background") else [
        f"SPLUNK_FLUSH={asked} does not apply on Lambda Managed Instances (no INVOKE events, "
        "nothing frozen): flushing in the background"])


def test_elsewhere_the_strategy_is_as_asked() -> None:
    loaded = config.load({**BASE, "SPLUNK_FLUSH": "sync"})
    assert not loaded.managed_instances
    assert loaded.flush == "sync"


def test_config_error_action() -> None:
    assert config.config_error_action({}) == "fail"
    assert config.config_error_action({"SPLUNK_ON_CONFIG_ERROR": "DISABLE"}) == "disable"
    assert config.config_error_action({"SPLUNK_ON_CONFIG_ERROR": "bogus"}) == "fail"


def test_config_error_pickles() -> None:
    import pickle

    err = ConfigError(["A is bad", "B is bad"])
    assert pickle.loads(pickle.dumps(err)).problems == err.problems


# --- the HEC token's source (issue 11) and the smaller holes of issue 16 -------------------------

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk/hec-AbCdEf"
ROLE = {"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "role-secret-key", "AWS_SESSION_TOKEN": "role-session"}
HOST = {"SPLUNK_HOST": "https://splunk.example:8088"}


def test_secret_arn_source() -> None:
    cfg = config.load({**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SECRET_ARN": ARN,
                       "SPLUNK_HEC_TOKEN_SECRET_KEY": "hec"})
    assert (cfg.token_source, cfg.token_reference, cfg.token_secret_key) == (
        "secretsmanager", ARN, "hec")
    assert cfg.hec_token == ""
    assert cfg.aws_endpoint == "https://secretsmanager.eu-west-1.amazonaws.com"
    assert cfg.aws_credentials == ("AKIDEXAMPLE", "role-secret-key", "role-session")
    assert cfg.token_refetch_s == 30
    assert "role-secret-key" not in repr(cfg) and "role-session" not in repr(cfg)


def test_ssm_parameter_source_and_endpoint_overrides() -> None:
    env = {**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/splunk/hec"}
    assert config.load(env).aws_endpoint == "https://ssm.eu-west-1.amazonaws.com"
    general = {**env, "AWS_ENDPOINT_URL": "http://localhost:4566/"}
    assert config.load(general).aws_endpoint == "http://localhost:4566"
    specific = {**general, "AWS_ENDPOINT_URL_SSM": "https://ssm.internal:8443/x"}
    assert config.load(specific).aws_endpoint == "https://ssm.internal:8443/x"
    # The Secrets Manager override does not apply to SSM.
    other = {**general, "AWS_ENDPOINT_URL_SECRETS_MANAGER": "https://sm.internal"}
    assert config.load(other).aws_endpoint == "http://localhost:4566"
    ignored = {**specific, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}
    assert config.load(ignored).aws_endpoint == "https://ssm.eu-west-1.amazonaws.com"
    china = {**env, "AWS_REGION": "cn-north-1"}
    assert config.load(china).aws_endpoint == "https://ssm.cn-north-1.amazonaws.com.cn"


@pytest.mark.parametrize(
    ("variable", "reference", "endpoint"),
    [
        ("SPLUNK_HEC_TOKEN_SECRET_ARN",
         "arn:aws:secretsmanager:us-east-2:123456789012:secret:splunk/hec-AbCdEf",
         "https://secretsmanager.us-east-2.amazonaws.com"),
        ("SPLUNK_HEC_TOKEN_SSM_PARAMETER",
         "arn:aws:ssm:ap-southeast-2:123456789012:parameter/splunk/hec",
         "https://ssm.ap-southeast-2.amazonaws.com"),
    ],
)
def test_an_arn_in_another_region_is_read_from_its_region(variable: str, reference: str,
                                                          endpoint: str) -> None:
    # Secrets and parameters are regional: one in another region than the function's is read
    # only through that region's endpoint, and the request is signed for that region.
    cfg = config.load({**HOST, **ROLE, variable: reference})
    assert cfg.aws_endpoint == endpoint
    assert cfg.aws_region == reference.split(":")[3]
    # A parameter named without an ARN lives in the function's region.
    plain = config.load({**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/splunk/hec"})
    assert plain.aws_region == "eu-west-1"


def _partition_regions() -> list[tuple[str, str]]:
    """(region, DNS suffix) of every region botocore knows (a test-only dependency)."""
    import json
    import re
    from pathlib import Path

    import botocore

    data = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())
    return [(region, partition["outputs"]["dnsSuffix"]) for partition in data["partitions"]
            for region in partition["regions"] if re.match(partition["regionRegex"], region)]


@pytest.mark.parametrize(("region", "suffix"), _partition_regions())
def test_default_endpoint_in_every_partition(region: str, suffix: str) -> None:
    # As the AWS SDKs resolve it: https://{service}.{region}.{the partition's DNS suffix}.
    arn = ARN.replace(":eu-west-1:", f":{region}:")
    for variable, service, reference in (
        ("SPLUNK_HEC_TOKEN_SSM_PARAMETER", "ssm", "/splunk/hec"),
        ("SPLUNK_HEC_TOKEN_SECRET_ARN", "secretsmanager", arn),
    ):
        cfg = config.load({**HOST, **ROLE, "AWS_REGION": region, variable: reference})
        assert cfg.aws_endpoint == f"https://{service}.{region}.{suffix}"


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        # The SDKs send to the URL as given, its path included (botocore: https://host/prefix is
        # POSTed to /prefix): a VPC endpoint behind a proxy that routes on a path prefix.
        ("https://proxy.internal/vpce/ssm", "https://proxy.internal/vpce/ssm"),
        ("https://proxy.internal/vpce/ssm/", "https://proxy.internal/vpce/ssm/"),
        ("http://[::1]:4566/", "http://[::1]:4566"),
        ("HTTPS://proxy.internal:8443", "https://proxy.internal:8443"),
    ],
)
def test_an_endpoint_url_keeps_its_path(url: str, endpoint: str) -> None:
    env = {**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p", "AWS_ENDPOINT_URL_SSM": url}
    assert config.load(env).aws_endpoint == endpoint


@pytest.mark.parametrize("url", ["https://proxy.internal/p?x=1", "https://proxy.internal/p#f"])
def test_an_endpoint_url_with_a_query_is_refused_not_cut(url: str) -> None:
    # Dropping it would send the request elsewhere than asked; signing it is of no use to anyone.
    with pytest.raises(ConfigError) as info:
        config.load({**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p",
                     "AWS_ENDPOINT_URL": url})
    assert "AWS_ENDPOINT_URL=" in str(info.value) and "x=1" not in str(info.value)


@pytest.mark.parametrize("url", [
    "https://", "https:///ssm",  # no host
    "https://[vpce]/ssm",  # brackets around no IPv6 address
    "https://[::1/ssm",  # never closed
    "https://fd00::1/ssm",  # an IPv6 address without its brackets
    "https://vpce.internal:99999", "https://vpce.internal:0", "https://vpce.internal:ssl",
    "https://vpce.internal:\u0668\u0660",  # Arabic-Indic digits: int() reads them, urllib3 not
])
def test_an_endpoint_url_urllib3_cannot_call_is_refused_at_init(url: str) -> None:
    # Taken, every read of the token failed, events held: urllib3 refuses each URL (port 0:
    # no connection can be made to it).
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM"):
        with pytest.raises(ConfigError) as info:
            config.load({**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p", name: url})
        assert f"{name}=" in str(info.value)


@functools.cache
def _sdk_rules(service: str) -> Any:
    """botocore's endpoint rules of `service` (a test-only dependency)."""
    from botocore.endpoint_provider import EndpointProvider
    from botocore.loaders import create_loader

    loader = create_loader()
    return EndpointProvider(loader.load_service_model(service, "endpoint-rule-set-1"),
                            loader.load_data("partitions"))


def _sdk_endpoint(service: str, region: str, fips: bool, dualstack: bool) -> str | None:
    """The URL botocore's endpoint rules give (None: they refuse the combination)."""
    from botocore.exceptions import EndpointResolutionError

    try:
        url: str = _sdk_rules(service).resolve_endpoint(Region=region, UseFIPS=fips,
                                                        UseDualStack=dualstack).url
    except EndpointResolutionError:
        return None
    return url


@pytest.mark.parametrize(("region", "suffix"), _partition_regions())
def test_fips_and_dualstack_endpoints_as_the_sdks_resolve_them(region: str, suffix: str) -> None:
    # Each service's own rules, not one pattern: Secrets Manager's dual-stack endpoint in the aws,
    # aws-cn and aws-us-gov partitions is its usual one, GovCloud's SSM endpoint is FIPS already.
    arn = ARN.replace(":eu-west-1:", f":{region}:")
    for variable, service, reference in (
        ("SPLUNK_HEC_TOKEN_SSM_PARAMETER", "ssm", "/splunk/hec"),
        ("SPLUNK_HEC_TOKEN_SECRET_ARN", "secretsmanager", arn),
    ):
        for fips, dualstack in ((True, False), (False, True), (True, True), (False, False)):
            env = {**HOST, **ROLE, "AWS_REGION": region, variable: reference,
                   "AWS_USE_FIPS_ENDPOINT": str(fips).lower(),
                   "AWS_USE_DUALSTACK_ENDPOINT": str(dualstack).lower()}
            expected = _sdk_endpoint(service, region, fips, dualstack)
            if expected is None:  # a partition without FIPS or dual-stack endpoints
                with pytest.raises(ConfigError) as info:
                    config.load(env)
                assert "AWS_USE_" in str(info.value)
                continue
            cfg = config.load(env)
            assert (cfg.aws_endpoint, cfg.token_source) == (expected, service), (fips, dualstack)


@pytest.mark.parametrize(
    ("region", "extra", "endpoint"),
    [
        ("us-east-1", {"AWS_USE_FIPS_ENDPOINT": "true"},
         "https://secretsmanager-fips.us-east-1.amazonaws.com"),
        ("us-gov-west-1", {"AWS_USE_FIPS_ENDPOINT": "TRUE"},
         "https://secretsmanager-fips.us-gov-west-1.amazonaws.com"),
        ("cn-north-1", {"AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "true"},
         "https://secretsmanager-fips.cn-north-1.api.amazonwebservices.com.cn"),
        ("us-iso-east-1", {"AWS_USE_DUALSTACK_ENDPOINT": " true "},
         "https://secretsmanager.us-iso-east-1.api.aws.ic.gov"),
        ("eu-west-1", {"AWS_USE_FIPS_ENDPOINT": "false", "AWS_USE_DUALSTACK_ENDPOINT": "False"},
         "https://secretsmanager.eu-west-1.amazonaws.com"),
    ],
)
def test_fips_and_dualstack_examples(region: str, extra: dict[str, str], endpoint: str) -> None:
    arn = ARN.replace(":eu-west-1:", f":{region}:")
    cfg = config.load({**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SECRET_ARN": arn, **extra})
    assert cfg.aws_endpoint == endpoint
    assert (cfg.aws_region, cfg.token_source) == (region, "secretsmanager")  # signed as before


@pytest.mark.parametrize("variable", ["AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
                                      "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"])
@pytest.mark.parametrize("value", ["yes", "1", "on", "enabled"])
def test_an_endpoint_flag_other_than_true_or_false_is_refused(variable: str, value: str) -> None:
    # The SDKs take only true or false (botocore reads anything else as false, the Go and
    # JavaScript SDKs refuse it): a FIPS user's "1" must not quietly reach a non-FIPS endpoint,
    # nor an "ignore the endpoint URLs" of "1" send the token fetch elsewhere than the
    # function's own SDK calls go.
    with pytest.raises(ConfigError) as info:
        config.load({**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p", variable: value})
    assert f"{variable}={value!r} is not valid: expected true or false" in str(info.value)


def test_endpoint_flags_are_not_read_with_a_token_value() -> None:
    cfg = config.load({**HOST, "SPLUNK_HEC_TOKEN": "abc", "AWS_USE_FIPS_ENDPOINT": "maybe"})
    assert cfg.aws_endpoint == "" and cfg.notices == ()


def test_a_configured_endpoint_url_wins_over_fips_and_dualstack_with_a_notice() -> None:
    # As botocore and the SDKs reference guide have it: the URL is used as given. The notice
    # tells a FIPS user that FIPS is now the endpoint's business, not the extension's.
    env = {**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p",
           "AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "true",
           "AWS_ENDPOINT_URL_SSM": "https://user:pw@vpce.internal/ssm?sig=x"}
    with pytest.raises(ConfigError):
        config.load(env)  # credentials and a query are refused, never echoed
    cfg = config.load({**env, "AWS_ENDPOINT_URL_SSM": "https://vpce.internal/ssm"})
    assert cfg.aws_endpoint == "https://vpce.internal/ssm"
    assert cfg.notices == (
        "AWS_USE_FIPS_ENDPOINT=true does not apply to AWS_ENDPOINT_URL_SSM: the token is read "
        "from https://vpce.internal/ssm",
        "AWS_USE_DUALSTACK_ENDPOINT=true does not apply to AWS_ENDPOINT_URL_SSM: the token is "
        "read from https://vpce.internal/ssm",
    )
    ignored = config.load({**env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"})
    assert ignored.aws_endpoint == "https://ssm-fips.eu-west-1.api.aws"
    assert ignored.notices == ()


@pytest.mark.parametrize(
    "sources",
    [
        {},
        {"SPLUNK_HEC_TOKEN": "abc", "SPLUNK_HEC_TOKEN_SECRET_ARN": ARN},
        {"SPLUNK_HEC_TOKEN_SECRET_ARN": ARN, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p"},
        {"SPLUNK_HEC_TOKEN": "abc", "SPLUNK_HEC_TOKEN_SECRET_ARN": ARN,
         "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p"},
    ],
)
def test_exactly_one_token_source(sources: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        config.load({**HOST, **ROLE, **sources})
    (problem,) = info.value.problems
    for name in ("SPLUNK_HEC_TOKEN", "SPLUNK_HEC_TOKEN_SECRET_ARN",
                 "SPLUNK_HEC_TOKEN_SSM_PARAMETER"):
        assert name in problem
    for name in sources:
        assert f"{name} " in problem or f"{name})" in problem  # the ones set are named as set
    assert "abc" not in problem


def test_fetched_token_needs_the_role_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        config.load({**HOST, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p"})
    text = str(info.value)
    for name in ("AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert name in text


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"SPLUNK_HEC_TOKEN_SECRET_ARN": "splunk/hec"}, "SPLUNK_HEC_TOKEN_SECRET_ARN"),
        # Another service's ARN, or one cut short: refused at init, not held at run time.
        ({"SPLUNK_HEC_TOKEN_SECRET_ARN": "arn:aws:ssm:eu-west-1:123456789012:parameter/hec"},
         "SPLUNK_HEC_TOKEN_SECRET_ARN"),
        ({"SPLUNK_HEC_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012"},
         "SPLUNK_HEC_TOKEN_SECRET_ARN"),
        ({"SPLUNK_HEC_TOKEN_SECRET_ARN": "arn:aws:secretsmanager::123456789012:secret:hec"},
         "SPLUNK_HEC_TOKEN_SECRET_ARN"),
        ({"SPLUNK_HEC_TOKEN_SSM_PARAMETER": ARN}, "SPLUNK_HEC_TOKEN_SSM_PARAMETER"),
        ({"SPLUNK_HEC_TOKEN_SSM_PARAMETER": "arn:aws:ssm:eu-west-1:123456789012:parameter/"},
         "SPLUNK_HEC_TOKEN_SSM_PARAMETER"),
        ({"SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p", "SPLUNK_HEC_TOKEN_SECRET_KEY": "k"},
         "SPLUNK_HEC_TOKEN_SECRET_KEY"),
        ({"SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p", "AWS_ENDPOINT_URL": "ftp://x"},
         "AWS_ENDPOINT_URL"),
        ({"SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/p", "SPLUNK_HEC_TOKEN_REFETCH_S": "0"},
         "SPLUNK_HEC_TOKEN_REFETCH_S"),
    ],
)
def test_bad_token_source_settings(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load({**HOST, **ROLE, **extra})
    assert variable in str(info.value)


def test_a_token_pasted_as_the_secrets_arn_is_not_echoed() -> None:
    token = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(ConfigError) as info:
        config.load({**HOST, **ROLE, "SPLUNK_HEC_TOKEN_SECRET_ARN": token})
    assert "SPLUNK_HEC_TOKEN_SECRET_ARN is not valid" in str(info.value)
    assert token not in str(info.value)


@pytest.mark.parametrize(
    "token",
    ["caf\u00e9-token", "t\u00f6ken", "\u4ee4\u724c", "a\x00b", "a\x7fb", "has space", "tab\there"],
)
def test_token_outside_visible_ascii_is_an_init_error(token: str) -> None:
    # Once a crash loop in the sender: HTTP headers are Latin-1 (issue 16).
    text = problems(SPLUNK_HEC_TOKEN=token)
    assert "SPLUNK_HEC_TOKEN" in text
    assert token not in text
    assert config.token_problem(token) is not None


def test_guid_token_is_valid() -> None:
    assert config.token_problem("11111111-2222-3333-4444-555555555555") is None


@pytest.mark.parametrize(
    ("host", "leaked"),
    [
        ("https://admin:hunter2@splunk:8088", "hunter2"),
        ("https://splunk:8088/services/collector?token=abc-secret", "abc-secret"),
        ("https://user:pw-in-url@splunk:notaport", "pw-in-url"),
        ("ftp://u:ftp-secret@h", "ftp-secret"),
        ("https://h:8088/#frag-secret", "frag-secret"),
        # a password pasted unencoded: "/", "?" or "#" before its "@"
        ("https://admin:s3cr/et@splunk:8088", "s3cr/et"),
        ("https://admin:pa?ss-word@splunk:8088", "pa?ss-word"),
        ("https://admin:pa#ss-word@splunk:8088", "pa#ss-word"),
        ("https://admin:pa#ss-word@splunk:8088", "admin"),
    ],
)
def test_splunk_host_never_echoed_with_credentials(host: str, leaked: str) -> None:
    text = problems(SPLUNK_HOST=host)
    assert "SPLUNK_HOST" in text
    assert leaked not in text
    assert "***" in text


def test_redact_url_keeps_what_helps() -> None:
    assert config.redact_url("https://u:p@h:8088/path?q=1") == "https://***@h:8088/path?***"
    assert config.redact_url("h.example:8088") == "h.example:8088"
    assert config.redact_url("https://u:p/q?r#s@h:8088/x") == "https://***@h:8088/x"


@given(st.text(max_size=40))
def test_redact_url_never_shows_what_precedes_an_at_sign(middle: str) -> None:
    secret = f"Zq{middle}qZ"  # in none of the URLs' other parts
    for url in (f"https://{secret}@h:8088", f"{secret}@h", f"https://h/{secret}@x",
                f"https://u:{secret}@h:8088/p?q#f"):
        shown = config.redact_url(url)
        assert secret not in shown
        assert shown.count("@") == 1 and "***@" in shown


def test_redact_url_takes_only_a_real_scheme_for_one() -> None:
    assert config.redact_url("user:pa://ss@h") == "***@h"
    assert config.redact_url("git+ssh://u:p@h") == "git+ssh://***@h"


_URL_PART = st.text(st.characters(codec="utf-8"), max_size=12)


@given(_URL_PART, _URL_PART, st.sampled_from(["", "https://", "http://"]))
def test_a_host_the_config_takes_is_one_urllib3_and_http_client_send_to(
    host: str, rest: str, scheme: str
) -> None:
    """Whatever SPLUNK_HOST the init accepts, each request goes to that host and port with that
    path; a value urllib3 or http.client would refuse (at every send) fails the init instead."""
    from http.client import HTTPConnection

    from urllib3.util import parse_url

    for value in (scheme + host + rest, f"{scheme}{host}:8088/{rest}", f"{scheme}h.example{rest}"):
        try:
            url, path = config._hec_url(value, None)
        except ValueError:
            continue
        parsed = parse_url(url)
        netloc = url.partition("://")[2]
        assert parsed.host is not None and parsed.host.lower() in netloc.lower()
        assert parsed.path in (None, "") and not parsed.query and not parsed.auth
        assert url == f"{parsed.scheme}://{netloc}"
        HTTPConnection("h")._validate_path(path)  # type: ignore[attr-defined]
        path.encode("ascii")


def test_unwritable_spool_dir_is_an_init_error(tmp_path: object) -> None:
    from pathlib import Path

    blocker = Path(str(tmp_path)) / "a-file"
    blocker.write_text("x")
    text = problems(SPLUNK_SPOOL_DIR=str(blocker / "spool"))
    assert "SPLUNK_SPOOL_DIR" in text and "not a directory" in text
    assert load(SPLUNK_SPOOL_DIR=str(Path(str(tmp_path)) / "new" / "spool")).spool_dir


@pytest.mark.parametrize(("value", "level"), [("warn", "WARNING"), ("Warning", "WARNING"),
                                              ("debug", "DEBUG"), ("ERROR", "ERROR")])
def test_log_level_takes_the_names_min_level_takes(value: str, level: str) -> None:
    assert load(SPLUNK_LOG_LEVEL=value).log_level == level
