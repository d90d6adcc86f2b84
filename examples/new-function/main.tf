# A new Python function with the extension: the smallest complete deployment. Build the zips
# first (repository root): ./dev layer arm64, which writes dist/splunk-hec-extension-arm64.zip and
# dist/sample-function.zip.

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

module "splunk_extension" {
  source = "../../terraform/modules/splunk-extension"

  architecture   = "arm64"
  layer_zip_path = var.layer_zip_path

  splunk_host                    = var.splunk_host
  splunk_hec_token_ssm_parameter = var.hec_token_parameter
  splunk_index                   = "lambda"
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

# The extension reads the token from the parameter at run time: the role may read that one only.
resource "aws_iam_role_policy" "hec_token" {
  name   = "read-hec-token"
  role   = aws_iam_role.function.id
  policy = module.splunk_extension.token_policy_json
}

resource "aws_iam_role_policy_attachment" "logs" {
  role       = aws_iam_role.function.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

resource "aws_lambda_function" "this" {
  function_name    = var.function_name
  role             = aws_iam_role.function.arn
  handler          = "handler.handler"
  runtime          = "python3.12"
  architectures    = [module.splunk_extension.architecture]
  memory_size      = 128
  timeout          = 10
  filename         = var.function_zip_path
  source_code_hash = filebase64sha256(var.function_zip_path)
  layers           = [module.splunk_extension.layer_arn]

  environment {
    variables = module.splunk_extension.environment_variables
  }

  depends_on = [aws_iam_role_policy.hec_token]
}
