"""A counting HEC sink for the throughput benchmark: `python -m benchmarks.hec_sink`.

It answers /services/collector/event like HEC (token check, gzip, `{"text":"Success","code":0}`)
but only counts the newline-separated events instead of parsing and storing them, so the
extension's own throughput can be read without the embedded receiver's SQLite work competing
for the same two cores. `GET /count` returns {"events": n, "last_at": epoch} and, for the fleet
benchmark, `requests`, `body_bytes` (as sent, gzip), `raw_bytes` (decompressed) and `head_bytes`
(request line and headers). With a second argument, every decompressed body is appended to that
file, one request per write, so line ids can be checked afterwards (loss and duplicates). Not a
HEC emulation: the real receiver (ext/local/hec) is the judge of every correctness test.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import zlib
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO

SUCCESS = b'{"text":"Success","code":0}'
_WIRE = HTTP  # serialises the parsed headers back as CRLF lines, unfolded


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events = 0
        self.last_at = 0.0
        self.requests = 0
        self.body_bytes = 0
        self.raw_bytes = 0
        self.head_bytes = 0
        self.dump: BinaryIO | None = None


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counter: _Counter
    token: str

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; without NODELAY, Nagle and delayed ACKs
        # hold every reply ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:
        with self.counter.lock:
            c = self.counter
            body = json.dumps({"events": c.events, "last_at": c.last_at, "requests": c.requests,
                               "body_bytes": c.body_bytes, "raw_bytes": c.raw_bytes,
                               "head_bytes": c.head_bytes}).encode()
        self._reply(200, body)

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Authorization") != f"Splunk {self.token}":
            self._reply(401, b'{"text":"Token is required","code":2}')
            return
        sent = len(data)
        if self.headers.get("Content-Encoding") == "gzip":
            data = zlib.decompress(data, 47)
        events = data.count(b"\n") + 1 if data.strip() else 0
        # Request line + "Name: value\r\n" per header + the blank line, as they were sent.
        head = len(self.requestline) + 2 + len(self.headers.as_bytes(policy=_WIRE))
        with self.counter.lock:
            c = self.counter
            c.events += events
            c.last_at = time.time()
            c.requests += 1
            c.body_bytes += sent
            c.raw_bytes += len(data)
            c.head_bytes += head
            if c.dump is not None:
                c.dump.write(data.rstrip(b"\n") + b"\n")
        self._reply(200, SUCCESS)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> int:
    """Serves on 127.0.0.1 (random port) with the token in argv[0]; prints one ready line."""
    args = sys.argv[1:] if argv is None else argv
    _SinkHandler.counter = _Counter()
    _SinkHandler.token = args[0]
    if len(args) > 1:
        _SinkHandler.counter.dump = open(args[1], "ab", buffering=0)  # noqa: SIM115
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
    server.daemon_threads = True
    print(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if _SinkHandler.counter.dump is not None:
            _SinkHandler.counter.dump.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
