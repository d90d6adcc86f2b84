"""Wiring checks of terraform/ read with python-hcl2: no AWS, no terraform binary needed.

Covers: pinned providers, typed and described variables, the function using the layer, every
extension environment variable traced back to a same-named root variable, no secret with a
plain-text default, and the IAM policy that cloudwatch_logs_enabled selects.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

TERRAFORM = Path(__file__).resolve().parents[2] / "terraform"
MODULE = TERRAFORM / "modules" / "splunk-extension"

# Every setting the extension reads from its environment (the original four first).
EXTENSION_ENV = (
    "SPLUNK_HOST",
    "SPLUNK_HEC_TOKEN",
    "SPLUNK_INDEX",
    "DISPATCH_MIN_BATCH_SIZE",
    "SPLUNK_SOURCE",
    "SPLUNK_SOURCETYPE",
    "SPLUNK_HEC_HOST",
    "SPLUNK_TELEMETRY_TYPES",
    "SPLUNK_FLUSH",
    "SPLUNK_FLUSH_BUDGET_MS",
    "SPLUNK_VERIFY_TLS",
    "SPLUNK_CA_BUNDLE",
    "SPLUNK_SPOOL_MAX_MB",
    "SPLUNK_HEC_TOKEN_SECRET_ARN",
    "SPLUNK_HEC_TOKEN_SECRET_KEY",
    "SPLUNK_HEC_TOKEN_SSM_PARAMETER",
)
# Where the token is read from at run time: root inputs that kept their lower-case names.
TOKEN_LOCATION_ENV = {
    "SPLUNK_HEC_TOKEN_SECRET_ARN": "splunk_hec_token_secret_arn",
    "SPLUNK_HEC_TOKEN_SECRET_KEY": "splunk_hec_token_secret_key",
    "SPLUNK_HEC_TOKEN_SSM_PARAMETER": "splunk_hec_token_ssm_parameter",
}
LOG_WRITE_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
BLOCK_KINDS = ("variable", "output", "module", "resource", "data")


def unquote(value: Any) -> Any:
    """hcl2 keeps the quotes of string literals and block labels; strip them recursively."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [unquote(item) for item in value]
    if isinstance(value, dict):
        return {
            unquote(key): unquote(item)
            for key, item in value.items()
            if not key.startswith("__")  # __is_block__, __comments__ markers
        }
    return value


