"""Sample Lambda function for tests, benchmarks and the demo (handler name `handler.handler`).

Runs inside the runtime (awslambdaric) process. The event payload says what to do:
{"lines": N, "size": bytes_per_line, "mode": "print"|"logging"|"json", "sleep_ms": 0,
 "late": 0, "raise": false, "timeout": false, "crash": false, "oom": false, "tag": "t",
 "stamp": false}. "late": N more print lines tagged "<tag>-late" after the sleep.
With "oom" it allocates past its memory size (AWS_LAMBDA_FUNCTION_MEMORY_SIZE), as a leaking
function does: Lambda (and the emulator) kills it and reports Runtime.OutOfMemory. Every line starts
with "<tag>:<n>:" so tests can match what was written with what arrived; with "stamp" the prefix
is "<tag>:<n>:@<epoch seconds at the write>:" (latency benchmarks).
SnapStart runtime hooks on request, through $SAMPLE_AFTER_RESTORE: "log" prints a line after a
restore, "fail" raises there (the restore fails with Runtime.AfterRestoreError).
An init as real functions have one, through $SAMPLE_INIT_LINES (lines "init:<n>:" printed as the
module loads) and $SAMPLE_INIT_MS (then that long loading: imports, clients, a model).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

logger = logging.getLogger("sample")
logger.setLevel(logging.INFO)


def line_text(tag: str, number: int, size: int, stamp: bool = False) -> str:
    """The n-th line of an invocation: recognisable prefix padded with 'x' to `size` chars."""
    prefix = f"{tag}:{number}:@{time.time():.6f}:" if stamp else f"{tag}:{number}:"
    return prefix + "x" * max(0, size - len(prefix))


def write_lines(mode: str, tag: str, count: int, size: int, stamp: bool = False) -> None:
    """Write `count` lines through print, the logging module, or as JSON objects on stdout."""
    if mode == "logging":
        for n in range(count):
            logger.info(line_text(tag, n, size, stamp))
    elif mode == "json":
        out = sys.stdout
        for n in range(count):
            doc = {"level": "INFO", "tag": tag, "n": n, "message": line_text(tag, n, size, stamp)}
            out.write(json.dumps(doc) + "\n")
    else:
        for n in range(count):
            print(line_text(tag, n, size, stamp))


def after_restore_log() -> None:
    """After-restore hook that leaves a trace in the function's output."""
    print("sample: after restore")


def after_restore_fail() -> None:
    """After-restore hook that fails the restore."""
    raise RuntimeError("requested after-restore failure")


def register_restore_hook(mode: str) -> None:
    """Register the hook $SAMPLE_AFTER_RESTORE asks for (awslambdaric runs them on snap-start)."""
    hooks = {"log": after_restore_log, "fail": after_restore_fail}
    if mode in hooks:
        # Only then: snapshot_restore_py comes with awslambdaric, not with every Python.
        from snapshot_restore_py import register_after_restore

        register_after_restore(hooks[mode])


register_restore_hook(os.environ.get("SAMPLE_AFTER_RESTORE", ""))


def load(lines: int, millis: int) -> None:
    """The module's load: `lines` log lines, then `millis` of work."""
    write_lines("print", "init", lines, 60)
    time.sleep(millis / 1000)


load(int(os.environ.get("SAMPLE_INIT_LINES", "0")), int(os.environ.get("SAMPLE_INIT_MS", "0")))

OOM_STEP_BYTES = 8 << 20


def exhaust_memory() -> None:
    """Allocates (and touches) memory in steps up to four times the memory size; the limit
    kills the process long before. Without any limit it stops there and returns."""
    size_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    hoard = []
    for _ in range(4 * (size_mb << 20) // OOM_STEP_BYTES):
        hoard.append(b"\x01" * OOM_STEP_BYTES)  # written, so resident
        time.sleep(0.005)  # lets the emulator's guard see it grow, as the cgroup would
    hoard.clear()


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Entry point called by awslambdaric."""
    spec = event if isinstance(event, dict) else {}
    tag = str(spec.get("tag", "t"))
    count = int(spec.get("lines", 0))
    write_lines(
        str(spec.get("mode", "print")),
        tag,
        count,
        int(spec.get("size", 32)),
        bool(spec.get("stamp", False)),
    )
    if spec.get("sleep_ms"):
        time.sleep(float(spec["sleep_ms"]) / 1000)
    if spec.get("late"):  # lines at the end of a long invocation
        write_lines("print", tag + "-late", int(spec["late"]), 32, False)
    if spec.get("crash"):
        sys.stdout.flush()
        os._exit(3)
    if spec.get("oom"):
        exhaust_memory()
    if spec.get("timeout"):
        time.sleep(context.get_remaining_time_in_millis() / 1000 + 5)
    if spec.get("raise"):
        raise ValueError(f"requested failure {tag}")
    return {
        "tag": tag,
        "lines": count,
        "request_id": context.aws_request_id,
        "tmp": os.environ.get("TMPDIR", ""),
    }
