"""HecReceiver: the embedded Splunk HEC receiver as an in-process object.

Owns the listening socket (127.0.0.1, optional TLS), the serving thread, the SQLite store and
the fault board; used by tests, benchmarks, the demo and the `serve` CLI. Serving runs on
background threads of the calling process; stop() closes everything and is idempotent.
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ext.local.hec.faults import Fault, FaultMode, make_fault
from ext.local.hec.handler import HecHttpServer
from ext.local.hec.model import DEFAULT_TOKENS, HecLimits, HecToken, StoredEvent
from ext.local.hec.state import ReceiverState
from ext.local.hec.store import EventStore

if TYPE_CHECKING:
    from collections.abc import Sequence

_STOP_JOIN_S = 5.0


class HecReceiver:
    """A Splunk-faithful HEC endpoint that records every accepted event in SQLite."""

    def __init__(  # noqa: PLR0917 - the documented positional API
        self,
        db_path: Path | str,
        tokens: Sequence[HecToken] = DEFAULT_TOKENS,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
        limits: HecLimits | None = None,
        partial_prefix: bool = False,
        metrics_indexes: Sequence[str] = (),
    ) -> None:
        if not tokens:
            raise ValueError("at least one token is required")
        self._address = (host, port)
        self._tls = (Path(tls_cert), Path(tls_key) if tls_key else None) if tls_cert else None
        self._store = EventStore(db_path)
        self.state = ReceiverState(
            self._store, limits or HecLimits(), partial_prefix, frozenset(metrics_indexes)
        )
        self.state.put_tokens(tokens)
        self._server: HecHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> HecReceiver:
        """Bind and start serving; returns once the socket accepts connections."""
        if self._server is not None or self._stopped:
            raise RuntimeError("HecReceiver.start() may be called once")
        server = HecHttpServer(self._address, self.state)
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert, key = self._tls
            context.load_cert_chain(cert, key)
            # OpenSSL 3 answers a read's unexpected end of stream with a decode_error alert; an
            # abandoned connection (connections.py) must send nothing, and a peer that closed
            # without close_notify is gone anyway.
            context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
            # Handshake lazily in the connection's own thread, not in the accept loop.
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="hec-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, close the store; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.state.stopping.set()
        server = self._server
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(_STOP_JOIN_S)
        self._store.close()

    def __enter__(self) -> HecReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (https with TLS)."""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._address[0]}:{self.port}"

    @property
    def db_path(self) -> Path:
        """The SQLite file."""
        return self._store.path

    # -- faults and behaviour --------------------------------------------------------------------

    def set_fault(self, mode: FaultMode | str, *, count: int | None = None, **params: Any) -> Fault:
        """Make `mode` the only fault of its target for `count` requests (None: until cleared)."""
        fault = make_fault(mode, count, **params)
        self.state.faults.set(fault)
        return fault

    def add_fault(self, mode: FaultMode | str, *, count: int | None = None, **params: Any) -> Fault:
        """Queue `mode` after the active faults (scripted sequences such as busy x3 then 500)."""
        fault = make_fault(mode, count, **params)
        self.state.faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault."""
        self.state.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """The active faults with their remaining counts."""
        return self.state.faults.snapshot()

    def abandon_open_connections(self) -> int:
        """Abandon every connection open now, as a SnapStart-restored environment's connections
        from before the snapshot look from the client: what it sends on them is never read nor
        answered and they are never closed, until stop(); new connections work as usual.
        Returns how many were abandoned (connections.py)."""
        return self.state.connections.abandon()

    def set_partial_prefix(self, enabled: bool) -> None:
        """On: a 400 with invalid-event-number keeps the events before it (vectorized parser)."""
        self.state.partial_prefix = enabled

    def put_tokens(self, *tokens: HecToken) -> None:
        """Add or replace tokens by name (rotation, disable, enable at run time)."""
        self.state.put_tokens(tokens)

    # -- queries ---------------------------------------------------------------------------------

    def count(self, **filters: Any) -> int:
        """Stored events matching filters: index, sourcetype, source, host, token_name, channel,
        kind, request_id, since_id, received_after, contains, fields={k: v}."""
        return self._store.count(**filters)

    def events(
        self, *, limit: int | None = None, newest: bool = False, **filters: Any
    ) -> list[StoredEvent]:
        """Stored events matching filters (as count), oldest first."""
        return self._store.events(limit=limit, newest=newest, **filters)

    def stats(self) -> dict[str, Any]:
        """Request totals by HTTP status and stored-event totals."""
        return self._store.request_stats()

    def requests(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest rows of the request log."""
        return self._store.requests(limit)
