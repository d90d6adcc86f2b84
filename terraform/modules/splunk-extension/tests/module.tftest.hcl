# terraform test of modules/splunk-extension with a mocked AWS provider: no credentials, no
# network. Run from the module directory: terraform init, then terraform test.

mock_provider "aws" {
  mock_resource "aws_lambda_layer_version" {
    defaults = {
      arn       = "arn:aws:lambda:eu-west-1:123456789012:layer:splunk-hec-extension-1_2_3-x86-64:7"
      layer_arn = "arn:aws:lambda:eu-west-1:123456789012:layer:splunk-hec-extension-1_2_3-x86-64"
      version   = "7"
    }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { id = "eu-west-1", name = "eu-west-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
}

variables {
  layer_zip_path    = "tests/fake-zip.txt"
  splunk_host       = "https://splunk.example.com:8088"
  splunk_hec_token  = "test-token-not-a-secret"
  extension_version = "1.2.3"
}

run "bundled_layer_is_named_after_version_and_architecture" {
  command = apply

  assert {
    condition     = aws_lambda_layer_version.extension.layer_name == "splunk-hec-extension-1_2_3-x86-64"
    error_message = "layer name must carry the version and the architecture"
  }
  assert {
    condition     = strcontains(aws_lambda_layer_version.extension.description, "1.2.3 (x86_64, own Python, every runtime)")
    error_message = "description must carry the version and the architecture"
  }
  assert {
    condition     = aws_lambda_layer_version.extension.skip_destroy == true
    error_message = "old layer versions must survive an upgrade"
  }
  assert {
    condition     = aws_lambda_layer_version.extension.compatible_runtimes == null && aws_lambda_layer_version.extension.compatible_architectures == toset(["x86_64"])
    error_message = "the bundled layer suits every runtime of its architecture"
  }
  assert {
    condition     = aws_lambda_layer_version.extension.license_info == "Apache-2.0"
    error_message = "license_info must match the LICENSE file"
  }
  assert {
    condition     = aws_lambda_layer_version.extension.source_code_hash == filebase64sha256("tests/fake-zip.txt")
    error_message = "the layer is published from the given zip"
  }
  assert {
    condition     = output.layer_arn == "arn:aws:lambda:eu-west-1:123456789012:layer:splunk-hec-extension-1_2_3-x86-64:7"
    error_message = "layer_arn must be the versioned ARN"
  }
  assert {
    condition     = output.shared_with == [] && length(aws_lambda_layer_version_permission.account) == 0 && length(aws_lambda_layer_version_permission.organization) == 0
    error_message = "nothing is shared unless asked"
  }
  assert {
    condition     = output.environment_variables == { SPLUNK_HOST = "https://splunk.example.com:8088", SPLUNK_HEC_TOKEN = "test-token-not-a-secret" }
    error_message = "unset settings are left out; the token given as a value is passed"
  }
  assert {
    condition     = output.token_policy_json == null && length(data.aws_iam_policy_document.token) == 0
    error_message = "no IAM policy when the token is a value"
  }
}

run "version_defaults_to_setup_cfg" {
  command = plan

  variables {
    extension_version = null
  }

  assert {
    condition     = output.extension_version == regex("(?m)^version = (\\S+)$", file("../../../setup.cfg"))[0]
    error_message = "the version comes from setup.cfg"
  }
  assert {
    condition     = aws_lambda_layer_version.extension.layer_name == "splunk-hec-extension-${replace(output.extension_version, ".", "_")}-x86-64"
    error_message = "layer name must carry setup.cfg's version"
  }
}

run "arm64_fallback_layer_suits_one_runtime" {
  command = plan

  variables {
    architecture = "arm64"
    runtime      = "python3.12"
  }

  assert {
    condition     = aws_lambda_layer_version.extension.layer_name == "splunk-hec-extension-1_2_3-arm64-py312"
    error_message = "the fallback layer's name carries its Python version"
  }
  assert {
    condition     = aws_lambda_layer_version.extension.compatible_runtimes == toset(["python3.12"]) && aws_lambda_layer_version.extension.compatible_architectures == toset(["arm64"])
    error_message = "the fallback layer suits its one runtime and architecture"
  }
  assert {
    condition     = output.compatible_runtime == "python3.12" && output.architecture == "arm64"
    error_message = "outputs tell what the function must use"
  }
}

run "shared_with_accounts_and_an_organization" {
  command = apply

  variables {
    share_with_account_ids     = ["210987654321", "111122223333"]
    share_with_organization_id = "o-a1b2c3d4e5"
  }

  assert {
    condition     = output.shared_with == ["111122223333", "210987654321", "org:o-a1b2c3d4e5"]
    error_message = "each account and the organization get a permission"
  }
  assert {
    condition     = aws_lambda_layer_version_permission.account["111122223333"].principal == "111122223333" && aws_lambda_layer_version_permission.account["111122223333"].action == "lambda:GetLayerVersion"
    error_message = "an account is granted GetLayerVersion only"
  }
  assert {
    condition     = aws_lambda_layer_version_permission.account["210987654321"].version_number == 7 && aws_lambda_layer_version_permission.account["210987654321"].skip_destroy
    error_message = "the permission is on the published version and outlives it in state"
  }
  assert {
    condition     = aws_lambda_layer_version_permission.organization[0].principal == "*" && aws_lambda_layer_version_permission.organization[0].organization_id == "o-a1b2c3d4e5"
    error_message = "an organization share is principal * limited to the organization"
  }
}

run "token_from_secrets_manager_with_a_customer_key" {
  command = plan

  variables {
    splunk_hec_token            = null
    splunk_hec_token_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk-hec-AbCdEf"
    splunk_hec_token_secret_key = "hec_token"
    kms_key_arn                 = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }

  assert {
    condition     = output.environment_variables == { SPLUNK_HOST = "https://splunk.example.com:8088", SPLUNK_HEC_TOKEN_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk-hec-AbCdEf", SPLUNK_HEC_TOKEN_SECRET_KEY = "hec_token" }
    error_message = "the function gets where the token is, not the token"
  }
  assert {
    condition     = data.aws_iam_policy_document.token[0].statement[0].actions == toset(["secretsmanager:GetSecretValue"]) && data.aws_iam_policy_document.token[0].statement[0].resources == toset(["arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk-hec-AbCdEf"])
    error_message = "the role may read exactly that secret"
  }
  assert {
    condition     = data.aws_iam_policy_document.token[0].statement[1].actions == toset(["kms:Decrypt"]) && toset(one(data.aws_iam_policy_document.token[0].statement[1].condition).values) == toset(["secretsmanager.*.amazonaws.com"])
    error_message = "kms:Decrypt only through Secrets Manager"
  }
}

run "token_from_an_ssm_parameter_name" {
  command = plan

  variables {
    splunk_hec_token               = null
    splunk_hec_token_ssm_parameter = "/splunk/hec-token"
  }

  assert {
    condition     = data.aws_iam_policy_document.token[0].statement[0].actions == toset(["ssm:GetParameter"]) && data.aws_iam_policy_document.token[0].statement[0].resources == toset(["arn:aws:ssm:eu-west-1:123456789012:parameter/splunk/hec-token"])
    error_message = "the role may read exactly that parameter, by ARN"
  }
  assert {
    condition     = length(data.aws_iam_policy_document.token[0].statement) == 1
    error_message = "no KMS grant without kms_key_arn"
  }
  assert {
    condition     = output.environment_variables["SPLUNK_HEC_TOKEN_SSM_PARAMETER"] == "/splunk/hec-token" && !contains(keys(output.environment_variables), "SPLUNK_HEC_TOKEN")
    error_message = "the function gets the parameter's name"
  }
}

run "token_from_an_ssm_parameter_arn_needs_no_lookup" {
  command = plan

  variables {
    splunk_hec_token               = null
    splunk_hec_token_ssm_parameter = "arn:aws:ssm:us-east-1:210987654321:parameter/hec"
  }

  assert {
    condition     = data.aws_iam_policy_document.token[0].statement[0].resources == toset(["arn:aws:ssm:us-east-1:210987654321:parameter/hec"])
    error_message = "an ARN is granted as given"
  }
}

run "two_token_sources_are_refused" {
  command = plan

  variables {
    splunk_hec_token_ssm_parameter = "/splunk/hec-token"
  }

  expect_failures = [output.environment_variables]
}

run "no_token_source_is_refused" {
  command = plan

  variables {
    splunk_hec_token = null
  }

  expect_failures = [output.environment_variables]
}

run "settings_become_strings_and_extra_environment_is_merged" {
  command = plan

  variables {
    splunk_flush            = "background"
    splunk_verify_tls       = false
    dispatch_min_batch_size = 100
    extra_environment       = { SPLUNK_LOG_LEVEL = "INFO" }
  }

  assert {
    condition     = output.environment_variables["SPLUNK_VERIFY_TLS"] == "false" && output.environment_variables["DISPATCH_MIN_BATCH_SIZE"] == "100" && output.environment_variables["SPLUNK_FLUSH"] == "background" && output.environment_variables["SPLUNK_LOG_LEVEL"] == "INFO"
    error_message = "every setting reaches the environment as a string"
  }
}

run "every_flush_strategy_of_the_extension_is_accepted" {
  command = plan

  variables {
    splunk_flush = "Adaptive"
  }

  assert {
    condition     = output.environment_variables["SPLUNK_FLUSH"] == "Adaptive"
    error_message = "the default strategy may be named, in any case, as the extension reads it"
  }
}

# Validation errors: every bad input is named by its own variable's validation.
run "invalid_layer_inputs" {
  command = plan
  variables {
    architecture               = "sparc"
    runtime                    = "python3.9"
    layer_zip_path             = "tests/no-such-layer.zip"
    extension_version          = "1.2.3 beta"
    share_with_account_ids     = ["12345"]
    share_with_organization_id = "org-1"
  }
  expect_failures = [var.architecture, var.runtime, var.layer_zip_path, var.extension_version, var.share_with_account_ids, var.share_with_organization_id]
}

run "invalid_settings" {
  command = plan
  variables {
    splunk_host                 = "not a url"
    splunk_telemetry_types      = "platform,metrics"
    splunk_flush                = "sometimes"
    splunk_spool_max_mb         = 1
    extra_environment           = { SPLUNK_HEC_TOKEN = "sneaked-in" }
    splunk_hec_token            = null
    splunk_hec_token_secret_arn = "splunk-hec"
  }
  expect_failures = [var.splunk_host, var.splunk_telemetry_types, var.splunk_flush, var.splunk_spool_max_mb, var.extra_environment, var.splunk_hec_token_secret_arn]
}

# IAM grants name what they match: a secret's ARN without its 6-character suffix, or a key's
# alias ARN, would pass here and be denied at run time, the token never read.
run "arns_iam_cannot_match_are_refused" {
  command = plan
  variables {
    splunk_hec_token            = null
    splunk_hec_token_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk-hec"
    kms_key_arn                 = "arn:aws:kms:eu-west-1:123456789012:alias/splunk"
  }
  expect_failures = [var.splunk_hec_token_secret_arn, var.kms_key_arn]
}
