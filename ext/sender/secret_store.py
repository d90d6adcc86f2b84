"""Reads the HEC token from AWS Secrets Manager or SSM Parameter Store, in the sender process.

One signed call per fetch (GetSecretValue or GetParameter with decryption, AWS JSON 1.1
protocol), signed with SigV4 (ext/sender/sigv4.py) from the role credentials Lambda puts in the
environment or, with SnapStart, serves at the container credentials endpoint
(ext/sender/container_credentials.py), over a urllib3 connection opened for that call alone.
Errors name the secret or parameter and AWS's error type, never a value: neither the token nor
the secret's text is ever put in an exception, a log line or a repr.
"""

from __future__ import annotations

import json
import time

import urllib3
from urllib3.exceptions import HTTPError

from ext.config import SPLUNK_HEC_TOKEN_SECRET_KEY, token_problem
from ext.diagnostics import without_secret
from ext.errors import ExtError
from ext.sender import sigv4

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ext.config import Config
    from ext.sender.container_credentials import ContainerCredentials

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGETS = {"secretsmanager": "secretsmanager.GetSecretValue", "ssm": "AmazonSSM.GetParameter"}
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
# Error types that say "slow down" or "try again": the AWS SDKs' throttling and transient codes.
THROTTLED = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException",
                       "RequestLimitExceeded", "ThrottledException"})


class TokenFetchError(ExtError):
    """A fetch failed; `reason` is AWS's error type (or network / invalid-token / ...)."""

    def __init__(self, reference: str, reason: str, detail: str = "",
                 throttled: bool = False) -> None:
        super().__init__(f"{reference}: {reason}" + (f" ({detail})" if detail else ""))
        self.reference = reference
        self.reason = reason
        self.detail = detail
        self.throttled = throttled

    def __reduce__(self) -> tuple[type[TokenFetchError], tuple[str, str, str, bool]]:
        return (TokenFetchError, (self.reference, self.reason, self.detail, self.throttled))


