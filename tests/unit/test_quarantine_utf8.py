"""Repairing an envelope HEC refused for invalid UTF-8 (ext.sender.quarantine.repaired_utf8):
the listener keeps records as msgspec.Raw, which msgspec checks for JSON but not for UTF-8, so
such bytes reach HEC, whose /event parser refuses them (code 6). Pure, no sockets."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext import config, schema
from ext.local.hec.body_parser import ParseContext, parse_event_body
from ext.local.hec.model import HecToken
from ext.sender.envelope import EnvelopeBuilder
from ext.sender.quarantine import repaired_utf8

TIME = b'"2026-11-26T12:00:00.000Z"'


def json_string(data: bytes) -> bytes:
    """`data` as the inside of a JSON string as a producer that does not check UTF-8 writes it:
    the bytes JSON needs escaped are escaped (they are ASCII), every other byte as it is."""
    out = bytearray()
    for byte in data:
        if byte == 0x22:
            out += b'\\"'
        elif byte == 0x5C:
            out += b"\\\\"
        elif byte < 0x20:
            out += b"\\u%04x" % byte
        else:
            out.append(byte)
    return bytes(out)


def admitted(record: bytes) -> msgspec.Raw:
    """`record` as the listener admits it and the sender reads it: a Raw, checked for JSON."""
    payload = b'[{"time":' + TIME + b',"type":"function","record":' + record + b"}]"
    schema.intake_batch.decode(payload)  # the listener's check: raises if it would refuse it
    [event] = schema.telemetry_batch.decode(payload)
    return event.record


def envelope(record: msgspec.Raw) -> bytes:
    """An envelope msgspec encodes around a Raw record, as HEC receives it."""
    return msgspec.json.encode({"time": 1791444629.47, "host": "fn", "sourcetype": "st",
                                "fields": {"function_name": "fn"}, "event": record})


def hec_refuses(body: bytes) -> int | None:
    """The embedded receiver's code for `body` (None: accepted)."""
    token = HecToken(name="t", value="v", indexes=("main",), default_index="main")
    return parse_event_body(body, ParseContext(token, "10.0.0.1", 10**6)).error_code


@given(st.binary(max_size=64))
def test_any_bytes_in_a_string_come_out_as_one_valid_json_envelope_with_u_fffd(
    data: bytes,
) -> None:
    for record in (b'"' + json_string(data) + b'"',  # a text line
                   b'{"' + json_string(data) + b'":["' + json_string(data) + b'"]}'):  # JSON
        sent = envelope(admitted(record))
        repaired = repaired_utf8(sent)
        text = data.decode("utf-8", "replace")
        try:
            data.decode()
        except UnicodeDecodeError:
            assert repaired is not None
            assert hec_refuses(sent) == 6
        else:
            assert repaired is None  # valid UTF-8: HEC refused it for something else
            continue
        assert repaired.decode() == sent.decode("utf-8", "replace")  # only the bad bytes changed
        event = msgspec.json.decode(repaired)["event"]
        assert event in (text, {text: [text]})
        assert hec_refuses(repaired) is None


@pytest.mark.parametrize("inside", [
    b"\xff",  # a lone invalid byte right before the closing quote
    b"\xe2\x82",  # a sequence cut short right before it
    b"\xe2\\\\",  # before an escaped backslash
    b"\xe2\\\"",  # before an escaped quote
    b"\xf0\\n",  # before an escape's backslash
    b"\\\\\xff",  # after one
    b"\xed\xa0\x80",  # a surrogate, UTF-8-encoded (not valid UTF-8)
    b"\xc0\xaf",  # overlong
    b"\x80\x80\x80\x80",  # continuation bytes alone
])
def test_an_invalid_byte_beside_a_quote_or_backslash_leaves_the_json_whole(inside: bytes) -> None:
    sent = envelope(admitted(b'"' + inside + b'"'))
    repaired = repaired_utf8(sent)
    assert repaired is not None
    expected = msgspec.json.decode(b'"' + inside.decode("utf-8", "replace").encode() + b'"')
    assert msgspec.json.decode(repaired)["event"] == expected
    assert "\ufffd" in expected


def test_the_claim_non_ascii_is_admitted_only_inside_a_string() -> None:
    # Why the repair cannot break the JSON: msgspec's check of a Raw record (the listener's
    # intake) refuses a byte >= 0x80 anywhere in it but inside a string (and between an
    # escape's backslash and its letter), at every position.
    record = rb'{"a":[1,true,null,"x",-2.5e3],"b":{},"c\"":"\\"}'  # escapes: \" and \\
    for at in range(len(record) + 1):
        try:
            admitted(record[:at] + b"\xff" + record[at:])
        except msgspec.DecodeError:
            assert string_state(record[:at]) != "inside", at
        else:
            assert string_state(record[:at]) == "inside", at


def string_state(prefix: bytes) -> str:
    """Where the end of `prefix` (of valid JSON) is: outside a string, inside one, or right
    after an escape's backslash."""
    state = "outside"
    for byte in prefix:
        if state == "escape":
            state = "inside"
        elif byte == 0x22:
            state = "inside" if state == "outside" else "outside"
        elif byte == 0x5C and state == "inside":
            state = "escape"
    return state


def test_the_envelope_builders_envelopes_repair_with_level_and_fields() -> None:
    # The builder copies the record's bytes into the envelope, and a text line's `[LEVEL]`
    # into its indexed fields: both strings, both repaired; HEC then takes the envelope.
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"})
    builder = EnvelopeBuilder(cfg, "fn")
    payload = (b'[{"time":' + TIME + b',"type":"function",'
               b'"record":"[INF\xff]\\t2026-11-26T12:00:00.000Z\\tbad \xe2\x82\\n"},'
               b'{"time":' + TIME + b',"type":"function","record":{"msg":"x\xff","level":"INFO"}}]')
    sent = builder.build(payload)
    assert [hec_refuses(e) for e in sent] == [6, 6]
    repaired = [repaired_utf8(e) for e in sent]
    assert all(r is not None and hec_refuses(r) is None for r in repaired)
    first, second = (msgspec.json.decode(r or b"") for r in repaired)
    assert first["fields"]["level"] == "INF\ufffd"
    assert first["event"] == "[INF\ufffd]\t2026-11-26T12:00:00.000Z\tbad \ufffd"
    assert second["event"] == {"msg": "x\ufffd", "level": "INFO"}


@pytest.mark.parametrize("sent", [
    b'{"event":"fine"}',  # valid: refused for something else, nothing to repair
    b'{"event":"\xff}',  # not JSON once repaired either (never built by the sender): no resend
    b'{"event":"\xff"}{"event":"x"}',  # two values: not one envelope
    b'["\xff"]',  # not an object
    b'{"event":' + b"[" * 5000 + b'"\xff"' + b"]" * 5000 + b"}",  # deeper than a decode goes
])
def test_nothing_to_resend_when_the_repair_would_not_help(sent: bytes) -> None:
    assert repaired_utf8(sent) is None
