"""Enrichment: the indexed fields every event carries, SPLUNK_FIELDS, the cold start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ext import config, errors
from ext.sender import enrichment
from ext.sender.envelope import EnvelopeBuilder

TIME = "2026-10-08T07:30:28.235Z"
RID1 = "11111111-9cdd-4145-b1f6-7c50ef8a2a36"
RID2 = "22222222-9cdd-4145-b1f6-7c50ef8a2a36"
LAMBDA_ENV = {"AWS_REGION": "eu-central-1", "AWS_LAMBDA_FUNCTION_VERSION": "7",
              "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
              "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}
STREAM = "2026/10/08/[7]22be53a8cfde4e68b844f8ec293b2543"
INIT_START = {"initializationType": "provisioned-concurrency", "phase": "init",
              "runtimeVersion": "python:3.12.v38", "functionName": "orders",
              "functionVersion": "7", "instanceId": STREAM, "instanceMaxMemory": 134217728}


def cfg(tmp_path: Path, account_id: str = "123456789012", **extra: str) -> config.Config:
    env = {"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t",
           "SPLUNK_SPOOL_DIR": str(tmp_path / "ext" / "spool"), **LAMBDA_ENV, **extra}
    (tmp_path / "ext").mkdir(exist_ok=True)
    return config.load(env, account_id)


def envelopes(builder: EnvelopeBuilder, *items: tuple[str, object]) -> list[dict[str, object]]:
    body = json.dumps([{"time": TIME, "type": kind, "record": record} for kind, record in items])
    return [json.loads(envelope) for envelope in builder.build(body.encode())]


def fields(envelope: dict[str, object]) -> dict[str, str]:
    value = envelope["fields"]
    assert isinstance(value, dict)
    return value


def test_every_event_carries_the_function_identity_and_environment(tmp_path: Path) -> None:
    builder = EnvelopeBuilder(cfg(tmp_path, SPLUNK_FIELDS="team=payments, env = prod"), "orders")
    out = envelopes(builder, ("platform.initStart", INIT_START), ("function", "hello"),
                    ("extension", "ext line"))
    expected = {
        "function_name": "orders",
        "function_arn": "arn:aws:lambda:eu-central-1:123456789012:function:orders",
        "function_version": "7", "aws_account_id": "123456789012",
        "aws_region": "eu-central-1", "memory_size_mb": "128",
        "architecture": enrichment.architecture(), "log_group": "/aws/lambda/orders",
        "runtime": "python:3.12.v38", "environment_id": STREAM,
        "init_type": "provisioned-concurrency", "team": "payments", "env": "prod",
    }
    for envelope in out:
        got = fields(envelope)
        assert {k: got[k] for k in expected} == expected
    # The extension's own notices carry them too (and so metrics built from the same fields).
    notice = json.loads(builder.notice("splunk-extension.spool-loss", {"dropped_events": 1}))
    assert fields(notice)["function_arn"] == expected["function_arn"]


def test_partitions_follow_the_region() -> None:
    assert [enrichment.partition(r) for r in ("us-east-1", "cn-north-1", "us-gov-west-1",
                                              "us-iso-east-1", "us-isob-east-1")] == [
        "aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"]


def test_without_an_account_id_there_is_no_arn(tmp_path: Path) -> None:
    builder = EnvelopeBuilder(cfg(tmp_path, account_id=""), "orders")
    got = fields(envelopes(builder, ("function", "x"))[0])
    assert "function_arn" not in got and "aws_account_id" not in got
    assert got["aws_region"] == "eu-central-1"


def test_enrichment_can_be_turned_off_but_user_fields_stay(tmp_path: Path) -> None:
    builder = EnvelopeBuilder(cfg(tmp_path, SPLUNK_ENRICH="false", SPLUNK_FIELDS="team=a"),
                              "orders")
    out = envelopes(builder, ("platform.initStart", INIT_START),
                    ("platform.start", {"requestId": RID1}), ("function", "x"))
    assert fields(out[2]) == {"function_name": "orders", "telemetry_type": "function",
                              "request_id": RID1, "team": "a"}


def test_cold_start_marks_the_first_invocation_after_an_init_only(tmp_path: Path) -> None:
    builder = EnvelopeBuilder(cfg(tmp_path), "orders")
    out = envelopes(builder, ("platform.initStart", INIT_START),
                    ("platform.start", {"requestId": RID1}),
                    ("function", f"[INFO]\t{TIME}\t{RID1}\tfirst"),
                    ("platform.runtimeDone", {"requestId": RID1, "status": "success"}),
                    ("platform.start", {"requestId": RID2}),
                    ("function", f"[INFO]\t{TIME}\t{RID2}\tsecond"),
                    ("platform.report", {"requestId": RID1, "metrics": {}}))
    cold = [fields(e).get("cold_start") for e in out]
    assert cold == [None, "true", "true", "true", None, None, "true"]


def test_a_platform_start_without_a_request_id_leaves_the_cold_start_to_the_next(
    tmp_path: Path,
) -> None:
    builder = EnvelopeBuilder(cfg(tmp_path), "orders")
    out = envelopes(builder, ("platform.initStart", INIT_START),
                    ("platform.start", {"version": "7"}),  # no id: no invocation to mark
                    ("platform.start", {"requestId": RID1}),
                    ("function", f"[INFO]\t{TIME}\t{RID1}\tfirst"))
    assert [fields(e).get("cold_start") for e in out] == [None, None, "true", "true"]


def test_what_an_init_taught_survives_a_sender_restart(tmp_path: Path) -> None:
    first = EnvelopeBuilder(cfg(tmp_path), "orders")
    envelopes(first, ("platform.initStart", INIT_START), ("platform.start", {"requestId": RID1}))
    restarted = EnvelopeBuilder(cfg(tmp_path), "orders")
    out = envelopes(restarted, ("platform.report", {"requestId": RID1, "metrics": {}}),
                    ("function", "x"))
    assert fields(out[0])["cold_start"] == "true"
    assert fields(out[0])["environment_id"] == STREAM
    assert fields(out[0])["init_type"] == "provisioned-concurrency"
    assert "cold_start" not in fields(out[1])


def test_a_reset_starts_a_new_cold_invocation(tmp_path: Path) -> None:
    builder = EnvelopeBuilder(cfg(tmp_path), "orders")
    out = envelopes(builder, ("platform.initStart", INIT_START),
                    ("platform.start", {"requestId": RID1}),
                    ("platform.initStart", {**INIT_START, "phase": "invoke"}),
                    ("platform.start", {"requestId": RID2}),
                    ("function", f"[INFO]\t{TIME}\t{RID2}\tafter the reset"),
                    ("function", f"[INFO]\t{TIME}\t{RID1}\tlate line of the first"))
    assert [fields(e).get("cold_start") for e in out] == [None, "true", None, "true", "true",
                                                          None]


def test_lines_without_an_id_follow_the_invocation_and_its_cold_start(tmp_path: Path) -> None:
    # The request id fields of one invocation are made once and reused: they must still change
    # with the invocation, and with the cold start even while the id stays the same.
    builder = EnvelopeBuilder(cfg(tmp_path), "orders")
    out = envelopes(builder, ("platform.initStart", INIT_START),
                    ("platform.start", {"requestId": RID1}), ("function", "a"),
                    ("platform.restoreStart", {"restoreDurationMs": 1}), ("function", "b"),
                    ("platform.start", {"requestId": RID2}), ("function", "c"),
                    ("platform.initStart", {**INIT_START, "phase": "invoke"}), ("function", "d"))
    lines = [(fields(e).get("request_id"), fields(e).get("cold_start"))
             for e in out if e["event"] in ("a", "b", "c", "d")]
    assert lines == [(RID1, "true"), (RID1, None), (RID2, "true"), (None, None)]


def test_splunk_enrich_can_name_the_fields_wanted(tmp_path: Path) -> None:
    builder = EnvelopeBuilder(cfg(tmp_path, SPLUNK_ENRICH="function_arn, environment_id"),
                              "orders")
    out = envelopes(builder, ("platform.initStart", INIT_START),
                    ("platform.start", {"requestId": RID1}))
    assert fields(out[1]) == {
        "function_name": "orders",
        "function_arn": "arn:aws:lambda:eu-central-1:123456789012:function:orders",
        "environment_id": STREAM, "telemetry_type": "platform.start", "request_id": RID1}
    with pytest.raises(errors.ConfigError) as caught:
        cfg(tmp_path, SPLUNK_ENRICH="function_arn,colour")
    assert "SPLUNK_ENRICH='function_arn,colour' is not valid" in caught.value.problems[0]


def test_outside_lambda_no_environment_fields(tmp_path: Path) -> None:
    cfg_ = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t",
                        "SPLUNK_SPOOL_DIR": str(tmp_path / "spool")}, "123456789012")
    builder = EnvelopeBuilder(cfg_, "fn")
    out = envelopes(builder, ("platform.initStart", INIT_START),
                    ("platform.start", {"requestId": RID1}))
    assert fields(out[1]) == {"function_name": "fn", "telemetry_type": "platform.start",
                              "request_id": RID1}
    assert not (tmp_path / enrichment.STATE_FILE).exists()


def test_the_account_id_comes_from_register(tmp_path: Path) -> None:
    from ext.main.extensions_api import ExtensionsApi

    api = ExtensionsApi.__new__(ExtensionsApi)
    api.registration = b'{"functionName":"f","functionVersion":"$LATEST","accountId":"0123"}'
    assert api.account_id() == "0123"
    api.registration = b"not json"
    assert api.account_id() == ""


def test_a_sender_restarted_between_the_init_and_the_first_start_still_marks_the_cold_start(
    tmp_path: Path,
) -> None:
    # The init's telemetry often comes in a batch of its own, delivered and committed before
    # the first invocation's: a sender restarted then never reads the initStart again.
    first = EnvelopeBuilder(cfg(tmp_path), "orders")
    envelopes(first, ("platform.initStart", INIT_START))
    restarted = EnvelopeBuilder(cfg(tmp_path), "orders")
    out = envelopes(restarted, ("platform.start", {"requestId": RID1}),
                    ("function", f"[INFO]\t{TIME}\t{RID1}\tfirst"),
                    ("platform.start", {"requestId": RID2}))
    assert [fields(e).get("cold_start") for e in out] == ["true", "true", None]
    again = EnvelopeBuilder(cfg(tmp_path), "orders")  # and the one after knows it was RID1
    out = envelopes(again, ("platform.report", {"requestId": RID1, "metrics": {}}),
                    ("platform.start", {"requestId": "33333333-9cdd-4145-b1f6-7c50ef8a2a36"}))
    assert [fields(e).get("cold_start") for e in out] == ["true", None]
