output "secret_arn" {
  description = "Put the token here: aws secretsmanager put-secret-value --secret-id <arn> ..."
  value       = aws_secretsmanager_secret.hec_token.arn
}

output "layer_arn" {
  description = "Versioned ARN of the layer the function uses."
  value       = module.splunk_extension.layer_arn
}
