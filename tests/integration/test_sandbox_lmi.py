"""Lambda Managed Instances mode end to end: real awslambdaric, the third-party extension in its
`lmi` mode (SHUTDOWN only, schema 2025-01-29), no freeze, no platform.runtimeDone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ext.local.sandbox import InvokeResult, Sandbox, ShutdownResult
from tests.integration.sandbox_helpers import (
    environ,
    holds_within,
    process_state,
    read_notes,
    received_events,
    tp_config,
)

pytestmark = pytest.mark.integration

LMI_TYPE = "lambda-managed-instances"
WAIT_S = 5.0


@dataclass
class Run:
    """What one LMI sandbox run left behind, for the tests below to read."""

    results: list[InvokeResult]
    shutdown: ShutdownResult
    notes: list[dict[str, Any]]
    platform: list[tuple[str, dict[str, Any]]]  # what the emulator emitted, in order
    env: dict[str, dict[str, str]]  # "runtime" / "extension": their environment
    states_between: list[str]  # the extension's and the runtime's state after invoke 1
    beats_between: tuple[int, int]  # the heartbeat before and after a pause with no invoke
    report_seen_between: bool  # invoke 1's platform.report reached the listener before invoke 2
    inspect: dict[str, Any]




def beat(out: Path) -> int:
    path = Path(str(out) + ".beat")
    return int(path.read_text().split()[0]) if path.exists() else 0



def report_received(out: Path, request_id: str) -> bool:
    return any(
        ev["type"] == "platform.report" and ev["record"].get("requestId") == request_id
        for _, ev in received_events(read_notes(out))
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp_path = tmp_path_factory.mktemp("lmi")
    cfg, out = tp_config(tmp_path, "lmi", managed_instances=True)
    platform: list[tuple[str, dict[str, Any]]] = []
    with Sandbox(cfg) as sb:
        sb.on_platform_event(lambda kind, record: platform.append((kind, record)))
        first = sb.invoke({"lines": 2, "tag": "one"})
        ext_pid = sb.extension_pids()["tp-ext"]
        runtime_pid = sb.runtime_pid or 0
        env = {"runtime": environ(runtime_pid), "extension": environ(ext_pid)}
        states = [process_state(ext_pid), process_state(runtime_pid)]
        before = beat(out)
        holds_within(lambda: beat(out) > before + 5, WAIT_S)
        after = beat(out)
        seen = holds_within(lambda: report_received(out, first.request_id), WAIT_S)
        second = sb.invoke({"lines": 2, "tag": "two"})
        # The last report is delivered before the shutdown starts: nothing is paused.
        holds_within(lambda: report_received(out, second.request_id), WAIT_S)
        inspect = sb.inspect()
        shutdown = sb.shutdown()
    return Run(
        results=[first, second],
        shutdown=shutdown,
        notes=read_notes(out),
        platform=platform,
        env=env,
        states_between=states,
        beats_between=(before, after),
        report_seen_between=seen,
        inspect=inspect,
    )


def test_invocations_succeed_without_waiting_for_extensions(run: Run) -> None:
    assert [r.status for r in run.results] == ["success", "success"]
    assert all(r.post_runtime_ms == 0.0 for r in run.results)
    assert [i["phase"] for i in run.inspect["inits"]] == ["init"]
    assert run.inspect["inits"][0]["extensions"]["tp-ext"]["events"] == ["SHUTDOWN"]


def test_register_with_invoke_is_refused(run: Run) -> None:
    registers = [n for n in run.notes if n["kind"] == "register"]
    internal, with_invoke, shutdown_only = registers
    assert (internal["name"], internal["status"]) == ("not-tp-ext", 403)
    assert internal["body"]["errorType"] == "Extension.InvalidEventType"
    assert with_invoke["events"] == ["INVOKE", "SHUTDOWN"]
    assert (with_invoke["status"], with_invoke["body"]["errorType"]) == (
        403,
        "Extension.InvalidEventType",
    )
    assert (shutdown_only["events"], shutdown_only["status"]) == (["SHUTDOWN"], 200)


def test_only_schema_2025_01_29_subscribes(run: Run) -> None:
    subs = [
        (n["schema"], n["result"][0], n["result"][2]) for n in run.notes if n["kind"] == "subscribe"
    ]
    assert [(schema, status) for schema, status, _ in subs] == [
        ("2022-12-13", 400),
        ("2025-01-29", 200),
    ]
    assert subs[0][2]["errorType"] == "ValidationError"


def test_platform_events_of_an_invocation(run: Run) -> None:
    kinds = [kind for kind, _ in run.platform]
    assert "platform.runtimeDone" not in kinds
    for result in run.results:
        mine = [k for k, rec in run.platform if rec.get("requestId") == result.request_id]
        assert mine == ["platform.start", "platform.report"]
    received = [ev["type"] for _, ev in received_events(run.notes)]
    assert "platform.runtimeDone" not in received
    assert received.count("platform.start") == 2 and received.count("platform.report") == 2
    inits = [rec for kind, rec in run.platform if kind.startswith("platform.init")]
    assert len(inits) == 3
    assert all(rec["initializationType"] == LMI_TYPE for rec in inits)
    extension = next(rec for kind, rec in run.platform if kind == "platform.extension")
    assert extension["events"] == ["SHUTDOWN"]


def test_no_freeze_between_invocations(run: Run) -> None:
    assert "T" not in run.states_between  # neither the extension nor the runtime is stopped
    before, after = run.beats_between
    assert after > before + 5  # the extension kept running with no invocation under way
    assert run.report_seen_between  # and its listener got invoke 1's report before invoke 2
    assert not run.inspect["frozen"]
    assert all(i["frozen_at"] is None for i in run.inspect["invocations"])


def test_shutdown_reaches_the_extension(run: Run) -> None:
    events = [n["event"] for n in run.notes if n["kind"] == "event"]
    assert [(e["eventType"], e.get("shutdownReason")) for e in events] == [("SHUTDOWN", "spindown")]
    assert run.shutdown.reason == "spindown" and run.shutdown.deadline_ms > 0
    ext = run.shutdown.extensions["tp-ext"]
    assert ext.exited and not ext.killed
    assert any(n["kind"] == "exit" for n in run.notes)


def test_environment_names_the_mode(run: Run) -> None:
    ext_env, rt_env = run.env["extension"], run.env["runtime"]
    assert ext_env["AWS_LAMBDA_INITIALIZATION_TYPE"] == LMI_TYPE
    assert int(ext_env["AWS_LAMBDA_MAX_CONCURRENCY"]) >= 1
    assert rt_env["AWS_LAMBDA_INITIALIZATION_TYPE"] == LMI_TYPE
