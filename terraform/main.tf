# The sample deployment: the extension layer (built by the splunk-extension module) and a Python
# function that runs it. Users with their own functions call the module directly (docs/deploy.md).

module "splunk_extension" {
  source = "./modules/splunk-extension"

  extension_name = var.extension_name
  architecture   = var.architecture
  runtime        = var.layer_runtime
  layer_zip_path = local.layer_zip_path

  share_with_account_ids     = var.share_with_account_ids
  share_with_organization_id = var.share_with_organization_id

  splunk_host                    = var.SPLUNK_HOST
  splunk_hec_token               = var.SPLUNK_HEC_TOKEN
  splunk_hec_token_secret_arn    = var.splunk_hec_token_secret_arn
  splunk_hec_token_secret_key    = var.splunk_hec_token_secret_key
  splunk_hec_token_ssm_parameter = var.splunk_hec_token_ssm_parameter
  kms_key_arn                    = var.kms_key_arn
  splunk_index                   = var.SPLUNK_INDEX
  dispatch_min_batch_size        = var.DISPATCH_MIN_BATCH_SIZE
  splunk_source                  = var.SPLUNK_SOURCE
  splunk_sourcetype              = var.SPLUNK_SOURCETYPE
  splunk_hec_host                = var.SPLUNK_HEC_HOST
  splunk_telemetry_types         = var.SPLUNK_TELEMETRY_TYPES
  splunk_flush                   = var.SPLUNK_FLUSH
  splunk_flush_budget_ms         = var.SPLUNK_FLUSH_BUDGET_MS
  splunk_verify_tls              = var.SPLUNK_VERIFY_TLS
  splunk_ca_bundle               = var.SPLUNK_CA_BUNDLE
  splunk_spool_max_mb            = var.SPLUNK_SPOOL_MAX_MB
  extra_environment              = var.extra_environment
}

# Both zips are built before Terraform runs (./dev layer, or scripts/build_layer.py --arch A and
# --function-zip): Terraform needs no provider but hashicorp/aws.
locals {
  layer_zip_path = var.layer_zip_path != "" ? var.layer_zip_path : (
    "${path.module}/../dist/${var.extension_name}-${var.architecture}${var.layer_runtime == "all" ? "" : "-py${trimprefix(var.layer_runtime, "python")}"}.zip"
  )
  function_zip_path = var.function_zip_path != "" ? var.function_zip_path : "${path.module}/../dist/sample-function.zip"
}

# After a timeout or a crash Lambda initialises the environment again inside the next invocation,
# within its timeout; this extension's init takes ~2-2.6 s at 128 MB's CPU share, ~1 s at 256 MB
# (docs/deploy.md). A warning at plan, not an error: the sample runs either way until its first
# timeout.
check "timeout_leaves_room_to_initialise_again" {
  assert {
    condition     = var.timeout >= (var.memory_size < 256 ? 5 : var.memory_size < 512 ? 3 : 1)
    error_message = "timeout ${var.timeout} s at ${var.memory_size} MB leaves too little room to initialise the extension again after a timeout or a crash (the next invocation does it, within its timeout): every invocation of that environment may then time out. Use at least 5 s below 256 MB, 3 s below 512 MB (docs/deploy.md)."
  }
}

resource "aws_lambda_function" "sample" {
  #checkov:skip=CKV_AWS_116:The sample is invoked synchronously; a dead-letter queue only applies to async invokes.
  #checkov:skip=CKV_AWS_117:HEC is reached over the internet; a VPC would need a NAT gateway and is the user's choice.
  #checkov:skip=CKV_AWS_115:Reserved concurrency takes from the account pool and fails on new accounts (limit 10).
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile outside this sample's scope.
  function_name = var.function_name
  description   = "Sample function forwarding its telemetry to Splunk HEC through the extension layer"
  role          = aws_iam_role.function.arn
  handler       = "handler.handler"
  runtime       = var.runtime
  architectures = [var.architecture]
  memory_size   = var.memory_size
  timeout       = var.timeout

  filename         = local.function_zip_path
  source_code_hash = filebase64sha256(local.function_zip_path)
  layers           = [module.splunk_extension.layer_arn]

  environment {
    variables = module.splunk_extension.environment_variables
  }
  # Null: Lambda's AWS managed key. The environment holds no token when it is read at run time.
  kms_key_arn = var.kms_key_arn

  logging_config {
    log_format = var.log_format
    log_group  = local.log_group_name
  }

  tracing_config {
    mode = var.tracing_mode
  }

  lifecycle {
    precondition {
      condition     = module.splunk_extension.architecture == var.architecture && contains([var.runtime, "all"], coalesce(module.splunk_extension.compatible_runtime, "all"))
      error_message = "The layer must be built for the function's architecture (and, for a python3.N fallback layer, its runtime)."
    }
  }

  # The role's log permissions (or explicit denial) and token access must be in place before the
  # first invoke.
  depends_on = [aws_iam_role_policy.logs, aws_iam_role_policy.hec_token, aws_cloudwatch_log_group.function]
}
