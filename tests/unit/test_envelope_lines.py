"""Envelope details the broad tests do not pin: the extension's own notices, the shape of a text
log line's `[LEVEL]\\t<time>\\t<request id>\\t` prefix, and where the request id comes from."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext import config
from ext.sender.envelope import EnvelopeBuilder

RID = "79b5e81f-9cdd-4145-b1f6-7c50ef8a2a36"
T = "2026-10-08T07:30:29.443Z"


def builder(**extra: str) -> EnvelopeBuilder:
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t", **extra})
    return EnvelopeBuilder(cfg, "my-fn")


def line(b: EnvelopeBuilder, record: object, kind: str = "function") -> dict[str, object]:
    (raw,) = b.build(json.dumps([{"time": T, "type": kind, "record": record}]).encode())
    parsed: dict[str, object] = json.loads(raw)
    return parsed


def fields(envelope: dict[str, object]) -> dict[str, object]:
    value = envelope["fields"]
    assert isinstance(value, dict)
    return value


def test_a_notice_is_an_extension_event_stamped_now() -> None:
    before = time.time()
    raw = builder(SPLUNK_INDEX="ops").notice("spool.loss", {"records": 3, "reason": "full"})
    after = time.time()
    env = json.loads(raw)
    assert before - 0.001 <= env["time"] <= after + 0.001
    assert env["event"] == {"type": "spool.loss", "records": 3, "reason": "full"}
    assert (env["sourcetype"], env["source"], env["host"], env["index"]) == (
        "aws:lambda:extension", "lambda:my-fn", "my-fn", "ops",
    )
    assert env["fields"] == {"function_name": "my-fn", "telemetry_type": "spool.loss"}
    assert raw.startswith(b'{"time":') and raw.endswith(b"}}")


@pytest.mark.parametrize(
    ("record", "level", "request_id"),
    [
        (f"[INFO]\t{T}\t{RID}\tdone\n", "INFO", RID),
        (f"[WARNING]\t{T}\t{RID}\tslow\n", "WARNING", RID),
        ("[INFO]xyz plain text", None, None),  # no tab after the bracket: not the prefix
        ("[INFO] spaced", None, None),
        ("[NOTALEVELATALL]\tx", None, None),  # the bracket closes too far for a level
        (f"[INFO]\t{T}\tshort-id\tx", "INFO", None),
        (f"[INFO]\t{T}\t{RID}x", "INFO", None),  # no tab after the id
        (f"[INFO]\t{T}\t{RID.replace('-', '_')}\tx", "INFO", None),  # not a uuid shape
        (f"[INFO]\t{T}\t{RID.replace('-', ' ', 1)}\tx", "INFO", None),
        (f"[INFO]\t{T}{' ' * 40}\t{RID}\tx", "INFO", None),  # id tab beyond the time's width
        ("[ERROR]\tno more tabs", "ERROR", None),
        (f"[INFO]\t\t{RID}\tx", "INFO", RID),  # the id is the field after the time field
        # 36 bytes of the escaped record that end inside an escape (a backslash, then "t")
        (f"[INFO]\t{T}\tabcdefgh-{'a' * 26}\\tail", "INFO", None),
        (f"[INFO]\t{T}\\t{RID}\tx", "INFO", None),  # a backslash and a t, not a tab, before it
    ],
)
def test_the_logging_prefix_of_a_text_line(
    record: str, level: str | None, request_id: str | None
) -> None:
    env = line(builder(), record)
    assert fields(env).get("level") == level
    assert fields(env).get("request_id") == request_id
    assert env["event"] == record.removesuffix("\n")


# After a uuid-like start, characters JSON escapes (two or six bytes in the record) and the
# backslash-t of a literal backslash: the 36 bytes where a request id would be end anywhere,
# in the middle of an escape too.
_ID_START = st.text(st.sampled_from("0123456789abcdef"), min_size=8, max_size=8)
_ESCAPED = st.text(st.sampled_from('\\ta"\t\x01'), min_size=20, max_size=36)


@settings(max_examples=400, deadline=None)
@given(_ID_START, _ESCAPED, st.sampled_from(["", T, "\\"]))
def test_any_text_line_makes_a_json_envelope_whose_request_id_is_a_field_of_it(
    start: str, rest: str, time_field: str
) -> None:
    record = f"[INFO]\t{time_field}\t{start}-{rest}\tend"
    env = line(builder(), record)  # raises if the envelope is not JSON
    assert env["event"] == record
    request_id = fields(env).get("request_id")
    assert request_id is None or f"\t{request_id}\t" in record


def test_only_one_trailing_newline_is_stripped_and_an_escaped_backslash_stays() -> None:
    b = builder()
    assert line(b, "two\n\n")["event"] == "two\n"
    assert line(b, "path\\n")["event"] == "path\\n"  # a backslash then n, not a newline
    assert line(b, "path\\\n")["event"] == "path\\"
    assert line(b, "\\\\n")["event"] == "\\\\n"
    assert line(b, "crlf\r\n")["event"] == "crlf"  # a Windows line end, whole
    assert line(b, "cr\r")["event"] == "cr\r"  # a carriage return alone is the line's own
    assert line(b, "path\\r\n")["event"] == "path\\r"  # a backslash then r
    assert line(b, "two\r\n\r\n")["event"] == "two\r\n"


def test_a_line_without_its_own_id_takes_the_invocations() -> None:
    b = builder()
    line(b, {"requestId": RID, "version": "$LATEST"}, "platform.start")
    assert fields(line(b, "plain"))["request_id"] == RID
    other = RID.replace("7", "8")
    assert fields(line(b, f"[INFO]\t{T}\t{other}\tx"))["request_id"] == other
    assert fields(line(b, {"requestId": other, "level": "INFO"}))["request_id"] == other
    assert fields(line(b, {"level": 3}))["request_id"] == RID  # a non-string level is ignored
    assert "level" not in fields(line(b, {"level": 3}))
    assert fields(line(b, {"msg": "x"}, "extension"))["request_id"] == RID
    line(b, {"phase": "init"}, "platform.initStart")
    assert "request_id" not in fields(line(b, "after a new init"))


def test_platform_events_carry_their_own_request_id_only() -> None:
    b = builder()
    report = line(b, {"requestId": RID, "metrics": {"durationMs": 1.5}}, "platform.report")
    assert fields(report)["request_id"] == RID
    assert b.request_id is None  # a report does not open an invocation
    no_id = line(b, {"requestId": "", "version": "$LATEST"}, "platform.start")
    assert "request_id" not in fields(no_id)
    fault = line(b, {"requestId": RID, "status": "error"}, "platform.telemetrySubscription")
    assert "request_id" not in fields(fault)
    assert fields(fault)["telemetry_type"] == "platform.telemetrySubscription"
    assert b.build(b"[]") == []


def test_a_sourcetype_override_applies_to_every_kind() -> None:
    b = builder(SPLUNK_SOURCETYPE="mine")
    for kind, record in (("function", "x"), ("extension", "y"), ("platform.report", {})):
        assert line(b, record, kind)["sourcetype"] == "mine"
