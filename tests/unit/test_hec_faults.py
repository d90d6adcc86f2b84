"""Fault board, ack ledger, auth/channel/gzip helpers and CLI token specs of the embedded HEC
receiver: pure, no sockets."""

from __future__ import annotations

import base64
import gzip

import pytest

from ext.local.hec.acks import AckLedger
from ext.local.hec.cli import parse_token_spec
from ext.local.hec.faults import DATA, HEALTH, FaultBoard, FaultMode, make_fault
from ext.local.hec.model import HecToken
from ext.local.hec.protocol import HEC_CODES, HecReply, hec_reply
from ext.local.hec.wire import BodyError, authenticate, check_channel, inflate

TOKENS = {
    "good": HecToken(name="g", value="good"),
    "off": HecToken(name="o", value="off", enabled=False),
    "qs": HecToken(name="q", value="qs", allow_query_auth=True),
}


def codes_of(result: HecToken | HecReply) -> int | str:
    return result.name if isinstance(result, HecToken) else int(result.code or 0)


def test_code_table_matches_hec_md() -> None:
    assert HEC_CODES[9] == (503, "Server is busy")
    assert HEC_CODES[24][0] == 200 and HEC_CODES[26][0] == 429
    assert (
        hec_reply(6, event_number=3).body
        == b'{"text":"Invalid data format","code":6,"invalid-event-number":3}'
    )
    assert hec_reply(0, ack_id=5).body == b'{"text":"Success","code":0,"ackId":5}'


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        (None, None, 2),
        (None, "Splunk good", "g"),
        (None, "splunk   good ", "g"),
        (None, "Bearer good", 3),
        (None, "Splunk", 3),
        (None, "Basic " + base64.b64encode(b"x:good").decode(), "g"),
        (None, "Basic " + base64.b64encode(b"nocolon").decode(), 3),
        (None, "Splunk nope", 4),
        (None, "Splunk off", 1),
        ("good", "Splunk good", 16),
        ("nope", "Splunk good", 4),
        ("qs", None, "q"),
    ],
)
def test_authenticate(query: str | None, header: str | None, expected: int | str) -> None:
    assert codes_of(authenticate(query, header, TOKENS.get)) == expected


@pytest.mark.parametrize(
    ("channel", "required", "code"),
    [
        (None, False, None),
        (None, True, 10),
        ("", False, 10),
        ("x", False, 11),
        ("6F1C3F5E-8D6B-4C43-9B7E-0A6E2B7F9C11", True, None),
    ],
)
def test_check_channel(channel: str | None, required: bool, code: int | None) -> None:
    reply = check_channel(channel, required=required)
    assert (reply.code if reply else None) == code


def test_inflate() -> None:
    assert inflate(b"abc", None, 10) == b"abc"
    assert inflate(gzip.compress(b"ab") + gzip.compress(b"cd"), "GZIP", 10) == b"abcd"
    for body, encoding, status in [
        (b"abc", "br", 415),
        (b"abc", "gzip", 400),
        (gzip.compress(b"x" * 50), "gzip", 413),
        (gzip.compress(b"abc")[:-4], "gzip", 400),
    ]:
        with pytest.raises(BodyError) as caught:
            inflate(body, encoding, 20)
        assert caught.value.reply.status == status
        assert caught.value.reply.body.startswith(b"<!doctype html>")


def test_make_fault_validates() -> None:
    assert make_fault("busy", 2, retry_after=1).params == {"retry_after": 1}


@pytest.mark.parametrize(
    ("mode", "count", "params"),
    [
        ("nope", None, {}),
        ("busy", None, {"bogus": 1}),
        ("auth", None, {"code": 9}),
        ("busy", 0, {}),
    ],
)
def test_make_fault_rejects(mode: str, count: int | None, params: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        make_fault(mode, count, **params)


def test_fault_board_counts_targets_and_sequences() -> None:
    board = FaultBoard()
    board.set(make_fault(FaultMode.BUSY, 2))
    board.add(make_fault(FaultMode.SERVER_ERROR, 1))
    board.set(make_fault(FaultMode.UNHEALTHY))
    taken = [board.take(DATA) for _ in range(4)]
    assert [f.mode if f else None for f in taken] == ["busy", "busy", "server_error", None]
    assert board.take(HEALTH) is not None and board.take(HEALTH) is not None  # until cleared
    board.set(make_fault(FaultMode.NOT_FOUND))
    board.set(make_fault(FaultMode.THROTTLE))  # replaces every DATA fault
    assert [f["mode"] for f in board.snapshot()] == ["unhealthy", "throttle"]
    board.clear(HEALTH)
    assert [f["mode"] for f in board.snapshot()] == ["throttle"]
    board.clear()
    assert board.snapshot() == []


def test_too_large_fault_skips_small_bodies() -> None:
    board = FaultBoard()
    board.set(make_fault(FaultMode.TOO_LARGE, 1, min_bytes=100))
    assert board.take(DATA, 99) is None
    assert board.take(DATA, 100) is not None and board.take(DATA, 100) is None


def test_ack_ledger() -> None:
    ledger = AckLedger(max_pending_per_channel=2)
    assert [ledger.issue("c"), ledger.issue("c", false_polls=1)] == [0, 1]
    assert ledger.issue("d", lost=True) == 0
    assert not ledger.has_capacity("c") and ledger.has_capacity("new")
    assert ledger.query("c", [0, 1, 9]) == {"0": True, "1": False, "9": False}
    assert ledger.query("c", [0, 1]) == {"0": False, "1": True}
    assert ledger.query("d", [0]) == {"0": False} and ledger.query("zz", [0]) == {"0": False}
    assert ledger.has_capacity("c")


def test_parse_token_spec() -> None:
    token = parse_token_spec(
        "app=abc,index=a,index=b,default_index=a,ack=1,metric_index=m,query_auth=yes"
    )
    assert token == HecToken(
        name="app",
        value="abc",
        indexes=("a", "b"),
        default_index="a",
        ack=True,
        metric_indexes=("m",),
        allow_query_auth=True,
    )
    assert parse_token_spec("x=y,enabled=false").enabled is False
    for bad in ["novalue", "a=b,ack=maybe", "a=b,color=red", "a=b,index"]:
        with pytest.raises(ValueError):
            parse_token_spec(bad)
    assert HecToken.from_json(token.to_json()) == token
