variable "layer_zip_paths" {
  description = "Layer zip per architecture, built by ./dev layer."
  type        = map(string)
  default = {
    x86_64 = "../../dist/splunk-hec-extension-x86_64.zip"
    arm64  = "../../dist/splunk-hec-extension-arm64.zip"
  }
}

variable "organization_id" {
  description = "AWS Organization whose accounts may use the layers (null: none)."
  type        = string
  default     = "o-a1b2c3d4e5"
}

variable "account_ids" {
  description = "Further accounts, outside the organization, that may use the layers."
  type        = list(string)
  default     = []
}

variable "splunk_host" {
  description = "Splunk HEC base URL (the module validates it; functions set their own)."
  type        = string
  default     = "https://splunk.example.com:8088"
}

variable "hec_token_parameter" {
  description = "Name of the SSM SecureString parameter holding the HEC token in every account and region."
  type        = string
  default     = "/splunk/hec-token"
}
