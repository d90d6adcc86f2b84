"""Issue 13 end to end in the emulator: enrichment fields with the emulator's values, filters
and masking before the spool, and the drops reported to Splunk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver
from tests.integration.extension_harness import extension_env, platform_events, sandbox

pytestmark = pytest.mark.integration


def test_events_carry_the_emulators_identity_and_filters_apply(
    hec: HecReceiver, local_opt: Path
) -> None:
    env = extension_env(hec, SPLUNK_FLUSH="sync", SPLUNK_FIELDS="team=payments,env=prod",
                        SPLUNK_MIN_LEVEL="WARN", SPLUNK_MASK="x{8,}=>[padding]")
    with sandbox(local_opt, env) as sb:
        first = sb.invoke({"lines": 3, "tag": "cold", "mode": "print"})
        second = sb.invoke({"lines": 2, "tag": "warm", "mode": "print"})
        sb.invoke({"lines": 4, "tag": "info", "mode": "logging"})  # INFO < WARN: dropped
        arn = sb.cfg.arn
        sb.shutdown()
    init = next(e["record"] for e in platform_events(hec) if e["type"] == "platform.initStart")
    assert isinstance(init, dict)
    function = hec.events(sourcetype="aws:lambda:function", limit=1000)
    texts = [json.loads(e.event) for e in function]
    assert texts == ["cold:0:[padding]", "cold:1:[padding]", "cold:2:[padding]",
                     "warm:0:[padding]", "warm:1:[padding]"]
    for event in function:
        assert event.fields["function_arn"] == arn
        assert {k: event.fields[k] for k in (
            "function_name", "function_version", "aws_account_id", "aws_region",
            "memory_size_mb", "log_group", "runtime", "environment_id", "init_type", "team",
            "env")} == {
            "function_name": "demo-function", "function_version": "$LATEST",
            "aws_account_id": "123456789012", "aws_region": "us-east-1", "memory_size_mb": "128",
            "log_group": "/aws/lambda/demo-function", "runtime": init["runtimeVersion"],
            "environment_id": init["instanceId"], "init_type": "on-demand", "team": "payments",
            "env": "prod"}
        expected_cold = "true" if event.fields["request_id"] == first.request_id else None
        assert event.fields.get("cold_start") == expected_cold
    assert {e.fields["request_id"] for e in function} == {first.request_id, second.request_id}
    reports = [e for e in hec.events(sourcetype="aws:lambda:platform", limit=1000)
               if json.loads(e.event)["type"] == "platform.report"]
    assert [e.fields.get("cold_start") for e in reports] == ["true", None, None]
    notices = [json.loads(e.event)["record"] for e in
               hec.events(sourcetype="aws:lambda:extension", limit=1000)
               if json.loads(e.event).get("type") == "splunk-extension.filtered"]
    assert sum(n["by_reason"]["level"] for n in notices) == 4


def test_a_bad_mask_fails_init_naming_the_variable(hec: HecReceiver, local_opt: Path) -> None:
    secret = "hunter2-secret"
    env = extension_env(hec, SPLUNK_MASK=f"({secret}=>x", SPLUNK_FIELDS="team")
    with sandbox(local_opt, env) as sb:
        assert sb.invoke({"lines": 1, "tag": "x"}).status == "failure"
        errors = [x for x in sb.exchanges if "init/error" in str(x.get("path", ""))]
    text = json.dumps(errors)
    assert "SPLUNK_MASK is not valid" in text and "SPLUNK_FIELDS" in text
    assert "Extension.ConfigInvalid" in text
    assert secret not in text  # a rule may quote what it hides
