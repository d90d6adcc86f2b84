variable "region" {
  description = "AWS region of the function, its layer and the secret."
  type        = string
  default     = "eu-west-1"
}

variable "function_name" {
  description = "Name of the function."
  type        = string
  default     = "payments-api"
}

variable "secret_name" {
  description = "Name of the secret that will hold the HEC token (JSON, key hec_token)."
  type        = string
  default     = "splunk/hec"
}

variable "splunk_host" {
  description = "Splunk HEC base URL."
  type        = string
  default     = "https://splunk.example.com:8088"
}

variable "layer_zip_path" {
  description = "Layer zip built by ./dev layer x86_64."
  type        = string
  default     = "../../dist/splunk-hec-extension-x86_64.zip"
}

variable "function_zip_path" {
  description = "The function's deployment package."
  type        = string
  default     = "../../dist/sample-function.zip"
}
