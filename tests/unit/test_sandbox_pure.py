"""Pure parts of the emulator: subscription validation, frame parsing, records, env, time format."""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.local.sandbox import platform_records as records
from ext.local.sandbox import procs, wire
from ext.local.sandbox.subscription import SubscriptionError, parse_subscription

FAST = settings(max_examples=60, deadline=None)


def sub_body(**overrides: object) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": "2022-12-13",
        "types": ["platform", "function"],
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/x"},
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_valid_subscription_parsed() -> None:
    sub = parse_subscription(sub_body())
    assert (sub.host, sub.port, sub.path) == ("sandbox.localdomain", 4243, "/x")
    assert sub.buffering.timeout_ms == 25 and sub.types == ("platform", "function")


@FAST
@given(items=st.integers(0, 20000), size=st.integers(0, 2_000_000), timeout=st.integers(0, 40000))
def test_buffering_bounds(items: int, size: int, timeout: int) -> None:
    body = sub_body(buffering={"maxItems": items, "maxBytes": size, "timeoutMs": timeout})
    valid = 1000 <= items <= 10000 and 262144 <= size <= 1048576 and 25 <= timeout <= 30000
    if valid:
        assert parse_subscription(body).buffering.max_bytes == size
    else:
        with pytest.raises(SubscriptionError):
            parse_subscription(body)


@FAST
@given(
    host=st.sampled_from(["sandbox", "sandbox.localdomain", "localhost", "127.0.0.1", "x"]),
    port=st.integers(1, 65535),
)
def test_destination_host_and_port(host: str, port: int) -> None:
    body = sub_body(destination={"protocol": "HTTP", "URI": f"http://{host}:{port}"})
    if host in wire.SANDBOX_HOSTS and port != 9001:
        assert parse_subscription(body).port == port
    else:
        with pytest.raises(SubscriptionError):
            parse_subscription(body)


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0xA55A0003, 0xA55A000F, 0xA55A0012]),
            st.integers(0, 2**63),
            st.binary(max_size=300),
        ),
        max_size=8,
    ),
    st.integers(0, 40),
)
def test_split_frames_round_trip(frames: list[tuple[int, int, bytes]], cut: int) -> None:
    data = b"".join(
        t.to_bytes(4, "big") + len(m).to_bytes(4, "big") + us.to_bytes(8, "big") + m
        for t, us, m in frames
    )
    # A partial trailing frame stays unconsumed.
    parsed, used = procs.split_frames(data + b"\xa5" * min(cut, 15))
    assert used == len(data)
    assert [(t, m) for t, _, m in parsed] == [(t, m) for t, _, m in frames]


@FAST
@given(st.floats(0, 4_000_000_000, allow_nan=False))
def test_iso_clock_matches_reference(epoch: float) -> None:
    text = wire.IsoClock().format(epoch)
    assert text == wire.iso_ms(epoch)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)


def test_log_records_text_and_json() -> None:
    assert records.log_record(b'{"level":"INFO","m":1}', False) == '{"level":"INFO","m":1}'
    assert records.log_record(b'{"level":"INFO","m":1}', True) == {"level": "INFO", "m": 1}
    assert records.log_record(b"{broken", True) == "{broken"
    assert records.frame_record(0xA55A000E, b'{"a":1}\n') == {"a": 1}
    assert records.frame_record(0xA55A000F, b"[INFO]\tx\n") == "[INFO]\tx\n"


class Outcome(TypedDict):
    """The arguments of records.report that the billing does not depend on."""

    status: str
    error_type: str | None
    spans: list[dict[str, Any]]
    trace: dict[str, str]


def test_report_billing_includes_init() -> None:
    common: Outcome = {"status": "success", "error_type": None, "spans": [], "trace": {}}
    rec = records.report(
        "r",
        duration_ms=1233.96,
        memory_mb=256,
        max_memory_used_mb=123,
        init_duration_ms=463.512,
        **common,
    )
    assert (
        rec["metrics"]["billedDurationMs"] == 1698 and rec["metrics"]["initDurationMs"] == 463.512
    )
    warm = records.report(
        "r", duration_ms=0.4, memory_mb=128, max_memory_used_mb=10, init_duration_ms=None, **common
    )
    assert warm["metrics"]["billedDurationMs"] == 1 and "initDurationMs" not in warm["metrics"]


def test_extension_env_strips_runtime_only_vars() -> None:
    env = {
        "AWS_LAMBDA_RUNTIME_API": "x",
        "_HANDLER": "h",
        "LAMBDA_TASK_ROOT": "/t",
        "_LAMBDA_TELEMETRY_LOG_FD": "3",
        "TMPDIR": "/s",
        "CUSTOM": "1",
    }
    assert procs.extension_env(env) == {
        "AWS_LAMBDA_RUNTIME_API": "x",
        "TMPDIR": "/s",
        "CUSTOM": "1",
    }


def test_shutdown_event_reason_is_lower_case() -> None:
    body = json.loads(records.shutdown_event("spindown", 5))
    assert body == {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 5}
