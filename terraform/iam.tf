# Least-privilege execution role: CloudWatch Logs, allowed on the function's own log group when
# cloudwatch_logs_enabled, otherwise explicitly denied, so that a broader policy attached later
# cannot switch logging back on; and, when the HEC token is read at run time, read access to that
# one secret or parameter (the only AWS API the extension calls).

locals {
  log_group_name = "/aws/lambda/${var.function_name}"
  log_actions    = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
}

data "aws_iam_policy_document" "assume_role" {
  statement {
    sid     = "LambdaAssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  name               = "${var.function_name}-role"
  description        = "Execution role of ${var.function_name} (Splunk HEC extension sample)"
  assume_role_policy = data.aws_iam_policy_document.assume_role.json
}

resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_158:Log data is encrypted by CloudWatch Logs by default; a CMK is the user's choice.
  #checkov:skip=CKV_AWS_338:Retention is a variable (default 30 days): logs go to Splunk, CloudWatch is a copy.
  count = var.cloudwatch_logs_enabled ? 1 : 0

  name              = local.log_group_name
  retention_in_days = var.log_retention_days
}

# The log group is created above, so the function never needs logs:CreateLogGroup.
data "aws_iam_policy_document" "logs_allowed" {
  count = var.cloudwatch_logs_enabled ? 1 : 0

  statement {
    sid       = "WriteOwnLogGroup"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[0].arn}:*"]
  }
}

data "aws_iam_policy_document" "logs_denied" {
  count = var.cloudwatch_logs_enabled ? 0 : 1

  statement {
    sid       = "DenyCloudWatchLogs"
    effect    = "Deny"
    actions   = local.log_actions
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "logs" {
  name   = var.cloudwatch_logs_enabled ? "cloudwatch-logs-allowed" : "cloudwatch-logs-denied"
  role   = aws_iam_role.function.id
  policy = var.cloudwatch_logs_enabled ? data.aws_iam_policy_document.logs_allowed[0].json : data.aws_iam_policy_document.logs_denied[0].json
}

# X-Ray has no resource-level permissions, hence "*"; only granted when tracing is Active.
data "aws_iam_policy_document" "tracing" {
  count = var.tracing_mode == "Active" ? 1 : 0

  statement {
    sid       = "WriteTraces"
    effect    = "Allow"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "tracing" {
  count = var.tracing_mode == "Active" ? 1 : 0

  name   = "xray-tracing"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.tracing[0].json
}

# The extension reads the HEC token itself: GetSecretValue on that one secret, or GetParameter on
# that one parameter (plus kms:Decrypt on kms_key_arn), as computed by the module.
resource "aws_iam_role_policy" "hec_token" {
  count = var.splunk_hec_token_secret_arn != null || var.splunk_hec_token_ssm_parameter != null ? 1 : 0

  name   = "read-hec-token"
  role   = aws_iam_role.function.id
  policy = module.splunk_extension.token_policy_json
}
