"""The chaos and fuzz cases of issue 16, each run against the real extension in the emulator.

Every case drives one sandbox through `CaseRun` (benchmarks/chaos_rig.py): a few tracked
invocations, the hostile event, more invocations, the shutdown drain. The rig then computes the
figures; case-specific expectations (an init error naming the variable, a secret never echoed,
no invocation held by a HEC known to hang) are added to `Figures.problems`. Sizes are chosen so
that each case takes seconds once the extension behaves, and stays bounded when it does not.

A case may name an open finding (`Case.open`): the targets it may still miss, with what is known
(docs/reliability.md, "Status"). The test then reports it as xfail, every other target asserted;
the table marks it. Without one, every target is asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.chaos_rig import (
    FLUSH_BUDGET_MS,
    CaseFn,
    CaseRun,
    Figures,
    StallingHec,
    nofile_python,
    small_tmpfs,
    telemetry_batch,
)
from ext.local.sandbox import delivery

LINES = 10  # tracked lines per ordinary invocation
POISON_DEPTH = 990
POISON_MARK = "chaos-poison-mark"
SECRET = "s3cr3t-Pa55w0rd"
BODY_BYTES = 16 * 2**20
IDLE_CONNECTIONS = 2000
FLOOD_BYTES = 64 * 2**20
# Loopback buffers hold a few MiB (tcp_rmem + tcp_wmem) that the listener never read; an
# answer (or a close) must come before this much of the line was sent.
LINE_READ_LIMIT = 16 * 2**20
FLOOD_S = 8.0
CONNECT_S = 6.0
HANG_TIMEOUT_MS = 800  # SPLUNK_REQUEST_TIMEOUT_MS against the hanging HEC
HANG_MARGIN_MS = 200  # for the sender to see its timeout and tell the main process
SLICE_MS = 400  # an invocation that sleeps this long gives the extension thawed time


def _warm(run: CaseRun, tag: str, count: int = 2) -> None:
    for n in range(count):
        run.invoke(f"{tag}{n}", LINES)


def _expect_init_error(run: CaseRun, variable: str) -> None:
    errors = run.init_errors()
    if variable not in errors:
        run.figures_.problems.append(f"no init/error naming {variable}")


def no_fault(run: CaseRun) -> None:
    """Control: the same invocations with nothing hostile (calibrates the targets)."""
    run.start(run.env())
    for n in range(6):
        run.invoke(f"n{n}", LINES)
    run.shutdown()


def snap_start_dead_connections(run: CaseRun) -> None:
    """SnapStart: the function logs as it loads; every connection open at the snapshot is dead
    after the restore (HEC never answers on it, never closes it), then 6 invocations."""
    run.start(run.env(SAMPLE_INIT_LINES="3", SAMPLE_INIT_MS="200"), snap_start=True)
    assert run.sb is not None
    run.sb.init()
    run.figures_.notes.append(f"{run.hec.abandon_open_connections()} connection(s) abandoned")
    for n in range(6):
        run.invoke(f"s{n}", LINES)
    run.shutdown()


# -- poison record ------------------------------------------------------------------------------


def poison_record(run: CaseRun) -> None:
    """A Telemetry record nested 990 levels deep, posted to the listener like Lambda would."""
    run.start(run.env())
    _warm(run, "pa")
    record = (b'{"p":' * (POISON_DEPTH - 1) + b'{"poison":"' + POISON_MARK.encode() + b'"}'
              + b"}" * (POISON_DEPTH - 1))
    stamp = json.dumps(time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())).encode()
    body = b'[{"time":' + stamp + b',"type":"function","record":' + record + b"}]"
    answers: list[int | None] = []
    run.during_invocations("pi", lambda: answers.append(run.inject(body)))
    status = answers[0] if answers else None
    run.figures_.notes.append(f"poison answered {status}")
    for n in range(4):
        run.invoke(f"pb{n}", LINES)
    run.shutdown()
    delivered = run.hec.count(contains=POISON_MARK) > 0  # as is, or kept as text
    if not delivered and run.counted() < 1:
        run.figures_.problems.append(f"the poison record (answered {status}) is neither in "
                                     "HEC nor counted")


def malformed_events(run: CaseRun) -> None:
    """One batch mixing valid lines with a numeric `time`, a numeric `type` and a lone
    surrogate escape (issue 16 item 7): each odd event costs at most itself, counted."""
    run.start(run.env())
    _warm(run, "ma")
    stamp = json.dumps(time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
    valid = [f'{{"time":{stamp},"type":"function","record":"c-mv:{n}:valid"}}' for n in range(3)]
    odd = [f'{{"time":{int(time.time() * 1000)},"type":"function","record":"c-mv:3:numeric time"}}',
           f'{{"time":{stamp},"type":7,"record":"odd-type numeric type"}}',
           f'{{"time":{stamp},"type":"function","record":"odd-escape \\ud800 lone surrogate"}}']
    body = ("[" + ",".join(valid[:2] + odd + valid[2:]) + "]").encode()
    answers: list[int | None] = []
    keys = [f"c-mv:{n}" for n in range(4)]
    run.during_invocations("mi", lambda: answers.append(run.inject(body, keys)))
    run.figures_.notes.append(f"mixed batch answered {answers}")
    for n in range(2):
        run.invoke(f"mb{n}", LINES)
    run.shutdown()
    unaccounted = [m for m in ("odd-type", "odd-escape") if run.hec.count(contains=m) == 0]
    if len(unaccounted) > run.counted():
        run.figures_.problems.append(f"odd event(s) {unaccounted} neither in HEC nor counted")


# -- SIGKILL of each process, mid-invocation and while frozen -----------------------------------


def kill_case(role: str, frozen: bool) -> CaseFn:
    def case(run: CaseRun) -> None:
        run.start(run.env())
        _warm(run, "ka")
        if frozen:
            run.kill(role)  # the sandbox is frozen between invocations
            run.invoke("kb", LINES)
        else:
            killer = threading.Timer(0.2, run.kill, (role,))
            killer.start()
            run.invoke("kb", LINES, sleep_ms=500)  # lines written, then killed while it sleeps
            killer.join()
        for n in range(3):
            run.invoke(f"kc{n}", LINES)
        run.shutdown()
    case.__doc__ = f"SIGKILL of the {role} process {'while frozen' if frozen else 'mid-invocation'}"
    return case


def kill_listener_abandoned_posts(run: CaseRun) -> None:
    """SIGKILL of the listener while a batch is on its way; the platform gives up on it.

    Lambda's own POST timeout is not documented; the emulator's (10 s) is cut to 0.5 s here so
    that requests the platform has abandoned are still queued on the listening socket when the
    next listener starts (issue 16 item 6).
    """
    sb = run.start(run.env())
    _warm(run, "aa")
    with patched(delivery, "POST_TIMEOUT_S", 0.5):
        sb.faults.telemetry_delay_s = 0.3  # the lines leave the platform after the kill
        killer = threading.Timer(0.15, run.kill, ("listener",))
        killer.start()
        run.invoke("ab", LINES, sleep_ms=500)
        killer.join()
        sb.faults.telemetry_delay_s = 0.0
        for n in range(3):
            run.invoke(f"ac{n}", LINES)
        run.shutdown()


@contextlib.contextmanager
def patched(module: object, name: str, value: object) -> Iterator[None]:
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


# -- a spool on a small tmpfs ------------------------------------------------------------------


def small_disk(run: CaseRun) -> None:
    """The spool on a 6 MiB tmpfs with 2 MiB free: ~2.5 MB of logs with HEC healthy, then
    ~3 MB while HEC refuses (503), then recovery. What the spool cannot hold is refused (503,
    counted); nothing it answered 2xx is lost."""
    with small_tmpfs(run.work / "disk", 6) as disk:
        filler = disk / "filler"
        with open(filler, "wb") as fh:
            fh.write(b"\0" * (4 * 2**20))
        run.start(run.env(SPLUNK_SPOOL_DIR=str(disk / "spool")), timeout_s=1.0)
        # On a loaded machine the sender may still be starting (imports) after several
        # invocations; until it delivers, refusing is right. The healthy phase starts once it does.
        _until_delivered(run, "dw")
        for n in range(10):
            run.invoke(f"d{n}", 400, size=512)
        refused = len(run.delivery.refused & run.sent)
        if refused:
            run.figures_.problems.append(
                f"{refused} line(s) refused while HEC was healthy: delivered data is not "
                "reclaimed from a nearly full disk")
        run.hec.set_fault("busy")  # now more than the free space must wait for HEC
        for n in range(12):
            run.invoke(f"o{n}", 400, size=512)
        run.hec.clear_faults()
        for n in range(2):
            run.invoke(f"r{n}", LINES)
        run.shutdown()
        run.figures_.notes.append(f"free at the end: {_free_kib(disk)} KiB")


def _until_delivered(run: CaseRun, tag: str, most: int = 20) -> None:
    """Small invocations until HEC holds a line of one of them (at most `most`)."""
    for n in range(most):
        run.invoke(f"{tag}{n}", LINES)
        if run.hec.count(sourcetype="aws:lambda:function") > 0:
            return


def _free_kib(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize // 1024


# -- a HEC that accepts connections and never answers -------------------------------------------


def hanging_hec(run: CaseRun) -> None:
    """HEC accepts and never answers for 8 invocations, answers one request and hangs again for
    4 more, then recovers.

    Until the first request has timed out the extension cannot know that HEC hangs, so the
    invocations that start before then may wait out the budget; none may after it (a circuit
    breaker), and one answer in between does not make the next invocation wait again.
    """
    stall = StallingHec(run.hec.port)
    try:
        # sync: every invocation asks to wait (adaptive would skip some on its own account),
        # so only the breaker can keep an invocation from waiting on the hanging HEC.
        env = run.env(SPLUNK_HOST=stall.url, SPLUNK_REQUEST_TIMEOUT_MS=str(HANG_TIMEOUT_MS),
                      SPLUNK_CONNECT_TIMEOUT_MS="500", SPLUNK_FLUSH="sync")
        run.start(env)
        # HEC hangs from the start; the clock starts at the first request the sender makes,
        # which on a loaded machine may be a few invocations later (its start-up is thawed time).
        for n in range(20):
            run.invoke(f"h-warm{n}", LINES)
            if stall.first_accept_at is not None:
                break
        posts = [_timed_invoke(run, f"h{n}") for n in range(8)]
        stall.answer_once()
        for n in range(10):  # thawed time for the courier's next attempt (short ones give none)
            run.invoke(f"ho{n}", LINES, sleep_ms=SLICE_MS)
            if stall.answered:
                break
        answered = stall.answered
        again = [_timed_invoke(run, f"hg{n}") for n in range(4)] if answered else []
        stall.forward()
        for n in range(2):
            run.invoke(f"hr{n}", LINES)
        run.shutdown()
    finally:
        stall.close()
    if stall.first_accept_at is None:
        run.figures_.problems.append("the extension never sent a request to HEC")
        return
    known = stall.first_accept_at + (HANG_TIMEOUT_MS + HANG_MARGIN_MS) / 1000
    held = [round(p) for started, p in posts + again
            if started > known and p > FLUSH_BUDGET_MS / 2]
    run.figures_.notes.append(f"post-runtime while hanging: {[round(p) for _, p in posts]}; "
                              f"after one answer: {[round(p) for _, p in again]}")
    if not answered:
        run.figures_.notes.append("the one-answer phase did not run (no request in 10 "
                                  "invocations)")
    if held:
        run.figures_.problems.append(f"{len(held)} invocation(s) held {held} ms by a HEC already "
                                     "known to hang (no circuit breaker)")


def _timed_invoke(run: CaseRun, tag: str) -> tuple[float, float]:
    started = time.monotonic()
    result = run.invoke(tag, LINES)
    return started, result.post_runtime_ms or 0.0


# -- listener limits ----------------------------------------------------------------------------


def idle_connections(run: CaseRun) -> None:
    """2,000 idle connections to the listener while the extension runs at `ulimit -n 1024`."""
    env = run.env(SPLUNK_EXTENSION_PYTHON=str(nofile_python(run.work, 1024)))
    run.start(env)
    _warm(run, "ia")
    port = run.listener_port()
    held: list[socket.socket] = []

    def connect_all() -> None:
        # Non-blocking, paced bursts: a burst never overflows the accept queue (whose SYNs
        # would wait for retransmission), and a listener at its cap cannot stall the loop.
        start = time.monotonic()
        while len(held) < IDLE_CONNECTIONS and time.monotonic() < start + CONNECT_S:
            for _ in range(8):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                held.append(sock)
            time.sleep(0.01)
        took = time.monotonic() - start
        run.figures_.notes.append(f"{len(held)} idle connections opened in {took:.1f} s")
        time.sleep(1.0)

    try:
        run.during_invocations("ib", connect_all)
        for n in range(2):
            run.invoke(f"ic{n}", LINES)
    finally:
        for sock in held:
            sock.close()
    run.invoke("id", LINES)
    run.shutdown()


def endless_chunk_line(run: CaseRun) -> None:
    """A chunked request whose chunk-size line never ends (up to 64 MiB of hex digits in 8 s)."""
    run.start(run.env())
    _warm(run, "ea")
    port = run.listener_port()
    sent = 0
    answer = "none"

    def flood() -> None:
        nonlocal sent, answer
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            head = (f"POST / HTTP/1.1\r\nHost: sandbox.localdomain:{port}\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            sock.sendall(head.encode())
            piece = b"f" * 2**20
            end = time.monotonic() + FLOOD_S
            try:
                while sent < FLOOD_BYTES and time.monotonic() < end:
                    sock.sendall(piece)
                    sent += len(piece)
                    if select.select([sock], [], [], 0)[0]:
                        reply = sock.recv(4096)
                        answer = reply.split(b"\r\n")[0].decode("latin-1") or "closed"
                        return
            except OSError as err:
                answer = f"closed ({type(err).__name__})"

    run.during_invocations("eb", flood)
    run.figures_.notes.append(f"{sent >> 20} MiB of chunk-size line sent, answer: {answer}")
    if answer == "none" or sent >= LINE_READ_LIMIT:
        run.figures_.problems.append(f"the listener took {sent >> 20} MiB of one chunk-size "
                                     f"line before an answer ({answer}): no bound on line length")
    for n in range(2):
        run.invoke(f"ec{n}", LINES)
    run.shutdown()


def parallel_large_bodies(run: CaseRun) -> None:
    """8 parallel 16 MiB Telemetry bodies (the extension's own log lines, which it skips)."""
    run.start(run.env())
    _warm(run, "la")
    line = "[splunk-hec-ext] DEBUG chaos: " + "y" * 1000
    size = len(telemetry_batch([line], kind="extension"))
    body = telemetry_batch([line] * (BODY_BYTES // size), kind="extension")
    body = body[:-1] + b" " * (BODY_BYTES - len(body)) + b"]"  # exactly 16 MiB
    statuses: list[int | None] = []

    def post() -> None:
        statuses.append(run.inject(body, timeout_s=20.0))

    def post_all() -> None:
        threads = [threading.Thread(target=post) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20.0)

    run.during_invocations("lb", post_all)
    run.figures_.notes.append(f"16 MiB bodies answered {sorted(map(str, statuses))}")
    for n in range(2):
        run.invoke(f"lc{n}", LINES)
    run.shutdown()


# -- bad configuration --------------------------------------------------------------------------


def host_with_credentials(run: CaseRun) -> None:
    """SPLUNK_HOST carrying user:password must never be echoed, wherever it is reported."""
    host = f"http://chaos:{SECRET}@127.0.0.1:{run.hec.port}"
    run.start(run.env(SPLUNK_HOST=host, SPLUNK_LOG_LEVEL="DEBUG"))
    for n in range(2):
        run.invoke(f"b{n}", 2)
    run.shutdown()
    if SECRET in run.everything_said():
        run.figures_.problems.append("the password in SPLUNK_HOST was echoed")


def non_latin1_token(run: CaseRun) -> None:
    """A token that cannot go in an HTTP header: an init error, not a sender crash loop."""
    token = "токен-" + str(uuid.uuid4())
    run.start(run.env(SPLUNK_HEC_TOKEN=token))
    for n in range(3):
        run.invoke(f"t{n}", 2)
    run.shutdown()
    _expect_init_error(run, "SPLUNK_HEC_TOKEN")
    if token in run.everything_said():
        run.figures_.problems.append("the token was echoed")


def unwritable_spool_dir(run: CaseRun) -> None:
    """SPLUNK_SPOOL_DIR below a regular file (unwritable even for root): an init error."""
    blocker = run.work / "not-a-directory"
    blocker.write_text("x")
    run.start(run.env(SPLUNK_SPOOL_DIR=str(blocker / "spool")))
    for n in range(2):
        run.invoke(f"u{n}", 2)
    run.shutdown()
    _expect_init_error(run, "SPLUNK_SPOOL_DIR")


@dataclass(frozen=True)
class Case:
    """One case: what it does (`run`), and the targets it is known to miss for now (`open`:
    short target names as `Figures.missed()` gives them, with `why`: the finding)."""

    run: CaseFn
    open: tuple[str, ...] = ()
    why: str = ""

    def __call__(self, run: CaseRun) -> None:
        self.run(run)

    def tolerated(self, figures: Figures) -> list[str]:
        """The misses of `figures` this case names as open."""
        return [text for name, text in figures.misses() if name in self.open]

    def untolerated(self, figures: Figures) -> list[str]:
        """The misses of `figures` that fail the case."""
        return [text for name, text in figures.misses() if name not in self.open]


CASES: dict[str, Case] = {
    "no_fault": Case(no_fault),
    "snap_start_dead_connections": Case(snap_start_dead_connections),
    "poison_record": Case(poison_record),
    "malformed_events": Case(malformed_events),
    **{f"kill_{role}_{when}": Case(kill_case(role, when == "frozen"))
       for role in ("listener", "sender", "main") for when in ("mid_invoke", "frozen")},
    "kill_listener_abandoned_posts": Case(kill_listener_abandoned_posts),
    "small_tmpfs_spool": Case(small_disk),
    "hanging_hec": Case(hanging_hec),
    "idle_connections_2000": Case(idle_connections),
    "endless_chunk_size_line": Case(endless_chunk_line),
    "parallel_16mib_bodies": Case(parallel_large_bodies),
    "config_host_with_credentials": Case(host_with_credentials),
    "config_non_latin1_token": Case(non_latin1_token),
    "config_unwritable_spool_dir": Case(unwritable_spool_dir),
}
# The CI smoke run (`--quick`) checks the script, not the cases (tests/integration/test_chaos.py
# runs every case): one run with invocations, one that fails at init.
QUICK = ("no_fault", "config_host_with_credentials")


def describe(name: str) -> str:
    doc = CASES[name].run.__doc__ or name
    return " ".join(doc.strip().split("\n\n")[0].split())
