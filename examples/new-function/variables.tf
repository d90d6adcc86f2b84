variable "region" {
  description = "AWS region of the function and its layer."
  type        = string
  default     = "eu-west-1"
}

variable "function_name" {
  description = "Name of the new function."
  type        = string
  default     = "orders-api"
}

variable "splunk_host" {
  description = "Splunk HEC base URL."
  type        = string
  default     = "https://splunk.example.com:8088"
}

variable "hec_token_parameter" {
  description = "Name of the SSM SecureString parameter holding the HEC token."
  type        = string
  default     = "/splunk/hec-token"
}

variable "layer_zip_path" {
  description = "Layer zip built by ./dev layer arm64."
  type        = string
  default     = "../../dist/splunk-hec-extension-arm64.zip"
}

variable "function_zip_path" {
  description = "The function's deployment package."
  type        = string
  default     = "../../dist/sample-function.zip"
}
