"""Entry point: `python -m ext [extension-name]`, exec'ed by the layer's launcher.

Registers before anything else is imported: Lambda starts the runtime only once every
extension has registered, so every millisecond here delays the function's cold start.
"""

from __future__ import annotations

import os
import sys

DEFAULT_NAME = "splunk-hec-extension"


def main() -> int:
    # The registered name must equal the launcher's file name, or Lambda treats the extension
    # as internal and refuses SHUTDOWN (lambda-protocol.md §1.1); bootstrap passes it along.
    name = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_NAME
    from ext.extensions_api import ExtensionsApi, LambdaApiClient

    api = ExtensionsApi(LambdaApiClient(os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")))
    api.register(name, ("INVOKE", "SHUTDOWN"))
    from ext import lifecycle

    return lifecycle.run(api, os.environ)


if __name__ == "__main__":
    sys.exit(main())
