# Inputs of the sample deployment. The extension's settings are named exactly like the environment
# variables they set (SPLUNK_HOST, ...), so TF_VAR_SPLUNK_HOST-style variables of the original sample
# keep working; deployment settings use ordinary lower-case names.

# --- Extension settings (one per environment variable) ---

variable "SPLUNK_HOST" {
  description = "Splunk HEC base URL, e.g. https://splunk.example.com:8088."
  type        = string
}

variable "SPLUNK_HEC_TOKEN" {
  description = "HEC token. Leave null and set splunk_hec_token_secret_arn or splunk_hec_token_ssm_parameter to read it from AWS instead."
  type        = string
  default     = null
  sensitive   = true
}

variable "SPLUNK_INDEX" {
  description = "Splunk index for the events. Null: the HEC token's default index."
  type        = string
  default     = null
}

variable "DISPATCH_MIN_BATCH_SIZE" {
  description = "Events to collect before a HEC post is sent early. Null: the extension's default."
  type        = number
  default     = null
}

variable "SPLUNK_SOURCE" {
  description = "HEC source field. Null: the extension's default."
  type        = string
  default     = null
}

variable "SPLUNK_SOURCETYPE" {
  description = "HEC sourcetype field. Null: the extension's default."
  type        = string
  default     = null
}

variable "SPLUNK_HEC_HOST" {
  description = "HEC host field. Null: the extension's default."
  type        = string
  default     = null
}

variable "SPLUNK_TELEMETRY_TYPES" {
  description = "Comma-separated Telemetry API types to forward (platform, function, extension). Null: the extension's default."
  type        = string
  default     = null
}

variable "SPLUNK_FLUSH" {
  description = "adaptive: events are sent before each invoke completes unless the next one is expected soon enough; sync: always before each invoke completes; background: while the function idles. Null: the extension's default (adaptive)."
  type        = string
  default     = null
}

variable "SPLUNK_FLUSH_BUDGET_MS" {
  description = "Longest time, in ms, an invoke may be extended to flush events. Null: the extension's default."
  type        = number
  default     = null
}

variable "SPLUNK_VERIFY_TLS" {
  description = "Verify the HEC server's TLS certificate. Null: the extension's default (verify)."
  type        = bool
  default     = null
}

variable "SPLUNK_CA_BUNDLE" {
  description = "Path in the sandbox of a PEM CA bundle for HEC (e.g. under /opt from another layer). Null: system CAs."
  type        = string
  default     = null
}

variable "SPLUNK_SPOOL_MAX_MB" {
  description = "Cap, in MB, of the /tmp spool of events not yet accepted by HEC. Null: the extension's default."
  type        = number
  default     = null
}

variable "extra_environment" {
  description = "Further extension settings by environment variable name, e.g. { SPLUNK_LOG_LEVEL = \"INFO\" }; see the README's configuration table."
  type        = map(string)
  default     = {}
}

# --- Where the HEC token comes from when SPLUNK_HEC_TOKEN is null ---

variable "splunk_hec_token_secret_arn" {
  description = "Full ARN of the Secrets Manager secret holding the HEC token. The extension reads it at run time with the function's role (granted on this ARN only); Terraform never reads it."
  type        = string
  default     = null
}

variable "splunk_hec_token_secret_key" {
  description = "JSON key of the token inside the secret, when the secret is a JSON object. Null: the whole secret string."
  type        = string
  default     = null
}

variable "splunk_hec_token_ssm_parameter" {
  description = "Name or ARN of the SSM parameter (SecureString) holding the HEC token. The extension reads it at run time with the function's role (granted on this parameter only); Terraform never reads it."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "Customer managed KMS key: encrypts the function's environment, and the role may decrypt the token's secret or parameter with it. Null: AWS managed keys."
  type        = string
  default     = null
}

# --- Deployment ---

variable "aws_region" {
  description = "AWS region to deploy to. Null: from AWS_REGION / AWS_DEFAULT_REGION or the AWS profile."
  type        = string
  default     = null
}

variable "function_name" {
  description = "Name of the sample Lambda function (also names its role and log group)."
  type        = string
  default     = "splunk-hec-extension-sample"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,56}$", var.function_name))
    error_message = "function_name must be 1-56 letters, digits, '-' or '_' (the role name adds a suffix)."
  }
}

variable "extension_name" {
  description = "Registered name of the extension (the launcher's file name in /opt/extensions)."
  type        = string
  default     = "splunk-hec-extension"
}

variable "architecture" {
  description = "Lambda instruction set for the function and the layer: x86_64 or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "runtime" {
  description = "Python runtime of the sample function (a Python handler); the default layer works with any runtime."
  type        = string
  default     = "python3.12"

  validation {
    condition     = can(regex("^python3\\.(1[1-9]|[2-9][0-9])$", var.runtime))
    error_message = "runtime must be python3.11 or newer."
  }
}

variable "layer_runtime" {
  description = "all (default): one layer per architecture with its own Python, for functions of any runtime. python3.N: the fallback layer that runs on the function's python3 (that runtime only)."
  type        = string
  default     = "all"

  validation {
    condition     = var.layer_runtime == "all" || can(regex("^python3\\.(1[1-9]|[2-9][0-9])$", var.layer_runtime))
    error_message = "layer_runtime must be all or python3.11 or newer."
  }
}

variable "memory_size" {
  description = "Memory of the sample function in MB (128-10240); CPU share grows with it."
  type        = number
  default     = 256

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240 MB."
  }
}

variable "timeout" {
  description = "Timeout of the sample function in seconds (the extension's flush time counts against it, and after a timeout or a crash its init: at least 5 s below 256 MB, docs/deploy.md)."
  type        = number
  default     = 10

  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900
    error_message = "timeout must be between 1 and 900 seconds."
  }
}

variable "cloudwatch_logs_enabled" {
  description = "true: the function may write to its CloudWatch log group as well. false: the role explicitly denies CloudWatch Logs, so logs go to Splunk only."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log group, in days, when cloudwatch_logs_enabled is true."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "log_format" {
  description = "Lambda log format, Text or JSON; the Telemetry API delivers function logs in this format."
  type        = string
  default     = "Text"

  validation {
    condition     = contains(["Text", "JSON"], var.log_format)
    error_message = "log_format must be Text or JSON."
  }
}

variable "tracing_mode" {
  description = "X-Ray tracing of the sample function: PassThrough (no tracing permission needed) or Active."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.tracing_mode)
    error_message = "tracing_mode must be PassThrough or Active."
  }
}

variable "layer_zip_path" {
  description = "Layer zip built by scripts/build_layer.py. Empty: dist/<extension_name>-<architecture>[-py3.N].zip, where ./dev layer writes it."
  type        = string
  default     = ""
}

variable "function_zip_path" {
  description = "Zip of the sample function. Empty: dist/sample-function.zip, written by scripts/build_layer.py --function-zip."
  type        = string
  default     = ""
}

variable "share_with_account_ids" {
  description = "AWS account IDs allowed to use the published layer version (e.g. the other accounts of a fleet)."
  type        = list(string)
  default     = []
}

variable "share_with_organization_id" {
  description = "AWS Organization ID (o-...) whose accounts may all use the published layer version. Null: not shared."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags applied to every resource that takes tags."
  type        = map(string)
  default     = { Project = "splunk-hec-extension" }
}
