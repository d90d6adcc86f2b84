"""Exception hierarchy of the extension core.

Every error carries what its catcher needs to decide (retryable, status, variable name) and
pickles cleanly, so it can cross a process boundary as a value.
"""

from __future__ import annotations

# Error-type strings reported to the Extensions API (Category.Reason, lambda-protocol.md §1.3).
CONFIG_INVALID = "Extension.ConfigInvalid"
STARTUP_FAILED = "Extension.StartupFailed"
RUNTIME_FAILED = "Extension.RuntimeFailure"


class ExtError(Exception):
    """Base of every error raised by the extension core."""


class ConfigError(ExtError):
    """One or more environment variables are invalid; `problems` names each variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str]]]:
        return (ConfigError, (self.problems,))


class ApiError(ExtError):
    """A Lambda API (Extensions or Telemetry) answered with an unexpected status."""

    def __init__(self, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{path} answered {status}: {body[:300]!r}")
        self.path = path
        self.status = status
        self.body = body

    def __reduce__(self) -> tuple[type[ApiError], tuple[str, int, bytes]]:
        return (ApiError, (self.path, self.status, self.body))
