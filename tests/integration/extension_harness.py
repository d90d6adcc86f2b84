"""Runs the real extension (bootstrap launcher, real processes) in the emulator against HEC."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ext.local.hec import HecReceiver
from ext.local.sandbox import Sandbox, SandboxConfig
from tests.integration.conftest import TOKEN

ROOT = Path(__file__).resolve().parents[2]


def extension_env(hec: HecReceiver, **extra: str) -> dict[str, str]:
    return {
        "SPLUNK_HOST": hec.url,
        "SPLUNK_HEC_TOKEN": TOKEN,
        "SPLUNK_EXTENSION_PYTHON": sys.executable,
        **extra,
    }


@contextmanager
def sandbox(
    opt: Path, env: Mapping[str, str], tmp_dir: Path | None = None, **cfg: Any
) -> Iterator[Sandbox]:
    """The sample function in an emulated environment; `cfg`: more SandboxConfig fields."""
    config = SandboxConfig(
        opt_dir=opt,
        env=dict(env),
        tmp_dir=tmp_dir,
        **{
            "function_dir": ROOT / "function",
            "handler": "handler.handler",
            "limits": False,  # whole cores: timing assertions; limits have their tests
            **cfg,
        },
    )
    with Sandbox(config) as sb:
        yield sb


def lines_of(hec: HecReceiver, tag: str | None = None) -> list[str]:
    """Function log lines stored in HEC, in arrival order, optionally those of one tag."""
    found = []
    for event in hec.events(sourcetype="aws:lambda:function", limit=10**7):
        text = json.loads(event.event)
        if not isinstance(text, str):
            text = str(text.get("message", ""))
        text = text.split("\t")[-1].rstrip("\n")  # logging-module lines: [LEVEL]\t<time>\t<id>\t
        if tag is None or text.startswith(f"{tag}:"):
            found.append(text)
    return found


def platform_events(hec: HecReceiver) -> list[dict[str, Any]]:
    """The platform events HEC stored, parsed (JSON: the tests index into them as they know
    their shape)."""
    return [json.loads(e.event) for e in hec.events(sourcetype="aws:lambda:platform", limit=10**7)]


def self_metrics(hec: HecReceiver) -> list[dict[str, Any]]:
    """The self-metrics events HEC stored (no metrics index: extension events), in arrival
    order; each body holds the values under `metrics` (docs/metrics.md)."""
    bodies = [json.loads(e.event) for e in hec.events(sourcetype="aws:lambda:extension",
                                                      limit=10**6)]
    return [b for b in bodies if isinstance(b, dict)
            and b.get("type") == "splunk-extension.self-metrics"]


def expected_lines(tag: str, count: int, size: int = 32) -> list[str]:
    prefix = [f"{tag}:{n}:" for n in range(count)]
    return [p + "x" * max(0, size - len(p)) for p in prefix]


def children_of(pid: int) -> list[int]:
    """The pids of `pid`'s child processes (from /proc), zombies included."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found
