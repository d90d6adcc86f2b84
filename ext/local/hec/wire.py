"""Request-level helpers for the embedded HEC receiver: auth, channel, body framing, gzip.

Pure functions over header values and bytes, used by the handler threads. Auth order and codes
follow hec.md 1.2 (query token validated before code 16; Splunk/Basic header forms; 401 vs 403).
"""

from __future__ import annotations

import base64
import binascii
import uuid
import zlib
from typing import TYPE_CHECKING

from ext.local.hec.protocol import HecReply, hec_reply, html_reply

if TYPE_CHECKING:
    from collections.abc import Callable

    from ext.local.hec.model import HecToken


class BodyError(Exception):
    """A body that cannot be read or inflated; carries the reply Splunk would give."""

    def __init__(self, reply: HecReply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def authenticate(  # noqa: PLR0911 - one return per auth outcome (hec.md 1.2)
    query_token: str | None,
    authorization: str | None,
    lookup: Callable[[str], HecToken | None],
) -> HecToken | HecReply:
    """The token named by the request, or the HEC error reply for it."""
    if query_token is not None:
        token = lookup(query_token)
        if token is None:
            return hec_reply(4)
        if not token.allow_query_auth:
            return hec_reply(16)
        return token if token.enabled else hec_reply(1)
    if authorization is None:
        return hec_reply(2)
    value = _credential(authorization)
    if value is None:
        return hec_reply(3)
    token = lookup(value)
    if token is None:
        return hec_reply(4)
    return token if token.enabled else hec_reply(1)


def _credential(authorization: str) -> str | None:
    scheme, _, rest = authorization.strip().partition(" ")
    rest = rest.strip()
    if not rest:
        return None
    if scheme.lower() == "splunk":
        return rest
    if scheme.lower() == "basic":  # token is the password; the user name is ignored (hec.md 1.2)
        try:
            decoded = base64.b64decode(rest, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user_sep = decoded.find(":")
        return decoded[user_sep + 1 :] if user_sep >= 0 else None
    return None


def check_channel(channel: str | None, *, required: bool) -> HecReply | None:
    """None when the channel is acceptable, else 400 code 10 (missing) or 11 (not a GUID)."""
    if channel is None or channel == "":
        return hec_reply(10) if required or channel == "" else None
    try:
        uuid.UUID(channel)
    except ValueError:
        return hec_reply(11)
    return None


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Decode the body per Content-Encoding: identity or gzip (several members allowed)."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return body
    if name != "gzip":
        raise BodyError(html_reply(415, "Unsupported Media Type", "Unsupported content encoding"))
    parts: list[bytes] = []
    size = 0
    data = body
    try:
        while data:
            inflater = zlib.decompressobj(wbits=31)
            chunk = inflater.decompress(data, limit - size + 1)
            size += len(chunk)
            if size > limit or inflater.unconsumed_tail:
                raise BodyError(html_reply(413, "Content too large", "Decompressed body too large"))
            if not inflater.eof:
                raise BodyError(html_reply(400, "Bad Request", "Malformed gzip body"))
            parts.append(chunk)
            data = inflater.unused_data
    except zlib.error:
        raise BodyError(html_reply(400, "Bad Request", "Malformed gzip body")) from None
    return b"".join(parts)
