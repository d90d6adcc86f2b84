"""The role's credentials from the container credentials endpoint, for the sender's AWS calls.

Lambda gives a SnapStart function no access key variables, so none is cached in a snapshot; it
sets AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN instead, and the
AWS SDKs GET the credentials from there (the container credential provider). This module does
the same in the sender process: one GET per fetch over a urllib3 connection opened for it, the
token read from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE at each fetch when that is set, the
answer cached until shortly before its Expiration. It never logs or raises with a credential or
the authorization token in the text.
"""

from __future__ import annotations

import json
import logging
import time

import urllib3
from urllib3.exceptions import HTTPError

from ext.diagnostics import without_secret
from ext.errors import ExtError
from ext.sender import sigv4

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

# botocore's ContainerMetadataFetcher waits 2 s; Lambda's endpoint is on loopback and answers
# at once, except while it holds requests around a snapshot: a failed fetch is retried with the
# token fetch's backoff, so a short wait loses nothing.
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0
# botocore's RefreshableCredentials: within 15 min of the expiry a refresh is tried and, if it
# fails, the cached credentials still serve; within 10 min they no longer do. (Lambda's endpoint
# hands out credentials valid for ~16 min: each AWS call after the first minute refreshes.)
ADVISORY_REFRESH_S = 15 * 60
MANDATORY_REFRESH_S = 10 * 60
MAX_DETAIL_CHARS = 200


class CredentialsError(ExtError):
    """The endpoint gave no usable credentials; `detail` says why, never with a secret in it."""

    def __init__(self, detail: str, throttled: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.throttled = throttled

    def __reduce__(self) -> tuple[type[CredentialsError], tuple[str, bool]]:
        return (CredentialsError, (self.detail, self.throttled))


class ContainerCredentials:
    """The credentials at one endpoint, cached by their Expiration (wall-clock time: it is an
    absolute time, and a snapshot restored hours later must see its credentials as expired)."""

    def __init__(self, url: str, token: str, token_file: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._token = token
        self._token_file = token_file
        self.clock = clock
        self._cached: sigv4.Credentials | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"ContainerCredentials({self.url!r}, cached={self._cached is not None})"

    def get(self) -> sigv4.Credentials:
        """Credentials to sign with now; raises CredentialsError when none are usable."""
        left = self._expires_at - self.clock()
        if self._cached is not None and left > ADVISORY_REFRESH_S:
            return self._cached
        try:
            credentials, expires_at = self._fetch()
        except CredentialsError as err:
            if self._cached is None or left <= MANDATORY_REFRESH_S:
                raise
            log.warning("cannot refresh the role credentials from %s (%s); the cached ones "
                        "serve %.0f s more", self.url, err, left - MANDATORY_REFRESH_S)
            return self._cached
        if expires_at <= self.clock():
            raise CredentialsError(f"{self.url} answered credentials that have expired")
        self._cached, self._expires_at = credentials, expires_at
        return credentials

    def _fetch(self) -> tuple[sigv4.Credentials, float]:
        token = self._authorization()
        status, data = self._call(token)
        if status != 200:
            # The answer's text says why (RIE: "cannot get credentials for the provided token");
            # an endpoint that echoes the request would echo the token: it is masked.
            text = without_secret(data, token, b"<token>").decode("utf-8", "replace")
            text = " ".join(text.split())[:MAX_DETAIL_CHARS]
            raise CredentialsError(f"{self.url} answered HTTP {status}" +
                                   (f": {text}" if text else ""),
                                   throttled=status == 429 or status >= 500)
        # Nothing of a 200 answer is ever quoted: it holds the credentials.
        try:
            return _credentials_from(json.loads(data))
        except (ValueError, KeyError, TypeError, RecursionError):
            raise CredentialsError(f"{self.url} answered without usable credentials "
                                   "(AccessKeyId, SecretAccessKey, Token, Expiration)") from None

    def _authorization(self) -> str:
        """The Authorization header's value; the file is read at each fetch, as the SDKs do (the
        platform may rotate it)."""
        token = self._token
        if self._token_file:
            try:
                with open(self._token_file, encoding="utf-8") as file:
                    token = file.read().strip()
            except (OSError, UnicodeDecodeError) as err:
                raise CredentialsError(f"cannot read the authorization token file "
                                       f"{self._token_file}: {type(err).__name__}") from None
        if "\r" in token or "\n" in token:
            raise CredentialsError("the authorization token holds a line break")
        return token

    def _call(self, token: str) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = token
        # A connection per fetch, closed after it, as for the token's own call (secret_store.py):
        # fetches are minutes apart, across freezes.
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)
        pool = urllib3.connection_from_url(self.url, maxsize=1, block=False, timeout=timeout)
        try:
            response = pool.urlopen("GET", urllib3.util.parse_url(self.url).request_uri,
                                    headers=headers, retries=False, redirect=False,
                                    preload_content=True)
        except HTTPError as err:
            raise CredentialsError(f"{self.url} unreachable ({type(err).__name__})") from None
        finally:
            pool.close()
        return response.status, response.data


def _credentials_from(answer: object) -> tuple[sigv4.Credentials, float]:
    """(credentials, expiry as a Unix time) from the endpoint's JSON answer."""
    from datetime import UTC, datetime

    if not isinstance(answer, dict):
        raise TypeError("not an object")
    key_id, secret, token = answer["AccessKeyId"], answer["SecretAccessKey"], answer["Token"]
    if not all(isinstance(v, str) and v for v in (key_id, secret, token)):
        raise TypeError("not strings")
    expiry = datetime.fromisoformat(answer["Expiration"])  # ISO 8601, e.g. ...T06:03:31Z
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return sigv4.Credentials(key_id, secret, token), expiry.timestamp()
