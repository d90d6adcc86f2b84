"""The least a Python extension can do for the same work (local tooling, never shipped).

No configuration, no retries, no spool recovery, no enrichment: it registers, subscribes to the
Telemetry API, appends each Telemetry body to a file under /tmp before answering 200 (the
spool's durability point), and at each INVOKE waits for that invocation's platform.runtimeDone,
then posts the function's lines to HEC in one gzipped request over a kept-alive socket before
asking for the next event (`sync`). Raw sockets and msgspec only: no urllib3, no logging.

Three shapes (FLOOR_PROCESSES): `1`, one process whose Telemetry thread hands lines to the main
thread; `3`, the extension's own shape at its least: main (lifecycle), a listener process
(append, poke the sender through a pipe, answer) and a sender process (read the file from its
offset, post, answer main through a pipe), each woken only when it has something to do; `2`,
the same without the sender process: main reads and posts itself.

It is the yardstick of benchmarks/bench_floor.py: what an invocation costs any Python extension
that does this work within the invocation (`1`), and any with the extension's three processes
(`3`), so that the extension's own cost can be read as "the floor plus what the design adds".
FLOOR_LIBRARIES=1 imports the extension's required libraries (urllib3, ssl) without using them:
their memory, for the memory floor.
"""

from __future__ import annotations

import os
import select
import selectors
import signal
import socket
import sys
import threading
import time
import zlib
from datetime import datetime

import msgspec

EXT_PREFIX = "/2020-01-01/extension"
GZIP_WBITS = 31
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
WAIT_S = 2.0
# Fresh per start (the forks inherit it): a file of an earlier run must not be read again.
SPOOL = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"floor-spool-{os.getpid()}")


class Connection:
    """One kept-alive HTTP/1.1 connection; answers must carry Content-Length."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.pending = b""

    def request(self, method: str, path: str, headers: dict[str, str],
                body: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.address)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {self.address[0]}\r\n"
                          f"Content-Length: {len(body)}\r\n{head}\r\n".encode() + body)
        return read_message(self.sock, self)


def read_message(sock: socket.socket, state: Connection | Holder
                 ) -> tuple[int, dict[bytes, bytes], bytes]:
    """(status or 0 for a request, lower-cased headers, body); `state.pending` keeps the rest."""
    data = state.pending
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    size = int(headers.get(b"content-length", b"0"))
    while len(rest) < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    state.pending = rest[size:]
    parts = first.split()
    status = int(parts[1]) if first.startswith(b"HTTP/") else 0
    return status, headers, rest[:size]


class Holder:
    pending = b""


def take(body: bytes) -> tuple[list[bytes], list[str]]:
    """The HEC envelopes of a Telemetry body's function lines, and its runtimeDone request ids."""
    lines = []
    done = []
    for event in msgspec.json.decode(body):
        kind = event.get("type")
        if kind == "function":
            stamp = datetime.fromisoformat(event["time"]).timestamp()  # HEC wants epoch
            lines.append(msgspec.json.encode({"time": stamp, "event": event["record"],
                                              "sourcetype": "aws:lambda:function"}))
        elif kind == "platform.runtimeDone":
            done.append(event["record"]["requestId"])
    return lines, done


class Hec:
    def __init__(self) -> None:
        host, _, port = os.environ["SPLUNK_HOST"].removeprefix("http://").partition(":")
        self.connection = Connection(host, int(port.rstrip("/")))
        self.headers = {"Authorization": f"Splunk {os.environ['SPLUNK_HEC_TOKEN']}",
                        "Content-Encoding": "gzip"}

    def post(self, lines: list[bytes]) -> None:
        compressor = zlib.compressobj(1, zlib.DEFLATED, GZIP_WBITS)
        payload = compressor.compress(b"\n".join(lines)) + compressor.flush()
        status, _, answer = self.connection.request("POST", "/services/collector/event",
                                                    self.headers, payload)
        if status != 200:
            print(f"floor: HEC answered {status}: {answer[:200]!r}", file=sys.stderr)


class Telemetry:
    """One process: what the Telemetry thread learnt, for the main thread."""

    def __init__(self, spool_path: str) -> None:
        self.spool = os.open(spool_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.lines: list[bytes] = []
        self.done: set[str] = set()
        self.changed = threading.Condition()

    def serve(self, server: socket.socket) -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=self.connection, args=(conn,), daemon=True).start()

    def connection(self, conn: socket.socket) -> None:
        state = Holder()
        try:
            while True:
                _, _, body = read_message(conn, state)
                os.write(self.spool, body)
                lines, done = take(body)
                with self.changed:
                    self.lines.extend(lines)
                    self.done.update(done)
                    self.changed.notify()
                conn.sendall(OK)
        except (ConnectionError, OSError):
            conn.close()


def one_process(api: Connection, ident: dict[str, str], server: socket.socket) -> None:
    telemetry = Telemetry(SPOOL)
    threading.Thread(target=telemetry.serve, args=(server,), daemon=True).start()
    hec = Hec()
    while True:
        _, _, body = api.request("GET", f"{EXT_PREFIX}/event/next", ident)
        event = msgspec.json.decode(body)
        shutdown = event["eventType"] == "SHUTDOWN"
        request_id: str = event.get("requestId", "")

        def ended(rid: str = request_id) -> bool:
            return rid in telemetry.done

        with telemetry.changed:
            if not shutdown:
                telemetry.changed.wait_for(ended, WAIT_S)
            lines, telemetry.lines = telemetry.lines, []
        if lines:
            hec.post(lines)
        if shutdown:
            return


