# The extension's environment: one entry per setting it reads. Unset (null) settings are left out
# so the extension's own defaults apply; Lambda environment values are strings.

locals {
  environment_settings = {
    SPLUNK_HOST             = var.splunk_host
    SPLUNK_HEC_TOKEN        = var.splunk_hec_token
    SPLUNK_INDEX            = var.splunk_index
    DISPATCH_MIN_BATCH_SIZE = var.dispatch_min_batch_size == null ? null : tostring(var.dispatch_min_batch_size)
    SPLUNK_SOURCE           = var.splunk_source
    SPLUNK_SOURCETYPE       = var.splunk_sourcetype
    SPLUNK_HEC_HOST         = var.splunk_hec_host
    SPLUNK_TELEMETRY_TYPES  = var.splunk_telemetry_types
    SPLUNK_FLUSH            = var.splunk_flush
    SPLUNK_FLUSH_BUDGET_MS  = var.splunk_flush_budget_ms == null ? null : tostring(var.splunk_flush_budget_ms)
    SPLUNK_VERIFY_TLS       = var.splunk_verify_tls == null ? null : tostring(var.splunk_verify_tls)
    SPLUNK_CA_BUNDLE        = var.splunk_ca_bundle
    SPLUNK_SPOOL_MAX_MB     = var.splunk_spool_max_mb == null ? null : tostring(var.splunk_spool_max_mb)
    # Names of where the token is, not the token: the extension reads it at run time.
    SPLUNK_HEC_TOKEN_SECRET_ARN    = var.splunk_hec_token_secret_arn
    SPLUNK_HEC_TOKEN_SECRET_KEY    = var.splunk_hec_token_secret_key
    SPLUNK_HEC_TOKEN_SSM_PARAMETER = var.splunk_hec_token_ssm_parameter
  }

  environment_variables = merge(
    var.extra_environment,
    { for key, value in local.environment_settings : key => value if value != null },
  )
}
