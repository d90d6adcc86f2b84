# The HEC token as a value, or read by Terraform from Secrets Manager or SSM Parameter Store.
# The extension itself calls no AWS API in this version: the token reaches it as SPLUNK_HEC_TOKEN,
# and a token read here is stored in the Terraform state (protect the state accordingly).

locals {
  token_sources = length(compact([
    nonsensitive(var.splunk_hec_token == null) ? "" : "value",
    var.splunk_hec_token_secret_arn == null ? "" : "secret",
    var.splunk_hec_token_ssm_parameter == null ? "" : "ssm",
  ]))
}

data "aws_secretsmanager_secret_version" "hec_token" {
  count     = var.splunk_hec_token_secret_arn == null ? 0 : 1
  secret_id = var.splunk_hec_token_secret_arn
}

data "aws_ssm_parameter" "hec_token" {
  count           = var.splunk_hec_token_ssm_parameter == null ? 0 : 1
  name            = var.splunk_hec_token_ssm_parameter
  with_decryption = true
}

locals {
  secret_string = try(data.aws_secretsmanager_secret_version.hec_token[0].secret_string, null)
  secret_token = var.splunk_hec_token_secret_arn == null ? null : (
    var.splunk_hec_token_secret_key == null ? local.secret_string : jsondecode(local.secret_string)[var.splunk_hec_token_secret_key]
  )
  ssm_token = try(data.aws_ssm_parameter.hec_token[0].value, null)
  hec_token = nonsensitive(var.splunk_hec_token != null) ? var.splunk_hec_token : (
    var.splunk_hec_token_secret_arn != null ? local.secret_token : local.ssm_token
  )
}
