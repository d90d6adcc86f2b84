output "function_name" {
  description = "Invoke it: aws lambda invoke --function-name <name> out.json"
  value       = aws_lambda_function.this.function_name
}

output "layer_arn" {
  description = "Versioned ARN of the layer the function uses."
  value       = module.splunk_extension.layer_arn
}
