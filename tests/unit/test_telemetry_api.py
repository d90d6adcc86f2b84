"""ext/main/telemetry_api.py: the subscription's body, byte for byte where the platform reads
it, and what each answer to it means; against the scripted local API."""

from __future__ import annotations

import json

import pytest

from ext import config
from ext.errors import ApiError
from ext.main import telemetry_api
from ext.main.extensions_api import (
    ID_HEADER,
    INITIALIZATION_TYPE,
    MANAGED_INSTANCES,
    ExtensionsApi,
    LambdaApiClient,
)
from tests.unit.lambda_api_stub import ScriptedApi, reply

ENV = {"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"}


def subscribe_answered(answer: bytes) -> tuple[bool, list[tuple[str, dict[str, str], bytes]]]:
    stub = ScriptedApi([[answer]])
    client = LambdaApiClient(stub.address)
    try:
        ext_api = ExtensionsApi(client)
        ext_api.extension_id = "id-7"
        return telemetry_api.subscribe(ext_api, b'{"s":1}'), stub.requests
    finally:
        client.close()
        stub.close()


def test_the_subscription_body_is_compact_json_with_every_value() -> None:
    cfg = config.load({**ENV, "SPLUNK_TELEMETRY_TYPES": "platform,function",
                       "SPLUNK_BUFFER_MAX_ITEMS": "1500", "SPLUNK_BUFFER_MAX_BYTES": "300000",
                       "SPLUNK_BUFFER_TIMEOUT_MS": "100"})
    body = telemetry_api.build_subscription(cfg, 4243)
    types = ",".join(f'"{kind}"' for kind in cfg.telemetry_types)
    assert body == (
        b'{"schemaVersion":"2022-12-13","types":[' + types.encode() + b'],'
        b'"buffering":{"maxItems":1500,"maxBytes":300000,"timeoutMs":100},'
        b'"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:4243/"}}'
    )
    assert json.loads(body)["types"] == list(cfg.telemetry_types)


@pytest.mark.parametrize(("managed", "version"), [(True, "2025-01-29"), (False, "2022-12-13")])
def test_the_schema_version_is_the_one_the_environment_accepts(
    managed: bool, version: str,
) -> None:
    cfg = config.load({**ENV, **({INITIALIZATION_TYPE: MANAGED_INSTANCES} if managed else {})})
    assert cfg.managed_instances is managed
    body = json.loads(telemetry_api.build_subscription(cfg, 9001))
    assert body["schemaVersion"] == version
    assert body["destination"]["URI"] == "http://sandbox.localdomain:9001/"


def test_an_accepted_subscription_is_put_with_the_extensions_identifier() -> None:
    delivers, requests = subscribe_answered(reply(200, b"OK"))
    assert delivers is True
    [(line, headers, body)] = requests
    assert line == "PUT /2022-07-01/telemetry HTTP/1.1"
    assert headers[ID_HEADER.lower()] == "id-7"
    assert headers["content-type"] == "application/json"
    assert body == b'{"s":1}'


def test_a_subscription_accepted_with_202_delivers_nothing() -> None:
    assert subscribe_answered(reply(202, b"not supported"))[0] is False


@pytest.mark.parametrize("status", [199, 201, 203, 204, 299, 400, 403, 500])
def test_any_other_answer_is_an_api_error(status: int) -> None:
    with pytest.raises(ApiError) as raised:
        subscribe_answered(reply(status, b"why"))
    assert raised.value.status == status
