output "layer_arn" {
  description = "ARN of the extension layer version (attach it to other functions of the same architecture, any runtime)."
  value       = module.splunk_extension.layer_arn
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
