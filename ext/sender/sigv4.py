"""AWS Signature Version 4: signs the sender's few AWS API calls (Secrets Manager, SSM).

Pure functions over strings and bytes (hashlib, hmac), no I/O, no clock of their own: the caller
passes the time. Written here instead of importing botocore, which costs tens of MiB and
hundreds of ms in every environment (docs/deploy.md, "The HEC token"). Follows the published
algorithm (AWS General Reference, "Create a signed AWS API request") for every service but S3:
the path is normalised (dot segments and repeated slashes removed) and URI-encoded.
"""

from __future__ import annotations

import hashlib
import hmac

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

ALGORITHM = "AWS4-HMAC-SHA256"
DATE_HEADER = "X-Amz-Date"
TOKEN_HEADER = "X-Amz-Security-Token"  # noqa: S105 - a header name, not a secret
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


class Credentials:
    """An access key pair and, for a role's temporary credentials, its session token."""

    __slots__ = ("access_key_id", "secret_access_key", "session_token")

    def __init__(self, access_key_id: str, secret_access_key: str,
                 session_token: str | None = None) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token

    def __repr__(self) -> str:
        # The secret key and the session token never appear in a log line or a traceback.
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key=***)"


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """Percent-encodes every UTF-8 byte but the unreserved ones (RFC 3986), upper-case hex."""
    out = []
    for byte in text.encode("utf-8"):
        if byte in _UNRESERVED or (keep_slash and byte == 0x2F):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def normalize_path(path: str) -> str:
    """Removes `.` and `..` segments (RFC 3986 §5.2.4) and empty segments; "" becomes "/"."""
    if not path:
        return "/"
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    lead = "/" if path.startswith("/") else ""
    trail = "/" if path.endswith("/") and kept else ""
    return lead + "/".join(kept) + trail


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Name=value pairs, each side encoded, sorted by name and then by value."""
    encoded = sorted((uri_encode(name), uri_encode(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """(canonical header block, signed header list): lower-case names in order, values trimmed,
    inner runs of white space made one space, repeated names joined with commas."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    names = sorted(merged)
    block = "".join(f"{name}:{','.join(merged[name])}\n" for name in names)
    return block, ";".join(names)


def canonical_request(method: str, path: str, query: Iterable[tuple[str, str]],
                      headers: Iterable[tuple[str, str]], payload_sha256: str) -> tuple[str, str]:
    """(canonical request, signed header list); `path` is the path as sent, before encoding."""
    block, signed = canonical_headers(headers)
    request = "\n".join((
        method.upper(),
        uri_encode(normalize_path(path), keep_slash=True),
        canonical_query(query),
        block,
        signed,
        payload_sha256,
    ))
    return request, signed


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """The key derived for one day, region and service (`date` is YYYYMMDD)."""
    key = _hmac(f"AWS4{secret_access_key}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def sign(method: str, host: str, path: str, *, query: Iterable[tuple[str, str]],
         headers: Iterable[tuple[str, str]], body: bytes, credentials: Credentials,
         region: str, service: str, amz_date: str) -> dict[str, str]:
    """The headers to add to a request: X-Amz-Date, X-Amz-Security-Token (if any), Authorization.

    `host` is the Host header as sent (with the port unless it is the scheme's default);
    `amz_date` is the request time as YYYYMMDDTHHMMSSZ (UTC). Every header in `headers` is signed.
    """
    added = {DATE_HEADER: amz_date}
    if credentials.session_token:
        added[TOKEN_HEADER] = credentials.session_token
    signed_headers = [("host", host), *headers, *added.items()]
    payload_sha256 = hashlib.sha256(body).hexdigest()
    request, signed = canonical_request(method, path, query, signed_headers, payload_sha256)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        (ALGORITHM, amz_date, scope, hashlib.sha256(request.encode("utf-8")).hexdigest())
    )
    key = signing_key(credentials.secret_access_key, amz_date[:8], region, service)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return added


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()
