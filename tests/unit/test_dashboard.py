"""The dashboard (ext/local/dashboard.py): definition in docs is current, its SPL uses only
documented metric names, and its panels render from a receiver store."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ext.local.dashboard import PANELS, definition, render
from ext.local.hec.model import ParsedEvent
from ext.local.hec.store import EventStore, RequestRecord

DOCS = Path(__file__).resolve().parents[2] / "docs"
METRIC_NAME = re.compile(r"\b(aws\.lambda\.[a-z0-9_]+|splunk\.extension\.[a-z0-9_.]+[a-z])\b")


def test_committed_definition_is_generated_from_the_panels() -> None:
    committed = json.loads((DOCS / "dashboard" / "lambda-dashboard.json").read_text())
    assert committed == definition()
    assert set(committed["visualizations"]) == {f"viz_{p.key}" for p in PANELS}


def test_docs_show_every_panel_spl_and_use_only_documented_metrics() -> None:
    page = (DOCS / "dashboard.md").read_text()
    documented = (DOCS / "metrics.md").read_text()
    for panel in PANELS:
        assert panel.spl in page
        for name in METRIC_NAME.findall(panel.spl):
            short = name.removeprefix("splunk.extension.")
            assert f"`{name}`" in documented or f"`{short}`" in documented, name


def test_every_panel_renders_from_a_store(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "hec.db")
    events = []
    for n in range(6):
        fields = {"function_name": "f", "metric_name:aws.lambda.invocations": 1,
                  "metric_name:aws.lambda.duration_ms": 10.0 * n,
                  "metric_name:aws.lambda.memory_size_mb": 128,
                  "metric_name:aws.lambda.max_memory_used_mb": 60 + n}
        events.append(ParsedEvent(100.0 + n, "h", "s", "aws:lambda:metrics", "m",
                                  json.dumps(fields), '"metric"', "metric"))
    store.record(RequestRecord(store.next_request_id(), 0.0, "POST", "/", 200, 0, 1, "t", None,
                               None), events)
    store.close()
    paths = render(tmp_path / "hec.db", tmp_path / "png")
    assert [p.name for p in paths] == [f"dashboard_{p.key}.png" for p in PANELS]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
