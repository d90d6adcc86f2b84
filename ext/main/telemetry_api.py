"""Telemetry API client (2022-07-01): the subscription, and nothing else.

Runs in the main process during init (subscriptions close when init ends). Always sends the
three buffering values explicitly: the documented defaults disagree (lambda-protocol.md §2.1).
"""

from __future__ import annotations

from ext.errors import ApiError
from ext.main.extensions_api import ID_HEADER
from ext.main.minijson import dumps_str

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.config import Config
    from ext.main.extensions_api import ExtensionsApi

SUBSCRIBE_PATH = "/2022-07-01/telemetry"
SCHEMA_VERSION = "2022-12-13"
# The only version Lambda Managed Instances accept; kept to them, where 2022-12-13's shapes are
# what the extension was measured and tested against.
MANAGED_INSTANCES_SCHEMA_VERSION = "2025-01-29"
# The host Lambda delivers to inside the sandbox; the local emulator maps it to 127.0.0.1.
DESTINATION_HOST = "sandbox.localdomain"


def build_subscription(config: Config, port: int) -> bytes:
    """The PUT body (built by hand: the main process does not import a JSON library)."""
    types = ",".join(dumps_str(kind) for kind in config.telemetry_types)
    uri = dumps_str(f"http://{DESTINATION_HOST}:{port}/")
    version = MANAGED_INSTANCES_SCHEMA_VERSION if config.managed_instances else SCHEMA_VERSION
    return (
        f'{{"schemaVersion":"{version}","types":[{types}],'
        f'"buffering":{{"maxItems":{config.buffer_max_items},"maxBytes":{config.buffer_max_bytes},'
        f'"timeoutMs":{config.buffer_timeout_ms}}},'
        f'"destination":{{"protocol":"HTTP","URI":{uri}}}}}'
    ).encode()


def subscribe(api: ExtensionsApi, subscription: bytes) -> bool:
    """Subscribes; False when the platform accepts but delivers nothing (RIE/SAM's 202)."""
    reply = api.client.request(
        "PUT", SUBSCRIBE_PATH,
        {ID_HEADER: api.extension_id, "Content-Type": "application/json"},
        subscription,
    )
    if reply.status == 202:
        return False
    if reply.status != 200:
        raise ApiError(SUBSCRIBE_PATH, reply.status, reply.body)
    return True
