"""The extension end to end: real bootstrap, real processes, emulator freezes, HEC receiver."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver, HecToken
from tests.integration.conftest import TOKEN
from tests.integration.extension_harness import (
    children_of,
    expected_lines,
    extension_env,
    lines_of,
    platform_events,
    sandbox,
)

# timing: post-runtime bounds and lines in HEC before each freeze (one such test at a time).
pytestmark = [pytest.mark.integration, pytest.mark.timing]


def test_fifty_invocations_everything_exactly_once_and_before_freeze(
    hec: HecReceiver, local_opt: Path
) -> None:
    request_ids = []
    with sandbox(local_opt, extension_env(hec, SPLUNK_FLUSH="sync")) as sb:
        for n in range(50):
            result = sb.invoke(
                {"lines": 1 + (n * 37) % 60, "tag": f"i{n}", "mode": ("print", "logging")[n % 2]}
            )
            assert result.status == "success"
            request_ids.append(result.request_id)
            # The invoke phase has ended, so the sandbox is frozen now: the sync flush
            # policy must have put this invocation's lines in HEC already.
            assert len(lines_of(hec, f"i{n}")) == 1 + (n * 37) % 60
        shutdown = sb.shutdown()
    assert shutdown.extensions["splunk-hec-extension"].exited
    for n in range(50):
        assert lines_of(hec, f"i{n}") == expected_lines(f"i{n}", 1 + (n * 37) % 60)
    kinds = collections.Counter(str(e["type"]) for e in platform_events(hec))
    assert kinds["platform.start"] == kinds["platform.runtimeDone"] == 50
    assert kinds["platform.report"] == 50  # the last one arrives in the shutdown window
    reports = [e for e in platform_events(hec) if e["type"] == "platform.report"]
    assert [r["record"]["requestId"] for r in reports] == request_ids
    assert kinds["platform.initStart"] == 1


def flush_decisions(hec: HecReceiver) -> list[str]:
    """The adaptive decisions the extension logged, forwarded with its own logs, in order."""
    logged = [json.loads(e.event) for e in hec.events(sourcetype="aws:lambda:extension",
                                                       limit=10**6)]
    return [line for line in logged if isinstance(line, str) and "flush-decision" in line]


def test_adaptive_flush_waits_when_sparse_not_when_dense(hec: HecReceiver, local_opt: Path) -> None:
    env = extension_env(hec, SPLUNK_FLUSH="adaptive", SPLUNK_MAX_LATENCY_MS="400",
                        SPLUNK_LOG_LEVEL="INFO", SPLUNK_FORWARD_OWN_LOGS="true")
    with sandbox(local_opt, env) as sb:
        dense = []
        for n in range(12):  # back to back: after the first few, the next thaw comes in time
            dense.append(sb.invoke({"lines": 3, "tag": f"d{n}"}).post_runtime_ms)
        assert lines_of(hec, "d0") == expected_lines("d0", 3)  # the first ones wait
        time.sleep(1.0)  # now sparse: the next thaw is not expected within the bound
        sb.invoke({"lines": 3, "tag": "sparse"})
        assert lines_of(hec, "sparse") == expected_lines("sparse", 3)  # before its freeze
        sb.shutdown()
    for n in range(12):
        assert lines_of(hec, f"d{n}") == expected_lines(f"d{n}", 3)
    decisions = flush_decisions(hec)
    assert len(decisions) == 13
    assert "wait=yes reason=warming-up" in decisions[0]
    assert any("wait=no reason=dense" in d for d in decisions[4:12])
    assert "wait=yes" in decisions[12]


def test_adaptive_flush_waits_for_an_aging_backlog_not_for_the_new_invocation(
    hec: HecReceiver, local_opt: Path
) -> None:
    env = extension_env(hec, SPLUNK_FLUSH="adaptive", SPLUNK_MAX_LATENCY_MS="600",
                        SPLUNK_LOG_LEVEL="INFO", SPLUNK_FORWARD_OWN_LOGS="true")
    with sandbox(local_opt, env) as sb:
        request_ids = [sb.invoke({"lines": 3, "tag": f"d{n}"}).request_id for n in range(11)]
        # The last dense invocation's telemetry (its runtimeDone: what its delivery is counted
        # by) is held until main has decided on the next invocation, which it logs once it has
        # read the sender's answers: main cannot have heard of its delivery by then, however
        # late or early the extension's processes run at the thaw.
        sb.faults.hold_telemetry()
        request_ids.append(sb.invoke({"lines": 3, "tag": "d11"}).request_id)

        def release_once_decided(line: str) -> None:
            decided = re.search(r"flush-decision request_id=(\S+)", line)
            if decided and decided[1] != request_ids[11]:
                sb.faults.release_telemetry()

        sb.on_extension_output(release_once_decided)
        # 0.35 s frozen: the next invocation comes more than that after d11 and the backlog is
        # at least that old, so their sum exceeds the 600 ms bound, while the gap alone fits it
        # (with 250 ms to spare for a slow invocation)
        time.sleep(0.35)
        late = sb.invoke({"lines": 3, "tag": "late"})
        # Released at the decision, the backlog reached HEC before this invocation's freeze
        assert lines_of(hec, "d11") == expected_lines("d11", 3)
        sb.shutdown()
    for n in range(12):
        assert lines_of(hec, f"d{n}") == expected_lines(f"d{n}", 3)
    assert lines_of(hec, "late") == expected_lines("late", 3)  # at the latest with the drain
    decisions = flush_decisions(hec)
    assert f"request_id={late.request_id} wait=yes reason=backlog" in decisions[12]
    assert decisions[12].endswith(f"awaited_request_id={request_ids[11]}")


def test_logging_lines_carry_level_and_request_id(hec: HecReceiver, local_opt: Path) -> None:
    with sandbox(local_opt, extension_env(hec)) as sb:
        result = sb.invoke({"lines": 3, "tag": "lg", "mode": "logging"})
        sb.shutdown()
    events = [
        e for e in hec.events(sourcetype="aws:lambda:function", limit=100) if "lg:" in e.event
    ]
    assert len(events) == 3
    for event in events:
        assert event.fields["request_id"] == result.request_id
        assert event.fields["level"] == "INFO"
        assert event.fields["function_name"] == "demo-function"
        assert event.source == "lambda:demo-function"


def test_hec_outage_then_recovery(hec: HecReceiver, local_opt: Path) -> None:
    budget_ms = 300
    env = extension_env(hec, SPLUNK_FLUSH_BUDGET_MS=str(budget_ms))
    with sandbox(local_opt, env) as sb:
        sb.invoke({"lines": 5, "tag": "before"})
        hec.set_fault("busy")  # until cleared
        for n in range(5):
            result = sb.invoke({"lines": 20, "tag": f"out{n}"})
            assert result.status == "success"
            assert result.post_runtime_ms is not None
            assert result.post_runtime_ms < budget_ms + 150
        assert lines_of(hec, "out0") == []
        hec.clear_faults()
        sb.invoke({"lines": 5, "tag": "after"})
        sb.shutdown()
    for n in range(5):
        assert lines_of(hec, f"out{n}") == expected_lines(f"out{n}", 20)
    assert lines_of(hec, "after") == expected_lines("after", 5)


def test_hec_unreachable_then_recovery(tmp_path: Path, local_opt: Path) -> None:
    port_holder = HecReceiver(tmp_path / "a.sqlite")
    port_holder.start()
    url = port_holder.url
    port_holder.stop()  # nothing listens on this port now
    env = {**extension_env(port_holder), "SPLUNK_HOST": url, "SPLUNK_FLUSH_BUDGET_MS": "200"}
    with sandbox(local_opt, env) as sb:
        for n in range(3):
            result = sb.invoke({"lines": 10, "tag": f"down{n}"})
            assert result.post_runtime_ms is not None and result.post_runtime_ms < 400
        with HecReceiver(tmp_path / "b.sqlite", port=port_holder.port, tokens=_tokens()) as hec:
            hec.start() if not hec.url else None
            sb.invoke({"lines": 1, "tag": "up"})
            sb.shutdown()
            for n in range(3):
                assert lines_of(hec, f"down{n}") == expected_lines(f"down{n}", 10)


def _tokens() -> tuple[HecToken, ...]:
    return (HecToken(name="lambda", value=TOKEN),)


def test_killed_extension_resumes_from_spool_after_reset(hec: HecReceiver, local_opt: Path) -> None:
    with sandbox(
        local_opt,
        extension_env(
            hec,
            DISPATCH_MIN_BATCH_SIZE="100000",
            SPLUNK_DISPATCH_MAX_WAIT_MS="600000",
            SPLUNK_FLUSH="background",
        ),
    ) as sb:
        sb.invoke({"lines": 30, "tag": "k0"})  # spooled, held back by the batch minimum
        killer = threading.Timer(0.3, sb.faults.kill_extension, ("splunk-hec-extension",))
        killer.start()
        crashed = sb.invoke({"lines": 30, "tag": "k1", "sleep_ms": 600})
        killer.join()
        assert crashed.status == "failure"
        again = sb.invoke({"lines": 5, "tag": "k2"})
        assert again.status == "success"
        sb.shutdown()
    assert lines_of(hec, "k0") == expected_lines("k0", 30)
    assert lines_of(hec, "k1") == expected_lines("k1", 30)
    assert lines_of(hec, "k2") == expected_lines("k2", 5)


def test_timeout_reset_keeps_everything(hec: HecReceiver, local_opt: Path) -> None:
    with sandbox(local_opt, extension_env(hec), timeout_s=1.0) as sb:
        sb.invoke({"lines": 4, "tag": "t0"})
        timed_out = sb.invoke({"lines": 4, "tag": "t1", "timeout": True})
        assert timed_out.status == "timeout"
        sb.invoke({"lines": 4, "tag": "t2"})
        sb.shutdown()
    for tag in ("t0", "t1", "t2"):
        assert lines_of(hec, tag) == expected_lines(tag, 4)
    statuses = [
        e["record"]["status"]
        for e in platform_events(hec)
        if e["type"] == "platform.runtimeDone"
    ]
    assert "timeout" in statuses


def test_bad_config_fails_init_with_clear_message(hec: HecReceiver, local_opt: Path) -> None:
    env = extension_env(hec, DISPATCH_MIN_BATCH_SIZE="lots")
    del env["SPLUNK_HOST"]
    with sandbox(local_opt, env) as sb:
        result = sb.invoke({"lines": 1, "tag": "x"})
        assert result.status == "failure"
        errors = [x for x in sb.exchanges if "init/error" in str(x.get("path", ""))]
    assert errors, "the extension must report init/error"
    text = json.dumps(errors)
    assert "SPLUNK_HOST" in text and "DISPATCH_MIN_BATCH_SIZE" in text
    assert "Extension.ConfigInvalid" in text


def test_bad_config_disable_mode_function_still_serves(hec: HecReceiver, local_opt: Path) -> None:
    env = extension_env(hec, SPLUNK_ON_CONFIG_ERROR="disable", SPLUNK_VERIFY_TLS="perhaps")
    with sandbox(local_opt, env) as sb:
        for n in range(3):
            assert sb.invoke({"lines": 1, "tag": f"d{n}"}).status == "success"
        assert sb.shutdown().extensions["splunk-hec-extension"].exited
    assert hec.count() == 0


def test_token_never_in_any_output(hec: HecReceiver, local_opt: Path, tmp_path: Path) -> None:
    env = extension_env(hec, SPLUNK_LOG_LEVEL="DEBUG", SPLUNK_FORWARD_OWN_LOGS="true")
    log_file = tmp_path / "exchanges.jsonl"
    with sandbox(local_opt, env, exchange_log=log_file) as sb:
        hec.set_fault("auth", count=2, code=4)
        sb.invoke({"lines": 2, "tag": "tok"})
        hec.set_fault("invalid_event", count=1, code=6, index=0)
        sb.invoke({"lines": 2, "tag": "tok2"})
        sb.shutdown()
        spool_root = Path(sb.tmp_dir)
    captured = [log_file.read_text()]
    captured += [e.event for e in hec.events(limit=10**6)]
    captured += [p.read_text(errors="replace") for p in spool_root.rglob("*.jsonl")]
    own = [e.event for e in hec.events(sourcetype="aws:lambda:extension", limit=10**6)]
    assert any("HEC is not accepting events" in line for line in own)
    for text in captured:
        assert TOKEN not in text


def test_killed_listener_and_sender_are_restarted_without_loss(
    hec: HecReceiver, local_opt: Path
) -> None:
    with sandbox(local_opt, extension_env(hec)) as sb:
        for n in range(3):
            sb.invoke({"lines": 10, "tag": f"r{n}"})
        main_pid = sb.extension_pids()["splunk-hec-extension"]
        children = children_of(main_pid)
        assert len(children) == 2  # the listener and the sender
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        for n in range(3, 6):
            assert sb.invoke({"lines": 10, "tag": f"r{n}"}).status == "success"
        assert len(children_of(main_pid)) == 2
        assert sb.shutdown().extensions["splunk-hec-extension"].exited
    for n in range(6):
        assert lines_of(hec, f"r{n}") == expected_lines(f"r{n}", 10)


def test_flush_wait_is_bounded_by_the_budget_when_the_listener_is_dead(
    hec: HecReceiver, local_opt: Path
) -> None:
    # Issue 16: with the listener gone, no runtimeDone is ever spooled; the flush must give up
    # at its budget, not at the invocation deadline. The listener is restarted at the next
    # event and the telemetry queued on the socket is then delivered.
    env = extension_env(hec, SPLUNK_FLUSH="sync", SPLUNK_FLUSH_BUDGET_MS="300")
    with sandbox(local_opt, env, timeout_s=10.0) as sb:
        sb.invoke({"lines": 2, "tag": "a0"})
        main_pid = sb.extension_pids()["splunk-hec-extension"]
        listener = min(children_of(main_pid))  # forked first
        os.kill(listener, signal.SIGKILL)
        result = sb.invoke({"lines": 2, "tag": "a1"})
        assert result.post_runtime_ms is not None and result.post_runtime_ms < 300 + 250
        assert sb.invoke({"lines": 2, "tag": "a2"}).status == "success"
        sb.shutdown()
    for tag in ("a0", "a1", "a2"):
        assert lines_of(hec, tag) == expected_lines(tag, 2)


def test_sync_waits_for_the_end_of_an_invocation_longer_than_the_budget(
    hec: HecReceiver, local_opt: Path
) -> None:
    # The budget (300 ms) counts from the runtime's end, not from INVOKE: lines written after
    # 1 s of an invocation are in HEC before its freeze.
    env = extension_env(hec, SPLUNK_FLUSH="sync", SPLUNK_FLUSH_BUDGET_MS="300")
    with sandbox(local_opt, env) as sb:
        for n in range(3):
            result = sb.invoke({"lines": 3, "tag": f"long{n}", "sleep_ms": 1000, "late": 4})
            assert result.status == "success"
            assert len(lines_of(hec, f"long{n}-late")) == 4, f"invocation {n}"
        sb.shutdown()
