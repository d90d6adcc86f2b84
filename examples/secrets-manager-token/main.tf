# The HEC token in Secrets Manager, encrypted with a customer managed key, never in Terraform's
# state or the function's configuration: Terraform creates the secret empty; put the token in it
# once with
#   aws secretsmanager put-secret-value --secret-id splunk/hec --secret-string '{"hec_token":"..."}'
# and the extension reads it at run time with the function's role (again after a rotation, when
# HEC rejects the old token).

terraform {
  required_version = ">= 1.7.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100.0"
    }
  }
}

provider "aws" {
  region = var.region
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "key" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "hec_token" {
  description         = "Encrypts the Splunk HEC token and the function's environment"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.key.json
}

resource "aws_secretsmanager_secret" "hec_token" {
  name       = var.secret_name
  kms_key_id = aws_kms_key.hec_token.arn
}

module "splunk_extension" {
  source = "../../terraform/modules/splunk-extension"

  architecture   = "x86_64"
  layer_zip_path = var.layer_zip_path

  splunk_host                 = var.splunk_host
  splunk_hec_token_secret_arn = aws_secretsmanager_secret.hec_token.arn
  splunk_hec_token_secret_key = "hec_token"
  kms_key_arn                 = aws_kms_key.hec_token.arn
}

data "aws_iam_policy_document" "assume_role" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  name               = "${var.function_name}-role"
  assume_role_policy = data.aws_iam_policy_document.assume_role.json
}

# secretsmanager:GetSecretValue on this secret, kms:Decrypt on the key through Secrets Manager only.
resource "aws_iam_role_policy" "hec_token" {
  name   = "read-hec-token"
  role   = aws_iam_role.function.id
  policy = module.splunk_extension.token_policy_json
}

resource "aws_lambda_function" "this" {
  function_name    = var.function_name
  role             = aws_iam_role.function.arn
  handler          = "handler.handler"
  runtime          = "python3.12"
  architectures    = [module.splunk_extension.architecture]
  filename         = var.function_zip_path
  source_code_hash = filebase64sha256(var.function_zip_path)
  layers           = [module.splunk_extension.layer_arn]
  kms_key_arn      = aws_kms_key.hec_token.arn

  environment {
    variables = module.splunk_extension.environment_variables
  }

  depends_on = [aws_iam_role_policy.hec_token]
}
