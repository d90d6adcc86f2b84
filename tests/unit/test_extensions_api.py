"""The Extensions API client and the Telemetry API subscription, against a scripted local API:
what goes on the wire, how each answer framing is read, keep-alive and reconnects, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ext import config
from ext.errors import ApiError
from ext.main import telemetry_api
from ext.main.extensions_api import (
    ID_HEADER,
    INIT_ERROR_PATH,
    NAME_HEADER,
    NEXT_PATH,
    REGISTER_PATH,
    ExtensionsApi,
    LambdaApiClient,
)
from tests.unit.lambda_api_stub import ScriptedApi, reply

INVOKE = b'{"eventType":"INVOKE","requestId":"r1","deadlineMs":1}'


@contextmanager
def api(*connections: list[bytes | None]) -> Iterator[tuple[ExtensionsApi, ScriptedApi]]:
    stub = ScriptedApi(list(connections))
    client = LambdaApiClient(stub.address)
    try:
        yield ExtensionsApi(client), stub
    finally:
        client.close()
        stub.close()


def test_register_names_the_extension_and_keeps_its_identifier() -> None:
    answer = reply(200, b'{"functionName":"f","accountId":"123456789012"}',
                   {"Lambda-Extension-Identifier": "id-1"})
    with api([answer]) as (ext_api, stub):
        body = ext_api.register("splunk-hec-extension", ("INVOKE", "SHUTDOWN"))
    assert body == b'{"functionName":"f","accountId":"123456789012"}'
    assert ext_api.extension_id == "id-1"
    assert ext_api.account_id() == "123456789012"
    [(line, headers, sent)] = stub.requests
    assert line == f"POST {REGISTER_PATH} HTTP/1.1"
    assert headers[NAME_HEADER.lower()] == "splunk-hec-extension"
    assert headers["lambda-extension-accept-feature"] == "accountId"
    assert json.loads(sent) == {"events": ["INVOKE", "SHUTDOWN"]}


@pytest.mark.parametrize("registration", [b"not json", b'["a"]', b'{"accountId": 5}', b"{}"])
def test_no_account_id_unless_register_gave_one_as_text(registration: bytes) -> None:
    ext_api = ExtensionsApi(LambdaApiClient("127.0.0.1:9"))
    ext_api.registration = registration
    assert ext_api.account_id() == ""


def test_next_event_is_a_get_with_the_identifier_on_one_kept_alive_connection() -> None:
    with api([reply(200, INVOKE), reply(200, INVOKE)]) as (ext_api, stub):
        ext_api.extension_id = "id-1"
        assert ext_api.next_event() == INVOKE
        assert ext_api.next_event() == INVOKE
    assert stub.connections == 1
    for line, headers, body in stub.requests:
        assert line == f"GET {NEXT_PATH} HTTP/1.1"
        assert headers[ID_HEADER.lower()] == "id-1"
        assert "content-length" not in headers  # a GET carries no body
        assert body == b""


def test_a_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    chunked = b"5\r\n" + INVOKE[:5] + b"\r\n" + f"{len(INVOKE) - 5:x}".encode() + b";ext=1\r\n"
    chunked += INVOKE[5:] + b"\r\n0\r\n\r\n"
    answer = reply(200, chunked, {"Transfer-Encoding": "chunked"}, length=False)
    with api([answer, reply(200, b"{}")]) as (ext_api, stub):
        assert ext_api.next_event() == INVOKE
        assert ext_api.next_event() == b"{}"
    assert stub.connections == 1


def test_an_answer_without_length_ends_with_the_connection_and_the_next_call_reconnects() -> None:
    close = reply(200, INVOKE, {"Connection": "close"}, length=False)
    with api([close], [reply(200, b"{}")]) as (ext_api, stub):
        assert ext_api.next_event() == INVOKE
        assert ext_api.next_event() == b"{}"
    assert stub.connections == 2


def test_connection_close_is_honoured_even_with_a_length() -> None:
    with api([reply(200, b"{}", {"Connection": "close"})], [reply(200, INVOKE)]) as (ext_api,
                                                                                   stub):
        assert ext_api.next_event() == b"{}"
        assert ext_api.next_event() == INVOKE
    assert stub.connections == 2


def test_a_kept_alive_connection_found_closed_is_retried_once_on_a_new_one() -> None:
    # The platform dropped the idle connection (e.g. across a freeze): the second request
    # finds it closed and goes again on a fresh connection.
    with api([reply(200, b"{}"), None], [reply(200, INVOKE)]) as (ext_api, stub):
        assert ext_api.next_event() == b"{}"
        assert ext_api.next_event() == INVOKE
    assert stub.connections == 2


def test_a_fresh_connection_that_fails_is_not_retried() -> None:
    with api([None], [reply(200, INVOKE)]) as (ext_api, stub), pytest.raises(ConnectionError):
        ext_api.next_event()
    assert stub.connections == 1


def test_no_api_listening_is_an_error_not_a_hang() -> None:
    with pytest.raises(ConnectionRefusedError):
        ExtensionsApi(LambdaApiClient("127.0.0.1:1")).next_event()


def test_a_non_2xx_answer_raises_with_path_and_status() -> None:
    with api([reply(403, b'{"errorType":"Extension.Forbidden"}')]) as (ext_api, _), \
            pytest.raises(ApiError) as raised:
        ext_api.next_event()
    assert (raised.value.path, raised.value.status) == (NEXT_PATH, 403)
    assert b"Forbidden" in raised.value.body


def test_init_error_posts_the_type_in_header_and_body() -> None:
    with api([reply(202)]) as (ext_api, stub):
        ext_api.extension_id = "id-1"
        ext_api.init_error("Extension.ConfigError", "SPLUNK_HOST is missing")
    [(line, headers, body)] = stub.requests
    assert line == f"POST {INIT_ERROR_PATH} HTTP/1.1"
    assert headers["lambda-extension-function-error-type"] == "Extension.ConfigError"
    assert json.loads(body) == {"errorMessage": "SPLUNK_HOST is missing",
                                "errorType": "Extension.ConfigError", "stackTrace": []}


def test_oversized_answer_headers_are_refused() -> None:
    huge = b"HTTP/1.1 200 X\r\nX-Pad: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n"
    with api([huge]) as (ext_api, _), pytest.raises(ConnectionError, match="too large"):
        ext_api.next_event()


def test_a_body_cut_short_is_an_error() -> None:
    cut = b"HTTP/1.1 200 X\r\nContent-Length: 100\r\n\r\n{}"
    with api([cut]) as (ext_api, _), pytest.raises(ConnectionError):
        ext_api.next_event()


# -- the Telemetry API subscription -------------------------------------------------------------


def _config(**env: str) -> config.Config:
    return config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t", **env})


def test_the_subscription_states_every_buffering_value_and_the_destination() -> None:
    cfg = _config(SPLUNK_BUFFER_TIMEOUT_MS="40")
    body = json.loads(telemetry_api.build_subscription(cfg, 4243))
    assert body == {
        "schemaVersion": telemetry_api.SCHEMA_VERSION,
        "types": list(cfg.telemetry_types),
        "buffering": {"maxItems": cfg.buffer_max_items, "maxBytes": cfg.buffer_max_bytes,
                      "timeoutMs": 40},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/"},
    }


@pytest.mark.parametrize(("status", "delivers"), [(200, True), (202, False)])
def test_subscribe_tells_whether_telemetry_will_come(status: int, delivers: bool) -> None:
    with api([reply(status, b"OK")]) as (ext_api, stub):
        ext_api.extension_id = "id-1"
        assert telemetry_api.subscribe(ext_api, b'{"x":1}') is delivers
    [(line, headers, body)] = stub.requests
    assert line == f"PUT {telemetry_api.SUBSCRIBE_PATH} HTTP/1.1"
    assert headers[ID_HEADER.lower()] == "id-1"
    assert body == b'{"x":1}'


def test_a_refused_subscription_raises() -> None:
    with api([reply(400, b"bad types")]) as (ext_api, _), pytest.raises(ApiError) as raised:
        telemetry_api.subscribe(ext_api, b"{}")
    assert raised.value.status == 400


def test_the_next_event_request_is_made_once_per_identifier(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The same bytes at every invocation: building them again cost main CPU each time.
    with api([reply(200, INVOKE)] * 3) as (ext_api, stub):
        made: list[str] = []
        real_wire = ext_api.client.wire

        def wire(*args: Any) -> bytes:
            made.append(args[1])
            return real_wire(*args)

        monkeypatch.setattr(ext_api.client, "wire", wire)
        ext_api.extension_id = "id-1"
        ext_api.next_event()
        ext_api.next_event()
        assert made == [NEXT_PATH]
        ext_api.extension_id = "id-2"  # registered again: a new identifier
        ext_api.next_event()
        assert made == [NEXT_PATH, NEXT_PATH]
    assert [headers[ID_HEADER.lower()] for _, headers, _ in stub.requests] == [
        "id-1", "id-1", "id-2"]


@pytest.mark.parametrize("framing", [
    {"CONTENT-LENGTH": f"  {len(INVOKE)} "},
    {"transfer-encoding": "Chunked"},
])
def test_framing_headers_are_found_whatever_their_case_and_spacing(
        framing: dict[str, str]) -> None:
    chunked = "transfer-encoding" in framing
    body = f"{len(INVOKE):x}\r\n".encode() + INVOKE + b"\r\n0\r\n\r\n" if chunked else INVOKE
    with api([reply(200, body, {"X-Content-Length-Note": "9", **framing}, length=False),
              reply(200, b"{}")]) as (ext_api, stub):
        assert ext_api.next_event() == INVOKE
        assert ext_api.next_event() == b"{}"  # the length was right: the connection is kept
    assert stub.connections == 1


def test_a_reply_header_is_read_by_its_lower_cased_name() -> None:
    answer = reply(200, b"{}", {"Lambda-Extension-Identifier": "  Id-9 "})
    with api([answer]) as (ext_api, _):
        ext_api.register("x", ("INVOKE",))
    assert ext_api.extension_id == "Id-9"
