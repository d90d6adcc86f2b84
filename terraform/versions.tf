# Terraform and provider versions for the sample deployment (terraform init pins them in
# .terraform.lock.hcl on first run).
terraform {
  required_version = ">= 1.7.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80.0, < 7.0.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
    external = {
      source  = "hashicorp/external"
      version = "~> 2.3"
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
