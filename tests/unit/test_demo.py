"""The demo's reading of the extension's per-invocation flush decision (ext/local/demo.py)."""

from __future__ import annotations

from ext.local.demo import FLUSH_W, flush_decision

RID = "8c3f6a0e-1d2b-4c5d-9e8f-0a1b2c3d4e5f"


def test_decision_is_the_newest_flush_line_of_the_request_without_prefix_and_id() -> None:
    lines = [
        f"[splunk-hec-extension] INFO main: flush {RID} wait (sparse: next thaw in 9.1 s)",
        "[splunk-hec-extension] INFO main: flush 00000000-0000-4000-8000-000000000000 background",
        f"[splunk-hec-extension] INFO main: flush {RID} committed in 31 ms",
    ]
    assert flush_decision(lines, RID) == "flush committed in 31 ms"


def test_no_decision_logged_shows_a_dash() -> None:
    lines = [f"[splunk-hec-extension] WARNING sender: HEC answered 503 for {RID}", "ready"]
    assert flush_decision(lines, RID) == "-"
    assert flush_decision(lines, "") == "-"


def test_a_long_decision_is_cut_to_the_column() -> None:
    line = f"x INFO main: flush {RID} " + "because " * 20
    assert len(flush_decision([line], RID)) == FLUSH_W
