"""The rig of the chaos and fuzz cases (issue 16): the real extension in the emulator, the
embedded HEC receiver, and the bookkeeping that turns one run into the figures of a case.

Runs in the test or benchmark process; never imported by the extension. `benchmarks/bench_chaos.py`
prints the figures of every case and `tests/integration/test_chaos.py` asserts the targets on
them, so both read the same numbers (see docs/reliability.md).

What it observes, and how:
- *answered 2xx*: every Telemetry POST the emulator makes goes through `Subscriber._post_once`,
  which the rig wraps (class-level, only while a case runs) to note the function lines of each
  body and whether the listener answered 2xx; batches the rig injects itself are noted the same.
- *in HEC*: the receiver's SQLite store, after the extension's shutdown drain.
- *counted as dropped*: the extension's own notices in HEC (sourcetype `aws:lambda:extension`,
  `telemetry_type` starting `splunk-extension.`, every integer field named `*_events`, at the
  top of the event or in its `record`) plus the `droppedRecords` of each `platform.logsDropped`
  that reached HEC.
- *listener peak RSS*: VmHWM of the listener process (the child of the main process that holds
  a listening socket), sampled every 20 ms while it lives.
- *restarts*: child processes of the extension beyond the two each main process forks.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ext.local.hec import HecReceiver, HecToken
from ext.local.layer import EXTENSION_NAME, make_local_opt
from ext.local.sandbox import InvokeResult, Sandbox, SandboxConfig
from ext.local.sandbox.delivery import Subscriber

REPO = Path(__file__).resolve().parents[1]
TOKEN = "11111111-2222-3333-4444-555555555555"
FLUSH_BUDGET_MS = 300
# Scheduling slack on top of the budget, for the tests only (they run beside others on a shared
# 2-core machine, where a process may wait its turn for a CPU); the benchmark judges post-runtime
# against the budget itself, as the extension promises it (the emulator measures it from the
# runtime's `next` to the extension's, as Lambda bills it).
POST_RUNTIME_SLACK_MS = 150
LISTENER_RSS_LIMIT_MIB = 40.0
SAMPLE_S = 0.02
SETTLE_SAMPLES = 5
INVOKE_LINES = 10  # tracked lines of an ordinary invocation
THAW_WAIT_S = 0.2  # from invoke() to the function running (the sandbox is warm)
SLICE_MS = 400  # how long each invocation sleeps while an attack runs
ACTION_JOIN_S = 30.0
NOTICE_PREFIX = "splunk-extension."


class CaseSkippedError(Exception):
    """The case cannot run here (e.g. mounting a tmpfs needs root); the message says why."""


@dataclass
class Figures:
    """What one case measured; `violations()` turns it into the targets it missed."""

    case: str
    sent: int = 0  # tracked lines written by the function or injected by the rig
    accepted: int = 0  # of those, answered 2xx by the listener at least once
    lost: int = 0  # answered 2xx, never in HEC
    duplicated: int = 0  # extra copies in HEC
    refused: int = 0  # never answered 2xx after at least one refusal, and never in HEC
    counted: int = 0  # dropped or refused events the extension reported to HEC
    missing: int = 0  # sent, never in HEC (whatever the reason)
    post_runtime_max_ms: float = 0.0
    post_runtime_warm_ms: float = 0.0  # the same, leaving out each first invocation after an init
    slack_ms: float = 0.0  # allowed past the flush budget (POST_RUNTIME_SLACK_MS in the tests)
    listener_peak_mib: float = 0.0
    restarts: int = 0  # child processes started beyond the first listener and sender
    crashes: int = 0  # processes the case killed
    batch_lines: int = 0  # most tracked lines in one invocation or injected batch
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # case-specific targets missed
    skipped: str | None = None

    def violations(self) -> list[str]:
        """Every target this run missed, as readable sentences (empty: all met)."""
        return [text for _, text in self.misses()]

    def missed(self) -> str:
        """The targets missed, as short names for the table ("ok" when none)."""
        return ",".join(dict.fromkeys(name for name, _ in self.misses())) or "ok"

    def misses(self) -> list[tuple[str, str]]:
        """(short name, sentence) of every target this run missed."""
        if self.skipped:
            return []
        found = [("case", text) for text in self.problems]
        if self.lost:
            found.append(("lost", f"{self.lost} line(s) answered 2xx never reached HEC"))
        if self.refused > self.counted:
            found.append(("uncounted", f"{self.refused} refused line(s) lost but only "
                                       f"{self.counted} counted"))
        limit = FLUSH_BUDGET_MS + self.slack_ms
        if self.post_runtime_max_ms > limit:
            found.append(("post-runtime", f"post-runtime {self.post_runtime_max_ms:.0f} ms > "
                                          f"{limit:.0f} ms (budget {FLUSH_BUDGET_MS} + "
                                          f"{self.slack_ms:.0f} ms slack)"))
        if self.duplicated > self.crashes * self.batch_lines:
            found.append(("dup", f"{self.duplicated} duplicate(s) > one batch "
                                 f"({self.batch_lines}) per crash ({self.crashes})"))
        if self.listener_peak_mib > LISTENER_RSS_LIMIT_MIB:
            found.append(("rss", f"listener peak RSS {self.listener_peak_mib:.1f} MiB > "
                                 f"{LISTENER_RSS_LIMIT_MIB:.0f} MiB"))
        if self.restarts > self.crashes:
            found.append(("restart", f"{self.restarts} child restart(s) after {self.crashes} "
                                     "kill(s): a crash (a crash loop when it repeats)"))
        return found

    def row(self) -> list[object]:
        """One row of the benchmark table."""
        if self.skipped:
            return [self.case, *["-"] * 12, "skipped"]
        return [self.case, self.sent, self.accepted, self.lost, self.duplicated, self.refused,
                self.counted, self.missing, round(self.post_runtime_max_ms),
                round(self.post_runtime_warm_ms), round(self.listener_peak_mib, 1),
                self.restarts, round(self.seconds, 1), self.missed()]


TABLE_HEADERS = ["case", "sent", "2xx", "lost", "dup", "refused", "counted", "missing",
                 "post-rt max ms", "warm max ms",
                 "listener MiB", "restarts", "s", "targets"]


# -- observation ------------------------------------------------------------------------------


def line_key(text: str) -> str | None:
    """`tag:n` of a tracked line (`c-<tag>:<n>:xxx`), else None."""
    if not text.startswith("c-"):
        return None
    parts = text.split(":", 2)
    return f"{parts[0]}:{parts[1]}" if len(parts) >= 2 else None


def function_keys(body: bytes) -> list[str]:
    """Keys of the tracked function lines in one Telemetry batch body."""
    try:
        batch = json.loads(body)
    except (ValueError, RecursionError):
        return []
    keys = []
    for event in batch if isinstance(batch, list) else []:
        if isinstance(event, dict) and event.get("type") == "function":
            record = event.get("record")
            key = line_key(record) if isinstance(record, str) else None
            if key:
                keys.append(key)
    return keys


class Delivery:
    """Which tracked lines the listener answered 2xx, and which it refused."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: set[str] = set()
        self.refused: set[str] = set()

    def note(self, keys: list[str], ok: bool) -> None:
        with self.lock:
            (self.accepted if ok else self.refused).update(keys)


