"""Builders shared by the sandbox integration tests: layer folders and the third-party extension."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ext.local.sandbox import SandboxConfig

REPO = Path(__file__).resolve().parents[2]
TP_EXT = Path(__file__).resolve().parent / "third_party_ext" / "tp_ext.py"
FUNCTION_DIR = REPO / "function"


def make_layer(root: Path, files: dict[str, str | Path]) -> Path:
    """An /opt stand-in with executables extensions/<name> (a Path is copied, a str written)."""
    ext_dir = root / "extensions"
    ext_dir.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        target = ext_dir / name
        if isinstance(source, Path):
            shutil.copy(source, target)
        else:
            target.write_text(source)
        os.chmod(target, 0o755)
    return root


def tp_config(tmp_path: Path, mode: str = "normal", **overrides: Any) -> tuple[SandboxConfig, Path]:
    """Config running the sample function with the third-party extension as `tp-ext`."""
    out = tmp_path / "tp-out.jsonl"
    layer = make_layer(tmp_path / "opt", {"tp-ext": TP_EXT})
    env = {"TP_OUT": str(out), "TP_MODE": mode}
    fields: dict[str, Any] = {
        "function_dir": FUNCTION_DIR,
        "handler": "handler.handler",
        "opt_dir": layer,
        "env": env,
        "timeout_s": 2.0,
        "limits": False,  # whole cores: timing assertions; limits have their own tests
    }
    fields.update(overrides)
    return SandboxConfig(**fields), out


def read_notes(out: Path) -> list[dict[str, Any]]:
    """The third-party extension's JSON-lines notes."""
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def received_events(notes: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    """Every telemetry event the extension's listener got, with its receipt time."""
    return [(n["t"], ev) for n in notes if n["kind"] == "telemetry" for ev in n["events"]]


def environ(pid: int) -> dict[str, str]:
    """The environment a process was started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat: "T" for a stopped (frozen) process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def holds_within(pred: Callable[[], bool], wait_s: float) -> bool:
    """`pred()` holds now or within `wait_s`, looked at every 10 ms."""
    deadline = time.monotonic() + wait_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
