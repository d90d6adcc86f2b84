output "layer_arn" {
  description = "Versioned ARN of the extension layer (attach it to other functions of the same architecture, any runtime)."
  value       = module.splunk_extension.layer_arn
}

output "layer_name" {
  description = "Name of the layer: extension name, project version and architecture."
  value       = module.splunk_extension.layer_name
}

output "function_name" {
  description = "Name of the sample function: invoke it with `aws lambda invoke --function-name <name> out.json`."
  value       = aws_lambda_function.sample.function_name
}

output "function_arn" {
  description = "ARN of the sample function."
  value       = aws_lambda_function.sample.arn
}

output "role_arn" {
  description = "ARN of the sample function's execution role."
  value       = aws_iam_role.function.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the function, or null when cloudwatch_logs_enabled is false."
  value       = var.cloudwatch_logs_enabled ? aws_cloudwatch_log_group.function[0].name : null
}