@contextlib.contextmanager
def watching_delivery(delivery: Delivery) -> Iterator[None]:
    """Wraps the emulator's POST attempt to note each body's outcome (restored afterwards)."""
    original = Subscriber._post_once

    def post_once(self: Subscriber, body: bytes) -> str:
        error = original(self, body)
        delivery.note(function_keys(body), not error)
        return error

    Subscriber._post_once = post_once  # type: ignore[method-assign]
    try:
        yield
    finally:
        Subscriber._post_once = original  # type: ignore[method-assign]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def listening_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[3] == "0A":
                    inodes.add(cols[9])
    return inodes


def holds_listening_socket(pid: int, inodes: set[str]) -> bool:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    except OSError:
        return False
    return False


def peak_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


class ProcessWatch:
    """Samples the extension's processes: roles, listener peak RSS, children started."""

    def __init__(self, main_pid: Callable[[], int | None]) -> None:
        self.main_pid = main_pid
        self.mains: set[int] = set()
        self.children: dict[int, str] = {}  # pid -> "listener" | "sender"
        self._looks: dict[int, int] = {}
        self.listener_peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)
        self._thread.start()

    def roles(self) -> dict[str, int]:
        """Current pid of main, listener and sender (those alive now)."""
        self.sample()
        found: dict[str, int] = {}
        main = self.main_pid()
        if main:
            found["main"] = main
            for pid in children_of(main):
                role = self.children.get(pid)
                if role:
                    found[role] = pid
        return found

    def sample(self) -> None:
        main = self.main_pid()
        if not main:
            return
        self.mains.add(main)
        inodes: set[str] | None = None
        for pid in children_of(main):
            # Right after the fork a child still holds every fd of its parent, the listening
            # socket too: a role is settled only after a few samples.
            looks = self._looks.get(pid, 0)
            if looks < SETTLE_SAMPLES:
                inodes = listening_inodes() if inodes is None else inodes
                self.children[pid] = ("listener" if holds_listening_socket(pid, inodes)
                                      else "sender")
                self._looks[pid] = looks + 1
            if self.children[pid] == "listener":
                self.listener_peak_kb = max(self.listener_peak_kb, peak_rss_kb(pid))

    def restarts(self) -> int:
        return max(0, len(self.children) - 2 * len(self.mains))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            with contextlib.suppress(Exception):
                self.sample()


