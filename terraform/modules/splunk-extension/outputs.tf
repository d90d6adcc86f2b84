# What a caller wires into its own aws_lambda_function.

output "layer_arn" {
  description = "Versioned ARN of the published layer version (arn:...:layer:<name>:<n>): add it to the function's layers."
  value       = aws_lambda_layer_version.extension.arn
}

output "layer_version" {
  description = "Version number of the published layer."
  value       = aws_lambda_layer_version.extension.version
}

output "layer_name" {
  description = "Name of the layer: extension name, project version and architecture (and python3.N for the fallback)."
  value       = aws_lambda_layer_version.extension.layer_name
}

output "extension_version" {
  description = "Project version the layer carries in its name and description."
  value       = local.extension_version
}

output "layer_sha256" {
  description = "Base64 SHA-256 of the layer zip (the same inputs always give the same value)."
  value       = aws_lambda_layer_version.extension.source_code_hash
}

output "shared_with" {
  description = "Principals granted lambda:GetLayerVersion on this version: account IDs, and org:<id> for an organization."
  value = concat(
    sort(keys(aws_lambda_layer_version_permission.account)),
    [for id in aws_lambda_layer_version_permission.organization[*].organization_id : "org:${id}"],
  )
}

output "extension_name" {
  description = "Registered name of the extension (the launcher's file name)."
  value       = var.extension_name
}

output "compatible_runtime" {
  description = "The one Python runtime the fallback layer was built for (the function must use it); null for the default layer, which suits every runtime."
  value       = local.bundled ? null : var.runtime
}

output "architecture" {
  description = "The instruction set the layer was built for; the function must use it."
  value       = var.architecture
}

output "token_policy_json" {
  description = "IAM policy for the function's role: read the one secret or parameter holding the HEC token (plus kms:Decrypt on kms_key_arn). Null when the token is given as a value."
  value       = local.reads_secret || local.reads_parameter ? data.aws_iam_policy_document.token[0].json : null
}

output "environment_variables" {
  description = "Environment to merge into the function's: the extension's settings, and the HEC token only when given as a value (otherwise where to read it)."
  value       = local.environment_variables
  sensitive   = true

  precondition {
    condition     = local.token_sources == 1
    error_message = "Give exactly one of splunk_hec_token, splunk_hec_token_secret_arn or splunk_hec_token_ssm_parameter."
  }
}
