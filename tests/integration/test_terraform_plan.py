"""`terraform plan` of the token wiring with the real module files, offline.

Opt-in (TERRAFORM_PLAN_TEST=1: about a minute, most of it starting the provider), where a
terraform binary and a local copy of the hashicorp/aws provider exist (TF_PLUGIN_DIR, default
/opt/tf-plugins). The module's token, environment and variable files are planned under a small
root that wires them as terraform/main.tf and iam.tf do (the module's main.tf, which publishes
the layer, is left out: this test is about the token). AWS is moto: the secret and the parameter
hold a canary value that must appear nowhere in the plan, since Terraform no
longer reads them; IAM must grant exactly the one ARN.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.integration.aws_fake import moto_server

pytestmark = pytest.mark.integration

MODULE = Path(__file__).resolve().parents[2] / "terraform" / "modules" / "splunk-extension"
PLUGIN_DIR = Path(os.environ.get("TF_PLUGIN_DIR", "/opt/tf-plugins"))
CANARY = "c4a7a7c4-0000-4000-8000-canary-token"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROOT = """
terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}
provider "aws" {
  region                      = "us-east-1"
  access_key                  = "%(key)s"
  secret_key                  = "%(secret)s"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  endpoints {
    sts            = "%(url)s"
    secretsmanager = "%(url)s"
    ssm            = "%(url)s"
  }
}
module "secret" {
  source                      = "./module"
  layer_zip_path              = "function.zip"
  splunk_host                 = "https://splunk.example.com:8088"
  splunk_hec_token_secret_arn = "%(arn)s"
  splunk_hec_token_secret_key = "hec_token"
  kms_key_arn                 = "%(kms)s"
}
module "parameter" {
  source                         = "./module"
  layer_zip_path                 = "function.zip"
  splunk_host                    = "https://splunk.example.com:8088"
  splunk_hec_token_ssm_parameter = "/splunk/hec-token"
}
resource "aws_iam_role" "function" {
  name               = "fn-role"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect = "Allow", Action = "sts:AssumeRole",
      Principal = { Service = "lambda.amazonaws.com" }
    }]
  })
}
resource "aws_iam_role_policy" "secret" {
  name   = "read-hec-token"
  role   = aws_iam_role.function.id
  policy = module.secret.token_policy_json
}
resource "aws_iam_role_policy" "parameter" {
  name   = "read-hec-token-ssm"
  role   = aws_iam_role.function.id
  policy = module.parameter.token_policy_json
}
resource "aws_lambda_function" "sample" {
  function_name = "fn"
  role          = aws_iam_role.function.arn
  handler       = "handler.handler"
  runtime       = "python3.12"
  filename      = "function.zip"
  kms_key_arn   = "%(kms)s"
  environment {
    variables = module.secret.environment_variables
  }
}
"""


def terraform(workdir: Path, *args: str) -> str:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1",
           "TF_IN_AUTOMATION": "1"}
    done = subprocess.run(["terraform", *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def module_copy(target: Path) -> None:
    """The module's token wiring: its files but the layer build (main.tf) and its outputs."""
    target.mkdir()
    for name in ("token.tf", "environment.tf", "variables.tf"):
        shutil.copy(MODULE / name, target / name)
    outputs = re.split(r'\n(?=output ")', (MODULE / "outputs.tf").read_text())
    kept = [b for b in outputs
            if b.startswith(('output "token_policy_json"', 'output "environment_variables"'))]
    assert len(kept) == 2
    (target / "outputs.tf").write_text("\n".join(kept))
    (target / "versions.tf").write_text(
        'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws" }\n  }\n}\n')


def planned(plan: dict[str, Any], address: str) -> dict[str, Any]:
    (change,) = [c for c in plan["resource_changes"] if c["address"] == address]
    after: dict[str, Any] = change["change"]["after"]
    return after


@pytest.mark.skipif(os.environ.get("TERRAFORM_PLAN_TEST") != "1",
                    reason="opt-in: TERRAFORM_PLAN_TEST=1 (about a minute)")
@pytest.mark.skipif(shutil.which("terraform") is None or not any(
    PLUGIN_DIR.rglob("terraform-provider-aws*")), reason="terraform or offline aws provider absent")
def test_plan_with_a_secret_arn_holds_no_token_and_grants_exactly_it(tmp_path: Path) -> None:
    with moto_server() as aws:
        secret = json.dumps({"hec_token": CANARY})
        arn = aws.secrets.create_secret(Name="splunk/hec", SecretString=secret)["ARN"]
        aws.ssm.put_parameter(Name="/splunk/hec-token", Value=CANARY, Type="SecureString")
        module_copy(tmp_path / "module")
        (tmp_path / "main.tf").write_text(ROOT % {
            "url": aws.url, "arn": arn, "kms": KMS,
            "key": aws.admin["aws_access_key_id"], "secret": aws.admin["aws_secret_access_key"],
        })
        with zipfile.ZipFile(tmp_path / "function.zip", "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
        terraform(tmp_path, "init", "-input=false", "-no-color", f"-plugin-dir={PLUGIN_DIR}")
        shown = terraform(tmp_path, "plan", "-input=false", "-no-color", "-out=tfplan")
        plan_json = terraform(tmp_path, "show", "-json", "tfplan")
    assert CANARY not in shown and CANARY not in plan_json
    plan = json.loads(plan_json)
    variables = planned(plan, "aws_lambda_function.sample")["environment"][0]["variables"]
    assert variables["SPLUNK_HEC_TOKEN_SECRET_ARN"] == arn
    assert variables["SPLUNK_HEC_TOKEN_SECRET_KEY"] == "hec_token"
    assert "SPLUNK_HEC_TOKEN" not in variables
    assert planned(plan, "aws_lambda_function.sample")["kms_key_arn"] == KMS

    read, decrypt = json.loads(planned(plan, "aws_iam_role_policy.secret")["policy"])["Statement"]
    assert (read["Action"], read["Resource"]) == ("secretsmanager:GetSecretValue", arn)
    assert (decrypt["Action"], decrypt["Resource"]) == ("kms:Decrypt", KMS)
    assert decrypt["Condition"] == {
        "StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}}

    (only,) = json.loads(planned(plan, "aws_iam_role_policy.parameter")["policy"])["Statement"]
    assert only["Action"] == "ssm:GetParameter"
    assert only["Resource"] == "arn:aws:ssm:us-east-1:123456789012:parameter/splunk/hec-token"