def parse_file(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        parsed: dict[str, Any] = unquote(hcl2.load(stream))
    return parsed


@cache
def load_module(directory: Path) -> dict[str, dict[str, Any]]:
    """Merge a module's .tf files into {kind: {label: body}}; resources keyed 'type.name'."""
    merged: dict[str, dict[str, Any]] = {kind: {} for kind in (*BLOCK_KINDS, "locals")}
    merged["terraform"] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, blocks in parse_file(path).items():
            for block in blocks:
                if kind in ("resource", "data"):
                    for type_name, named in block.items():
                        for name, body in named.items():
                            merged[kind][f"{type_name}.{name}"] = body
                elif kind in merged:
                    merged[kind].update(block)
    return merged


def root() -> dict[str, dict[str, Any]]:
    return load_module(TERRAFORM)


def module() -> dict[str, dict[str, Any]]:
    return load_module(MODULE)


def single(blocks: Any) -> dict[str, Any]:
    """A nested block (hcl2 always gives a list); there must be exactly one."""
    assert isinstance(blocks, list)
    assert len(blocks) == 1
    result: dict[str, Any] = blocks[0]
    return result


def ref(expression: str) -> str:
    """'${var.x}' -> 'var.x'; fails for anything but a bare interpolation."""
    match = re.fullmatch(r"\$\{([^{}]+)\}", expression)
    assert match, f"not a bare reference: {expression!r}"
    return match.group(1)


def evaluate_count(expression: Any, variable: str, value: bool) -> int:
    """Evaluate `${var.X ? a : b}` (the only count form used here) for var.X = value."""
    if isinstance(expression, int):
        return expression
    match = re.fullmatch(rf"\$\{{var\.{variable} \? (\d+) : (\d+)\}}", str(expression))
    assert match, f"count {expression!r} does not depend on var.{variable} alone"
    return int(match.group(1) if value else match.group(2))


@pytest.mark.parametrize("directory", [TERRAFORM, MODULE], ids=["root", "module"])
def test_every_variable_is_typed_and_described(directory: Path) -> None:
    variables = load_module(directory)["variable"]
    assert variables
    for name, body in variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert len(str(body.get("description", ""))) > 10, f"variable {name} is not described"


@pytest.mark.parametrize("directory", [TERRAFORM, MODULE], ids=["root", "module"])
def test_providers_are_pinned_with_an_upper_bound(directory: Path) -> None:
    terraform = single(load_module(directory)["terraform"]["required_providers"])
    assert "required_version" in load_module(directory)["terraform"]
    # hashicorp/aws only: the one provider available offline, which terraform test covers.
    assert set(terraform) == {"aws"}
    for name, spec in terraform.items():
        assert spec["source"] == f"hashicorp/{name}"
        assert re.search(r"~>|<", spec["version"]), f"{name} version {spec['version']} unbounded"


def test_every_provider_used_is_required() -> None:
    required = set(single(root()["terraform"]["required_providers"]))
    blocks = [
        key for tree in (root(), module()) for kind in ("resource", "data") for key in tree[kind]
    ]
    used = {key.split(".")[0].split("_")[0] for key in blocks}
    assert used == required


def test_original_sample_variables_keep_their_names() -> None:
    for name in ("SPLUNK_HOST", "SPLUNK_HEC_TOKEN", "SPLUNK_INDEX", "DISPATCH_MIN_BATCH_SIZE"):
        assert name in root()["variable"], f"TF_VAR_{name} would stop working"
    assert "default" not in root()["variable"]["SPLUNK_HOST"]  # required, as in the original


def test_function_uses_the_layer_built_for_its_architecture_and_runtime() -> None:
    function = root()["resource"]["aws_lambda_function.sample"]
    assert function["layers"] == ["${module.splunk_extension.layer_arn}"]
    assert function["handler"] == "handler.handler"
    assert function["architectures"] == ["${var.architecture}"]
    assert function["runtime"] == "${var.runtime}"
    call = root()["module"]["splunk_extension"]
    assert call["source"] == "./modules/splunk-extension"
    assert call["architecture"] == "${var.architecture}"
    assert call["runtime"] == "${var.layer_runtime}"
    assert module()["output"]["layer_arn"]["value"] == "${aws_lambda_layer_version.extension.arn}"


def test_layer_version_is_published_from_the_zip_passed_in() -> None:
    layer = module()["resource"]["aws_lambda_layer_version.extension"]
    assert layer["compatible_architectures"] == ["${var.architecture}"]
    # Every runtime for the default layer (its own Python); one for the python3.N fallback.
    assert layer["compatible_runtimes"] == '${local.bundled ? null : [var.runtime]}'
    assert module()["locals"]["bundled"] == '${var.runtime == "all"}'
    assert module()["variable"]["runtime"]["default"] == "all"
    # Built by scripts/build_layer.py before Terraform runs: no data source builds it.
    assert ref(layer["filename"]) == "var.layer_zip_path"
    assert layer["source_code_hash"] == "${filebase64sha256(var.layer_zip_path)}"
    assert layer["skip_destroy"] is True
    assert not module()["data"].keys() & {"external.layer_build", "archive_file.layer"}
    assert "layer_zip_path" in root()["locals"]
    assert "var.layer_zip_path" in root()["locals"]["layer_zip_path"]


def test_function_environment_is_the_module_environment() -> None:
    environment = single(root()["resource"]["aws_lambda_function.sample"]["environment"])
    assert environment["variables"] == "${module.splunk_extension.environment_variables}"
    output = module()["output"]["environment_variables"]
    assert output["value"] == "${local.environment_variables}"
    assert output["sensitive"] is True
    assert "local.environment_settings" in module()["locals"]["environment_variables"]


def test_each_environment_variable_maps_to_a_same_named_root_variable() -> None:
    settings = module()["locals"]["environment_settings"]
    assert tuple(settings) == EXTENSION_ENV
    call = root()["module"]["splunk_extension"]
    for env_name in EXTENSION_ENV:
        module_input = env_name.lower()
        assert module_input in module()["variable"], f"module lacks input {module_input}"
        assert settings[env_name] == f"${{var.{module_input}}}" or (
            f"var.{module_input}" in settings[env_name]
        ), f"{env_name} is not set from {module_input}"
        root_name = TOKEN_LOCATION_ENV.get(env_name, env_name)
        assert call[module_input] == f"${{var.{root_name}}}", f"root does not pass {env_name}"
        assert root_name in root()["variable"], f"no root variable {root_name}"


def test_terraform_never_reads_the_token() -> None:
    """The token is a value the user gives, or read by the extension at run time (issue 11):
    no data source reads a secret, so none is in the plan, the state or the configuration."""
    assert module()["locals"]["environment_settings"]["SPLUNK_HEC_TOKEN"] == (
        "${var.splunk_hec_token}"
    )
    for tree in (root(), module()):
        for key in tree["data"]:
            assert not key.startswith(("aws_secretsmanager_secret_version", "aws_ssm_parameter",
                                       "aws_kms_secrets", "aws_secretsmanager_secret.")), key
    precondition = single(module()["output"]["environment_variables"]["precondition"])
    assert precondition["condition"] == "${local.token_sources == 1}"


def test_role_reads_exactly_the_one_secret_or_parameter() -> None:
    document = module()["data"]["aws_iam_policy_document.token"]
    assert document["count"] == "${local.reads_secret || local.reads_parameter ? 1 : 0}"
    (read,) = statements_of(document)
    assert read["effect"] == "Allow"
    assert read["actions"] == (
        '${local.reads_secret ? ["secretsmanager:GetSecretValue"] : ["ssm:GetParameter"]}'
    )
    assert read["resources"] == [
        "${local.reads_secret ? var.splunk_hec_token_secret_arn : local.ssm_parameter_arn}"
    ]
    assert "var.splunk_hec_token_ssm_parameter" in module()["locals"]["ssm_parameter_arn"]
    decrypt = single(document["dynamic"])["statement"]
    assert decrypt["for_each"] == "${var.kms_key_arn == null ? [] : [var.kms_key_arn]}"
    content = single(decrypt["content"])
    assert content["actions"] == ["kms:Decrypt"]
    assert content["resources"] == ["${statement.value}"]
    assert single(content["condition"])["variable"] == "kms:ViaService"
    output = module()["output"]["token_policy_json"]["value"]
    assert "data.aws_iam_policy_document.token[0].json" in output
    attached = root()["resource"]["aws_iam_role_policy.hec_token"]
    assert attached["policy"] == "${module.splunk_extension.token_policy_json}"
    assert attached["role"] == "${aws_iam_role.function.id}"
    assert "var.splunk_hec_token_secret_arn" in attached["count"]
    assert "var.splunk_hec_token_ssm_parameter" in attached["count"]


def test_kms_key_encrypts_the_environment_and_decrypts_the_token() -> None:
    function = root()["resource"]["aws_lambda_function.sample"]
    assert function["kms_key_arn"] == "${var.kms_key_arn}"
    assert root()["module"]["splunk_extension"]["kms_key_arn"] == "${var.kms_key_arn}"
    assert "aws_iam_role_policy.hec_token" in str(function["depends_on"])
    main = (TERRAFORM / "main.tf").read_text(encoding="utf-8")
    assert "CKV_AWS_173" not in main


@pytest.mark.parametrize("directory", [TERRAFORM, MODULE], ids=["root", "module"])
def test_no_secret_has_a_plain_text_default(directory: Path) -> None:
    for name, body in load_module(directory)["variable"].items():
        if re.search(r"(token|password)$", name, re.IGNORECASE):
            assert body.get("sensitive") is True, f"{name} is not sensitive"
            assert body.get("default") is None, f"{name} has a default"
        default = str(body.get("default", ""))
        # HEC tokens are GUIDs; none may appear anywhere as a default.
        assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}", default, re.IGNORECASE)


