"""Conformance of the embedded HEC receiver against hec.md, using plain HTTP requests."""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.local.hec import HecLimits, HecReceiver, HecToken
from tests.integration.test_hec_receiver_helpers import (
    CHANNEL,
    EVENT,
    TOKEN,
    basic_auth,
    post_events,
    request,
    splunk_auth,
)

pytestmark = pytest.mark.integration

ACK_TOKEN = "11111111-1111-1111-1111-111111111111"
RESTRICTED = "22222222-2222-2222-2222-222222222222"
DISABLED = "33333333-3333-3333-3333-333333333333"
QUERY_OK = "44444444-4444-4444-4444-444444444444"
TOKENS = (
    HecToken(name="default", value=TOKEN, metric_indexes=("lambda_metrics",)),
    HecToken(name="acker", value=ACK_TOKEN, ack=True),
    HecToken(
        name="restricted", value=RESTRICTED, indexes=("lambda", "audit"), default_index="lambda"
    ),
    HecToken(name="off", value=DISABLED, enabled=False),
    HecToken(name="qs", value=QUERY_OK, allow_query_auth=True),
)


@pytest.fixture
def rx(tmp_path: Path) -> Iterator[HecReceiver]:
    receiver = HecReceiver(tmp_path / "hec.db", TOKENS, limits=HecLimits(max_event_size=10_000))
    with receiver:
        yield receiver


# -- health and routing -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/services/collector/health", "/services/collector/health/1.0"])
def test_health_is_healthy(rx: HecReceiver, path: str) -> None:
    answer = request(rx.url, path, method="GET")
    assert (answer.status, answer.json()) == (200, {"text": "HEC is healthy", "code": 17})
    assert answer.headers["content-type"].startswith("application/json")


def test_unhealthy_fault_then_recovery(rx: HecReceiver) -> None:
    rx.set_fault("unhealthy", count=1)
    answer = request(rx.url, "/services/collector/health", method="GET")
    assert (answer.status, answer.json()["code"]) == (503, 18)
    assert request(rx.url, "/services/collector/health", method="GET").status == 200


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/nope"), ("GET", EVENT), ("POST", "/services")]
)
def test_unknown_route_is_404_json(rx: HecReceiver, method: str, path: str) -> None:
    answer = request(rx.url, path, b"{}" if method == "POST" else None, splunk_auth(), method)
    assert answer.status == 404
    assert answer.json() == {"text": "The requested URL was not found on this server.", "code": 404}


# -- authentication (hec.md 1.2) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "status", "code"),
    [
        ({}, "", 401, 2),
        ({"Authorization": f"Bearer {TOKEN}"}, "", 401, 3),
        ({"Authorization": "Splunk"}, "", 401, 3),
        ({"Authorization": "Basic !!notbase64"}, "", 401, 3),
        (splunk_auth("99999999-9999-9999-9999-999999999999"), "", 403, 4),
        (splunk_auth(DISABLED), "", 403, 1),
        ({}, f"?token={TOKEN}", 400, 16),
        (splunk_auth(), "?token=bogus", 403, 4),
        ({}, "?token=bogus", 403, 4),
    ],
)
def test_auth_failures(
    rx: HecReceiver, headers: dict[str, str], query: str, status: int, code: int
) -> None:
    answer = request(rx.url, EVENT + query, b'{"event":"x"}', headers)
    assert (answer.status, answer.json()["code"]) == (status, code)
    assert rx.count() == 0


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        (splunk_auth(), ""),
        (basic_auth(TOKEN), ""),
        ({}, f"?token={QUERY_OK}"),
        (splunk_auth(DISABLED), f"?token={QUERY_OK}"),
    ],
)
def test_auth_accepted_forms(rx: HecReceiver, headers: dict[str, str], query: str) -> None:
    answer = request(rx.url, EVENT + query, b'{"event":"x"}', headers)
    assert (answer.status, answer.json()) == (200, {"text": "Success", "code": 0})
    assert rx.count() == 1


