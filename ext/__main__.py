"""Entry point: `python -m ext [extension-name]`, exec'ed by the layer's launcher.

Registers before anything else is imported: Lambda starts the runtime only once every
extension has registered, so every millisecond here delays the function's cold start.
"""

from __future__ import annotations

import os
import sys

DEFAULT_NAME = "splunk-hec-extension"
RUNTIME_API = "AWS_LAMBDA_RUNTIME_API"
EXIT_NO_RUNTIME_API = 2


def main() -> int:
    # The registered name must equal the launcher's file name, or Lambda treats the extension
    # as internal and refuses SHUTDOWN (lambda-protocol.md §1.1); bootstrap passes it along.
    name = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_NAME
    address = os.environ.get(RUNTIME_API, "").strip()
    if not address:
        return _refuse(f"{RUNTIME_API} is not set. This program is a Lambda extension: Lambda "
                       "starts it from /opt/extensions with that variable set. To run it "
                       "locally, use the emulator (./dev demo).")
    from ext.main.extensions_api import ExtensionsApi, LambdaApiClient, lifecycle_events

    try:
        api = ExtensionsApi(LambdaApiClient(address))
        api.register(name, lifecycle_events(os.environ))
    except Exception as err:
        from ext.errors import ApiError  # imported by the API client only when it answered so

        if not isinstance(err, (OSError, ValueError, ApiError)):
            raise
        # ApiError: Lambda refused (a name it does not know, too many extensions, too late).
        return _refuse(f"cannot register with the Extensions API at {RUNTIME_API}={address!r}: "
                       f"{getattr(err, 'strerror', None) or err}")
    from ext.main import lifecycle

    return lifecycle.run(api, os.environ)


def _refuse(message: str) -> int:
    """Says why the extension cannot start, in one line instead of a traceback."""
    from ext import diagnostics

    diagnostics.note("ERROR", message)
    return EXIT_NO_RUNTIME_API


def exit_now(code: int) -> None:
    """Exits without the interpreter's teardown, which frees every object the preload loaded:
    ~3 ms of CPU on a whole core (2.6 ms, medians of 15 exits with and without it), ~40 ms of
    wall time at a 128 MB share, more if the CPU period's quota is spent. At shutdown it would
    come after main has used the window up to its margin, and Lambda SIGKILLs what still runs
    at the deadline. Nothing is left to tear down: the children are stopped, the spool's files
    are written as they go."""
    import contextlib  # after a run, loaded long since (the preload needs it)

    for stream in (sys.stdout, sys.stderr):
        # Closed, or its reader gone: nothing more can be said there.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
