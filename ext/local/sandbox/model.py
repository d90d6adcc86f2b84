"""Public value types of the emulator library: SandboxConfig, InvokeResult, ShutdownResult.

Plain frozen dataclasses, no behaviour beyond serialisation; used by tests, benchmarks and the CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ext.local.sandbox import platform_records, wire


@dataclass(frozen=True)
class SandboxConfig:
    """How to build one emulated execution environment."""

    function_dir: Path
    handler: str
    opt_dir: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    function_name: str = "demo-function"
    memory_mb: int = 128
    timeout_s: float = 3.0
    log_format: str = "Text"  # "Text" | "JSON" -> AWS_LAMBDA_LOG_FORMAT
    tmp_dir: Path | None = None
    init_timeout_s: float = 10.0
    python: str = sys.executable
    runtime: str = "python"  # or a custom runtime: "provided.al2023" (see custom_runtime.py)
    region: str = "us-east-1"
    account_id: str = "123456789012"
    exchange_log: Path | None = None  # also write every API exchange as JSONL here
    telemetry_buffer_limit_bytes: int = 32 * 1024 * 1024  # per subscriber, then logsDropped
    log_fd_framing: bool = True  # pass _LAMBDA_TELEMETRY_LOG_FD to awslambdaric
    shutdown_budget_ms: int = 2000  # with external extensions (lambda-protocol 3.4)
    runtime_shutdown_ms: int = 300  # runtime's share before SIGKILL
    # Lambda's CPU share (memory_mb / 1769 of a core) and memory limit through a cgroup, where
    # the machine allows (root); see limits.py. False: run on the machine's whole cores.
    limits: bool = True
    # Lambda Managed Instances (docs/emulator.md): extensions register for SHUTDOWN only, the
    # Telemetry API takes schema 2025-01-29 only, no freeze, no platform.runtimeDone.
    managed_instances: bool = False
    # AWS_LAMBDA_MAX_CONCURRENCY in that mode; 16 is Python's default per vCPU on LMI (AWS
    # docs). Informational only: the emulator still hands out one invocation at a time.
    max_concurrency: int = 16
    # SnapStart (docs/emulator.md): init ends in a snapshot (the frozen sandbox), which the first
    # invoke or Sandbox.restore() resumes as a new environment with the platform.restore* records.
    snap_start: bool = False

    def __post_init__(self) -> None:
        if self.snap_start and self.managed_instances:
            # Lambda offers SnapStart for on-demand functions only, not on Managed Instances.
            raise ValueError("snap_start and managed_instances are mutually exclusive")

    @property
    def initialization_type(self) -> str:
        """AWS_LAMBDA_INITIALIZATION_TYPE, and the init records' initializationType."""
        if self.managed_instances:
            return wire.LMI_INIT_TYPE
        if self.snap_start:
            return wire.SNAP_START_INIT_TYPE
        return platform_records.INIT_TYPE

    @property
    def arn(self) -> str:
        """Function ARN as the Runtime API reports it."""
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"


@dataclass(frozen=True)
class InvokeResult:
    """Outcome of one invoke phase.

    status: "success" | "error" (handler raised, no reset) | "timeout" (reset) | "failure"
    (runtime or extension crash, or failed init: reset).
    """

    request_id: str
    status: str
    response: bytes
    error: dict[str, Any] | None
    error_type: str | None
    runtime_duration_ms: float | None
    post_runtime_ms: float | None
    duration_ms: float
    init_duration_ms: float | None
    billed_duration_ms: int
    max_memory_used_mb: int
    reset_reason: str | None = None
    restore_duration_ms: float | None = None  # SnapStart: the first invoke after a restore

    @classmethod
    def from_failed_init(cls, init: dict[str, Any]) -> InvokeResult:
        """The result of an invoke whose (re-)init failed; `init` is its inspect() record."""
        return cls._failed_phase(init, init_duration_ms=init["duration_ms"])

    @classmethod
    def from_failed_restore(cls, restore: dict[str, Any]) -> InvokeResult:
        """The result of an invoke whose SnapStart restore failed; `restore` is its record."""
        return cls._failed_phase(restore, restore_duration_ms=restore["duration_ms"])

    @classmethod
    def _failed_phase(cls, phase: dict[str, Any], **durations: float) -> InvokeResult:
        # No invocation ran: the environment failed before it and was reset.
        return cls(
            request_id="",
            status="timeout" if phase["status"] == "timeout" else "failure",
            response=b"",
            error=None,
            error_type=phase["error_type"],
            runtime_duration_ms=None,
            post_runtime_ms=None,
            duration_ms=phase["duration_ms"],
            init_duration_ms=durations.get("init_duration_ms"),
            billed_duration_ms=0,
            max_memory_used_mb=0,
            reset_reason="failure",
            restore_duration_ms=durations.get("restore_duration_ms"),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (response decoded as UTF-8 with replacement)."""
        data = asdict(self)
        data["response"] = self.response.decode("utf-8", "replace")
        return data


@dataclass(frozen=True)
class ProcessExit:
    """How one sandbox process ended during a shutdown."""

    name: str
    kind: str
    exited: bool  # ended by itself before the deadline
    killed: bool  # SIGKILLed by the emulator
    exit_code: int | None
    exit_ms: float | None  # from the start of the shutdown to its exit


@dataclass(frozen=True)
class ShutdownResult:
    """Outcome of a shutdown (spindown) or of a reset's shutdown."""

    reason: str
    deadline_ms: int
    duration_ms: float
    processes: tuple[ProcessExit, ...]

    @property
    def extensions(self) -> dict[str, ProcessExit]:
        """Exit info of each external extension by name."""
        return {p.name: p for p in self.processes if p.kind == "extension"}

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable view."""
        return asdict(self)
