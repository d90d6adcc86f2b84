output "layer_arns" {
  description = "Versioned layer ARN by region and architecture: what function stacks pin."
  value = {
    "eu-west-1" = { for arch, m in module.layer_eu_west_1 : arch => m.layer_arn }
    "us-east-1" = { for arch, m in module.layer_us_east_1 : arch => m.layer_arn }
  }
}
