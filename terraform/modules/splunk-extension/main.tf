# Builds (or takes) the layer zip, publishes it as a layer version, and computes the environment a
# function needs to run the extension. It cannot edit a function it does not own: callers add
# `layer_arn` to their function's layers and merge `environment_variables` into its environment.

locals {
  # "all": the layer carries its own Python (every runtime); python3.N: the documented fallback
  # that runs on the function's own python3 (that runtime only).
  bundled          = var.runtime == "all"
  python_version   = local.bundled ? "bundled" : trimprefix(var.runtime, "python")
  zip_suffix       = local.bundled ? "" : "-py${local.python_version}"
  build_output_dir = var.build_output_dir != "" ? var.build_output_dir : abspath("${path.module}/../../../dist")
  build_zip_path   = "${local.build_output_dir}/${var.extension_name}-${var.architecture}${local.zip_suffix}.zip"
  build_layer      = var.layer_zip_path == ""
}

# The build runs at plan time so the zip and its hash exist before the layer version is planned.
# It is deterministic: an unchanged tree gives the same hash, hence no new layer version.
data "external" "layer_build" {
  count = local.build_layer ? 1 : 0

  program = [
    var.build_python,
    abspath("${path.module}/../../../scripts/build_layer.py"),
    "--terraform",
    "--arch", var.architecture,
    "--python", local.python_version,
    "--name", var.extension_name,
    "--out", local.build_zip_path,
  ]
}

locals {
  layer_zip_path    = local.build_layer ? data.external.layer_build[0].result.path : var.layer_zip_path
  layer_zip_sha256  = local.build_layer ? data.external.layer_build[0].result.base64sha256 : filebase64sha256(var.layer_zip_path)
  layer_name_suffix = local.bundled ? replace(var.architecture, "_", "-") : "${replace(var.architecture, "_", "-")}-py${replace(local.python_version, ".", "")}"
}

resource "aws_lambda_layer_version" "extension" {
  layer_name               = "${var.extension_name}-${local.layer_name_suffix}"
  description              = "Splunk HEC telemetry extension (${var.architecture}, ${local.bundled ? "own Python, every runtime" : var.runtime})"
  filename                 = local.layer_zip_path
  source_code_hash         = local.layer_zip_sha256
  compatible_architectures = [var.architecture]
  # With its own Python the layer suits every runtime (no list: Lambda then offers it to all);
  # the fallback's wheels are compiled for one CPython version, so it suits that runtime only.
  compatible_runtimes = local.bundled ? null : [var.runtime]
  license_info        = "Apache-2.0"
}