class SecretStore:
    """The one secret or parameter named in the Config; `fetch` returns the token in it."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        # The credentials of the last call (its error text is cleaned of them): the access key
        # variables' or, without them, those the endpoint gave for it (none before the first).
        self.container: ContainerCredentials | None = None
        if config.aws_credentials is not None:
            self.credentials = sigv4.Credentials(*config.aws_credentials)
        elif config.aws_container_credentials is not None:
            # Imported only here: functions with access keys (all but SnapStart's) never load it.
            from ext.sender.container_credentials import ContainerCredentials

            self.container = ContainerCredentials(*config.aws_container_credentials, clock=clock)
            self.credentials = sigv4.Credentials("", "")
        else:
            raise ValueError("no AWS credentials in the configuration")
        self.service = config.token_source
        self.reference = config.token_reference
        self.secret_key = config.token_secret_key
        self.region = config.aws_region
        self.endpoint = config.aws_endpoint
        self.clock = clock
        scheme, _, rest = config.aws_endpoint.partition("://")
        netloc, slash, path = rest.partition("/")
        default_port = ":443" if scheme == "https" else ":80"
        self.host = netloc.removesuffix(default_port)
        # The endpoint's own path, as the SDKs send it (a proxy may route on it), else "/".
        self.path = slash + path or "/"
        self.operation = TARGETS[self.service].rpartition(".")[2]

    def close(self) -> None:
        """Holds no connection between calls."""

    def fetch(self) -> str:
        """The token as stored now; raises TokenFetchError, never with the value in it."""
        request: dict[str, str | bool]
        if self.service == "secretsmanager":
            request = {"SecretId": self.reference}
        else:
            request = {"Name": self.reference, "WithDecryption": True}
        body = json.dumps(request).encode()
        status, data, error_header = self._call(body)
        if status != 200:
            raise self._error(status, data, error_header)
        try:
            answer = json.loads(data)
            text = self._value(answer)
        except (ValueError, KeyError, TypeError):
            raise TokenFetchError(self.reference, "UnexpectedResponse",
                                  f"{self.operation} answered without a value") from None
        return self._token_from(text)

    def _signing_credentials(self) -> sigv4.Credentials:
        if self.container is not None:
            from ext.sender.container_credentials import CredentialsError

            try:
                self.credentials = self.container.get()
            except CredentialsError as err:
                # Held and retried as any failed fetch (token_source.py); the data stays spooled.
                raise TokenFetchError(self.reference, "RoleCredentialsUnavailable", err.detail,
                                      err.throttled) from None
        return self.credentials

    def _call(self, body: bytes) -> tuple[int, bytes, str]:
        headers = [("Content-Type", CONTENT_TYPE), ("X-Amz-Target", TARGETS[self.service])]
        credentials = self._signing_credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        signed = sigv4.sign("POST", self.host, self.path, query=[], headers=headers, body=body,
                            credentials=credentials, region=self.region,
                            service=self.service, amz_date=amz_date)
        # A connection per call, closed after it: calls are rare (the first read, then one after
        # a rejection at most every SPLUNK_HEC_TOKEN_REFETCH_S), and one kept meanwhile spans
        # freezes, across which the endpoint may drop it unseen: the next call on it would meet
        # a reset, fail, and wait out a whole backoff before trying again.
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)
        pool = urllib3.connection_from_url(self.endpoint, maxsize=1, block=False, timeout=timeout)
        try:
            response = pool.urlopen(
                "POST", self.path, body=body,
                headers={"Host": self.host, **dict(headers), **signed},
                retries=False, redirect=False, preload_content=True,
            )
        except HTTPError as err:
            raise TokenFetchError(self.reference, "network", type(err).__name__) from None
        finally:
            pool.close()
        return response.status, response.data, response.headers.get("x-amzn-ErrorType", "")

    def _value(self, answer: object) -> str:
        if not isinstance(answer, dict):
            raise TypeError("not an object")
        if self.service == "ssm":
            parameter = answer["Parameter"]
            if not isinstance(parameter, dict):
                raise TypeError("no Parameter object")
            value = parameter["Value"]
        else:
            # Only SecretBinary says binary: an answer with neither is not one we understand.
            if "SecretString" not in answer and "SecretBinary" in answer:
                raise TokenFetchError(self.reference, "BinarySecret",
                                      "the secret holds binary data, not a string")
            value = answer["SecretString"]
        if not isinstance(value, str):
            raise TypeError("not a string")
        return value

    def _token_from(self, text: str) -> str:
        token = text.strip()
        if self.secret_key is not None:
            fields = _json_or_none(text)
            if not isinstance(fields, dict):
                raise TokenFetchError(self.reference, "NotJson",
                                      f"{SPLUNK_HEC_TOKEN_SECRET_KEY} is set but the "
                                      "secret is not a JSON object")
            if self.secret_key not in fields or not isinstance(fields[self.secret_key], str):
                raise TokenFetchError(self.reference, "KeyNotFound",
                                      f"the secret has no string key {self.secret_key!r}")
            token = fields[self.secret_key].strip()
        elif token.startswith("{") and isinstance(_json_or_none(token), dict):
            # A key/value secret read whole: never a HEC token, and sending it would put every
            # value of the secret in HEC's Authorization header.
            # SPLUNK_HEC_TOKEN_SECRET_KEY applies to a Secrets Manager secret only (config).
            advice = ("store the token alone in the parameter" if self.service == "ssm" else
                      f"set {SPLUNK_HEC_TOKEN_SECRET_KEY} to the key whose value is the token")
            raise TokenFetchError(self.reference, "NoKey", f"the secret is a JSON object: {advice}")
        problem = token_problem(token)
        if problem:
            raise TokenFetchError(self.reference, "InvalidToken", f"the token {problem}")
        return token

    def _error(self, status: int, data: bytes, error_header: str) -> TokenFetchError:
        kind, message = error_header, ""
        # A proxy's error page may echo the signed request's headers; the error's text is logged.
        for secret in (self.credentials.secret_access_key, self.credentials.session_token):
            data = without_secret(data, secret, b"<credential>")
        parsed = _json_or_none(data.decode("utf-8", "replace"))
        if isinstance(parsed, dict):
            kind = str(parsed.get("__type") or kind)
            message = str(parsed.get("message") or parsed.get("Message") or "")
        elif data.lstrip().startswith(b"<"):  # an XML error from a proxy or an emulator
            kind = _xml_text(data, "Code") or kind
            message = _xml_text(data, "Message")
        kind = kind.rpartition("#")[2].partition(":")[0] or f"HTTP{status}"
        throttled = kind in THROTTLED or status == 429 or status >= 500
        return TokenFetchError(self.reference, kind, message[:300], throttled)


def _json_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return None


def _xml_text(data: bytes, tag: str) -> str:
    start = data.find(f"<{tag}>".encode())
    end = data.find(f"</{tag}>".encode(), start)
    if start < 0 or end < 0:
        return ""
    return data[start + len(tag) + 2 : end].decode("utf-8", "replace")
