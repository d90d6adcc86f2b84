"""The rig the extension benchmarks share: the embedded HEC receiver as its own process, the real
extension (bootstrap launcher, real processes) inside the emulator, and /proc readings (CPU,
RSS, PSS) of the extension's process tree.

Runs in the benchmark process. HEC runs as a separate process so that its SQLite work does not
compete for the benchmark's GIL with the emulator's delivery threads.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ext.local.hec.model import StoredEvent
from ext.local.hec.store import open_reader
from ext.local.layer import EXTENSION_NAME, make_local_opt
from ext.local.sandbox import Sandbox, SandboxConfig

REPO = Path(__file__).resolve().parents[1]
TOKEN = "11111111-2222-3333-4444-555555555555"  # the local receiver's token
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 30.0


class HecProcess:
    """`python -m ext.local.hec serve` in a child process, driven through its admin endpoint."""

    def __init__(self, db: Path, extra_args: Sequence[str] = ()) -> None:
        self.db = db
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ext.local.hec", "serve", "--port", "0", "--db", str(db),
             "--token", f"lambda={TOKEN}", *extra_args],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline() or "{}")
        if "url" not in ready:
            self.stop()
            raise RuntimeError("the HEC receiver did not start")
        self.url = str(ready["url"])
        self.port = int(urlsplit(self.url).port or 0)

    def admin(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One admin request; returns the decoded JSON answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        if self.url.startswith("https://"):
            # The receiver this rig started, over loopback, with its self-signed certificate.
            loopback = ssl.create_default_context()
            loopback.check_hostname, loopback.verify_mode = False, ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=loopback)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, data, {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"admin {method} {path}: {response.status} {answer!r}")
        return json.loads(answer)

    def count(self, **filters: str) -> int:
        """Stored events matching the admin filters (e.g. sourcetype=...)."""
        query = f"?{urlencode(filters)}" if filters else ""
        return int(self.admin("GET", f"/_admin/count{query}")["count"])

    def set_fault(self, mode: str, **params: Any) -> None:
        """Replaces the data-request faults (count None: until cleared)."""
        self.admin("POST", "/_admin/fault", {"mode": mode, **params})

    def clear_faults(self) -> None:
        self.admin("POST", "/_admin/fault/clear", {})

    def events(self, **filters: Any) -> list[StoredEvent]:
        """Stored events, oldest first, read straight from the SQLite file (WAL allows it)."""
        store = open_reader(self.db)
        try:
            return store.events(limit=10**8, **filters)
        finally:
            store.close()

    def last_event(self) -> tuple[int, float]:
        """(id, received_at) of the newest stored event, (0, 0.0) if none: an O(log n) probe
        (ids are the store's rowids, assigned in commit order) cheap enough to poll."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute(
                "SELECT id, received_at FROM events ORDER BY id DESC LIMIT 1").fetchone()
        finally:
            conn.close()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    def data_requests(self) -> int:
        """HTTP requests to the event endpoints so far (every status), from the request log."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute("SELECT count(*) FROM requests WHERE path LIKE "
                               "'/services/collector%' AND path NOT LIKE '%health%'").fetchone()
        finally:
            conn.close()
        return int(row[0])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class SinkProcess:
    """`python -m benchmarks.hec_sink`: counts events instead of storing them (throughput)."""

    def __init__(self, dump: str | None = None) -> None:
        """`dump`: a file the sink appends every decompressed body to (line-id checks)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.hec_sink", TOKEN, *([dump] if dump else [])],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = str(json.loads(self.proc.stdout.readline())["url"])
        self._conn = http.client.HTTPConnection(urlsplit(self.url).netloc, timeout=10)

    def last_event(self) -> tuple[int, float]:
        """(events counted, time of the last request), like HecProcess.last_event."""
        counted = self.counters()
        return int(counted["events"]), float(counted["last_at"])

    def counters(self) -> dict[str, float]:
        """The sink's counters: events, last_at, requests, body/raw/head bytes."""
        self._conn.request("GET", "/count")
        counted: dict[str, float] = json.loads(self._conn.getresponse().read())
        return counted

    def stop(self) -> None:
        self._conn.close()
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Rig:
    """A HEC receiver, an /opt folder with the extension, and a scratch folder."""

    hec: HecProcess
    opt: Path
    work: Path
    target_url: str | None = None  # another HEC endpoint (the counting sink) instead of hec

    def env(self, **extra: str) -> dict[str, str]:
        """Extension environment pointing at this rig's HEC."""
        return {"SPLUNK_HOST": self.target_url or self.hec.url, "SPLUNK_HEC_TOKEN": TOKEN,
                "SPLUNK_EXTENSION_PYTHON": sys.executable, **extra}

    def sandbox(self, env: Mapping[str, str], **cfg: Any) -> Sandbox:
        """A started sandbox running the sample function with the extension (caller closes).

        On whole cores unless `limits=True` is passed: the older benchmarks' figures stay
        comparable; bench_cost measures under Lambda's CPU shares."""
        cfg.setdefault("limits", False)
        cfg.setdefault("opt_dir", self.opt)  # None: the function alone, no extension
        config = SandboxConfig(function_dir=REPO / "function", handler="handler.handler",
                               env=dict(env), **cfg)
        return Sandbox(config).start()


