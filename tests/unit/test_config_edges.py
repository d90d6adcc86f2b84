"""The edges of what each variable takes: the last value a bound lets pass and the first it
refuses, each refusal naming its variable, and the values that look valid but that nothing after
the init could use (refused at init rather than failing every event at run time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ext import config
from ext.errors import ConfigError
from tests.unit.fresh_python import probe_output

BASE = {"SPLUNK_HOST": "splunk.example.com:8088", "SPLUNK_HEC_TOKEN": "abc-123"}
ROLE = {"SPLUNK_HOST": "https://splunk.example:8088", "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "role-secret-key"}
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk/hec-AbCdEf"


def load(env: dict[str, str]) -> config.Config:
    return config.load(env)


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load(env)
    return info.value.problems


def only_problem(env: dict[str, str], variable: str) -> str:
    """The one problem of `env`, which must name `variable` as the one not valid."""
    (problem,) = problems(env)
    assert problem.startswith((f"{variable} ", f"{variable}=")), problem
    return problem


@pytest.mark.parametrize(("host", "taken"), [
    ("https://splunk.example:1", True),
    ("https://splunk.example:65535", True),
    ("https://splunk.example:65536", False),
    ("https://splunk.example:0", False),
    ("https://[::1]:65535", True),
    ("https://[::1]:99999", False),
    ("https://[::1]:a8088", False),
    ("https://[fd00::5]:8088/services/collector", True),
    ("https://[::1]x", False),  # nothing but a port may follow the literal
    ("https://[::1]8088", False),
])
def test_a_hec_port_is_one_from_1_to_65535(host: str, taken: bool) -> None:
    if taken:
        assert load({**BASE, "SPLUNK_HOST": host}).hec_url == host.removesuffix(
            "/services/collector")
    else:
        only_problem({**BASE, "SPLUNK_HOST": host}, "SPLUNK_HOST")


@pytest.mark.parametrize("literal", ["[]", "[x]", "[fd00:5]", "[127.0.0.1]", "[1::2::3]",
                                     "[::1::2]"])
def test_an_ipv6_literal_that_is_no_ipv6_address_is_refused_at_init(literal: str) -> None:
    # Taken, the sender failed at its start on every restart (urllib3: not a valid host).
    for host in (f"https://{literal}", f"https://{literal}:8088/services/collector"):
        only_problem({**BASE, "SPLUNK_HOST": host}, "SPLUNK_HOST")


@pytest.mark.parametrize("literal", ["[::1]", "[fd00::5]", "[FD00:EC2::23]", "[::ffff:10.0.0.1]",
                                     "[2001:db8:0:0:0:0:0:1]"])
def test_an_ipv6_address_is_taken_in_every_spelling(literal: str) -> None:
    assert load({**BASE, "SPLUNK_HOST": f"{literal}:8088"}).hec_url == f"https://{literal}:8088"


@pytest.mark.parametrize("port", [
    "\u0668\u0660\u0668\u0668",  # 8088 in Arabic-Indic digits: int() reads it, urllib3 does not
    "\u00b9",  # a superscript one: isdigit() but no int()
    "\uff18\uff10\uff18\uff18",  # fullwidth digits
])
def test_a_hec_port_in_other_digits_than_ascii_is_refused_at_init(port: str) -> None:
    # Taken, the sender failed at its start on every restart (urllib3: not a valid port).
    only_problem({**BASE, "SPLUNK_HOST": f"https://splunk.example:{port}"}, "SPLUNK_HOST")


@pytest.mark.parametrize("port", ["\u0668\u0660", "\u00b9", "\uff18\uff10"])
def test_a_credentials_port_in_other_digits_than_ascii_is_a_config_error(port: str) -> None:
    # A superscript digit made load() raise int()'s ValueError: no ConfigError, so no message
    # naming the variable, and SPLUNK_ON_CONFIG_ERROR=disable could not keep the function up.
    url = f"http://127.0.0.1:{port}/2021-04-23/credentials"
    env = {**ROLE, "SPLUNK_HEC_TOKEN_SECRET_ARN": SECRET_ARN,
           "AWS_CONTAINER_CREDENTIALS_FULL_URI": url}
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    only_problem(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI")


@pytest.mark.parametrize("arn", [
    "ARN:aws:secretsmanager:eu-west-1:123456789012:secret:hec",  # ARNs are lower case
    "arn:aws:secretsmanager:eu-west-1:123456789012:Secret:hec",
    "arn:aws:secretsmanager:eu-west-1::secret:hec",  # no account
    "arn::secretsmanager:eu-west-1:123456789012:secret:hec",  # no partition
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",  # no name
    "arn:aws:secretsmanager",  # cut short
    "arn:aws:secretmanager:eu-west-1:123456789012:secret:hec",  # the service's name mistyped
    "urn:aws:secretsmanager:eu-west-1:123456789012:secret:hec",
    "arn:aws:secretsmanager:eu-west-1:123456789012:secrets:hec",
    "arn:aws:ssm:eu-west-1:123456789012:secret:hec",  # another service's
    # ECS's reference to a JSON key of the secret: GetSecretValue takes no such id (the key is
    # SPLUNK_HEC_TOKEN_SECRET_KEY), and a secret's name holds no colon.
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hec-AbCdEf:token::",
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hec:x",
])
def test_a_secret_arn_getsecretvalue_would_not_take_is_refused_at_init(arn: str) -> None:
    text = only_problem({**ROLE, "SPLUNK_HEC_TOKEN_SECRET_ARN": arn},
                        "SPLUNK_HEC_TOKEN_SECRET_ARN")
    assert arn not in text  # perhaps the token itself, pasted in the wrong variable


@pytest.mark.parametrize("arn", [
    "arn:aws:ssm:eu-west-1:123456789012:document/hec",  # another SSM resource
    "arn:aws:ssm:eu-west-1:123456789012:parameterhec",
    "arn:aws:ssm:eu-west-1::parameter/hec",
    "arn:aws:ssm:eu-west-1:123456789012",  # cut short
    "arn:aws:ssm",
    "arn::ssm:eu-west-1:123456789012:parameter/hec",  # no partition
    "arn:aws:sms:eu-west-1:123456789012:parameter/hec",  # the service's name mistyped
    "arn:aws:ssm-contacts:eu-west-1:123456789012:parameter/hec",  # another service
])
def test_a_parameter_arn_of_something_else_is_refused_at_init(arn: str) -> None:
    only_problem({**ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": arn},
                 "SPLUNK_HEC_TOKEN_SSM_PARAMETER")


@pytest.mark.parametrize("arn", ["arn:aws:ssm:eu-west-1::parameter/hec",
                                 "arn:aws::eu-west-1:123456789012:parameter/hec"])
def test_a_refused_arn_with_its_region_asks_for_no_other_region(arn: str) -> None:
    # The ARN's own problem is the one to fix: its region is read even so, and AWS_REGION is
    # not asked for on top of it.
    env = {**ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": arn}
    del env["AWS_REGION"]
    only_problem(env, "SPLUNK_HEC_TOKEN_SSM_PARAMETER")


@pytest.mark.parametrize("name", ["ARN:aws:ssm:us-east-2:123456789012:parameter/hec",
                                  "urn:aws:ssm:us-east-2:123456789012:parameter/hec"])
def test_a_refused_name_that_looks_like_an_arn_lends_no_region(name: str) -> None:
    # Only `arn:` starts an ARN: a name has no region of its own, so without AWS_REGION the
    # function's region is asked for as well.
    env = {**ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": name}
    del env["AWS_REGION"]
    found = problems(env)
    assert len(found) == 2 and found[0].startswith("SPLUNK_HEC_TOKEN_SSM_PARAMETER is not valid")
    assert "AWS_REGION" in found[1]


def test_a_parameter_name_may_hold_every_character_ssm_allows() -> None:
    letters = "abcdefghijklmnopqrstuvwxyz"
    name = "/" + letters + letters.upper() + "0123456789_.-"
    for reference in (name, f"{name}:{name[1:]}",
                      f"arn:aws:ssm:eu-west-1:123456789012:parameter{name}:{name[1:]}"):
        cfg = load({**ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": reference})
        assert cfg.token_reference == reference


@pytest.mark.parametrize("name", ["ARN:aws:ssm:us-east-2:123456789012:parameter/hec",
                                  "urn:aws:ssm:us-east-2:123456789012:parameter/hec",
                                  "splunk hec", "/splunk/hec token", "hec:", ":3", "hec:1:2",
                                  "hec:pröd", "/splunk/héc",
                                  "arn:aws:ssm:eu-west-1:123456789012:parameter/hec:",
                                  "arn:aws:ssm:eu-west-1:123456789012:parameter/a b"])
def test_a_parameter_name_ssm_would_refuse_is_refused_at_init(name: str) -> None:
    # Only `arn:` starts an ARN (they are case-sensitive); anything else is a name, of
    # letters, digits and _.-/ with one optional selector: else GetParameter fails every read.
    only_problem({**ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": name}, "SPLUNK_HEC_TOKEN_SSM_PARAMETER")


@pytest.mark.parametrize("name", ["hec", "/splunk/prod/hec-token_1.v2", "hec:3",
                                  "/splunk/hec:prod-label_1.x", "/aws/reference/x"])
def test_a_parameter_name_is_read_in_the_function_s_region(name: str) -> None:
    cfg = load({**ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": name})
    assert (cfg.token_reference, cfg.aws_region) == (name, "eu-west-1")


def test_a_parameter_arn_and_a_name_with_a_version_are_taken() -> None:
    # GetParameter takes a name or an ARN, either with a :version or :label selector.
    for reference in ("arn:aws:ssm:eu-west-1:123456789012:parameter/splunk/hec:3", "hec:prod"):
        cfg = load({**ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": reference})
        assert (cfg.token_source, cfg.token_reference) == ("ssm", reference)


@pytest.mark.parametrize("variable", ["SPLUNK_INDEX", "SPLUNK_METRICS_INDEX"])
def test_an_index_name_is_at_most_80_characters_not_starting_with_a_dash(variable: str) -> None:
    field = "index" if variable == "SPLUNK_INDEX" else "metrics_index"
    longest = "a" * 79 + "-"
    assert getattr(load({**BASE, variable: longest}), field) == longest
    every = "abcdefghijklmnopqrstuvwxyz0123456789_-"
    assert getattr(load({**BASE, variable: every}), field) == every
    assert getattr(load({**BASE, variable: "a-_9"}), field) == "a-_9"
    for bad in ("a" * 81, "-logs", "_" * 81):
        only_problem({**BASE, variable: bad}, variable)


def test_a_field_name_of_64_characters_and_a_value_of_1024_are_taken() -> None:
    name, value = "n" * 64, "v" * 1_024
    assert load({**BASE, "SPLUNK_FIELDS": f"{name}={value}"}).user_fields == ((name, value),)
    only_problem({**BASE, "SPLUNK_FIELDS": f"{name}n=x"}, "SPLUNK_FIELDS")
    only_problem({**BASE, "SPLUNK_FIELDS": f"team={value}v"}, "SPLUNK_FIELDS")


def test_a_field_name_may_start_with_a_capital_letter() -> None:
    # Only _ and digits may not start a name: A-Z sort below _ yet are letters.
    fields = load({**BASE, "SPLUNK_FIELDS": "Team=payments, Zone=a"}).user_fields
    assert fields == (("Team", "payments"), ("Zone", "a"))


@pytest.mark.parametrize("value", ["team", "team=", "=x", "1team=x", "_team=x", "host=x",
                                   "cold_start=x", "te am=x", "a=1,a=2", "date_hour=3",
                                   # dimensions of the metrics, the alerts' own field
                                   "status=prod", "Error_Type=x", "phase=x", "alert=x",
                                   "reason=x",
                                   # HEC's single-metric keys, which need _value
                                   "metric_name=x", "Metric_Type=x"])
def test_bad_splunk_fields_fail_init_naming_the_variable(value: str) -> None:
    only_problem({**BASE, "SPLUNK_FIELDS": value}, "SPLUNK_FIELDS")


def test_a_field_name_may_hold_every_letter_digit_and_underscore() -> None:
    name = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
    assert load({**BASE, "SPLUNK_FIELDS": f"{name}=x"}).user_fields == ((name, "x"),)


def test_a_field_name_may_end_with_a_digit_or_an_underscore() -> None:
    fields = load({**BASE, "SPLUNK_FIELDS": "team2=a,env_=b,x_1=c"}).user_fields
    assert fields == (("team2", "a"), ("env_", "b"), ("x_1", "c"))


@pytest.mark.parametrize("value", ["WARNINGS", "yes", "warn ing", "critical!"])
def test_a_log_level_that_only_starts_like_one_is_refused(value: str) -> None:
    text = only_problem({**BASE, "SPLUNK_LOG_LEVEL": value}, "SPLUNK_LOG_LEVEL")
    assert text.endswith("expected DEBUG, INFO, WARNING, ERROR or CRITICAL"), text


def test_each_min_level_outranks_the_one_before_and_aliases_rank_as_their_names() -> None:
    # SPLUNK_MIN_LEVEL keeps a line whose level ranks at or above its own (filters.py compares
    # two ranks): a rank shared by two names would keep the lesser with the greater.
    ranks = [config.LEVEL_RANKS[name] for name in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR",
                                                    "FATAL")]
    assert ranks == sorted(set(ranks))
    assert config.LEVEL_RANKS["WARNING"] == config.LEVEL_RANKS["WARN"]
    assert config.LEVEL_RANKS["CRITICAL"] == config.LEVEL_RANKS["FATAL"]
    assert set(config.LEVEL_RANKS) == {"TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR",
                                       "FATAL", "CRITICAL"}


def test_the_account_id_register_answered_is_kept_only_when_it_is_digits() -> None:
    assert config.load(BASE, "123456789012").account_id == "123456789012"
    assert config.load(BASE, "not-an-account").account_id == ""
    assert config.load(BASE).account_id == ""


def test_a_secret_key_needs_the_secret_arn_whatever_the_token_source() -> None:
    # A JSON key names a field of a secret: with the token as a value or a parameter, it would
    # be ignored, so the deployer's intent is in doubt.
    for source in ({"SPLUNK_HEC_TOKEN": "abc-123"}, {"SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/hec"}):
        env = {**ROLE, **source, "SPLUNK_HEC_TOKEN_SECRET_KEY": "token"}
        only_problem(env, "SPLUNK_HEC_TOKEN_SECRET_KEY")
    env = {**ROLE, "SPLUNK_HEC_TOKEN_SECRET_ARN": SECRET_ARN, "SPLUNK_HEC_TOKEN_SECRET_KEY": "t"}
    assert load(env).token_secret_key == "t"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:65536/creds",
    "http://127.0.0.1:0/creds",
    "http://[127.0.0.1x:80/creds",  # no IPv6 literal, and no loopback address once unwrapped
    # Over https any host is taken, but urllib3 refuses these at every fetch, events held:
    "https://[x]/creds",  # brackets around no IPv6 address
    "https://[::1/creds",  # never closed
    "https://[::1]x/creds",  # something else than a port after the literal
    "https://fd00:ec2::23/creds",  # an IPv6 address without its brackets
    "https://user@creds.example/x",  # the SDKs send no credentials in a URL
])
def test_a_credentials_url_with_no_port_or_host_the_sdks_would_call_is_refused(url: str) -> None:
    env = {**ROLE, "SPLUNK_HEC_TOKEN_SECRET_ARN": SECRET_ARN,
           "AWS_CONTAINER_CREDENTIALS_FULL_URI": url}
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    only_problem(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI")
    for port in (1, 65_535):
        taken = {**env, "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{port}/creds"}
        assert load(taken).aws_container_credentials == (f"http://127.0.0.1:{port}/creds", "", "")


def test_unset_the_listener_takes_any_free_port() -> None:
    # 0: the kernel picks a free port (the README's "any free port"); any other default could
    # be taken, or privileged.
    assert load(BASE).listener_port == 0


def test_a_config_built_by_hand_is_of_an_ordinary_environment() -> None:
    # As the tools and tests build one: neither Lambda Managed Instances nor SnapStart, whose
    # flush and restore handling a Config from load() asks for by itself.
    made = config.Config(hec_url="https://h", hec_path="/p", hec_token="t")
    assert (made.managed_instances, made.snap_start) == (False, False)
    assert (made.notices, made.aws_environment, made.account_id) == ((), (), "")


def test_a_token_may_hold_any_visible_ascii_character() -> None:
    assert config.token_problem("!" + "".join(map(chr, range(0x22, 0x7E))) + "~") is None
    assert load({**BASE, "SPLUNK_HEC_TOKEN": "~abc!"}).hec_token == "~abc!"


def test_loading_a_config_imports_nothing_the_cold_start_avoids() -> None:
    # load() runs in the main process before register: typing, re, dataclasses and urllib
    # together cost more than the rest of the extension's start (the module's docstring).
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules)\n"
             "from ext import config\n"
             "config.load({'SPLUNK_HOST': 'https://h:8088', 'SPLUNK_HEC_TOKEN': 't',"
             " 'SPLUNK_FIELDS': 'team=a', 'SPLUNK_MIN_LEVEL': 'info', 'SPLUNK_ENRICH': 'false'})\n"
             "print(' '.join(sorted(set(sys.modules) - before)))")
    out = probe_output(probe)
    loaded = {name.split(".")[0] for name in out}
    assert not loaded & {"typing", "re", "dataclasses", "urllib", "collections"}, out


@pytest.mark.parametrize(("missing", "mode"), [("write", "W_OK"), ("search", "X_OK")])
def test_a_spool_dir_is_refused_unless_it_can_be_both_written_and_searched(
    missing: str, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As root (CI's containers) every directory passes both checks: the kernel's answer is
    # stood in for, for the spool's nearest existing directory only.
    import os

    real_access = os.access
    denied = getattr(os, mode)

    def access(path: object, asked: int) -> bool:
        if str(path) == str(tmp_path) and asked & denied:
            return False
        return real_access(path, asked)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    text = only_problem({**BASE, "SPLUNK_SPOOL_DIR": str(tmp_path / "spool")}, "SPLUNK_SPOOL_DIR")
    assert text.endswith(f"{tmp_path} is not writable"), (missing, text)
    monkeypatch.setattr(os, "access", real_access)
    assert load({**BASE, "SPLUNK_SPOOL_DIR": str(tmp_path / "spool")}).spool_dir == str(
        tmp_path / "spool")


def test_platform_events_off_needs_a_metrics_index_and_takes_one() -> None:
    # The platform figures then go only as metrics: without an index they would go nowhere.
    text = only_problem({**BASE, "SPLUNK_PLATFORM_EVENTS": "false"}, "SPLUNK_PLATFORM_EVENTS")
    assert "SPLUNK_METRICS_INDEX" in text
    cfg = load({**BASE, "SPLUNK_PLATFORM_EVENTS": "false", "SPLUNK_METRICS_INDEX": "lambda_m"})
    assert (cfg.platform_events, cfg.metrics_index) == (False, "lambda_m")


@pytest.mark.parametrize("url", ["https://", "https:///path", "https://user:pw-secret@host",
                                 "https://@host/"])
def test_an_endpoint_url_without_a_host_or_with_credentials_is_refused(url: str) -> None:
    env = {**ROLE, "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "/hec", "AWS_ENDPOINT_URL": url}
    text = only_problem(env, "AWS_ENDPOINT_URL")
    assert "pw-secret" not in text


def test_a_value_that_is_no_secret_is_quoted_in_its_problem() -> None:
    # What the deployer wrote, to find it: only secrets and a secret's ARN are left out.
    (problem,) = problems({**BASE, "SPLUNK_TELEMETRY_TYPES": "platform,metrics"})
    assert problem.startswith("SPLUNK_TELEMETRY_TYPES='platform,metrics' is not valid: ")
    (problem,) = problems({**BASE, "SPLUNK_FIELDS": "host=x"})
    assert problem.startswith("SPLUNK_FIELDS='host=x' is not valid: ")


def test_a_blank_variable_is_an_unset_one() -> None:
    # Templates often set a variable to "" (or a space) to leave it at its default.
    cfg = load({**BASE, "SPLUNK_FLUSH": " ", "DISPATCH_MIN_BATCH_SIZE": "", "SPLUNK_INDEX": "\t"})
    assert (cfg.flush, cfg.dispatch_min_batch_size, cfg.index) == ("adaptive", 500, None)


def test_the_function_name_is_lambda_s_or_a_stand_in() -> None:
    assert load({**BASE, "AWS_LAMBDA_FUNCTION_NAME": "orders"}).function_name == "orders"
    assert load(BASE).function_name == "unknown-function"


@pytest.mark.parametrize(("value", "fields"), [
    ("true", config.ENRICHMENT_FIELDS),
    ("ON", config.ENRICHMENT_FIELDS),
    ("false", ()),
    ("0", ()),
    ("cold_start, function_arn,cold_start", ("cold_start", "function_arn")),
])
def test_splunk_enrich_is_all_none_or_the_fields_named(value: str,
                                                       fields: tuple[str, ...]) -> None:
    assert load({**BASE, "SPLUNK_ENRICH": value}).enrich == fields


@pytest.mark.parametrize("value", ["function_arn,colour", ",", "maybe"])
def test_splunk_enrich_naming_no_field_or_an_unknown_one_is_refused(value: str) -> None:
    only_problem({**BASE, "SPLUNK_ENRICH": value}, "SPLUNK_ENRICH")
