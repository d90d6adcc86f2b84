"""Splunk HEC client: POST one batch over a pooled urllib3 connection and classify the answer.

Runs only in the sender process; the pool is created here, after the fork (a pool must never
cross a fork, urllib3#850). urllib3 keeps the one connection: it connects, negotiates and
verifies TLS, and notices a keep-alive connection the server dropped. The request and its answer
go over that connection's socket (ext/sender/hec_wire.py): the head is built once per token, and
the answer is read without the header machinery urllib3 and http.client bring, which cost more
CPU than all the rest of a small request (issue 12). A request is never retried or redirected
here: the courier owns the retry policy, so a POST is never replayed behind its back.

`prepare` does ahead of the first request what it would otherwise pay for: the token, the TLS
trust store (once per process, not per connection: only the CAs that can anchor HEC's chain,
ext/sender/trust.py), TCP and the TLS handshake.

The token comes from a token source (ext/sender/token_source.py) asked before each request and
told when HEC rejects the token; it is sent in the Authorization header and never logged or put
in an error message.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import socket
import ssl
import time
import uuid
from typing import TYPE_CHECKING, cast

import msgspec
import urllib3
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import HTTPError, SSLError
from urllib3.util import wait_for_read
from urllib3.util.ssl_ import create_urllib3_context

from ext.diagnostics import without_secret
from ext.sender import hec_wire, trust
from ext.sender.batching import compress_lines

if TYPE_CHECKING:
    from urllib3.connection import HTTPConnection

    from ext.config import Config
    from ext.sender.token_source import FetchedToken, StaticToken

log = logging.getLogger(__name__)

USER_AGENT = "splunk-hec-lambda-extension/0.1"
CHANNEL_HEADER = "X-Splunk-Request-Channel"
# HEC codes (hec.md §1.10) whose event is bad as sent: quarantine it, resend the rest.
POISON_CODES = frozenset({5, 6, 12, 13, 15})
# Configuration problems an operator can fix (token, index, ack): hold the data, never drop.
HOLD_CODES = frozenset({1, 2, 3, 4, 7, 10, 11, 14, 16, 21, 22})
# Transient 4xx (404: Splunk Cloud maintenance); every 5xx is transient too.
RETRY_STATUSES = frozenset({404, 408, 429})
# "Token disabled" and "Invalid token" (hec.md §1.10): the token may have been rotated. Splunk
# answers them with 403; codes 21 and 22 say the same with 400 (token management).
TOKEN_REJECTED = frozenset({(403, 1), (403, 4), (400, 21), (400, 22)})
TOKEN_NOTICE = "splunk-extension.token-error"  # noqa: S105 - an event type, not a secret
# A body up to this size goes out in the same send as the head: one syscall, one TCP segment.
JOIN_BODY_BYTES = 64 * 1024


# How a send fails when the server answered early and closed: TLS reports the close as an EOF.
_SEND_CUT = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLEOFError,
             ssl.SSLZeroReturnError)
# How a kept-alive connection the server (or what stands between) dropped fails a request: a
# reset, or the end of the stream before any answer. Not a timeout: a HEC that does not answer.
_DROPPED = (*_SEND_CUT, hec_wire.ClosedUnansweredError)


class _Trust(enum.Enum):
    PENDING = "pending"  # no CA loaded yet
    CHOSEN = "chosen"  # those of the bundle that can anchor HEC's chain (ext/sender/trust.py)
    ALL = "all"  # the whole bundle, or no verification


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    RETRY = "retry"  # transient: network, timeout, 408/429/5xx, maintenance 404
    HOLD = "hold"  # configuration: bad token, index, ack; wait for an operator
    POISON = "poison"  # one event (or the batch if no index) is invalid as sent
    TOO_LARGE = "too_large"  # 413: split the batch


class HecOutcome(msgspec.Struct, frozen=True, gc=False):
    verdict: Verdict
    status: int = 0  # 0 when no HTTP response arrived
    code: int | None = None
    text: str = ""
    invalid_event: int | None = None
    retry_after_s: float | None = None


# Splunk's answer to an accepted request, classified once.
_USUAL = {(200, b'{"text":"Success","code":0}'): HecOutcome(Verdict.ACCEPTED, 200, 0, "Success")}


class HecClient:
    """One keep-alive connection to the HEC endpoint, with gzip and a per-process channel."""

    def __init__(self, config: Config, tokens: StaticToken | FetchedToken | None = None) -> None:
        from ext.sender import token_source

        self.tokens = tokens if tokens is not None else token_source.for_config(config)
        self._config = config
        self._notice: bytes | None = None
        timeout = urllib3.Timeout(
            connect=config.connect_timeout_ms / 1000, read=config.request_timeout_ms / 1000
        )
        self._read_timeout = timeout.read_timeout
        kwargs: dict[str, object] = {"maxsize": 1, "block": False, "timeout": timeout}
        self._tls: ssl.SSLContext | None = None
        self._ca_bundle = config.ca_bundle
        https = config.hec_url.startswith("https://")
        if https:
            verify = ssl.CERT_REQUIRED if config.verify_tls else ssl.CERT_NONE
            kwargs["cert_reqs"] = verify
            # One context for every connection (urllib3 would build one, and read the CA bundle
            # again, at each connect); its CAs are loaded once, by `trust`.
            self._tls = create_urllib3_context(cert_reqs=verify)
            kwargs["ssl_context"] = self._tls
        # The CAs in self._tls: none yet (PENDING), those chosen for HEC's chain, or all.
        self._trust = _Trust.PENDING if https and config.verify_tls else _Trust.ALL
        self._bundle: trust.Bundle | None = None  # the CA file, read by `trust`
        self._connect_timeout = timeout.connect_timeout
        self._pool = urllib3.connection_from_url(config.hec_url, **kwargs)
        if https:
            self._pool.ConnectionCls = TicketTolerantHTTPSConnection
        self._host = hec_wire.host_field(self._pool.host, self._pool.port, 443 if https else 80)
        self._path = config.hec_path
        self._gzip_level = config.gzip_level
        self._fields = [
            ("Accept-Encoding", "identity"),
            ("User-Agent", USER_AGENT),
            ("Content-Type", "application/json"),
            (CHANNEL_HEADER, str(uuid.uuid4())),
        ]
        if self._gzip_level:
            self._fields.append(("Content-Encoding", "gzip"))
        # The request head of the current token and fields: (fields, token, head).
        self._head: tuple[list[tuple[str, str]], str, bytes | None] | None = None
        self._conn: HTTPConnection | None = None  # the last connection handed out

    def close(self) -> None:
        self._pool.close()
        self.tokens.close()

    def restored(self) -> None:
        """SnapStart resumed the environment from its snapshot (control.Restored): the
        connection made before it is cut off, and the channel is every restored environment's.

        The socket is shut down, not used: a request on it (another thread's, waiting for an
        answer that cannot come) fails at once, and the pool finds an idle one dropped and
        connects again. Nothing is sent on it: its TLS keys are in every restored environment.
        """
        # A new list: the head built from the old one is built again (`_request_head`).
        self._fields = [(name, str(uuid.uuid4()) if name == CHANNEL_HEADER else value)
                        for name, value in self._fields]
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # closed meanwhile
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # not SSLSocket's: no TLS state

    def trust(self) -> None:
        """Reads the CA bundle that verifies HEC's certificate (https with verification on), once.

        CPU alone, ~1 ms: the bundle is split and decoded (ext/sender/trust.py); its CAs are
        loaded into OpenSSL as the first connection needs them, only those that can anchor
        HEC's chain (a bundle of a few CAs: all of them, now). A bundle that cannot be read is
        logged and left to the first request.
        """
        if self._trust is not _Trust.PENDING or self._bundle is not None:
            return
        try:
            self._read_bundle()
        except SSLError as err:
            log.info("cannot load the CAs for HEC yet (%s)", err)

    def prepare(self) -> None:
        """Gets the token and connects (TCP, TLS handshake) before the first request needs it.

        For the courier's start (the sender starts near the end of Lambda's init): a cold start's
        first flush would pay for these otherwise. Bounded by the connect timeout (twice over
        at the first connection, whose probe handshake chooses the CAs); a failure is logged and
        left to the first request.
        """
        self.trust()
        self.tokens.current()  # a fetched token: read now (a failure is retried as usual)
        try:
            conn = self._conn = cast("HTTPConnection", self._pool._get_conn())
        except HTTPError:
            return  # closed meanwhile
        try:
            self._connected(conn)
        except (HTTPError, OSError) as err:
            conn.close()
            log.info("HEC not reachable yet (%s); the first request connects again",
                     type(err).__name__)
        finally:
            self._pool._put_conn(conn)

    def post(self, body: bytes, within_s: float | None = None) -> HecOutcome:
        """Sends one request body (from `compress`) and classifies the answer.

        Without a token (a fetch failed and waits for its retry) nothing is sent: HOLD.
        `within_s` shortens the connect and read timeouts for this request (an attempt on the
        sender's own thread must not hold a waiting flush past its budget): a timeout is RETRY.
        """
        token = self.tokens.current()
        if token is None:
            return HecOutcome(Verdict.HOLD, text=f"no HEC token: {self.tokens.problem}")
        started = time.monotonic()
        outcome = self._send(body, token, within_s)
        if (outcome.status, outcome.code) in TOKEN_REJECTED:
            self.tokens.rejected(token)
        elif outcome.verdict is Verdict.ACCEPTED:
            held = self.tokens.accepted()
            if held is not None:
                self._notice = self._token_notice(held)
            # Within what is left of the budget: the notice must not hold a flush either.
            left = None if within_s is None else within_s - (time.monotonic() - started)
            if self._notice is not None and (left is None or left > 0) and self._send(
                self._notice, token, left
            ).verdict is Verdict.ACCEPTED:
                self._notice = None  # else tried again after the next accepted request
        return outcome

    def _send(self, body: bytes, token: str, within_s: float | None = None) -> HecOutcome:
        """One request; once more at once on a new connection when a kept-alive one turns out
        dropped (reset, or closed before a byte of an answer): the server, a load balancer or a
        SnapStart restore ended it while the environment was frozen, and nothing told us. As a
        failure it would answer a waiting flush Failing, while the request that follows at once
        is most often accepted within the flush."""
        head = self._request_head(token)
        if head is None:
            return HecOutcome(Verdict.HOLD, text="the HEC token has a character HTTP cannot carry")
        request = b"%b%d\r\n\r\n" % (head, len(body))
        if len(body) <= JOIN_BODY_BYTES:
            request, body = request + body, b""
        started = time.monotonic()
        outcome, dropped = self._attempt(request, body, token, within_s)
        if dropped:
            left = None if within_s is None else within_s - (time.monotonic() - started)
            if left is None or left > 0:
                outcome, _ = self._attempt(request, body, token, left)
        return outcome

    def _attempt(self, request: bytes, body: bytes, token: str,
                 within_s: float | None) -> tuple[HecOutcome, bool]:
        """One request on the pooled connection; and whether it failed as a kept-alive
        connection that was dropped does (not on a connection made for it)."""
        try:
            # urllib3's own hand-out and return of a pooled connection (urlopen's): it replaces
            # a connection the server closed meanwhile.
            conn = self._conn = cast("HTTPConnection", self._pool._get_conn())
        except HTTPError as err:  # the pool was closed
            return HecOutcome(Verdict.RETRY, text=type(err).__name__), False
        reused = conn.sock is not None
        connecting = True
        connect_timeout = conn.timeout
        sock: socket.socket | None = None
        try:
            if within_s is not None:
                conn.timeout = min(within_s, self._config.connect_timeout_ms / 1000)
            sock = self._connected(conn)
            connecting = False
            if within_s is not None:
                sock.settimeout(min(within_s, self._read_timeout or within_s))
            try:
                sock.sendall(request)
                if body:
                    sock.sendall(body)
            except _SEND_CUT:
                # The server may have answered before reading it all (a 413 for a body over its
                # limit) and closed: its answer is read all the same, as urllib3 does, and the
                # connection is not reused.
                answer = hec_wire.read_answer(sock)
                answer = hec_wire.Answer(answer.status, answer.body, answer.retry_after, False)
            else:
                answer = hec_wire.read_answer(sock)
        except (HTTPError, OSError, hec_wire.WireError) as err:
            conn.close()
            failed = HecOutcome(Verdict.RETRY, text=_failure_name(err, connecting=connecting))
            return failed, reused and isinstance(err, _DROPPED)
        finally:
            if within_s is not None:
                conn.timeout = connect_timeout
                if sock is not None and conn.sock is sock:
                    sock.settimeout(self._read_timeout)
            self._pool._put_conn(conn)
        if not answer.reusable:
            conn.close()
        # The body's text is logged and kept with dead letters.
        text = without_secret(answer.body, token, b"<token>")
        return classify(answer.status, text, answer.retry_after), False

    def _request_head(self, token: str) -> bytes | None:
        """The request head for `token`, built once per token and channel; None if no header
        can carry it.

        `restored` replaces the fields (a new channel) from the sender's thread, maybe while the
        courier's builds a head here: the fields are read once, and the head is kept with the
        fields it was built from, so one built from the old fields is not used again."""
        fields = self._fields
        cached = self._head
        if cached is not None and cached[0] is fields and cached[1] == token:
            return cached[2]
        try:
            built: bytes | None = hec_wire.request_head(
                self._path, self._host, [*fields, ("Authorization", f"Splunk {token}")])
        except ValueError:
            built = None
        self._head = (fields, token, built)
        return built

    def _read_bundle(self) -> None:
        """`self._bundle` from the CA file. Every CA is trusted at once where there is nothing
        worth choosing from: only a CA directory (OpenSSL reads it lazily, by subject hash), or
        a bundle so small that loading it costs less than the handshake that would choose."""
        cafile, _ = trust.locations(self._ca_bundle)
        if cafile is None:
            self._trust_all()
            return
        try:
            bundle = trust.read_bundle(cafile)
        except OSError as err:  # as urllib3 reports an unreadable bundle
            raise SSLError(err) from err
        if len(bundle) <= trust.LOAD_WHOLE_MAX:
            self._trust_all()
        else:
            self._bundle = bundle

    def _choose_trust(self) -> None:
        """Loads into self._tls the CAs that can anchor the chain HEC presents, or every CA when
        none of them can (or the chain cannot be seen). A connection failure propagates, as the
        connection's own would: the choice is made again by the next connection."""
        if self._bundle is None:
            self._read_bundle()
            if self._bundle is None:
                return  # a CA directory: all trusted
        try:
            chain = self._peer_chain()
        except (ssl.SSLError, SSLError) as err:  # TLS itself failed: the real handshake tells
            log.info("cannot see HEC's certificate chain (%s); trusting every CA", err)
            self._trust_all()
            return
        try:
            anchors = self._bundle.anchors(chain)
        except ValueError:  # a certificate of the chain this reading of DER does not follow
            anchors = None
        if anchors is None:
            log.info("no CA of the bundle names HEC's certificate chain; trusting every CA")
            self._trust_all()
            return
        assert self._tls is not None
        self._tls.load_verify_locations(cadata=anchors)
        capath = trust.locations(self._ca_bundle)[1]
        if capath is not None:
            self._tls.load_verify_locations(capath=capath)  # lazy: part of "every CA"
        self._trust = _Trust.CHOSEN
        self._bundle = None  # every CA as PEM and DER: not kept; the fallback reads the file

    def _peer_chain(self) -> list[bytes]:
        """The certificates HEC presents, from a handshake without verification; nothing is
        sent over that connection, closed at once."""
        probe = HTTPSConnection(
            self._pool.host, self._pool.port, timeout=self._connect_timeout,
            ssl_context=create_urllib3_context(cert_reqs=ssl.CERT_NONE),
            cert_reqs=ssl.CERT_NONE, assert_hostname=False)
        try:
            probe.connect()
            sock = probe.sock
            return trust.peer_chain(sock) if isinstance(sock, ssl.SSLSocket) else []
        finally:
            probe.close()

    def _trust_all(self) -> None:
        """Every CA of the bundle (or OpenSSL's defaults) into self._tls, as before any choice."""
        assert self._tls is not None
        try:
            if self._ca_bundle and os.path.isdir(self._ca_bundle):
                self._tls.load_verify_locations(capath=self._ca_bundle)
            elif self._ca_bundle:
                self._tls.load_verify_locations(cafile=self._ca_bundle)
            else:
                self._tls.load_default_certs()
        except OSError as err:  # as urllib3 reports an unreadable bundle
            raise SSLError(err) from err
        self._trust = _Trust.ALL
        self._bundle = None

    def _connected(self, conn: HTTPConnection) -> socket.socket:
        """The socket of `conn`, connecting it first if it is not (or no longer) connected.

        With the CAs chosen for HEC's chain, a certificate they do not verify (HEC's chain
        changed, or a name the choice missed) is tried once more with every CA: the choice
        saves time, it never decides a rejection.
        """
        sock: socket.socket | None = conn.sock
        if sock is None:
            if self._trust is _Trust.PENDING:
                self._choose_trust()
            try:
                conn.connect()  # with the connect timeout
            except ssl.SSLCertVerificationError as err:
                if self._trust is not _Trust.CHOSEN:
                    raise
                conn.close()
                log.info("the CAs chosen for HEC do not verify its certificate (%s); "
                         "trusting every CA", err.verify_message)
                self._trust_all()
                conn.connect()
            sock = conn.sock
            assert sock is not None
            sock.settimeout(self._read_timeout)
        return sock

    def _token_notice(self, details: dict[str, int | str]) -> bytes:
        """One `splunk-extension.token-error` event: how long delivery was held, and why."""
        from ext.sender.envelope import EnvelopeBuilder

        builder = EnvelopeBuilder(self._config, self._config.function_name)
        return compress(builder.notice(TOKEN_NOTICE, details), self._gzip_level)


class TicketTolerantHTTPSConnection(HTTPSConnection):
    """urllib3's HTTPS connection, but a TLS 1.3 session ticket does not make it "dropped".

    Before reusing a connection the pool asks `is_connected`, which urllib3 answers "no" when
    the socket has anything to read. A TLS 1.3 server sends its session tickets after the
    handshake; a connection that only did the handshake (`HecClient.prepare`) still has them
    unread, and would be thrown away and connected again by the first request.
    """

    @property
    def is_connected(self) -> bool:
        sock = self.sock
        if sock is None:
            return False
        if not wait_for_read(sock, timeout=0.0):
            return True
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            sock.recv(hec_wire.RECV_BYTES)  # reads TLS records: application data, or b"" (closed)
        except ssl.SSLWantReadError:
            return True  # only handshake records (tickets) were waiting
        except OSError:
            return False
        finally:
            sock.settimeout(timeout)
        return False  # closed, or data nobody asked for: either way not reusable


def _failure_name(err: Exception, *, connecting: bool) -> str:
    """A request's failure as urllib3 would have named it (the breaker tells timeouts by the
    "TimeoutError" ending; the log names the kind, never more)."""
    if isinstance(err, HTTPError):
        return type(err).__name__  # NewConnectionError, NameResolutionError, ...
    if isinstance(err, ssl.SSLError):
        return "SSLError"
    if isinstance(err, TimeoutError):
        return "ConnectTimeoutError" if connecting else "ReadTimeoutError"
    return "ProtocolError"


def compress(body: bytes, level: int) -> bytes:
    """The request body as sent: gzip at `level` (1 by default), or as is with level 0."""
    return compress_lines([body], level)


def classify(  # noqa: PLR0911 - one return per verdict, the usual answer first
    status: int, data: bytes, retry_after: str | None,
) -> HecOutcome:
    """Maps an HTTP status and HEC body (JSON, HTML or empty) to what the sender should do.

    A configuration code holds whatever the status (receivers disagree on statuses: Vector answers
    401 where Splunk answers 403), because holding keeps the data in the spool. Quarantine takes
    data out of the delivery path, so it needs both signals: status 400 and a data-error code.
    A 400 without a code is no verdict on an event: HEC names the event it refuses with a code,
    and a code-less 400 comes for the whole body (malformed gzip) or from something in front of
    HEC (a proxy, a load balancer); quarantining on it split every request down to single
    events and dead-lettered them all. It holds.
    """
    usual = _USUAL.get((status, data))
    if usual is not None:
        return usual  # nearly every answer: no JSON to parse
    code, text, invalid = _parse_body(data)
    delay = _retry_after_s(retry_after)
    if 200 <= status < 300:
        return HecOutcome(Verdict.ACCEPTED, status, code, text)
    if status == 413:
        return HecOutcome(Verdict.TOO_LARGE, status, code, text)
    if code in HOLD_CODES:
        return HecOutcome(Verdict.HOLD, status, code, text, invalid)
    if status == 400 and code in POISON_CODES:
        return HecOutcome(Verdict.POISON, status, code, text, invalid)
    if status in RETRY_STATUSES or status >= 500:
        return HecOutcome(Verdict.RETRY, status, code, text, None, delay)
    # 401/403 (token), 415, a redirect, an unknown 4xx or code: for an operator to fix.
    return HecOutcome(Verdict.HOLD, status, code, text, invalid)


def _parse_body(data: bytes) -> tuple[int | None, str, int | None]:
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return None, data[:200].decode("utf-8", "replace"), None
    if not isinstance(parsed, dict):
        return None, str(parsed)[:200], None
    code = parsed.get("code")
    invalid = parsed.get("invalid-event-number")
    return (
        code if isinstance(code, int) else None,
        str(parsed.get("text", ""))[:200],
        invalid if isinstance(invalid, int) and invalid >= 0 else None,
    )


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 300.0))
    except ValueError:
        return None
