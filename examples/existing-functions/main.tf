# Attach the extension to functions that already exist (deployed by another tool or by hand),
# listed by name. Terraform can only change a function it manages, so the `import` blocks adopt
# each listed function into this configuration (Terraform >= 1.7: import with for_each); from
# then on this configuration owns the function's settings, while its code stays as deployed
# (ignore_changes below). One layer version is published per architecture in use, and every
# function gets the one matching its own architecture, whatever its runtime.

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

data "aws_lambda_function" "existing" {
  for_each      = toset(var.function_names)
  function_name = each.value
}

locals {
  architectures = toset([for f in data.aws_lambda_function.existing : f.architectures[0]])
  # Role name of each function (the last part of its role ARN, path included).
  role_names = toset([for f in data.aws_lambda_function.existing : element(split("/", f.role), length(split("/", f.role)) - 1)])
}

module "splunk_extension" {
  source   = "../../terraform/modules/splunk-extension"
  for_each = local.architectures

  architecture   = each.value
  layer_zip_path = var.layer_zip_paths[each.value]

  splunk_host                 = var.splunk_host
  splunk_hec_token_secret_arn = var.hec_token_secret_arn
}

import {
  for_each = toset(var.function_names)
  to       = aws_lambda_function.attached[each.value]
  id       = each.value
}

resource "aws_lambda_function" "attached" {
  for_each = data.aws_lambda_function.existing

  function_name = each.key
  role          = each.value.role
  handler       = each.value.handler
  runtime       = each.value.runtime
  architectures = each.value.architectures
  memory_size   = each.value.memory_size
  timeout       = each.value.timeout
  # Never uploaded: the provider wants a code source in the configuration, and ignore_changes
  # keeps the code each function was deployed with.
  filename = "code-stays-as-deployed.zip"
  # The function's other layers stay; an earlier version of ours is replaced.
  layers = concat(
    [for arn in each.value.layers : arn if !strcontains(arn, ":layer:splunk-hec-extension-")],
    [module.splunk_extension[each.value.architectures[0]].layer_arn],
  )

  environment {
    # The function's own variables stay; a token set by hand earlier would be a second token
    # source (an init error), so the module's source replaces it.
    variables = merge(
      { for k, v in try(each.value.environment[0].variables, {}) : k => v if !startswith(k, "SPLUNK_HEC_TOKEN") },
      module.splunk_extension[each.value.architectures[0]].environment_variables,
    )
  }

  lifecycle {
    # The code is deployed elsewhere; this configuration only adds the layer and its settings.
    ignore_changes = [filename, s3_bucket, s3_key, s3_object_version, image_uri, source_code_hash]
  }
}

# Each function's role may read the token's secret (one policy per role, shared by its functions).
resource "aws_iam_role_policy" "hec_token" {
  for_each = local.role_names

  name   = "read-hec-token"
  role   = each.value
  policy = one(values(module.splunk_extension)).token_policy_json
}
