"""Enrichment's edges: what an init changes, the state file when it is missing, unreadable or
cannot be written, and init records its view cannot read."""

from __future__ import annotations

import json
from pathlib import Path

from ext import config
from ext.sender import enrichment
from ext.sender.envelope import EnvelopeBuilder
from tests.unit.test_enrichment import INIT_START, RID1, RID2, STREAM, cfg, envelopes, fields

# A SnapStart restore resumes the snapshot in another execution environment: its log stream
# sorts before the one the snapshot was taken in, so only "differs" tells that it changed.
RESTORED_STREAM = "2026/10/08/[7]0000000000000000000000000000aaaa"
RESTORE_START = {"runtimeVersion": "python:3.12.v37", "instanceId": RESTORED_STREAM,
                 "initializationType": "snap-start"}


def state_file(tmp_path: Path) -> Path:
    return tmp_path / "ext" / enrichment.STATE_FILE  # beside the spool directory


def test_an_init_that_sorts_before_the_last_one_still_changes_the_fields(tmp_path: Path) -> None:
    builder = EnvelopeBuilder(cfg(tmp_path), "orders")
    out = envelopes(builder, ("platform.initStart", INIT_START), ("function", "before"),
                    ("platform.restoreStart", RESTORE_START), ("function", "after"))
    before, after = fields(out[1]), fields(out[3])
    assert (before["environment_id"], before["runtime"], before["init_type"]) == (
        STREAM, "python:3.12.v38", "provisioned-concurrency")
    assert (after["environment_id"], after["runtime"], after["init_type"]) == (
        RESTORED_STREAM, "python:3.12.v37", "snap-start")


def test_init_seen_is_true_only_when_the_fields_change(tmp_path: Path) -> None:
    # The envelope builder rebuilds every cached prefix on True: an init that teaches nothing
    # new (an invoke-phase retry, the same environment) must not cost that.
    enrich = enrichment.Enrichment(cfg(tmp_path), "orders")
    init = json.dumps(INIT_START).encode()
    assert enrich.init_seen(init) is True
    assert enrich.init_seen(init) is False
    assert enrich.init_seen(json.dumps({**INIT_START, "phase": "invoke"}).encode()) is False
    assert enrich.init_seen(json.dumps({"instanceId": RESTORED_STREAM}).encode()) is True
    outside = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t",
                           "SPLUNK_SPOOL_DIR": str(tmp_path / "o" / "spool")}, "123456789012")
    assert enrichment.Enrichment(outside, "orders").init_seen(init) is False


def test_without_an_init_seen_no_invocation_is_a_cold_start(tmp_path: Path) -> None:
    # No state file yet: the sender knows of no init, so it marks no cold start (one after a
    # missing initStart would be a guess).
    out = envelopes(EnvelopeBuilder(cfg(tmp_path), "orders"),
                    ("platform.start", {"requestId": RID1}), ("function", "x"))
    assert [fields(e).get("cold_start") for e in out] == [None, None]
    assert "environment_id" not in fields(out[1])


def test_an_unreadable_state_file_is_forgotten_not_trusted(tmp_path: Path) -> None:
    state_file(tmp_path).parent.mkdir(parents=True)
    state_file(tmp_path).write_bytes(b'{"cold_pending": tru')  # cut short by a crash
    builder = EnvelopeBuilder(cfg(tmp_path), "orders")
    out = envelopes(builder, ("platform.start", {"requestId": RID1}), ("function", "x"))
    assert [fields(e).get("cold_start") for e in out] == [None, None]
    assert "runtime" not in fields(out[1])
    # Learning starts again from the next init, and is kept.
    envelopes(builder, ("platform.initStart", INIT_START))
    assert json.loads(state_file(tmp_path).read_bytes())["environment_id"] == STREAM


def test_an_init_record_too_deep_for_its_view_still_starts_a_cold_invocation(
    tmp_path: Path,
) -> None:
    # The batch decoder skips a record (msgspec.Raw) that its own view, decoded a few Python
    # frames deeper, can find too deep (measured on 3.11: nested two levels below the batch's
    # limit): a RecursionError there would stop the sender at every restart.
    enrich = enrichment.Enrichment(cfg(tmp_path), "orders")
    enrich.init_seen(json.dumps(INIT_START).encode())
    deep = b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert enrich.init_seen(deep) is False  # learnt nothing, kept what it knew
    assert f'"environment_id":"{STREAM}"'.encode() in enrich.fields()
    enrich.invocation_started(json.dumps(RID1).encode())
    assert enrich.cold_request == json.dumps(RID1).encode()


def test_a_state_file_that_cannot_be_written_costs_only_the_restart_s_memory(
    tmp_path: Path,
) -> None:
    # The file is written beside the spool: here a directory stands where its temporary copy
    # goes, so every write fails (as on a full /tmp).
    state_file(tmp_path).parent.mkdir(parents=True)
    Path(str(state_file(tmp_path)) + ".tmp").mkdir()
    builder = EnvelopeBuilder(cfg(tmp_path), "orders")
    out = envelopes(builder, ("platform.initStart", INIT_START),
                    ("platform.start", {"requestId": RID1}), ("function", "x"),
                    ("platform.start", {"requestId": RID2}))
    assert [fields(e).get("cold_start") for e in out] == [None, "true", "true", None]
    assert fields(out[2])["environment_id"] == STREAM
    assert not state_file(tmp_path).exists()
