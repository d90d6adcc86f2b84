# terraform test of the sample deployment (terraform/) with a mocked AWS provider: no credentials,
# no network. Run from terraform/: terraform init, then terraform test.

mock_provider "aws" {
  mock_resource "aws_lambda_layer_version" {
    defaults = {
      arn       = "arn:aws:lambda:eu-west-1:123456789012:layer:splunk-hec-extension-0_1_0-x86-64:3"
      layer_arn = "arn:aws:lambda:eu-west-1:123456789012:layer:splunk-hec-extension-0_1_0-x86-64"
      version   = "3"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/splunk-hec-extension-sample-role" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/splunk-hec-extension-sample" }
  }
  # The provider still checks that policies are JSON: the documents' inputs are asserted below.
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
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
  SPLUNK_HOST       = "https://splunk.example.com:8088"
  SPLUNK_HEC_TOKEN  = "test-token-not-a-secret"
  layer_zip_path    = "tests/fake-zip.txt"
  function_zip_path = "tests/fake-zip.txt"
}

run "cloudwatch_on_allows_the_own_log_group_only" {
  command = apply

  assert {
    condition     = length(aws_cloudwatch_log_group.function) == 1 && aws_cloudwatch_log_group.function[0].name == "/aws/lambda/splunk-hec-extension-sample"
    error_message = "the function's log group is created"
  }
  assert {
    condition     = aws_iam_role_policy.logs.name == "cloudwatch-logs-allowed" && length(data.aws_iam_policy_document.logs_denied) == 0
    error_message = "the allow policy is attached, no deny"
  }
  assert {
    condition     = data.aws_iam_policy_document.logs_allowed[0].statement[0].effect == "Allow" && data.aws_iam_policy_document.logs_allowed[0].statement[0].actions == toset(["logs:CreateLogStream", "logs:PutLogEvents"])
    error_message = "only log streams and events are allowed"
  }
  assert {
    condition     = data.aws_iam_policy_document.logs_allowed[0].statement[0].resources == toset(["arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/splunk-hec-extension-sample:*"])
    error_message = "on the function's own log group only"
  }
  assert {
    condition     = aws_lambda_function.sample.layers == tolist([module.splunk_extension.layer_arn]) && output.layer_arn == "arn:aws:lambda:eu-west-1:123456789012:layer:splunk-hec-extension-0_1_0-x86-64:3"
    error_message = "the function uses the versioned layer ARN"
  }
  assert {
    condition     = aws_lambda_function.sample.environment[0].variables["SPLUNK_HEC_TOKEN"] == "test-token-not-a-secret" && aws_lambda_function.sample.environment[0].variables["SPLUNK_HOST"] == "https://splunk.example.com:8088"
    error_message = "the function's environment is the module's"
  }
  assert {
    condition     = length(aws_iam_role_policy.hec_token) == 0 && length(aws_iam_role_policy.tracing) == 0
    error_message = "no token or tracing grant unless asked"
  }
  assert {
    condition     = aws_lambda_function.sample.architectures == tolist(["x86_64"]) && aws_lambda_function.sample.source_code_hash == filebase64sha256("tests/fake-zip.txt")
    error_message = "the function is deployed from the given zip on the default architecture"
  }
}

run "cloudwatch_off_denies_logs_explicitly" {
  command = plan

  variables {
    cloudwatch_logs_enabled = false
  }

  assert {
    condition     = length(aws_cloudwatch_log_group.function) == 0 && aws_iam_role_policy.logs.name == "cloudwatch-logs-denied"
    error_message = "no log group; the deny policy is attached"
  }
  assert {
    condition     = data.aws_iam_policy_document.logs_denied[0].statement[0].effect == "Deny" && data.aws_iam_policy_document.logs_denied[0].statement[0].resources == toset(["*"])
    error_message = "CloudWatch Logs are denied everywhere"
  }
  assert {
    condition     = data.aws_iam_policy_document.logs_denied[0].statement[0].actions == toset(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"])
    error_message = "every log write action is denied"
  }
  assert {
    condition     = output.log_group_name == null
    error_message = "no log group to report"
  }
}

run "arm64_with_token_from_secrets_manager_and_tracing" {
  command = apply

  variables {
    architecture                = "arm64"
    SPLUNK_HEC_TOKEN            = null
    splunk_hec_token_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk-hec-AbCdEf"
    tracing_mode                = "Active"
    share_with_account_ids      = ["210987654321"]
  }

  assert {
    condition     = aws_lambda_function.sample.architectures == tolist(["arm64"])
    error_message = "the function runs on arm64"
  }
  assert {
    condition     = length(aws_iam_role_policy.hec_token) == 1 && aws_iam_role_policy.hec_token[0].name == "read-hec-token"
    error_message = "the role may read the token's secret"
  }
  assert {
    condition     = !contains(keys(aws_lambda_function.sample.environment[0].variables), "SPLUNK_HEC_TOKEN") && aws_lambda_function.sample.environment[0].variables["SPLUNK_HEC_TOKEN_SECRET_ARN"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk-hec-AbCdEf"
    error_message = "no token in the function's configuration"
  }
  assert {
    condition     = length(aws_iam_role_policy.tracing) == 1 && data.aws_iam_policy_document.tracing[0].statement[0].actions == toset(["xray:PutTraceSegments", "xray:PutTelemetryRecords"])
    error_message = "Active tracing adds the two X-Ray write actions"
  }
  assert {
    condition     = module.splunk_extension.shared_with == ["210987654321"]
    error_message = "the layer version is shared with the account"
  }
}

run "fallback_layer_for_another_runtime_is_refused" {
  command = plan

  variables {
    layer_runtime = "python3.11"
    runtime       = "python3.12"
  }

  expect_failures = [aws_lambda_function.sample]
}

run "invalid_inputs" {
  command = plan

  variables {
    architecture       = "sparc"
    function_name      = "has spaces"
    memory_size        = 64
    timeout            = 0
    log_retention_days = 2
    log_format         = "XML"
    tracing_mode       = "On"
    layer_runtime      = "java21"
  }

  expect_failures = [var.architecture, var.function_name, var.memory_size, var.timeout, var.log_retention_days, var.log_format, var.tracing_mode, var.layer_runtime]
}

run "a_timeout_too_short_to_initialise_again_is_warned_about" {
  command = plan
  variables {
    memory_size = 128
    timeout     = 3
  }
  expect_failures = [check.timeout_leaves_room_to_initialise_again]
}

run "a_timeout_with_room_to_initialise_again_passes_the_check" {
  command = plan
  variables {
    memory_size = 128
    timeout     = 5
  }
}
