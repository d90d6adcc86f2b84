output "layer_arns" {
  description = "Versioned layer ARN per architecture."
  value       = { for arch, m in module.splunk_extension : arch => m.layer_arn }
}

output "attached_functions" {
  description = "Functions that now run the extension."
  value       = sort(keys(aws_lambda_function.attached))
}
