variable "region" {
  description = "AWS region of the functions."
  type        = string
  default     = "eu-west-1"
}

variable "function_names" {
  description = "Existing functions to attach the extension to (any runtime, either architecture)."
  type        = list(string)
  default     = ["orders-api", "billing-worker", "audit-trail"]
}

variable "splunk_host" {
  description = "Splunk HEC base URL."
  type        = string
  default     = "https://splunk.example.com:8088"
}

variable "hec_token_secret_arn" {
  description = "Full ARN of the Secrets Manager secret holding the HEC token."
  type        = string
  default     = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:splunk-hec-AbCdEf"
}

variable "layer_zip_paths" {
  description = "Layer zip per architecture, built by ./dev layer."
  type        = map(string)
  default = {
    x86_64 = "../../dist/splunk-hec-extension-x86_64.zip"
    arm64  = "../../dist/splunk-hec-extension-arm64.zip"
  }
}
