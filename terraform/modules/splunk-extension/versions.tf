# Providers this module needs; the caller configures them (one aws provider per region). Only
# hashicorp/aws: the layer zip is built outside Terraform (scripts/build_layer.py) and passed in.
# The range is what `terraform test` covers (tests/integration/test_terraform_offline.py).
terraform {
  required_version = ">= 1.7.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100.0"
    }
  }
}