def test_token_rotation_at_run_time(rx: HecReceiver) -> None:
    rx.put_tokens(HecToken(name="default", value=TOKEN, enabled=False))
    assert post_events(rx.url, [{"event": "a"}]).json()["code"] == 1
    rx.put_tokens(HecToken(name="default", value=TOKEN))
    assert post_events(rx.url, [{"event": "a"}]).status == 200


# -- batching forms and byte equality (hec.md 1.4) ---------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"event":"a"}\n{"event":"b"}\r\n{"event":"c"}',
        b'{"event":"a"}{"event":"b"}{"event":"c"}',
        b'{"event":"a"} {"event":"b"}\t{"event":"c"}\n',
        b'[{"event":"a"},{"event":"b"} , {"event":"c"}]',
        b'\n {"event":"a"}\n\n{"event":"b"}{"event":"c"}  ',
    ],
)
@pytest.mark.parametrize("gzipped", [False, True])
def test_batch_forms_store_in_order(rx: HecReceiver, body: bytes, gzipped: bool) -> None:
    headers = splunk_auth()
    if gzipped:
        body, headers = gzip.compress(body), {**headers, "Content-Encoding": "gzip"}
    answer = request(rx.url, EVENT, body, headers)
    assert answer.status == 200, answer.body
    stored = rx.events()
    assert [e.event for e in stored] == ['"a"', '"b"', '"c"']
    assert [e.seq for e in stored] == [0, 1, 2]
    assert len({e.request_id for e in stored}) == 1


def test_event_and_fields_are_byte_equal(rx: HecReceiver) -> None:
    event = b'{ "msg" : "caf\\u00e9 \xc3\xa9",\n  "n": 1.50, "list":[1 ,2] }'
    fields = b'{"fn" : "f", "multi": ["a", 2]}'
    body = b'{"time": "1433188255.500", "fields": ' + fields + b', "event": ' + event + b"}"
    assert request(rx.url, EVENT, body, splunk_auth()).status == 200
    (stored,) = rx.events()
    assert stored.event.encode() == event
    assert stored.fields == {"fn": "f", "multi": ["a", 2]}
    assert stored.time == pytest.approx(1433188255.5)


def test_metadata_defaults_and_explicit_values(rx: HecReceiver) -> None:
    post_events(
        rx.url,
        [
            {"event": 1},
            {
                "event": 2,
                "host": "h",
                "source": "s",
                "sourcetype": "st",
                "index": "other",
                "time": 12.25,
            },
        ],
    )
    first, second = rx.events()
    assert (first.host, first.source, first.sourcetype, first.index, first.time) == (
        "127.0.0.1",
        "http:default",
        "httpevent",
        "main",
        None,
    )
    assert (second.host, second.source, second.sourcetype, second.index, second.time) == (
        "h",
        "s",
        "st",
        "other",
        12.25,
    )
    assert first.token_name == "default"
    assert rx.count(sourcetype="st") == 1 and rx.count(index="main") == 1


# -- per-event errors and invalid-event-number (hec.md 1.3, 1.11, 3.5) -------------------------


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ('{"time": 1}', 12),
        ('{"event": null}', 12),
        ('{"event": ""}', 13),
        ('{"event": "  \\t "}', 13),
        ('{"event": {}}', 13),
        ('{"event": [ ]}', 13),
        ('{"event": "x", "fields": {"a": {"b": 1}}}', 15),
        ('{"event": "x", "fields": {"a": [[1]]}}', 15),
        ('{"event": "x", "fields": ["a"]}', 6),
        ('{"event": "x", "time": "soon"}', 15),
        ('{"event": "x", "host": 5}', 6),
        ('{"event": "x", "time": true}', 6),
        ('{"event": "x"', 6),
        ("42", 6),
        ('{"event": "' + "y" * 10_001 + '"}', 6),
    ],
)
def test_bad_event_reports_its_number(rx: HecReceiver, bad: str, code: int) -> None:
    body = f'{{"event":"ok0"}}\n{{"event":"ok1"}}\n{bad}\n{{"event":"after"}}'.encode()
    answer = request(rx.url, EVENT, body, splunk_auth())
    assert answer.status == 400
    assert answer.json() == {"text": answer.json()["text"], "code": code, "invalid-event-number": 2}
    assert rx.count() == 0  # atomic by default, like Splunk's legacy parser