# -- hostile peers ------------------------------------------------------------------------------


class StallingHec:
    """A TCP front for HEC: in `hang` mode it accepts connections and never answers; after
    `forward()` it relays to the real receiver (held connections are closed, so the extension
    reconnects); `answer_once()` relays the next connection for one answer, then closes it and
    hangs again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.hanging = True
        self.held: list[socket.socket] = []
        self.accepted = 0
        self.first_accept_at: float | None = None  # monotonic
        self.answers_left = 0
        self.answered = 0  # one-shot answers relayed
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forward(self) -> None:
        self.hanging = False
        for conn in self.held:
            with contextlib.suppress(OSError):
                conn.close()
        self.held.clear()

    def answer_once(self) -> None:
        """The next connection gets one answer from HEC, then is closed; later ones hang."""
        self.answers_left = 1

    def close(self) -> None:
        self._stop.set()
        self.forward()
        self.server.close()
        for thread in self._threads:
            thread.join(1.0)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.first_accept_at is None:
                self.first_accept_at = time.monotonic()
            once = self.hanging and self.answers_left > 0
            if self.hanging and not once:
                self.held.append(conn)
                continue
            self.answers_left = 0
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                conn.close()
                continue
            if once:
                thread = threading.Thread(target=self._answer, args=(conn, upstream), daemon=True)
                thread.start()
                continue
            for src, dst in ((conn, upstream), (upstream, conn)):
                thread = threading.Thread(target=_relay, args=(src, dst), daemon=True)
                thread.start()

    def _answer(self, conn: socket.socket, upstream: socket.socket) -> None:
        """Relays one request and HEC's answer to it, whole, then closes both: a request sent
        after it on the same connection never reaches HEC (it would be stored unanswered, and
        the extension's resend would be a duplicate)."""
        conn.settimeout(10)
        upstream.settimeout(10)
        with contextlib.suppress(OSError, ValueError):
            upstream.sendall(_one_message(conn))
            answer = _one_message(upstream)
            conn.sendall(answer)  # whole: a cut answer would make the extension resend
            self.answered += 1
        for sock in (conn, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _one_message(sock: socket.socket) -> bytes:
    """One HTTP request or response with a Content-Length body (or none), read whole
    (ValueError if cut short)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65_536)
        if not chunk:
            raise ValueError("connection closed inside the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65_536)
        if not chunk:
            raise ValueError("connection closed inside the response body")
        body += chunk
    return head + b"\r\n\r\n" + body[:length]  # a request sent right after it stays out


def _relay(src: socket.socket, dst: socket.socket) -> None:
    src.settimeout(30)
    with contextlib.suppress(OSError):
        while chunk := src.recv(65_536):
            dst.sendall(chunk)
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def small_tmpfs(path: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of `size_mib` mounted at `path` (needs root); CaseSkippedError elsewhere."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise CaseSkippedError("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CaseSkippedError(f"mount -t tmpfs failed: {done.stderr.strip()}")
    try:
        yield path
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(path)], capture_output=True,
                              check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def nofile_python(folder: Path, limit: int) -> Path:
    """A python launcher that lowers RLIMIT_NOFILE first (as Lambda's 1024) for the extension."""
    shim = folder / "python-nofile"
    shim.write_text(f'#!/bin/sh\nulimit -n {limit} || exit 111\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    return shim


def iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def telemetry_batch(records: list[Any], kind: str = "function") -> bytes:
    stamp = iso_now()
    return json.dumps([{"time": stamp, "type": kind, "record": r} for r in records]).encode()


# -- one case -----------------------------------------------------------------------------------


class CaseRun:
    """One case: HEC, the extension in the emulator, the observations; `figures()` at the end."""

    def __init__(self, name: str, work: Path, opt: Path) -> None:
        self.name = name
        self.work = work
        self.opt = opt
        self.figures_ = Figures(name)
        self.sent: set[str] = set()
        self.delivery = Delivery()
        self.stderr: list[str] = []
        self.hec = HecReceiver(work / "hec.sqlite",
                               tokens=(HecToken(name="lambda", value=TOKEN),))
        self.sb: Sandbox | None = None
        self.watch: ProcessWatch | None = None
        self.results: list[InvokeResult] = []
        self.started = time.monotonic()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> CaseRun:
        self._stack.enter_context(watching_delivery(self.delivery))
        self.hec.start()
        self._stack.callback(self.hec.stop)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.watch is not None:
            self.watch.stop()
        self._stack.close()

    def env(self, **extra: str) -> dict[str, str]:
        return {"SPLUNK_HOST": self.hec.url, "SPLUNK_HEC_TOKEN": TOKEN,
                "SPLUNK_EXTENSION_PYTHON": sys.executable,
                "SPLUNK_FLUSH_BUDGET_MS": str(FLUSH_BUDGET_MS), **extra}

    def start(self, env: Mapping[str, str], timeout_s: float = 2.0, **cfg: Any) -> Sandbox:
        """The sandbox of the case; `cfg`: more SandboxConfig fields (e.g. snap_start)."""
        config = SandboxConfig(function_dir=REPO / "function", handler="handler.handler",
                               opt_dir=self.opt, env=dict(env), timeout_s=timeout_s,
                               tmp_dir=self.work / "tmp", **cfg)
        sb = Sandbox(config)
        self._stack.enter_context(sb)
        original = sb.bus.emit_logs

        def emit_logs(event_type: str, records: list[Any], epoch_s: float | None = None) -> None:
            if event_type == "extension":
                self.stderr.extend(str(r) for r in records)
            original(event_type, records, epoch_s)

        sb.bus.emit_logs = emit_logs  # type: ignore[method-assign]
        self.sb = sb
        self.watch = ProcessWatch(lambda: sb.extension_pids().get(EXTENSION_NAME))
        return sb

    def invoke(self, tag: str, lines: int, size: int = 48, **extra: Any) -> InvokeResult:
        """One invocation writing `lines` tracked lines `c-<tag>:<n>:...`."""
        assert self.sb is not None
        result = self.sb.invoke({"lines": lines, "tag": f"c-{tag}", "size": size, **extra})
        if result.request_id:  # the function ran (not a failed init)
            self.sent.update(f"c-{tag}:{n}" for n in range(lines))
            self.figures_.batch_lines = max(self.figures_.batch_lines, lines)
        self.results.append(result)
        return result

    def during_invocations(self, tag: str, action: Callable[[], None],
                           max_s: float = 10.0) -> None:
        """Runs `action` while the environment is thawed: a frozen listener answers no one.

        Invocations `<tag>0`, `<tag>1`... (each INVOKE_LINES tracked lines, then a sleep of
        SLICE_MS) follow one another until `action` returns or `max_s` passes; `action` must
        bound its own waits (it may be cut off by a freeze after `max_s`).
        """
        done = threading.Event()

        def act() -> None:
            try:
                action()
            finally:
                done.set()

        worker = threading.Thread(target=act, name="chaos-action", daemon=True)
        first = threading.Thread(target=self.invoke, args=(f"{tag}0", INVOKE_LINES),
                                 kwargs={"sleep_ms": SLICE_MS})
        end = time.monotonic() + max_s
        first.start()
        time.sleep(THAW_WAIT_S)
        worker.start()
        first.join()
        n = 1
        while not done.is_set() and time.monotonic() < end:
            self.invoke(f"{tag}{n}", INVOKE_LINES, sleep_ms=SLICE_MS)
            n += 1
        worker.join(ACTION_JOIN_S)

    def listener_port(self) -> int:
        assert self.sb is not None
        for exchange in reversed(self.sb.exchanges):
            if exchange["method"] == "PUT" and exchange["path"].endswith("/telemetry"):
                return int(urlsplit(exchange["request"]["destination"]["URI"]).port or 0)
        raise RuntimeError("the extension has not subscribed")

    def inject(self, body: bytes, keys: Sequence[str] = (), timeout_s: float = 5.0) -> int | None:
        """POSTs a batch to the listener as Lambda would; its HTTP status (None: no answer)."""
        port = self.listener_port()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        status: int | None = None
        try:
            conn.request("POST", "/", body, {"Content-Type": "application/json",
                                             "Host": f"sandbox.localdomain:{port}"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = None
        finally:
            conn.close()
        self.sent.update(keys)
        self.figures_.batch_lines = max(self.figures_.batch_lines, len(keys))
        self.delivery.note(list(keys), status is not None and 200 <= status < 300)
        return status

    def kill(self, role: str) -> None:
        """SIGKILL the extension's `role` process (main, listener or sender)."""
        assert self.watch is not None
        pid = self.watch.roles().get(role)
        if pid is None:  # the case would prove nothing
            self.figures_.problems.append(f"no {role} process found to kill")
            return
        os.kill(pid, signal.SIGKILL)
        self.figures_.crashes += 1
        if role == "main" and self.sb is not None:
            # Lambda resets an environment whose extension died; let the emulator see the
            # death first, so that the next invoke resets rather than runs half an environment.
            sb = self.sb
            end = time.monotonic() + 2.0
            while EXTENSION_NAME in sb.extension_pids() and time.monotonic() < end:
                time.sleep(0.005)

    def shutdown(self) -> None:
        assert self.sb is not None
        self.sb.shutdown()
        if self.watch is not None:
            self.watch.sample()

    def hec_lines(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for event in self.hec.events(sourcetype="aws:lambda:function", limit=10**7):
            try:
                text = json.loads(event.event)
            except (ValueError, RecursionError):
                continue
            key = line_key(text) if isinstance(text, str) else None
            if key:
                found[key] += 1
        return found

    def counted(self) -> int:
        total = 0
        for event in self.hec.events(sourcetype="aws:lambda:extension", limit=10**7):
            if not str(event.fields.get("telemetry_type", "")).startswith(NOTICE_PREFIX):
                continue
            body = json.loads(event.event)
            if isinstance(body, dict):
                total += _event_counts(body)
                record = body.get("record")  # a notice that travelled as telemetry
                if isinstance(record, dict):
                    total += _event_counts(record)
        for event in self.hec.events(sourcetype="aws:lambda:platform", limit=10**7):
            body = json.loads(event.event)
            if isinstance(body, dict) and body.get("type") == "platform.logsDropped":
                record = body.get("record") or {}
                total += int(record.get("droppedRecords", 0))
        return total

    def everything_said(self) -> str:
        """Every text the extension produced: API exchanges, its stderr, what HEC stored."""
        parts = [json.dumps(self.sb.exchanges if self.sb else [], default=str)]
        parts += self.stderr
        parts += [e.event for e in self.hec.events(limit=10**6)]
        return "\n".join(parts)

    def init_errors(self) -> str:
        assert self.sb is not None
        return json.dumps([x for x in self.sb.exchanges
                           if "init/error" in str(x.get("path", ""))], default=str)

    def figures(self) -> Figures:
        f = self.figures_
        in_hec = self.hec_lines()
        accepted = self.delivery.accepted & self.sent
        f.sent = len(self.sent)
        f.accepted = len(accepted)
        f.lost = len([k for k in accepted if k not in in_hec])
        f.duplicated = sum(n - 1 for k, n in in_hec.items() if n > 1)
        f.refused = len([k for k in (self.delivery.refused & self.sent) - accepted
                         if k not in in_hec])
        f.missing = len([k for k in self.sent if k not in in_hec])
        f.counted = self.counted()
        posts = [r.post_runtime_ms for r in self.results if r.post_runtime_ms is not None]
        f.post_runtime_max_ms = max(posts, default=0.0)
        over = [f"{n}: {p:.0f}" for n, p in enumerate(posts) if p > FLUSH_BUDGET_MS]
        if over:
            f.notes.append(f"post-runtime over the budget (invocation: ms): {', '.join(over)}")
        f.post_runtime_warm_ms = max((r.post_runtime_ms for r in self.results
                                      if r.post_runtime_ms is not None
                                      and r.init_duration_ms is None), default=0.0)
        if self.watch is not None:
            f.listener_peak_mib = self.watch.listener_peak_kb / 1024
            f.restarts = self.watch.restarts()
        throttled = self.cpu_throttling()
        if throttled is not None:
            # Lambda's CPU share is a CFS quota per 100 ms period (the emulator's cgroup): a
            # process waking in a period whose quota is spent waits for the next one, so a
            # post-runtime past the budget by up to a period or two is the quota, not a wait.
            f.notes.append(f"cpu quota exhausted in {throttled[0]} of {throttled[1]} periods")
        f.seconds = time.monotonic() - self.started
        return f

    def cpu_throttling(self) -> tuple[int, int] | None:
        """(periods throttled, periods) of the sandbox's CPU quota so far; None without one."""
        cgroup = self.sb.cgroup if self.sb is not None else None
        if cgroup is None:
            return None
        found: dict[str, int] = {}
        for group in cgroup.dirs:
            with contextlib.suppress(OSError, ValueError):
                for line in (group / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key in ("nr_periods", "nr_throttled"):
                        found[key] = int(value)
        if "nr_periods" not in found:
            return None
        return found.get("nr_throttled", 0), found["nr_periods"]


def _event_counts(fields: Mapping[str, Any]) -> int:
    return sum(v for k, v in fields.items()
               if k.endswith("_events") and isinstance(v, int) and not isinstance(v, bool))


CaseFn = Callable[[CaseRun], None]


def run_case(name: str, case: CaseFn, opt: Path | None = None) -> Figures:
    """Runs one case in a fresh work folder; its figures (or why it was skipped)."""
    work = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
    try:
        layer = opt or make_local_opt(work / "opt")
        with CaseRun(name, work, layer) as run:
            try:
                case(run)
            except CaseSkippedError as skip:
                return Figures(name, skipped=str(skip))
            return run.figures()
    finally:
        shutil.rmtree(work, ignore_errors=True)
