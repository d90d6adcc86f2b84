# Where the extension finds the HEC token. With a secret ARN or a parameter name, the extension
# reads the token at run time with the function's role (SigV4, from the sender process): Terraform
# never reads the secret, so no token is in the plan, the state or the function's configuration.
# The caller attaches `token_policy_json` to the function's role: read access to that one secret
# or parameter, and kms:Decrypt on `kms_key_arn` when the secret uses a customer managed key.

locals {
  token_sources = length(compact([
    nonsensitive(var.splunk_hec_token == null) ? "" : "value",
    var.splunk_hec_token_secret_arn == null ? "" : "secret",
    var.splunk_hec_token_ssm_parameter == null ? "" : "ssm",
  ]))
  reads_secret    = var.splunk_hec_token_secret_arn != null
  reads_parameter = var.splunk_hec_token_ssm_parameter != null
  # GetParameter takes a name or an ARN; IAM needs the ARN (a name's leading "/" is not repeated).
  ssm_parameter_arn = !local.reads_parameter ? null : (
    startswith(var.splunk_hec_token_ssm_parameter, "arn:") ? var.splunk_hec_token_ssm_parameter :
    "arn:${data.aws_partition.current[0].partition}:ssm:${data.aws_region.current[0].id}:${data.aws_caller_identity.current[0].account_id}:parameter/${trimprefix(var.splunk_hec_token_ssm_parameter, "/")}"
  )
  token_service = local.reads_secret ? "secretsmanager" : "ssm"
}

data "aws_partition" "current" {
  count = local.reads_parameter ? 1 : 0
}

data "aws_region" "current" {
  count = local.reads_parameter ? 1 : 0
}

data "aws_caller_identity" "current" {
  count = local.reads_parameter ? 1 : 0
}

data "aws_iam_policy_document" "token" {
  count = local.reads_secret || local.reads_parameter ? 1 : 0

  statement {
    sid       = "ReadHecToken"
    effect    = "Allow"
    actions   = local.reads_secret ? ["secretsmanager:GetSecretValue"] : ["ssm:GetParameter"]
    resources = [local.reads_secret ? var.splunk_hec_token_secret_arn : local.ssm_parameter_arn]
  }

  # Only through the service that holds the token, never a direct Decrypt of arbitrary data.
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "DecryptHecToken"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["${local.token_service}.*.amazonaws.com"]
      }
    }
  }
}
