# Publishes the layer zip built by scripts/build_layer.py as a layer version named after the
# project version and architecture, optionally shares it, and computes the environment a function
# needs to run the extension. It cannot edit a function it does not own: callers add `layer_arn`
# to their function's layers and merge `environment_variables` into its environment.

locals {
  # "all": the layer carries its own Python (every runtime); python3.N: the documented fallback
  # that runs on the function's own python3 (that runtime only).
  bundled        = var.runtime == "all"
  python_version = local.bundled ? "bundled" : trimprefix(var.runtime, "python")
  # The project version: given, or read from setup.cfg beside this module (a git or path source
  # of this repository has it).
  setup_cfg         = "${path.module}/../../../setup.cfg"
  setup_cfg_version = fileexists(local.setup_cfg) ? try(regex("(?m)^version\\s*=\\s*([0-9A-Za-z.+-]+)\\s*$", file(local.setup_cfg))[0], null) : null
  extension_version = coalesce(var.extension_version, local.setup_cfg_version, "unknown")
  arch_label        = replace(var.architecture, "_", "-")
  runtime_label     = local.bundled ? "" : "-py${replace(local.python_version, ".", "")}"
  # Layer names allow letters, digits, '-' and '_': 0.1.0 becomes 0_1_0.
  layer_name = "${var.extension_name}-${replace(local.extension_version, "/[^0-9A-Za-z_-]/", "_")}-${local.arch_label}${local.runtime_label}"
}

resource "aws_lambda_layer_version" "extension" {
  layer_name               = local.layer_name
  description              = "Splunk HEC telemetry extension ${local.extension_version} (${var.architecture}, ${local.bundled ? "own Python, every runtime" : var.runtime})"
  filename                 = var.layer_zip_path
  source_code_hash         = filebase64sha256(var.layer_zip_path)
  compatible_architectures = [var.architecture]
  # With its own Python the layer suits every runtime (no list: Lambda then offers it to all);
  # the fallback's wheels are compiled for one CPython version, so it suits that runtime only.
  compatible_runtimes = local.bundled ? null : [var.runtime]
  license_info        = "Apache-2.0"
  # A new zip publishes a new version and keeps the old one: other stacks, accounts and regions
  # pin versions by ARN, and deleting one breaks their next deploy.
  skip_destroy = true

  lifecycle {
    precondition {
      condition     = local.extension_version != "unknown"
      error_message = "The project version is unknown: set extension_version (no setup.cfg beside this module)."
    }
  }
}

# Sharing: lambda:GetLayerVersion for each account, or for every account of one AWS Organization.
resource "aws_lambda_layer_version_permission" "account" {
  for_each = toset(var.share_with_account_ids)

  layer_name     = aws_lambda_layer_version.extension.layer_arn
  version_number = tonumber(aws_lambda_layer_version.extension.version)
  statement_id   = "account-${each.value}"
  action         = "lambda:GetLayerVersion"
  principal      = each.value
  # Kept with the version it shares: a consumer pinned to it keeps working after an upgrade.
  skip_destroy = true
}

resource "aws_lambda_layer_version_permission" "organization" {
  count = var.share_with_organization_id == null ? 0 : 1

  layer_name      = aws_lambda_layer_version.extension.layer_arn
  version_number  = tonumber(aws_lambda_layer_version.extension.version)
  statement_id    = "organization-${var.share_with_organization_id}"
  action          = "lambda:GetLayerVersion"
  principal       = "*"
  organization_id = var.share_with_organization_id
  skip_destroy    = true
}
