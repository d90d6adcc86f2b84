"""Every error status of the emulated APIs (lambda-protocol 1.1-1.4, 2.1, 4.1), real processes."""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ext.local.sandbox import InvokeResult, Sandbox, SandboxConfig
from tests.integration.sandbox_helpers import FUNCTION_DIR, make_layer, read_notes, tp_config

pytestmark = pytest.mark.integration

# A stdlib extension that waits for a "go" file before registering or before its first next.
GATE = """#!/usr/bin/env python3
import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension/"
def wait():
    while not os.path.exists(os.environ["GATE_GO"]):
        time.sleep(0.005)
if os.environ["GATE_MODE"] == "before_register":
    wait()
req = urllib.request.Request(api + "register", data=b'{"events": ["INVOKE", "SHUTDOWN"]}',
                             headers={"Lambda-Extension-Name": "gate"}, method="POST")
ext_id = urllib.request.urlopen(req).headers["Lambda-Extension-Identifier"]
wait()
while True:
    hdr = {"Lambda-Extension-Identifier": ext_id}
    req = urllib.request.Request(api + "event/next", headers=hdr)
    if json.loads(urllib.request.urlopen(req).read())["eventType"] == "SHUTDOWN":
        break
"""


def call(
    sb: Sandbox, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One request to the emulated API; returns (status, decoded JSON body)."""
    conn = http.client.HTTPConnection(sb.api_address, timeout=10)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, data, headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def wait_until(pred: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def gated_sandbox(tmp_path: Path, mode: str) -> tuple[Sandbox, Path]:
    go = tmp_path / "go"
    cfg = SandboxConfig(
        function_dir=FUNCTION_DIR,
        handler="handler.handler",
        opt_dir=make_layer(tmp_path / "opt", {"gate": GATE}),
        env={"GATE_GO": str(go), "GATE_MODE": mode},
        limits=False,
    )
    return Sandbox(cfg), go


def invoke_in_background(sb: Sandbox) -> tuple[threading.Thread, list[InvokeResult]]:
    results: list[InvokeResult] = []
    thread = threading.Thread(target=lambda: results.append(sb.invoke({"lines": 1})))
    thread.start()
    return thread, results


NEXT = "/2020-01-01/extension/event/next"
REGISTER = "/2020-01-01/extension/register"
TELEMETRY = "/2022-07-01/telemetry"


def test_identifier_and_closed_phase_errors(tmp_path: Path) -> None:
    cfg, _ = tp_config(tmp_path)
    with Sandbox(cfg) as sb:
        ok = sb.invoke({"lines": 1})
        ext = sb.cp.by_name("tp-ext")
        assert ext is not None
        auth = {"Lambda-Extension-Identifier": ext.ext_id}
        assert call(sb, "GET", NEXT) == (
            403,
            {
                "errorMessage": "Missing Lambda-Extension-Identifier header",
                "errorType": "Extension.MissingExtensionIdentifier",
            },
        )
        assert (
            call(sb, "GET", NEXT, headers={"Lambda-Extension-Identifier": "nope"})[1]["errorType"]
            == "Extension.InvalidExtensionIdentifier"
        )
        unknown = str(uuid.uuid4())
        status, body = call(sb, "GET", NEXT, headers={"Lambda-Extension-Identifier": unknown})
        assert (status, body["errorType"], body["errorMessage"]) == (
            403,
            "Extension.UnknownExtensionIdentifier",
            f"Unknown extension {unknown}",
        )
        status, body = call(sb, "PUT", TELEMETRY, {"schemaVersion": "2022-12-13"}, auth)
        assert (status, body["errorType"]) == (403, "Telemetry.SubscriptionClosed")
        status, body = call(sb, "POST", REGISTER, {"events": []}, {"Lambda-Extension-Name": "late"})
        assert (status, body["errorType"]) == (403, "Extension.RegistrationClosed")
        status, body = call(sb, "POST", "/2020-01-01/extension/init/error", None, auth)
        assert (status, body["errorType"]) == (403, "Extension.MissingHeader")
        status, body = call(
            sb, "POST", f"/2018-06-01/runtime/invocation/{uuid.uuid4()}/response", b"{}"
        )
        assert (status, body["errorType"]) == (400, "InvalidRequestID")
        status, body = call(
            sb, "POST", f"/2018-06-01/runtime/invocation/{ok.request_id}/response", b"{}"
        )
        assert (status, body["errorType"]) == (403, "InvalidStateTransition")  # answered already
        assert call(sb, "GET", "/nope")[0] == 404
        # The sandbox still works after all that.
        assert sb.invoke({"lines": 1}).status == "success"
    assert any(x["status"] == 403 for x in sb.exchanges)


BAD_SUBSCRIPTIONS = [
    {"types": ["platform"], "destination": {"protocol": "HTTP", "URI": "http://sandbox:4243"}},
    {
        "schemaVersion": "2022-12-13",
        "types": [],
        "destination": {"protocol": "HTTP", "URI": "http://sandbox:4243"},
    },
    {
        "schemaVersion": "2022-12-13",
        "types": ["bogus"],
        "destination": {"protocol": "HTTP", "URI": "http://sandbox:4243"},
    },
    {
        "schemaVersion": "2022-12-13",
        "types": ["platform"],
        "destination": {"protocol": "HTTP", "URI": "http://example.com:4243"},
    },
    {
        "schemaVersion": "2022-12-13",
        "types": ["platform"],
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain"},
    },
    {
        "schemaVersion": "2022-12-13",
        "types": ["platform"],
        "destination": {"protocol": "HTTP", "URI": "http://sandbox:9001"},
    },
    {
        "schemaVersion": "2022-12-13",
        "types": ["platform"],
        "destination": {"protocol": "TCP", "port": 4243},
    },
    {
        "schemaVersion": "2022-12-13",
        "types": ["platform"],
        "buffering": {"maxItems": 10},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox:4243"},
    },
    {
        "schemaVersion": "2022-12-13",
        "types": ["platform"],
        "buffering": {"timeoutMs": 24},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox:4243"},
    },
]


def test_subscription_validation_errors_during_init(tmp_path: Path) -> None:
    sb, go = gated_sandbox(tmp_path, "before_next")
    with sb:
        thread, results = invoke_in_background(sb)
        wait_until(lambda: sb.cp.by_name("gate") is not None)
        gate = sb.cp.by_name("gate")
        assert gate is not None
        auth = {"Lambda-Extension-Identifier": gate.ext_id}
        for body in BAD_SUBSCRIPTIONS:
            status, reply = call(sb, "PUT", TELEMETRY, body, auth)
            assert (status, reply["errorType"]) == (400, "ValidationError"), body
        assert call(sb, "PUT", TELEMETRY, b"{not json", auth)[0] == 400
        good = {
            "schemaVersion": "2022-12-13",
            "types": ["platform"],
            "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:1/"},
        }
        assert call(sb, "PUT", TELEMETRY, good, auth) == (200, "OK")
        assert (
            call(sb, "PUT", TELEMETRY, good)[1]["errorType"]
            == "Extension.MissingExtensionIdentifier"
        )
        go.touch()
        thread.join(20)
    assert results[0].status == "success"


def test_registration_errors_and_extension_limit(tmp_path: Path) -> None:
    sb, go = gated_sandbox(tmp_path, "before_register")
    with sb:
        thread, results = invoke_in_background(sb)
        wait_until(lambda: "gate" in sb.extension_pids())

        def register(name: str, body: Any) -> tuple[int, Any]:
            return call(sb, "POST", REGISTER, body, {"Lambda-Extension-Name": name} if name else {})

        assert register("", {"events": []})[0] == 403
        assert register("x", b"[not json")[1]["errorType"] == "InvalidRequestFormat"
        assert register("x", {"configurationKeys": ["a"]})[1]["errorType"] == "InvalidRequestFormat"
        assert register("x", {"events": ["BOGUS"]})[1]["errorType"] == "Extension.InvalidEventType"
        # A name that is no launched file registers an internal extension: no SHUTDOWN for it.
        assert (
            register("not-gate", {"events": ["INVOKE", "SHUTDOWN"]})[1]["errorType"]
            == "Extension.InvalidEventType"
        )
        for n in range(10):
            assert register(f"internal-{n}", {"events": ["INVOKE"]})[0] == 200
        status, body = register("internal-10", {"events": []})
        assert (status, body) == (
            403,
            {
                "errorMessage": "Extension limit (10) reached",
                "errorType": "Extension.TooManyExtensions",
            },
        )
        go.touch()  # the gate's own registration is refused too, it exits: init fails
        thread.join(20)
    assert results[0].status == "failure" and results[0].error_type == "Extension.Crash"


@pytest.mark.parametrize(
    ("mode", "error_type"),
    [("wrong_name", "Extension.Crash"), ("init_error", "Extension.InitError")],
)
def test_extension_init_failures(tmp_path: Path, mode: str, error_type: str) -> None:
    cfg, out = tp_config(tmp_path, mode)
    seen: list[tuple[str, dict[str, Any]]] = []
    with Sandbox(cfg) as sb:
        sb.on_platform_event(lambda t, r: seen.append((t, r)))
        result = sb.invoke({"lines": 1})
    assert result.status == "failure" and result.error_type == error_type
    done = [r for t, r in seen if t == "platform.initRuntimeDone"]
    assert done[0]["status"] == "error" and done[0]["errorType"] == error_type
    if mode == "wrong_name":
        notes = read_notes(out)
        assert notes[0]["status"] == 403
        assert notes[0]["body"]["errorType"] == "Extension.InvalidEventType"
    else:
        # The sandbox may kill the extension before it notes the reply: read the exchange log.
        sent = [x for x in sb.exchanges if x["path"].endswith("/extension/init/error")]
        assert [(x["status"], x["response"]) for x in sent] == [(202, {"status": "OK"})]


def test_extension_exit_error_resets(tmp_path: Path) -> None:
    cfg, _ = tp_config(tmp_path, "exit_error")
    with Sandbox(cfg) as sb:
        result = sb.invoke({"lines": 1})
        shutdowns = sb.inspect()["shutdowns"]
    assert result.status == "failure" and result.error_type == "Extension.ExitError"
    assert shutdowns[0]["reason"] == "failure"
    sent = [x for x in sb.exchanges if x["path"].endswith("/extension/exit/error")]
    assert [(x["who"], x["status"]) for x in sent] == [("tp-ext", 202)]


def test_an_init_after_a_reset_runs_within_the_invocations_timeout(tmp_path: Path) -> None:
    # AWS: an init in the invoke phase runs "with the configured function timeout"; RIE runs it
    # in doInvoke. The INVOKE's deadline counts from the invoke's arrival, the init included,
    # and an init longer than the timeout times the invocation out.
    cfg, out = tp_config(tmp_path, timeout_s=2.0,
                         env={"TP_OUT": str(tmp_path / "tp-out.jsonl"), "TP_MODE": "normal",
                              "SAMPLE_INIT_MS": "1200"})
    with Sandbox(cfg) as sb:
        sb.init()
        assert sb.invoke({"crash": True}).reset_reason == "failure"
        arrived_ms = time.time() * 1000
        again = sb.invoke({"lines": 1})
        assert again.status == "success" and again.init_duration_ms is not None
        assert again.init_duration_ms >= 1200
        [*_, invoke] = [n["event"] for n in read_notes(out)
                        if n["kind"] == "event" and n["event"].get("eventType") == "INVOKE"]
        assert abs(invoke["deadlineMs"] - (arrived_ms + 2000)) < 150  # not after the init
        sb.shutdown()
    with Sandbox(dataclasses.replace(cfg, timeout_s=1.0)) as sb:  # shorter than the init
        sb.init()
        assert sb.invoke({"crash": True}).reset_reason == "failure"
        started = time.monotonic()
        late = sb.invoke({"lines": 1})
        assert (late.status, late.error_type) == ("timeout", "Sandbox.Timeout")
        assert time.monotonic() - started < 1.6  # the timeout, not the init's 10 s
        assert sb.inspect()["inits"][-1]["phase"] == "invoke"
        sb.shutdown()