@contextlib.contextmanager
def extension_rig(code: Path | None = None) -> Iterator[Rig]:
    """A fresh HEC receiver process and /opt folder, removed afterwards; `code`: the `ext`
    package the extension runs, when not this checkout's."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        opt = make_local_opt(work / "opt", code=code)
        hec = HecProcess(work / "hec.sqlite")
        try:
            yield Rig(hec, opt, work)
        finally:
            hec.stop()


def extension_processes(sb: Sandbox) -> dict[str, int]:
    """Pids of the extension's processes by role: main, listener, sender (forked in that order,
    so the lower child pid is the listener)."""
    leader = sb.extension_pids()[EXTENSION_NAME]
    children = sorted(pid for pid in _group_members(leader) if pid != leader)
    roles = {"main": leader}
    for role, pid in zip(("listener", "sender"), children, strict=False):
        roles[role] = pid
    return roles


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat_fields(int(entry.name))
            if stat and int(stat[2]) == pgid:
                members.append(int(entry.name))
    return members


def _stat_fields(pid: int) -> list[bytes]:
    """Fields of /proc/<pid>/stat after the command name (state is [0]); [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return []
    return stat[stat.rfind(b")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (seconds; clock-tick resolution)."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    # stat fields 14 and 15 (1-based) are utime and stime; [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def extension_tree(sb: Sandbox) -> list[int]:
    """Pids of every live process of the extension (its process group: main and children)."""
    leader = sb.extension_pids().get(EXTENSION_NAME)
    return _group_members(leader) if leader else []


def cpu_ns(pids: list[int]) -> int:
    """CPU time used so far by `pids`, all their threads, in ns (scheduler accounting in
    /proc/<pid>/task/<tid>/schedstat: exact, unlike the clock ticks of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                    total += int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


def memory_kb(pid: int) -> dict[str, int]:
    """rss, pss and uss (private clean + dirty) of `pid` from /proc/<pid>/smaps_rollup."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(b":") and parts[1].isdigit():
                values[parts[0][:-1].decode()] = int(parts[1])
    return {"rss_kb": values.get("Rss", 0), "pss_kb": values.get("Pss", 0),
            "uss_kb": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)}


def smaps(pid: int) -> Iterator[tuple[str, dict[str, int]]]:
    """Each mapping of `pid` from /proc/<pid>/smaps: its name ("" for anonymous, "[heap]",
    a path...) and its fields in kB (Rss, Pss, Private_Clean, ...)."""
    name = ""
    fields: dict[str, int] | None = None
    with open(f"/proc/{pid}/smaps", "rb") as fh:
        for line in fh:
            head = line.split(maxsplit=6)
            if head and not head[0].endswith(b":"):  # a mapping's header line
                if fields is not None:
                    yield name, fields
                name = head[5].strip().decode() if len(head) > 5 else ""
                fields = {}
            elif fields is not None and len(head) >= 2 and head[1].isdigit():
                fields[head[0][:-1].decode()] = int(head[1])
    if fields is not None:
        yield name, fields


def footprint_kb(pids: list[int]) -> dict[str, int]:
    """The memory that exists because of `pids`, with file pages counted once, not shared out.

    PSS divides a file page between every process that maps it: on this machine the system
    Python's libpython, libssl and msgspec's module are mapped by the benchmark's own Python
    processes too (the emulator, the HEC receiver), so the extension's PSS on that interpreter
    leaves most of its file pages to them, and a bundled interpreter, whose files nothing else
    maps, looks bigger than it is. Here the anonymous memory (Python objects, the C heap,
    stacks) is counted by PSS, which splits only what the extension's own forks share, and each
    file's resident pages once (the most any of the processes has resident).
    """
    anonymous = 0
    files: dict[str, int] = {}
    for pid in pids:
        resident: dict[str, int] = {}
        for name, fields in smaps(pid):
            if not name or name.startswith("["):
                anonymous += fields.get("Pss", 0)
            else:
                resident[name] = resident.get(name, 0) + fields.get("Rss", 0)
        for path, kb in resident.items():
            files[path] = max(files.get(path, 0), kb)
    file_kb = sum(files.values())
    return {"anonymous_pss_kb": anonymous, "file_once_kb": file_kb,
            "footprint_kb": anonymous + file_kb}


def clear_referenced(pids: list[int]) -> None:
    """Clears the accessed bit of every page of `pids` (/proc/<pid>/clear_refs): what
    `referenced_kb` reports next is what they touched since."""
    for pid in pids:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("1")


def referenced_kb(pid: int) -> dict[str, int]:
    """kB of `pid`'s pages accessed since `clear_referenced`, by backing: `anonymous` (Python
    objects, the C heap, stacks), `libpython` (the interpreter's code and data) and `other files`
    (libc, OpenSSL, extension modules). After a freeze every one of them is a cache miss at
    least, so this is the breadth of what a thaw's work costs."""
    kinds = _kb_by_mapping(pid, "Referenced")
    return {"anonymous": kinds["anon"] + kinds["heap"] + kinds["stack"],
            "libpython": kinds["libpython"], "other files": kinds["other libraries"]}


def pss_kb_by_backing(pid: int) -> dict[str, int]:
    """PSS of `pid` split into `anonymous` (Python objects, the C heap, stacks: shared only
    between the extension's own forks) and `file` (libpython, OpenSSL, extension modules: on
    this machine shared with every other process that maps the same files, so that part moves
    with what else runs)."""
    out = {"anonymous": 0, "file": 0}
    for name, fields in smaps(pid):
        out["anonymous" if not name or name.startswith("[") else "file"] += fields.get("Pss", 0)
    return out


def private_kb_by_mapping(pid: int) -> dict[str, int]:
    """USS of `pid` by kind of mapping, from /proc/<pid>/smaps: `anon` (Python objects: pymalloc
    arenas and large blocks), `heap` (the C heap: malloc'd buffers, OpenSSL, zlib), `libpython`
    (its data pages, written by every process), `other libraries` and `stack`."""
    return _kb_by_mapping(pid, "Private_Clean", "Private_Dirty")


def _kb_by_mapping(pid: int, *fields: str) -> dict[str, int]:
    """The sum of smaps `fields` of `pid` by kind of mapping (private_kb_by_mapping's kinds)."""
    out = {"anon": 0, "heap": 0, "libpython": 0, "other libraries": 0, "stack": 0}
    for name, values in smaps(pid):
        if name == "[heap]":
            kind = "heap"
        elif name.startswith("[stack"):
            kind = "stack"
        elif not name or name.startswith("["):
            kind = "anon"
        elif "libpython" in name:
            kind = "libpython"
        else:
            kind = "other libraries"
        out[kind] += sum(values.get(field, 0) for field in fields)
    return out


def listener_port(sb: Sandbox) -> int:
    """The Telemetry listener port the extension subscribed with (from the exchange log)."""
    for exchange in sb.exchanges:
        if exchange["method"] == "PUT" and exchange["path"].endswith("/telemetry"):
            uri = exchange["request"]["destination"]["URI"]
            return int(urlsplit(uri).port or 0)
    raise RuntimeError("the extension has not subscribed to the Telemetry API")


def wait_for(predicate: Any, timeout_s: float, poll_s: float = 0.02) -> bool:
    """Polls `predicate()` until true or the timeout; returns its last verdict."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def stamped_latencies_ms(events: list[StoredEvent], tag_prefix: str) -> dict[str, list[float]]:
    """For function lines `<tag>:<n>:@<epoch>:...` whose tag starts with `tag_prefix`: the
    latency write -> stored in HEC (ms), by tag."""
    out: dict[str, list[float]] = {}
    for event in events:
        text = json.loads(event.event)
        if not isinstance(text, str) or not text.startswith(tag_prefix):
            continue
        tag, _, rest = text.partition(":")
        _, _, rest = rest.partition(":@")
        written = float(rest.partition(":")[0])
        out.setdefault(tag, []).append((event.received_at - written) * 1000)
    return out
