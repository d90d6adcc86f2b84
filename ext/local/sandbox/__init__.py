"""Local Lambda sandbox emulator: Runtime, Extensions and Telemetry APIs with real processes.

Library entry points: Sandbox, SandboxConfig, InvokeResult, ShutdownResult (docs/emulator.md).
Local tooling only: never imported by the extension core, never shipped in the layer.
"""

from __future__ import annotations

from ext.local.sandbox.model import InvokeResult, ProcessExit, SandboxConfig, ShutdownResult
from ext.local.sandbox.sandbox import Sandbox

__all__ = ["InvokeResult", "ProcessExit", "Sandbox", "SandboxConfig", "ShutdownResult"]