def listener(server: socket.socket, wake: int) -> None:
    """Three processes: appends each body (length-prefixed), pokes the sender, answers."""
    spool = os.open(SPOOL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    states: dict[socket.socket, Holder] = {}
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is server:
                conn, _ = server.accept()
                selector.register(conn, selectors.EVENT_READ)
                states[conn] = Holder()
                continue
            try:
                _, _, body = read_message(sock, states[sock])
            except (ConnectionError, OSError):
                selector.unregister(sock)
                del states[sock]
                sock.close()
                continue
            os.write(spool, len(body).to_bytes(4, "little") + body)
            os.write(wake, b"1")
            sock.sendall(OK)


class SpoolTail:
    """What the listener appended (length-prefixed bodies), read on from where the last read
    stopped: the function's envelopes waiting for HEC and the runtimeDone request ids seen."""

    def __init__(self) -> None:
        self.fd = os.open(SPOOL, os.O_RDONLY | os.O_CREAT, 0o600)
        self.offset = 0
        self.unread = b""
        self.lines: list[bytes] = []
        self.done: set[str] = set()

    def read(self, wake: int) -> None:
        os.read(wake, 4096)
        data = os.pread(self.fd, 1 << 20, self.offset)
        self.offset += len(data)
        self.unread += data
        while len(self.unread) >= 4:
            size = int.from_bytes(self.unread[:4], "little")
            if len(self.unread) < 4 + size:
                break
            lines, done = take(self.unread[4:4 + size])
            self.unread = self.unread[4 + size:]
            self.lines.extend(lines)
            self.done.update(done)


def sender(wake: int, asks: int, answers: int) -> None:
    """Three processes: reads what the listener appended, posts an invocation's lines once its
    runtimeDone is read and main waits for it, answers main."""
    tail = SpoolTail()
    hec = Hec()
    waiting: list[str] = []
    while True:
        ready, _, _ = select.select([wake, asks], [], [])
        if wake in ready:
            tail.read(wake)
        if asks in ready:
            waiting.extend(os.read(asks, 4096).decode().split())
        answerable = [w for w in waiting if w in tail.done or w == "SHUTDOWN"]
        if answerable:
            if tail.lines:
                hec.post(tail.lines)
                tail.lines = []
            os.write(answers, "".join(f"{w}\n" for w in answerable).encode())
            waiting = [w for w in waiting if w not in answerable]
            if "SHUTDOWN" in answerable:
                return


def two_processes(api: Connection, ident: dict[str, str], server: socket.socket) -> None:
    """Main sends itself (no sender process): after INVOKE it reads what the listener appended
    until the invocation's runtimeDone, then posts."""
    wake_r, wake_w = os.pipe()
    listener_pid = os.fork()
    if listener_pid == 0:
        listener(server, wake_w)
        os._exit(0)
    server.close()
    tail = SpoolTail()
    hec = Hec()
    while True:
        _, _, body = api.request("GET", f"{EXT_PREFIX}/event/next", ident)
        event = msgspec.json.decode(body)
        shutdown = event["eventType"] == "SHUTDOWN"
        deadline = time.monotonic() + (0.0 if shutdown else WAIT_S)
        while shutdown or event["requestId"] not in tail.done:
            ready, _, _ = select.select([wake_r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            tail.read(wake_r)
        if tail.lines:
            hec.post(tail.lines)
            tail.lines = []
        if shutdown:
            os.kill(listener_pid, signal.SIGTERM)
            return


def three_processes(api: Connection, ident: dict[str, str], server: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    asks_r, asks_w = os.pipe()
    answers_r, answers_w = os.pipe()
    listener_pid = os.fork()
    if listener_pid == 0:
        listener(server, wake_w)
        os._exit(0)
    if os.fork() == 0:
        server.close()
        sender(wake_r, asks_r, answers_w)
        os._exit(0)
    server.close()
    pending = b""
    while True:
        _, _, body = api.request("GET", f"{EXT_PREFIX}/event/next", ident)
        event = msgspec.json.decode(body)
        shutdown = event["eventType"] == "SHUTDOWN"
        asked = "SHUTDOWN" if shutdown else event["requestId"]
        os.write(asks_w, f"{asked}\n".encode())
        while f"{asked}\n".encode() not in pending:
            ready, _, _ = select.select([answers_r], [], [], WAIT_S)
            if not ready:
                break
            pending += os.read(answers_r, 4096)
        pending = b""
        if shutdown:
            os.kill(listener_pid, signal.SIGTERM)
            return


def main() -> None:
    api_host, _, api_port = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
    api = Connection(api_host, int(api_port))
    _, headers, _ = api.request("POST", f"{EXT_PREFIX}/register",
                                {"Lambda-Extension-Name": sys.argv[1]},
                                b'{"events":["INVOKE","SHUTDOWN"]}')
    ident = {"Lambda-Extension-Identifier": headers[b"lambda-extension-identifier"].decode()}
    server = socket.create_server(("127.0.0.1", 0))
    subscription = msgspec.json.encode({
        "schemaVersion": "2022-12-13", "types": ["platform", "function"],
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {"protocol": "HTTP",
                        "URI": f"http://sandbox.localdomain:{server.getsockname()[1]}/"}})
    api.request("PUT", "/2022-07-01/telemetry", ident, subscription)
    if os.environ.get("FLOOR_LIBRARIES") == "1":
        # The extension's required libraries, imported before the fork as its main does, and
        # never used: what they cost in memory alone.
        import ssl  # noqa: F401

        import urllib3  # noqa: F401
    shape = {"1": one_process, "2": two_processes, "3": three_processes}
    shape[os.environ.get("FLOOR_PROCESSES", "1")](api, ident, server)


if __name__ == "__main__":
    main()
