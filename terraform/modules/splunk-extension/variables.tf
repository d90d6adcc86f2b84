# Inputs of the splunk-extension module: what to build, where to send, and how to find the token.

variable "extension_name" {
  description = "Registered extension name: the launcher's file name in /opt/extensions and the code directory /opt/<name>."
  type        = string
  default     = "splunk-hec-extension"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", var.extension_name))
    error_message = "extension_name must be letters, digits, '-' or '_' (at most 64 characters)."
  }
}

variable "architecture" {
  description = "Lambda instruction set the layer is built for: x86_64 or arm64 (must match the function's)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "runtime" {
  description = "all (default): the layer carries its own Python and suits every runtime (Node.js, Java, .NET, Ruby, provided.al2023, Python). python3.N (fallback): the extension runs on the function's python3 and the layer suits that runtime only."
  type        = string
  default     = "all"

  validation {
    condition     = var.runtime == "all" || can(regex("^python3\\.(1[1-9]|[2-9][0-9])$", var.runtime))
    error_message = "runtime must be all, or a Lambda Python runtime python3.11 or newer (fallback layer)."
  }
}

variable "layer_zip_path" {
  description = "Path of the layer zip built by scripts/build_layer.py (./dev layer), e.g. dist/splunk-hec-extension-arm64.zip."
  type        = string

  validation {
    condition     = fileexists(var.layer_zip_path)
    error_message = "layer_zip_path must name an existing zip: build it first with python3 scripts/build_layer.py --arch <architecture>."
  }
}

variable "extension_version" {
  description = "Version put in the layer's name and description. Null: the version in this repository's setup.cfg."
  type        = string
  default     = null

  validation {
    condition     = var.extension_version == null || can(regex("^[0-9A-Za-z][0-9A-Za-z.+-]{0,31}$", coalesce(var.extension_version, "x")))
    error_message = "extension_version must be a version such as 1.2.0 (letters, digits, '.', '+', '-')."
  }
}

variable "share_with_account_ids" {
  description = "AWS account IDs allowed to use the published layer version (lambda:GetLayerVersion)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.share_with_account_ids : can(regex("^[0-9]{12}$", id))])
    error_message = "share_with_account_ids must be 12-digit AWS account IDs."
  }
}

variable "share_with_organization_id" {
  description = "AWS Organization ID (o-...) whose accounts may all use the published layer version. Null: not shared with an organization."
  type        = string
  default     = null

  validation {
    condition     = var.share_with_organization_id == null || can(regex("^o-[a-z0-9]{10,32}$", coalesce(var.share_with_organization_id, "x")))
    error_message = "share_with_organization_id must be an organization ID such as o-a1b2c3d4e5."
  }
}

variable "splunk_host" {
  description = "Splunk HEC base URL, e.g. https://splunk.example.com:8088 (env SPLUNK_HOST)."
  type        = string

  validation {
    condition     = can(regex("^(https?://)?[^/\\s]+(/.*)?$", var.splunk_host))
    error_message = "splunk_host must be a URL such as https://splunk.example.com:8088 (https is assumed without a scheme)."
  }
}

variable "splunk_hec_token" {
  description = "HEC token as a value (env SPLUNK_HEC_TOKEN). Leave null to read it from Secrets Manager or SSM instead."
  type        = string
  default     = null
  sensitive   = true
}

variable "splunk_hec_token_secret_arn" {
  description = "Full ARN of the Secrets Manager secret holding the HEC token (env SPLUNK_HEC_TOKEN_SECRET_ARN); the extension reads it at run time, Terraform never does."
  type        = string
  default     = null

  validation {
    condition     = var.splunk_hec_token_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$", coalesce(var.splunk_hec_token_secret_arn, "x")))
    error_message = "splunk_hec_token_secret_arn must be a secret's full ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>)."
  }
}

variable "splunk_hec_token_secret_key" {
  description = "When the secret is a JSON object, the key whose value is the token (env SPLUNK_HEC_TOKEN_SECRET_KEY). Null: the secret string is the token."
  type        = string
  default     = null
}

variable "splunk_hec_token_ssm_parameter" {
  description = "Name or ARN of the SSM parameter (SecureString) holding the HEC token (env SPLUNK_HEC_TOKEN_SSM_PARAMETER); the extension reads it at run time, Terraform never does."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "Customer managed KMS key that encrypts the token's secret or parameter: token_policy_json then grants kms:Decrypt on it (through that service only). Null: AWS managed keys, no grant needed."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", coalesce(var.kms_key_arn, "x")))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>): the grant names it, and IAM matches no alias ARN against the key."
  }
}

variable "splunk_index" {
  description = "Splunk index for the events (env SPLUNK_INDEX). Null: the token's default index."
  type        = string
  default     = null

  validation {
    condition     = var.splunk_index == null || can(regex("^[a-z0-9_][a-z0-9_-]{0,79}$", coalesce(var.splunk_index, "main")))
    error_message = "splunk_index must be a Splunk index name: a-z, 0-9, '_' and '-'."
  }
}