def test_first_failure_in_document_order_wins(rx: HecReceiver) -> None:
    body = b'{"event":""}\n{"event": broken'
    assert request(rx.url, EVENT, body, splunk_auth()).json()["code"] == 13


def test_trailing_garbage_is_code_6(rx: HecReceiver) -> None:
    answer = request(rx.url, EVENT, b'{"event":"a"} garbage', splunk_auth())
    assert answer.json() == {"text": "Invalid data format", "code": 6, "invalid-event-number": 1}


def test_incorrect_index_has_plus_one_quirk(rx: HecReceiver) -> None:
    body = b'{"event":"a","index":"lambda"}{"event":"b","index":"main"}'
    answer = request(rx.url, EVENT, body, splunk_auth(RESTRICTED))
    assert answer.json() == {"text": "Incorrect index", "code": 7, "invalid-event-number": 2}


def test_partial_prefix_mode_keeps_events_before_the_bad_one(rx: HecReceiver) -> None:
    rx.set_partial_prefix(True)
    body = b'{"event":"a"}{"event":"b"}{"event":null}{"event":"c"}'
    assert request(rx.url, EVENT, body, splunk_auth()).json()["invalid-event-number"] == 2
    assert [e.event for e in rx.events()] == ['"a"', '"b"']


@pytest.mark.parametrize("body", [b"", b"  \n\t "])
def test_empty_body_is_no_data(rx: HecReceiver, body: bytes) -> None:
    answer = request(rx.url, EVENT, body, splunk_auth())
    assert (answer.status, answer.json()) == (400, {"text": "No data", "code": 5})


def test_metric_event_goes_to_metric_index(rx: HecReceiver) -> None:
    metric = {
        "event": "metric",
        "index": "lambda_metrics",
        "time": 1.0,
        "fields": {"metric_name:duration": 12.5, "fn": "f"},
    }
    assert post_events(rx.url, [metric]).status == 200
    (stored,) = rx.events()
    assert (stored.kind, stored.index) == ("metric", "lambda_metrics")
    assert rx.count(fields={"fn": "f"}) == 1


# -- encoding and limits (hec.md 1.6, 1.9) -----------------------------------------------------


def test_unsupported_encoding_is_415_html(rx: HecReceiver) -> None:
    answer = request(rx.url, EVENT, b'{"event":"a"}', {**splunk_auth(), "Content-Encoding": "br"})
    assert answer.status == 415
    assert answer.headers["content-type"].startswith("text/html")


def test_malformed_gzip_is_400_html(rx: HecReceiver) -> None:
    body = gzip.compress(b'{"event":"a"}')[:-6]
    answer = request(rx.url, EVENT, body, {**splunk_auth(), "Content-Encoding": "gzip"})
    assert answer.status == 400 and answer.body.startswith(b"<!doctype html>")
    assert rx.count() == 0


def test_body_over_max_content_length_is_413_html(tmp_path: Path) -> None:
    with HecReceiver(tmp_path / "db", limits=HecLimits(max_content_length=100)) as small:
        answer = request(small.url, EVENT, b'{"event":"' + b"x" * 200 + b'"}', splunk_auth())
        assert answer.status == 413 and b"html" in answer.body
        assert answer.headers.get("connection") == "close"
        assert post_events(small.url, [{"event": "fits"}]).status == 200


