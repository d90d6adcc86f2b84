# One layer version per region and architecture, for a fleet in several regions and accounts.
# Layers are regional: a function can only use a layer of its own region, so the same zip is
# published in each region (one aws provider alias per region) and shared with the
# organization's accounts. Each version is kept when a newer one is published
# (skip_destroy), so stacks pinned to an older ARN keep deploying.
#
# The other pattern, one apply per region, is this module called once with a region variable and
# a state per region (terraform workspace or -backend-config); aliases keep one plan for all.

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
  alias  = "eu_west_1"
  region = "eu-west-1"
}

provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"
}

locals {
  sharing = {
    share_with_organization_id = var.organization_id
    share_with_account_ids     = var.account_ids
  }
}

module "layer_eu_west_1" {
  source    = "../../terraform/modules/splunk-extension"
  providers = { aws = aws.eu_west_1 }
  for_each  = var.layer_zip_paths

  architecture               = each.key
  layer_zip_path             = each.value
  share_with_organization_id = local.sharing.share_with_organization_id
  share_with_account_ids     = local.sharing.share_with_account_ids
  # The fleet's convention, checked here once: every account keeps the token in this parameter.
  # Function stacks use the layer ARN and set the same environment themselves.
  splunk_host                    = var.splunk_host
  splunk_hec_token_ssm_parameter = var.hec_token_parameter
}

module "layer_us_east_1" {
  source    = "../../terraform/modules/splunk-extension"
  providers = { aws = aws.us_east_1 }
  for_each  = var.layer_zip_paths

  architecture                   = each.key
  layer_zip_path                 = each.value
  share_with_organization_id     = local.sharing.share_with_organization_id
  share_with_account_ids         = local.sharing.share_with_account_ids
  splunk_host                    = var.splunk_host
  splunk_hec_token_ssm_parameter = var.hec_token_parameter
}
