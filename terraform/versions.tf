# Terraform and provider versions for the sample deployment: only hashicorp/aws, in the range that
# `terraform test` covers; .terraform.lock.hcl (committed) pins the exact release.
terraform {
  required_version = ">= 1.7.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100.0"
    }
  }
}

provider "aws" {
  # Null: the region comes from AWS_REGION / AWS_DEFAULT_REGION or the profile, as the AWS CLI does.
  region = var.aws_region

  default_tags {
    tags = var.tags
  }
}