def test_chunked_body_is_read(rx: HecReceiver) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=10)
    try:
        conn.request(
            "POST",
            EVENT,
            iter([b'{"event":"a"}', b'{"event":"b"}']),
            splunk_auth(),
            encode_chunked=True,
        )
        assert conn.getresponse().read() == b'{"text":"Success","code":0}'
    finally:
        conn.close()
    assert rx.count() == 2


# -- channels and indexer acknowledgement (hec.md 1.7) -----------------------------------------


def test_invalid_channel_is_code_11(rx: HecReceiver) -> None:
    answer = post_events(rx.url, [{"event": "a"}], headers={"X-Splunk-Request-Channel": "nope"})
    assert answer.json() == {"text": "Invalid data channel", "code": 11}


def test_ack_token_needs_a_channel(rx: HecReceiver) -> None:
    answer = request(rx.url, EVENT, b'{"event":"a"}', splunk_auth(ACK_TOKEN))
    assert (answer.status, answer.json()["code"]) == (400, 10)


def test_ack_flow_true_once_then_forgotten(rx: HecReceiver) -> None:
    headers = {**splunk_auth(ACK_TOKEN), "X-Splunk-Request-Channel": CHANNEL}
    ids = [request(rx.url, EVENT, b'{"event":"a"}', headers).json()["ackId"] for _ in range(3)]
    assert ids == [0, 1, 2]
    query = json.dumps({"acks": [0, 2, 7]}).encode()
    first = request(rx.url, "/services/collector/ack", query, headers).json()
    assert first == {"acks": {"0": True, "2": True, "7": False}}
    again = request(
        rx.url, f"/services/collector/ack?channel={CHANNEL}", query, splunk_auth(ACK_TOKEN)
    ).json()
    assert again == {"acks": {"0": False, "2": False, "7": False}}
    assert rx.count(channel=CHANNEL) == 3


def test_ack_errors(rx: HecReceiver) -> None:
    ack = "/services/collector/ack"
    body = b'{"acks":[0]}'
    assert request(rx.url, ack, body, splunk_auth()).json()["code"] == 14  # before channel check
    assert request(rx.url, ack, body, splunk_auth(ACK_TOKEN)).json()["code"] == 10
    with_channel = {**splunk_auth(ACK_TOKEN), "X-Splunk-Request-Channel": CHANNEL}
    assert request(rx.url, ack, b'{"acks":"x"}', with_channel).json()["code"] == 6
    assert request(rx.url, ack, b'{"acks":[]}', with_channel).json()["code"] == 6


def test_ack_pending_lost_and_error_faults(rx: HecReceiver) -> None:
    headers = {**splunk_auth(ACK_TOKEN), "X-Splunk-Request-Channel": CHANNEL}
    ack = "/services/collector/ack"
    rx.set_fault("ack_pending", count=1, polls=2)
    pending = request(rx.url, EVENT, b'{"event":"a"}', headers).json()["ackId"]
    rx.set_fault("ack_lost", count=1)
    lost = request(rx.url, EVENT, b'{"event":"b"}', headers).json()["ackId"]
    query = json.dumps({"acks": [pending, lost]}).encode()
    polls = [request(rx.url, ack, query, headers).json()["acks"] for _ in range(3)]
    assert [p[str(pending)] for p in polls] == [False, False, True]
    assert [p[str(lost)] for p in polls] == [False, False, False]
    rx.set_fault("ack_error", count=1)
    answer = request(rx.url, ack, query, headers)
    assert (answer.status, answer.json()["code"]) == (500, 8)
    assert rx.count() == 2


def test_sticky_cookie_enforcement(rx: HecReceiver) -> None:
    rx.set_fault("sticky_cookie")
    headers = {**splunk_auth(ACK_TOKEN), "X-Splunk-Request-Channel": CHANNEL}
    blocked = request(rx.url, EVENT, b'{"event":"a"}', headers)
    assert blocked.status == 400
    cookie = blocked.headers["set-cookie"].split(";")[0]
    assert cookie.startswith("AWSALB=")
    answer = request(rx.url, EVENT, b'{"event":"a"}', {**headers, "Cookie": cookie})
    assert answer.json() == {"text": "Success", "code": 0, "ackId": 0}
    assert post_events(rx.url, [{"event": "no ack token"}]).status == 200
    assert rx.count() == 2


