"""HTTP/1.1 request handler of the embedded HEC receiver (one thread per connection).

Routes HEC paths to ingest / ack / health, applies injected faults, commits accepted events to
the store *before* answering 200 (the receiver is the judge of no-loss tests), and hands
/_admin/ paths to the admin module. Every answer is HEC JSON or the HTML Splunk would send.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from ext.local.hec import admin
from ext.local.hec.body_parser import ParseContext, RawMeta, parse_event_body, parse_raw_body
from ext.local.hec.faults import ACK, COOKIE, DATA, HEALTH, LB_COOKIES, Fault, FaultMode
from ext.local.hec.protocol import (
    ACK_PATHS,
    ADMIN_PREFIX,
    EVENT_PATHS,
    HEADER_CHANNEL,
    HEALTH_PATHS,
    RAW_PATHS,
    HecReply,
    hec_reply,
    html_reply,
    json_reply,
    not_found_reply,
)
from ext.local.hec.store import RequestRecord
from ext.local.hec.wire import BodyError, authenticate, check_channel, inflate

if TYPE_CHECKING:
    from ext.local.hec.model import HecToken, ParsedEvent
    from ext.local.hec.state import ReceiverState

logger = logging.getLogger(__name__)
_ACK_BODY = msgspec.json.Decoder(dict[str, list[int]])
_EARLY_REPLIES = {
    FaultMode.SERVER_ERROR: 8,
    FaultMode.SHUTTING_DOWN: 23,
}


class HecHttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that carries the receiver state; connections: state.connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: ReceiverState) -> None:
        self.state = state
        super().__init__(address, HecRequestHandler)

    def close_connections(self) -> None:
        """Shut down every open client connection so idle keep-alive threads end, and close the
        abandoned ones."""
        self.state.connections.close_all()

    def shutdown_request(self, request: Any) -> None:
        if self.state.connections.is_abandoned(request):
            return  # left open, unread, until close_connections (connections.py)
        super().shutdown_request(request)


class HecRequestHandler(BaseHTTPRequestHandler):
    """One client connection; handles requests until the client or the server closes it."""

    server: HecHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "Splunkd"
    sys_version = ""
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.state.limits.keepalive_idle_s)
        self.server.state.connections.opened(self.connection)
        self._drop_next = False

    def finish(self) -> None:
        self.server.state.connections.finished(self.connection)
        with contextlib.suppress(OSError):  # the client vanished; nothing left to flush
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    # -- routing -----------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        if self._abandoned():  # a request read just before the abandonment: never seen
            return
        if self._drop_next:  # stale keep-alive fault: the "idle" connection is already gone
            self._reset_connection()
            return
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = self._read_body()
        except BodyError as err:
            self._send(err.reply)
            return
        except ValueError:  # unparseable framing: the stream position is lost, so close
            self._send(html_reply(400, "Bad Request", "Malformed request framing", close=True))
            return
        except OSError:
            self.close_connection = True
            return
        received_at = time.time()
        if path.startswith(ADMIN_PREFIX):
            self._send(admin.handle(method, path, query, body, state, self.connection))
        elif path in HEALTH_PATHS:
            fault = state.faults.take(HEALTH)
            self._send(hec_reply(fault.params["code"] if fault else 17))
        elif path in EVENT_PATHS or path in RAW_PATHS or path in ACK_PATHS:
            if method != "POST":
                self._send(not_found_reply())
            elif path in ACK_PATHS:
                self._send(self._ack(query, body))
            else:
                self._ingest(path, query, body, received_at)
        else:
            self._send(not_found_reply())

    def _read_body(self) -> bytes:
        limit = self.server.state.limits.max_content_length
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError(length)
        if length > limit:
            raise BodyError(
                html_reply(
                    413,
                    "Content too large",
                    f"Content-Length of {length} too large (maximum is {limit})",
                    close=True,
                )
            )
        body = self.rfile.read(length)
        if len(body) != length:
            raise ConnectionError("client closed mid-body")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():
                    continue  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                raise BodyError(html_reply(413, "Content too large", "Body too large", close=True))
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    # -- ingest --------------------------------------------------------------------------------

    def _ingest(self, path: str, query: dict[str, str], body: bytes, received_at: float) -> None:
        state = self.server.state
        request_id = state.store.next_request_id()
        channel = self.headers.get(HEADER_CHANNEL) or query.get("channel")
        fault = state.faults.take(DATA, len(body))
        token: HecToken | None = None
        events: list[ParsedEvent] = []
        reply = self._fault_reply(fault)
        if reply is None:
            auth = authenticate(
                query.get("token"), self.headers.get("Authorization"), state.token_by_value
            )
            if isinstance(auth, HecReply):
                reply = auth
            else:
                token = auth
                reply, events = self._accept(path, query, body, token, channel=channel, fault=fault)
        record = RequestRecord(
            request_id,
            received_at,
            "POST",
            path,
            reply.status,
            reply.code,
            len(body),
            token.name if token else None,
            channel,
            str(fault.mode) if fault else None,
        )
        if (
            fault
            and fault.mode in (FaultMode.RESET_AFTER_STORE, FaultMode.DELAY)
            and not fault.params["store"]
        ):
            events = []
        try:
            state.store.record(record, events)
        except Exception:  # the judge must never answer 200 for data it did not keep
            logger.exception("store failed for request %d", request_id)
            self._send(hec_reply(8))
            return
        if token is not None and token.ack and channel and reply.status == 200:
            reply = self._with_ack(reply, channel, fault)
        self._deliver(reply, fault)

    def _fault_reply(self, fault: Fault | None) -> HecReply | None:  # noqa: PLR0911
        if fault is None:
            return None
        mode, params = fault.mode, fault.params
        if mode in (FaultMode.BUSY, FaultMode.THROTTLE):
            retry = params["retry_after"]
            headers = (("Retry-After", str(retry)),) if retry is not None else ()
            return hec_reply(9 if mode is FaultMode.BUSY else params["code"], headers=headers)
        if mode in _EARLY_REPLIES:
            return hec_reply(_EARLY_REPLIES[mode])
        if mode is FaultMode.NOT_FOUND:
            return not_found_reply()
        if mode is FaultMode.TOO_LARGE:
            return html_reply(413, "Content too large", "Request body too large")
        if mode is FaultMode.AUTH:
            return hec_reply(params["code"])
        return None

    def _accept(  # noqa: PLR0911 - one return per Splunk check, in Splunk's order
        self,
        path: str,
        query: dict[str, str],
        body: bytes,
        token: HecToken,
        *,
        channel: str | None,
        fault: Fault | None,
    ) -> tuple[HecReply, list[ParsedEvent]]:
        state = self.server.state
        try:
            data = inflate(
                body, self.headers.get("Content-Encoding"), state.limits.max_decompressed
            )
        except BodyError as err:
            return err.reply, []
        bad_channel = check_channel(channel, required=token.ack)
        if bad_channel is not None:
            return bad_channel, []
        cookie_block = self._cookie_block(token)
        if cookie_block is not None:
            return cookie_block, []
        if token.ack and channel and not state.ack_ledger.has_capacity(channel):
            return hec_reply(9), []
        ctx = ParseContext(
            token, self.client_address[0], state.limits.max_event_size, state.limits.index_quirk,
            state.metrics_indexes,
        )
        if path in RAW_PATHS:
            meta = RawMeta(
                query.get("host"),
                query.get("source"),
                query.get("sourcetype"),
                query.get("index"),
                query.get("time"),
            )
            outcome = parse_raw_body(data, meta, ctx)
        else:
            outcome = parse_event_body(data, ctx)
        if outcome.error_code is not None:
            kept = outcome.events if state.partial_prefix else []
            return hec_reply(outcome.error_code, event_number=outcome.event_number), kept
        events = outcome.events
        if fault is not None and fault.mode is FaultMode.INVALID_EVENT and events:
            at = min(int(fault.params["index"]), len(events) - 1)
            code = int(fault.params["code"])
            shown = at + 1 if code == 7 and state.limits.index_quirk else at
            kept = events[:at] if fault.params["partial"] else []
            return hec_reply(code, event_number=shown), kept
        if fault is not None and fault.mode is FaultMode.WARNING:
            return hec_reply(int(fault.params["code"])), events
        return hec_reply(0), events

    def _cookie_block(self, token: HecToken) -> HecReply | None:
        fault = self.server.state.faults.peek(COOKIE)
        if fault is None or not token.ack:
            return None
        cookies = self.headers.get("Cookie") or ""
        names = {part.split("=", 1)[0].strip() for part in cookies.split(";")}
        if names & set(LB_COOKIES):
            return None
        # Splunk headerEnforcementMode=block answers 400; the body text is not documented.
        reply = json_reply(400, {"text": "Required load-balancer cookie missing", "code": 400})
        set_cookie = f"{fault.params['cookie']}={int(time.time() * 1000)}; Path=/"
        return HecReply(reply.status, reply.body, headers=(("Set-Cookie", set_cookie),), code=400)

    def _with_ack(self, reply: HecReply, channel: str, fault: Fault | None) -> HecReply:
        ledger = self.server.state.ack_ledger
        polls = int(fault.params["polls"]) if fault and fault.mode is FaultMode.ACK_PENDING else 0
        lost = fault is not None and fault.mode is FaultMode.ACK_LOST
        ack_id = ledger.issue(channel, false_polls=polls, lost=lost)
        assert reply.code is not None
        return hec_reply(reply.code, ack_id=ack_id, headers=reply.headers)

    def _deliver(self, reply: HecReply, fault: Fault | None) -> None:
        mode = fault.mode if fault else None
        if mode is FaultMode.RESET_AFTER_STORE:
            self._reset_connection()
            return
        if mode is FaultMode.DELAY and fault is not None:
            self.server.state.stopping.wait(float(fault.params["seconds"]))
        self._send(reply)
        if mode is FaultMode.CLOSE_AFTER_RESPONSE:
            self.close_connection = True
        elif mode is FaultMode.STALE_KEEPALIVE:
            self._drop_next = True

    # -- ack -------------------------------------------------------------------------------------

    def _ack(self, query: dict[str, str], body: bytes) -> HecReply:  # noqa: PLR0911
        state = self.server.state
        auth = authenticate(
            query.get("token"), self.headers.get("Authorization"), state.token_by_value
        )
        if isinstance(auth, HecReply):
            return auth
        if not auth.ack:  # checked before the channel on Splunk 10.4.2 (mockdr)
            return hec_reply(14)
        channel = self.headers.get(HEADER_CHANNEL) or query.get("channel")
        bad_channel = check_channel(channel, required=True)
        if bad_channel is not None or channel is None:
            return bad_channel or hec_reply(10)
        fault = state.faults.take(ACK)
        if fault is not None:
            return hec_reply(int(fault.params["code"]))
        try:
            data = inflate(
                body, self.headers.get("Content-Encoding"), state.limits.max_decompressed
            )
            ack_ids = _ACK_BODY.decode(data).get("acks")
        except BodyError as err:
            return err.reply
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            ack_ids = None
        if not ack_ids:
            return hec_reply(6)
        return json_reply(200, {"acks": state.ack_ledger.query(channel, ack_ids)}, code=0)

    # -- output ----------------------------------------------------------------------------------

    def _abandoned(self) -> bool:
        """The connection was abandoned (connections.py): no reply, no FIN, no RST on it."""
        if self.server.state.connections.is_abandoned(self.connection):
            self.close_connection = True
            return True
        return False

    def _send(self, reply: HecReply) -> None:
        if self._abandoned():  # abandoned while this request was handled: the reply is lost
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # client went away (e.g. gave up on a delayed reply)

    def _reset_connection(self) -> None:
        """Abort with TCP RST (SO_LINGER 0) and no reply."""
        if self._abandoned():
            return
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