def active_blocks(kind: str, enabled: bool) -> dict[str, Any]:
    """Root blocks of `kind` that exist when var.cloudwatch_logs_enabled == enabled."""
    active = {}
    for key, body in root()[kind].items():
        count = body.get("count", 1)
        if "cloudwatch_logs_enabled" in str(count):
            count = evaluate_count(count, "cloudwatch_logs_enabled", enabled)
        elif not isinstance(count, int):
            count = 1  # other switches (tracing) are checked separately
        if count:
            active[key] = body
    return active


def chosen_branch(expression: str, enabled: bool) -> str:
    match = re.fullmatch(r"\$\{var\.cloudwatch_logs_enabled \? (.+) : (.+)\}", expression)
    assert match, f"{expression!r} does not switch on cloudwatch_logs_enabled"
    return match.group(1) if enabled else match.group(2)


def statements_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = document["statement"]
    return statements


def resolve_actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["actions"]
    if isinstance(actions, str):
        actions = root()["locals"][ref(actions).removeprefix("local.")]
    return set(actions)


@pytest.mark.parametrize("enabled", [True, False], ids=["cloudwatch-on", "cloudwatch-off"])
def test_cloudwatch_switch_selects_the_documented_logs_policy(enabled: bool) -> None:
    resources = active_blocks("resource", enabled)
    documents = active_blocks("data", enabled)
    assert ("aws_cloudwatch_log_group.function" in resources) is enabled
    role_policy = resources["aws_iam_role_policy.logs"]
    assert role_policy["role"] == "${aws_iam_role.function.id}"
    chosen = chosen_branch(role_policy["policy"], enabled)
    document_key = re.fullmatch(r"data\.(aws_iam_policy_document\.\w+)\[0\]\.json", chosen)
    assert document_key, chosen
    assert document_key.group(1) in documents, "the chosen policy document has count 0"
    statements = statements_of(documents[document_key.group(1)])
    assert len(statements) == 1
    statement = statements[0]
    if enabled:
        assert statement["effect"] == "Allow"
        assert resolve_actions(statement) == {"logs:CreateLogStream", "logs:PutLogEvents"}
        assert statement["resources"] == ["${aws_cloudwatch_log_group.function[0].arn}:*"]
    else:
        assert statement["effect"] == "Deny"
        assert resolve_actions(statement) >= LOG_WRITE_ACTIONS
        assert statement["resources"] == ["*"]