# -- raw endpoint ------------------------------------------------------------------------------


def test_raw_lines_with_query_metadata(rx: HecReceiver) -> None:
    path = "/services/collector/raw?sourcetype=st&source=src&host=h&index=audit&time=1700000000"
    answer = request(rx.url, path, b"line one\r\n\nline \xff two\n", splunk_auth(RESTRICTED))
    assert answer.json() == {"text": "Success", "code": 0}
    stored = rx.events()
    assert [e.event for e in stored] == ["line one", "line \ufffd two"]
    assert {(e.sourcetype, e.source, e.host, e.index, e.kind, e.time) for e in stored} == {
        ("st", "src", "h", "audit", "raw", 1700000000.0)
    }


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/services/collector/raw/1.0", b" \n ", 5),
        ("/services/collector/raw?index=main", b"x", 7),
        ("/services/collector/raw?time=-3", b"x", 6),
    ],
)
def test_raw_errors(rx: HecReceiver, path: str, body: bytes, code: int) -> None:
    assert request(rx.url, path, body, splunk_auth(RESTRICTED)).json()["code"] == code


# -- fault modes (hec.md 3.6) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "params", "status", "code"),
    [
        ("busy", {}, 503, 9),
        ("busy", {"retry_after": 3}, 503, 9),
        ("throttle", {"retry_after": 1}, 429, 26),
        ("throttle", {"code": 27}, 429, 27),
        ("server_error", {}, 500, 8),
        ("not_found", {}, 404, 404),
        ("shutting_down", {}, 503, 23),
        ("auth", {"code": 1}, 403, 1),
        ("auth", {"code": 2}, 401, 2),
        ("auth", {"code": 3}, 401, 3),
        ("auth", {"code": 4}, 403, 4),
    ],
)
def test_request_level_faults_store_nothing_then_recover(
    rx: HecReceiver, mode: str, params: dict[str, int], status: int, code: int
) -> None:
    rx.set_fault(mode, count=2, **params)
    for _ in range(2):
        answer = post_events(rx.url, [{"event": "a"}])
        assert (answer.status, answer.json()["code"]) == (status, code)
        assert "invalid-event-number" not in answer.json()
        assert answer.headers.get("retry-after") == (
            str(params["retry_after"]) if "retry_after" in params else None
        )
    assert rx.count() == 0
    assert post_events(rx.url, [{"event": "a"}]).status == 200
    assert rx.count() == 1 and rx.faults() == []


def test_too_large_fault_only_hits_big_bodies(rx: HecReceiver) -> None:
    rx.set_fault("too_large", min_bytes=500)
    assert post_events(rx.url, [{"event": "small"}]).status == 200
    answer = post_events(rx.url, [{"event": "x" * 600}])
    assert answer.status == 413 and answer.headers["content-type"].startswith("text/html")
    assert rx.count() == 1


@pytest.mark.parametrize(
    ("code", "partial", "shown", "kept"),
    [
        (6, False, 2, 0),
        (6, True, 2, 2),
        (12, True, 2, 2),
        (13, False, 2, 0),
        (15, True, 2, 2),
        (7, False, 3, 0),
    ],
)
def test_invalid_event_fault(
    rx: HecReceiver, code: int, partial: bool, shown: int, kept: int
) -> None:
    rx.set_fault("invalid_event", count=1, code=code, index=2, partial=partial)
    answer = post_events(rx.url, [{"event": i} for i in range(5)])
    assert answer.status == 400
    assert (answer.json()["code"], answer.json()["invalid-event-number"]) == (code, shown)
    assert [e.event for e in rx.events()] == [str(i) for i in range(kept)]