variable "dispatch_min_batch_size" {
  description = "Events to collect before a HEC post is sent early (env DISPATCH_MIN_BATCH_SIZE). Null: extension default."
  type        = number
  default     = null

  validation {
    condition     = var.dispatch_min_batch_size == null || try(var.dispatch_min_batch_size >= 1 && var.dispatch_min_batch_size <= 100000 && floor(var.dispatch_min_batch_size) == var.dispatch_min_batch_size, false)
    error_message = "dispatch_min_batch_size must be a whole number from 1 to 100000."
  }
}

variable "splunk_source" {
  description = "HEC source field (env SPLUNK_SOURCE). Null: extension default."
  type        = string
  default     = null
}

variable "splunk_sourcetype" {
  description = "HEC sourcetype field (env SPLUNK_SOURCETYPE). Null: extension default."
  type        = string
  default     = null
}

variable "splunk_hec_host" {
  description = "HEC host field (env SPLUNK_HEC_HOST). Null: extension default (the function name)."
  type        = string
  default     = null
}

variable "splunk_telemetry_types" {
  description = "Comma-separated Telemetry API types to forward: platform, function, extension (env SPLUNK_TELEMETRY_TYPES)."
  type        = string
  default     = null

  validation {
    condition     = var.splunk_telemetry_types == null || try(length(setsubtract([for t in split(",", var.splunk_telemetry_types) : lower(trimspace(t)) if trimspace(t) != ""], ["platform", "function", "extension"])) == 0, false)
    error_message = "splunk_telemetry_types must be a comma-separated subset of platform,function,extension."
  }
}

variable "splunk_flush" {
  description = "When buffered events are sent (env SPLUNK_FLUSH): adaptive (the extension's default: before the invoke completes unless the next one is expected soon enough), sync (before each invoke completes) or background (while the function idles)."
  type        = string
  default     = null

  validation {
    condition     = var.splunk_flush == null || contains(["adaptive", "sync", "background"], lower(coalesce(var.splunk_flush, "adaptive")))
    error_message = "splunk_flush must be adaptive, sync or background."
  }
}

variable "splunk_flush_budget_ms" {
  description = "Longest time, in ms, an invoke may be extended to flush events (env SPLUNK_FLUSH_BUDGET_MS)."
  type        = number
  default     = null

  validation {
    condition     = var.splunk_flush_budget_ms == null || try(var.splunk_flush_budget_ms >= 0 && var.splunk_flush_budget_ms <= 900000 && floor(var.splunk_flush_budget_ms) == var.splunk_flush_budget_ms, false)
    error_message = "splunk_flush_budget_ms must be a whole number from 0 to 900000."
  }
}

variable "splunk_verify_tls" {
  description = "Verify the HEC server's TLS certificate (env SPLUNK_VERIFY_TLS). Keep true outside tests."
  type        = bool
  default     = null
}

variable "splunk_ca_bundle" {
  description = "Path inside the Lambda sandbox of a PEM CA bundle for HEC (env SPLUNK_CA_BUNDLE), e.g. shipped in another layer under /opt."
  type        = string
  default     = null
}

variable "splunk_spool_max_mb" {
  description = "Cap, in MB, of the /tmp spool holding events not yet accepted by HEC (env SPLUNK_SPOOL_MAX_MB)."
  type        = number
  default     = null

  validation {
    condition     = var.splunk_spool_max_mb == null || try(var.splunk_spool_max_mb >= 8 && var.splunk_spool_max_mb <= 10240 && floor(var.splunk_spool_max_mb) == var.splunk_spool_max_mb, false)
    error_message = "splunk_spool_max_mb must be a whole number from 8 to 10240 (and fit in the function's ephemeral storage)."
  }
}

variable "extra_environment" {
  description = "Further extension settings by environment variable name (e.g. SPLUNK_LOG_LEVEL, SPLUNK_ON_CONFIG_ERROR); see the README's configuration table."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_environment), [
      "SPLUNK_HOST", "SPLUNK_HEC_TOKEN", "SPLUNK_INDEX", "DISPATCH_MIN_BATCH_SIZE", "SPLUNK_SOURCE",
      "SPLUNK_SOURCETYPE", "SPLUNK_HEC_HOST", "SPLUNK_TELEMETRY_TYPES", "SPLUNK_FLUSH",
      "SPLUNK_FLUSH_BUDGET_MS", "SPLUNK_VERIFY_TLS", "SPLUNK_CA_BUNDLE", "SPLUNK_SPOOL_MAX_MB",
      "SPLUNK_HEC_TOKEN_SECRET_ARN", "SPLUNK_HEC_TOKEN_SECRET_KEY", "SPLUNK_HEC_TOKEN_SSM_PARAMETER",
    ])) == 0
    error_message = "extra_environment must not repeat a setting that has its own variable (the HEC token included)."
  }
}
