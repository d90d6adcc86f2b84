"""Lambda Managed Instances mode of the emulator, the parts without processes: the Extensions API's
register refusals, the Telemetry API's schema version and the init records (RIE-LMI, AWS docs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ext.local.sandbox import SandboxConfig
from ext.local.sandbox import platform_records as records
from ext.local.sandbox.control_plane import ControlPlane
from ext.local.sandbox.exchanges import ExchangeLog
from ext.local.sandbox.httpd import Request
from ext.local.sandbox.subscription import SubscriptionError, parse_subscription
from ext.local.sandbox.telemetry import TelemetryBus

REGISTER = "/2020-01-01/extension/register"
TELEMETRY = "/2022-07-01/telemetry"
LMI_TYPE = "lambda-managed-instances"


def control_plane(managed_instances: bool) -> ControlPlane:
    """A control plane during the extension init phase with one launched file, `ext`."""
    cfg = SandboxConfig(
        function_dir=Path("."), handler="h.h", managed_instances=managed_instances, limits=False
    )
    cp = ControlPlane(cfg, TelemetryBus(), ExchangeLog())
    cp.launched = {"ext"}
    cp.registration_open = True
    cp.subscription_open = True
    return cp


def register(cp: ControlPlane, name: str, events: list[str]) -> tuple[int, Any]:
    body = json.dumps({"events": events}).encode()
    resp = cp.handle(Request("POST", REGISTER, {"lambda-extension-name": name}, body))
    return resp.status, json.loads(resp.body)


def sub_body(schema: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": schema,
            "types": ["platform", "function", "extension"],
            "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
            "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/"},
        }
    ).encode()


@pytest.mark.parametrize("events", [["INVOKE"], ["INVOKE", "SHUTDOWN"]])
def test_lmi_external_extension_may_not_register_for_invoke(events: list[str]) -> None:
    cp = control_plane(True)
    status, body = register(cp, "ext", events)
    assert (status, body["errorType"]) == (403, "Extension.InvalidEventType")
    assert cp.extensions == {}  # refused: no registration, the extension may try again


@pytest.mark.parametrize("events", [["SHUTDOWN"], []])
def test_lmi_external_extension_registers_without_invoke(events: list[str]) -> None:
    cp = control_plane(True)
    status, body = register(cp, "ext", events)
    assert status == 200 and body["functionName"] == "demo-function"
    ext = cp.by_name("ext")
    assert ext is not None and ext.external and ext.events == events


def test_lmi_internal_extension_may_register_for_no_event() -> None:
    # RIE-LMI registerInternalAgent: "No events allowed for internal extensions".
    cp = control_plane(True)
    assert register(cp, "inside", ["INVOKE"])[1]["errorType"] == "Extension.InvalidEventType"
    assert register(cp, "inside", [])[0] == 200


def test_default_mode_still_registers_invoke() -> None:
    cp = control_plane(False)
    assert register(cp, "ext", ["INVOKE", "SHUTDOWN"])[0] == 200
    assert register(cp, "inside", ["INVOKE"])[0] == 200


@pytest.mark.parametrize("schema", ["2022-07-01", "2022-12-13"])
def test_lmi_subscription_refuses_older_schema_versions(schema: str) -> None:
    cp = control_plane(True)
    assert register(cp, "ext", ["SHUTDOWN"])[0] == 200
    ext = cp.by_name("ext")
    assert ext is not None
    auth = {"lambda-extension-identifier": ext.ext_id}
    resp = cp.handle(Request("PUT", TELEMETRY, auth, sub_body(schema)))
    assert resp.status == 400
    assert json.loads(resp.body)["errorType"] == "ValidationError"
    assert schema in json.loads(resp.body)["errorMessage"]


def test_lmi_subscription_accepts_2025_01_29() -> None:
    cp = control_plane(True)
    register(cp, "ext", ["SHUTDOWN"])
    ext = cp.by_name("ext")
    assert ext is not None
    auth = {"lambda-extension-identifier": ext.ext_id}
    try:
        resp = cp.handle(Request("PUT", TELEMETRY, auth, sub_body("2025-01-29")))
        assert (resp.status, resp.body) == (200, b'"OK"')
    finally:
        cp.bus.drop_subscribers(0.5)


def test_schema_versions_of_each_mode() -> None:
    for schema in ("2022-07-01", "2022-12-13", "2025-01-29"):
        assert parse_subscription(sub_body(schema)).schema_version == schema
    lmi = frozenset({"2025-01-29"})
    assert parse_subscription(sub_body("2025-01-29"), lmi).schema_version == "2025-01-29"
    with pytest.raises(SubscriptionError, match="2022-12-13"):
        parse_subscription(sub_body("2022-12-13"), lmi)


def test_init_records_carry_the_initialization_type() -> None:
    ident = records.FunctionIdentity("f", "$LATEST", "arn", "i", 128, "python:emulated")
    assert records.init_start(ident, "init")["initializationType"] == "on-demand"
    assert records.init_start(ident, "init", LMI_TYPE)["initializationType"] == LMI_TYPE
    done = records.init_runtime_done("init", "success", None, LMI_TYPE)
    assert done == {"initializationType": LMI_TYPE, "phase": "init", "status": "success"}
    report = records.init_report("init", "success", 1.5, None, LMI_TYPE)
    assert report["initializationType"] == LMI_TYPE and report["metrics"] == {"durationMs": 1.5}
    assert records.init_report("init", "success", 1.5, None)["initializationType"] == "on-demand"