@pytest.mark.parametrize("enabled", [True, False], ids=["cloudwatch-on", "cloudwatch-off"])
def test_no_other_policy_grants_logs(enabled: bool) -> None:
    for key, document in active_blocks("data", enabled).items():
        if not key.startswith("aws_iam_policy_document.") or key.endswith(".logs_allowed"):
            continue
        for statement in statements_of(document):
            if statement["effect"] == "Allow":
                assert not any(a.startswith("logs:") for a in resolve_actions(statement)), key
                assert "*" not in resolve_actions(statement), key
    kinds = {key.split(".")[0] for key in root()["resource"]}
    # Managed policies (e.g. AWSLambdaBasicExecutionRole) would grant logs regardless of the switch.
    assert "aws_iam_role_policy_attachment" not in kinds
    assert "aws_iam_policy_attachment" not in kinds
    assert "managed_policy_arns" not in root()["resource"]["aws_iam_role.function"]


def test_role_is_assumable_by_lambda_only() -> None:
    statement = single(root()["data"]["aws_iam_policy_document.assume_role"]["statement"])
    assert resolve_actions(statement) == {"sts:AssumeRole"}
    assert single(statement["principals"])["identifiers"] == ["lambda.amazonaws.com"]


def test_outputs_layer_arn_and_function_name() -> None:
    outputs = root()["output"]
    assert outputs["layer_arn"]["value"] == "${module.splunk_extension.layer_arn}"
    assert outputs["function_name"]["value"] == "${aws_lambda_function.sample.function_name}"
    for name, body in outputs.items():
        assert body.get("description"), f"output {name} is not described"


def test_extra_environment_cannot_override_a_dedicated_setting() -> None:
    validation = single(module()["variable"]["extra_environment"]["validation"])
    guarded = set(re.findall(r'"([A-Z_]+)"', validation["condition"]))
    assert guarded == set(EXTENSION_ENV)
    merged = module()["locals"]["environment_variables"]
    # Dedicated settings come last in merge(), so they win over extra_environment.
    assert merged.index("var.extra_environment") < merged.index("local.environment_settings")
    assert root()["module"]["splunk_extension"]["extra_environment"] == "${var.extra_environment}"


def test_deploy_guide_names_every_root_variable_and_output() -> None:
    guide = (TERRAFORM.parent / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name in (*root()["variable"], *root()["output"]):
        assert f"`{name}`" in guide, f"docs/deploy.md does not mention {name}"