def test_warning_fault_is_success_and_stores(rx: HecReceiver) -> None:
    rx.set_fault("warning", code=25)
    answer = post_events(rx.url, [{"event": "a"}])
    assert (answer.status, answer.json()) == (
        200,
        {"text": "HEC ACK is approaching its capacity limit", "code": 25},
    )
    assert rx.count() == 1


def test_reset_after_store(rx: HecReceiver) -> None:
    rx.set_fault("reset_after_store", count=1)
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        post_events(rx.url, [{"event": "a"}, {"event": "b"}])
    assert rx.count() == 2
    assert rx.requests(1)[0]["fault"] == "reset_after_store"


def test_delay_past_client_timeout_still_stores(rx: HecReceiver) -> None:
    rx.set_fault("delay", count=1, seconds=2.0)
    with pytest.raises((TimeoutError, socket.timeout)):
        request(rx.url, EVENT, b'{"event":"a"}', splunk_auth(), timeout=0.3)
    assert rx.count() == 1


def test_close_after_response_and_stale_keepalive(rx: HecReceiver) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    try:
        rx.set_fault("stale_keepalive", count=1)
        assert request(rx.url, EVENT, b'{"event":"a"}', splunk_auth(), conn=conn).status == 200
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            request(rx.url, EVENT, b'{"event":"lost"}', splunk_auth(), conn=conn)
    finally:
        conn.close()
    assert [e.event for e in rx.events()] == ['"a"']
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    try:
        rx.set_fault("close_after_response", count=1)
        assert request(rx.url, EVENT, b'{"event":"b"}', splunk_auth(), conn=conn).status == 200
        assert conn.sock is None or conn.sock.recv(1) == b""  # server sent FIN
    finally:
        conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(rx: HecReceiver) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    try:
        conn.connect()
        first_sock = conn.sock
        for i in range(5):
            assert (
                request(rx.url, EVENT, b'{"event":%d}' % i, splunk_auth(), conn=conn).status == 200
            )
        assert conn.sock is first_sock
    finally:
        conn.close()
    assert len({e.request_id for e in rx.events()}) == 5


def test_fault_sequence_and_stats(rx: HecReceiver) -> None:
    rx.set_fault("busy", count=1)
    rx.add_fault("server_error", count=1)
    statuses = [post_events(rx.url, [{"event": "a"}]).status for _ in range(3)]
    assert statuses == [503, 500, 200]
    stats = json.loads(request(rx.url, "/_admin/stats", method="GET").body)
    assert stats["by_status"] == {"200": 1, "500": 1, "503": 1}
    assert stats["stored_events"] == 1


def test_admin_endpoint_switches_faults(rx: HecReceiver) -> None:
    body = json.dumps({"mode": "busy", "count": 1, "retry_after": 2}).encode()
    assert request(rx.url, "/_admin/fault", body).status == 200
    assert post_events(rx.url, [{"event": "a"}]).headers["retry-after"] == "2"
    bad = request(rx.url, "/_admin/fault", b'{"mode":"nonsense"}')
    assert bad.status == 400 and "error" in bad.json()
    request(rx.url, "/_admin/fault", json.dumps({"mode": "server_error"}).encode())
    assert request(rx.url, "/_admin/fault", method="DELETE").json() == {"faults": []}
    post_events(rx.url, [{"event": "b", "fields": {"k": "v"}}])
    events = request(rx.url, "/_admin/events?fields.k=v&limit=5", method="GET").json()["events"]
    assert [e["event"] for e in events] == ['"b"']
    assert request(rx.url, "/_admin/count?sourcetype=httpevent", method="GET").json() == {
        "count": 1
    }


# -- TLS ---------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    with HecReceiver(tmp_path / "db", tls_cert=cert, tls_key=key) as secure:
        assert secure.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", secure.port, context=context, timeout=10)
        try:
            conn.request("POST", EVENT, b'{"event":"tls"}', splunk_auth())
            assert conn.getresponse().read() == b'{"text":"Success","code":0}'
        finally:
            conn.close()
        assert secure.count() == 1
