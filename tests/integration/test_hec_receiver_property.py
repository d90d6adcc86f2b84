"""Property tests of the embedded HEC receiver over real HTTP: exactly-once, byte-equal storage
of arbitrary valid batches, and robustness against arbitrary bad input."""

from __future__ import annotations

import gzip
import http.client
import itertools
import json
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ext.local.hec import HecReceiver, HecToken
from tests.integration.test_hec_receiver_helpers import EVENT, TOKEN, splunk_auth

pytestmark = pytest.mark.integration

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SEPARATORS = [b"", b"\n", b" ", b"\r\n", b"\t", b"\n\n  "]
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | text
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=10,
)
# A valid event is never null, blank text, {} or [] (those are codes 12/13).
events = json_values.filter(
    lambda v: v is not None and v != {} and v != [] and not (isinstance(v, str) and not v.strip())
)
flat_fields = st.dictionaries(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8),
    scalars | st.lists(scalars, max_size=3),
    max_size=3,
)


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(envelope, raw event value): the event is randomly formatted; the store must keep it."""
    value = draw(events)
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    raw = json.dumps(
        value,
        separators=separators,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 1])),
    ).encode()
    parts = [b'"event":' + raw]
    if draw(st.booleans()):
        parts.append(b'"fields":' + json.dumps(draw(flat_fields)).encode())
    if draw(st.booleans()):
        parts.append(b'"time":' + json.dumps(draw(st.floats(0, 2e9))).encode())
    if draw(st.booleans()):
        parts.append(b'"sourcetype":' + json.dumps(draw(text)).encode())
    draw(st.randoms()).shuffle(parts)
    return b"{" + b",".join(parts) + b"}", raw


@pytest.fixture(scope="module")
def rx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HecReceiver]:
    tokens = (HecToken(name="default", value=TOKEN),)
    with HecReceiver(tmp_path_factory.mktemp("hec") / "prop.db", tokens) as receiver:
        yield receiver


def post(
    conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    conn.request("POST", EVENT, body, headers)
    response = conn.getresponse()
    return response.status, response.read()


@SETTINGS
@given(
    stream=st.lists(envelopes(), min_size=1, max_size=25),
    cuts=st.lists(st.integers(1, 24), max_size=5),
    data=st.data(),
)
def test_any_valid_batches_stored_exactly_once_byte_equal(
    rx: HecReceiver, stream: list[tuple[bytes, bytes]], cuts: list[int], data: st.DataObject
) -> None:
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    batches = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    before = rx.events(newest=True, limit=1)
    since = before[0].id if before else 0
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=10)
    try:
        for pairs in batches:
            batch = [envelope for envelope, _ in pairs]
            if data.draw(st.booleans(), label="array form"):
                body = b"[" + b",".join(batch) + b"]"
            else:
                seps = [data.draw(st.sampled_from(SEPARATORS)) for _ in batch]
                body = b"".join(sep + env for sep, env in zip(seps, batch, strict=True))
            headers = splunk_auth()
            if data.draw(st.booleans(), label="gzip"):
                body, headers = gzip.compress(body), {**headers, "Content-Encoding": "gzip"}
            status, answer = post(conn, body, headers)
            assert (status, answer) == (200, b'{"text":"Success","code":0}')
    finally:
        conn.close()
    stored = rx.events(since_id=since)
    assert [e.event.encode() for e in stored] == [raw for _, raw in stream]
    by_request: dict[int, list[int]] = {}
    for event in stored:
        by_request.setdefault(event.request_id, []).append(event.seq)
    assert [len(seqs) for seqs in by_request.values()] == [len(b) for b in batches]
    assert all(seqs == list(range(len(seqs))) for seqs in by_request.values())


MUTATIONS = st.sampled_from(["truncate", "flip", "insert", "garbage", "gzip-garbage", "delete"])


@st.composite
def hostile_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    base = b"\n".join(env for env, _ in draw(st.lists(envelopes(), min_size=1, max_size=4)))
    rng = random.Random(draw(st.integers(0, 2**32)))
    kind = draw(MUTATIONS)
    headers = splunk_auth()
    if kind == "truncate":
        base = base[: rng.randrange(len(base))]
    elif kind == "flip":
        pos = rng.randrange(len(base))
        base = base[:pos] + bytes([rng.randrange(256)]) + base[pos + 1 :]
    elif kind == "insert":
        pos = rng.randrange(len(base))
        base = base[:pos] + draw(st.binary(max_size=8)) + base[pos:]
    elif kind == "delete":
        pos = rng.randrange(len(base))
        base = base[:pos] + base[pos + rng.randrange(1, 6) :]
    elif kind == "garbage":
        base = draw(st.binary(max_size=200))
    else:
        base = gzip.compress(base)[: rng.randrange(1, 40)]
        headers["Content-Encoding"] = "gzip"
    return base, headers


@SETTINGS
@given(case=hostile_bodies())
def test_bad_input_never_crashes_and_answers_hec_json_or_html(
    rx: HecReceiver, case: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = case
    before = rx.count()
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=10)
    try:
        status, answer = post(conn, body, headers)
        # The same connection still works afterwards.
        conn.request("GET", "/services/collector/health")
        assert conn.getresponse().read() == b'{"text":"HEC is healthy","code":17}'
    finally:
        conn.close()
    assert status in {200, 400, 413, 415}
    if answer.startswith(b"<!doctype html>"):
        assert status in {400, 413, 415}
        return
    reply: dict[str, Any] = json.loads(answer)
    added = rx.count() - before
    if status == 200:
        assert reply == {"text": "Success", "code": 0} and added >= 1
    else:
        assert reply["code"] in {5, 6, 12, 13, 15} and added == 0


def test_non_http_garbage_gets_an_answer_and_server_survives(rx: HecReceiver) -> None:
    for junk in [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"POST /services/collector HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /services/collector HTTP/1.1\r\nContent-Length: zz\r\n\r\n",
    ]:
        with socket.create_connection(("127.0.0.1", rx.port), timeout=5) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                continue
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    try:
        conn.request("GET", "/services/collector/health")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
