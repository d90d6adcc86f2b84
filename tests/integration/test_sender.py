"""The sender as a real process: spool -> HEC receiver, with faults and kills."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ext import control
from ext.local.hec import HecReceiver
from ext.spool import SpoolWriter, read_committed
from tests.integration.conftest import TOKEN
from tests.integration.telemetry_builders import body, invocation

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class SenderProc:
    def __init__(self, spool: Path, hec_url: str, env: dict[str, str]) -> None:
        self.spool = spool
        self.wake_r, self.wake_w = control.make_pipe()
        self.ctl_r, self.ctl_w = control.make_pipe()
        self.status_r, self.status_w = control.make_pipe()
        self.notes_r, self.notes_w = control.make_pipe()
        self.env = {
            **os.environ,
            "SPLUNK_HOST": hec_url,
            "SPLUNK_HEC_TOKEN": TOKEN,
            "SPLUNK_SPOOL_DIR": str(spool),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        fds = (self.wake_r, self.ctl_r, self.status_w, self.notes_r)
        for fd in fds:
            os.set_inheritable(fd, True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.sender_child", "fn", *map(str, fds)],
            cwd=ROOT,
            env=self.env,
            pass_fds=fds,
            stderr=subprocess.PIPE,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err.decode()

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.kill()
        for fd in (self.wake_r, self.wake_w, self.ctl_r, self.ctl_w, self.status_r, self.status_w,
                   self.notes_r, self.notes_w):
            os.close(fd)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def sender_factory(spool: Path, hec: HecReceiver) -> Iterator[list[SenderProc]]:
    made: list[SenderProc] = []
    yield made
    for s in made:
        s.close()


def make(made: list[SenderProc], spool: Path, hec: HecReceiver, **env: str) -> SenderProc:
    s = SenderProc(spool, hec.url, env)
    made.append(s)
    s.start()
    return s


def wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def gather(got: list[control.Message], inbox: control.Inbox) -> list[control.Message]:
    """`got`, with the messages that came on `inbox` since added."""
    got.extend(inbox.read())
    return got


def spool_invocations(writer: SpoolWriter, count: int, lines: int) -> list[str]:
    expected = []
    for n in range(count):
        _, events = invocation(n, lines, ms=n * 10)
        writer.append(body(events), len(events))
        expected += [f"inv{n}-{i} hello" for i in range(lines)]
    return expected


def function_lines(hec: HecReceiver) -> list[str]:
    return [json.loads(e.event) for e in hec.events(sourcetype="aws:lambda:function", limit=10**6)]


def test_delivers_everything_in_order(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    with SpoolWriter(spool) as writer:
        expected = spool_invocations(writer, 30, 20)
        last = writer.next_seq - 1
    sender = make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
    wait_for(lambda: read_committed(spool) >= last)
    assert function_lines(hec) == expected
    assert hec.count(sourcetype="aws:lambda:platform") == 60
    assert "ERROR" not in sender.stop()


@pytest.mark.parametrize(("flush", "told_too"), [
    ("adaptive", [0]),  # and, unasked, every other invocation committed (main learns from them)
    ("background", []),  # only what main asked for
])
def test_min_batch_size_holds_until_flush(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc], flush: str,
    told_too: list[int],
) -> None:
    sender = make(
        sender_factory,
        spool,
        hec,
        DISPATCH_MIN_BATCH_SIZE="1000",
        SPLUNK_DISPATCH_MAX_WAIT_MS="60000",
        SPLUNK_FLUSH=flush,
    )
    with SpoolWriter(spool, wake_fd=sender.wake_w) as writer:
        spool_invocations(writer, 2, 5)
        last = writer.next_seq - 1
    time.sleep(0.5)  # nothing may be sent below the minimum batch size
    assert hec.count() == 0
    rid = invocation(1, 5)[0]
    assert control.send(sender.ctl_w, control.Flush(rid))
    answers = control.Inbox(sender.status_r)
    got: list[control.Message] = []
    wait_for(lambda: len(gather(got, answers)) > 1 + len(told_too))
    time.sleep(0.2)  # nothing more comes
    assert gather(got, answers) == [control.Ready(), control.Delivered(rid),
                                    *(control.Delivered(invocation(n, 5)[0]) for n in told_too)]
    assert read_committed(spool) >= last  # told only once committed through its runtimeDone
    assert len(function_lines(hec)) == 10


@pytest.mark.parametrize("flush", ["sync", "adaptive"])
def test_an_invocation_waited_for_quietly_is_sent_and_told_at_its_end_unasked(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc], flush: str,
) -> None:
    """Main waits without asking (it asks only when late) for every invocation (sync), or for
    the one it notes (adaptive): each one's runtimeDone makes the sender send at once,
    whatever the minimum batch size."""
    sender = make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1000",
                  SPLUNK_DISPATCH_MAX_WAIT_MS="60000", SPLUNK_FLUSH=flush)
    answers = control.Inbox(sender.status_r)
    got: list[control.Message] = []
    with SpoolWriter(spool, wake_fd=sender.wake_w) as writer:
        for n in range(2):
            rid, events = invocation(n, 5, ms=n * 10)
            if flush == "adaptive":
                assert control.send(sender.notes_w, control.Awaited(rid))
            writer.append(body(events), len(events))
            wait_for(lambda n=n: len(gather(got, answers)) > 1 + n)  # type: ignore[misc]
            assert len(function_lines(hec)) == 5 * (n + 1)  # sent before the next one came
    time.sleep(0.2)  # nothing more comes
    assert gather(got, answers) == [control.Ready(), *(control.Delivered(invocation(n, 5)[0])
                                                       for n in range(2))]


def test_outage_then_recovery_loses_nothing(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    hec.set_fault("busy", count=4)
    hec.add_fault("server_error", count=2)
    hec.add_fault("stale_keepalive", count=1)
    hec.add_fault("reset_after_store", count=1, store=False)
    with SpoolWriter(spool) as writer:
        expected = spool_invocations(writer, 10, 10)
        last = writer.next_seq - 1
    make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1", SPLUNK_MAX_REQUEST_BYTES="8192")
    wait_for(lambda: read_committed(spool) >= last, timeout=30)
    assert function_lines(hec) == expected


def test_poison_event_quarantined_rest_delivered(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    hec.set_fault("invalid_event", count=1, code=6, index=3)
    with SpoolWriter(spool) as writer:
        expected = spool_invocations(writer, 1, 10)
        last = writer.next_seq - 1
    sender = make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
    wait_for(lambda: read_committed(spool) >= last)
    # Event 3 of the request is the second function line (after platform.start at 0).
    assert function_lines(hec) == expected[:2] + expected[3:]
    dead = (spool.parent / "deadletter.jsonl").read_text().splitlines()
    assert len(dead) == 1 and "inv0-2 hello" in dead[0]
    assert "refused 1 event" in sender.stop()


def test_a_line_of_invalid_utf8_reaches_hec_repaired_not_the_dead_letters(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    # The listener spools a record's bytes unchecked for UTF-8 (msgspec.Raw); HEC refuses the
    # event that carries invalid ones (code 6, by its number). The sender resends it with
    # U+FFFD in their place, counts it in its self-metrics and warns; nothing is dead-lettered.
    _, events = invocation(0, 5)
    events[3]["record"] = "BAD-LINE\n"
    with SpoolWriter(spool) as writer:
        writer.append(body(events).replace(b"BAD-LINE", b"bad \xff\xfe line \xe2\x82!"),
                      len(events))
        last = writer.next_seq - 1
    sender = make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
    wait_for(lambda: read_committed(spool) >= last)
    assert sorted(function_lines(hec)) == sorted(
        ["inv0-0 hello", "inv0-1 hello", "bad \ufffd\ufffd line \ufffd!", "inv0-3 hello",
         "inv0-4 hello"])
    assert not (spool.parent / "deadletter.jsonl").exists()
    assert control.send(sender.ctl_w, control.Drain(int(time.time() * 1000) + 5000, ""))
    assert sender.proc is not None and sender.proc.wait(timeout=10) == 0  # shutdown metrics
    bodies = [json.loads(e.event) for e in hec.events(sourcetype="aws:lambda:extension")]
    counts = [b["metrics"] for b in bodies if b.get("type") == "splunk-extension.self-metrics"]
    assert sum(m["splunk.extension.hec.repaired_events"] for m in counts) == 1
    assert sum(m["splunk.extension.hec.quarantined_events"] for m in counts) == 0
    log = sender.stop()
    assert "for invalid UTF-8" in log and "as invalid" not in log  # warned, not dead-lettered


def test_hold_on_bad_token_then_recover(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    hec.set_fault("auth", count=1, code=4)
    with SpoolWriter(spool) as writer:
        expected = spool_invocations(writer, 3, 5)
        last = writer.next_seq - 1
    make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
    wait_for(lambda: read_committed(spool) >= last, timeout=30)
    assert function_lines(hec) == expected


def test_sigkill_mid_run_resumes_without_loss(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    hec.set_fault("delay", seconds=0.2)
    with SpoolWriter(spool) as writer:
        expected = spool_invocations(writer, 40, 10)
        last = writer.next_seq - 1
    first = make(
        sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1", SPLUNK_MAX_REQUEST_BYTES="4096"
    )
    wait_for(lambda: hec.count() > 0)
    first.kill()
    hec.clear_faults()
    make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
    wait_for(lambda: read_committed(spool) >= last)
    got = function_lines(hec)
    assert set(got) == set(expected)
    assert len(got) - len(expected) <= 40  # at most one 4 KiB batch sent twice


def test_drain_then_exit(spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]) -> None:
    with SpoolWriter(spool) as writer:
        expected = spool_invocations(writer, 5, 100)
    sender = make(
        sender_factory,
        spool,
        hec,
        DISPATCH_MIN_BATCH_SIZE="100000",
        SPLUNK_DISPATCH_MAX_WAIT_MS="600000",
    )
    assert control.send(sender.ctl_w, control.Drain(int(time.time() * 1000) + 5000, ""))
    assert sender.proc is not None
    assert sender.proc.wait(timeout=10) == 0
    assert function_lines(hec) == expected


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_tls_verified_by_default_and_with_a_ca_bundle(
    tmp_path: Path, spool: Path, sender_factory: list[SenderProc]
) -> None:
    from ext.local.hec import HecToken

    cert, key = _self_signed(tmp_path)
    tokens = (HecToken(name="lambda", value=TOKEN),)
    with HecReceiver(tmp_path / "tls.sqlite", tokens=tokens, tls_cert=cert, tls_key=key) as hec:
        with SpoolWriter(spool) as writer:
            expected = spool_invocations(writer, 2, 3)
            last = writer.next_seq - 1
        untrusting = make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
        started = control.Inbox(untrusting.status_r)
        wait_for(lambda: control.Ready() in started.read())  # its imports can be slow
        time.sleep(1.0)  # it keeps retrying: an unknown issuer is never accepted silently
        assert hec.count() == 0
        assert read_committed(spool) < last
        assert "not accepting events" in untrusting.stop()
        make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1", SPLUNK_CA_BUNDLE=str(cert))
        wait_for(lambda: read_committed(spool) >= last)
        assert function_lines(hec) == expected


def test_spool_overflow_is_refused_counted_and_reported_to_splunk(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    # A spool bound far below what is written: the batches that do not fit are refused (the
    # listener answers 503), none answered before is dropped, and the exact refusal count
    # reaches Splunk as the extension's own notice.
    payloads = [body(invocation(n, 40, ms=n)[1]) for n in range(60)]
    taken = []
    with SpoolWriter(spool, max_bytes=64 * 1024, segment_bytes=8 * 1024) as writer:
        for n, payload in enumerate(payloads):
            try:
                writer.append(payload, 42)
            except OSError:
                continue
            taken.append(f"inv{n}")
        last = writer.next_seq - 1
    make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
    wait_for(lambda: read_committed(spool) >= last)
    notices = [json.loads(e.event) for e in hec.events(sourcetype="aws:lambda:extension")]
    losses = [n for n in notices if n.get("type") == "splunk-extension.spool-loss"]
    assert len(losses) == 1
    delivered_batches = {line.split("-")[0] for line in function_lines(hec)}
    assert delivered_batches == set(taken)  # every batch taken, none dropped
    refused = 60 - len(taken)
    assert refused > 0
    assert losses[0]["dropped_records"] == 0
    assert (losses[0]["refused_batches"], losses[0]["refused_events"]) == (refused, refused * 42)


def test_empty_record_behind_a_held_batch_is_not_committed_before_it(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    # Issue 17: HEC holds (code 4, invalid token) the batch of record 0 (5 lines); record 1
    # holds one empty line, so its batch has nothing to send. Committing it at once moved the
    # position past record 0, and a restarted sender never sent record 0.
    hec.set_fault("auth", code=4)
    first = make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1",
                 SPLUNK_DISPATCH_MAX_WAIT_MS="0")
    with SpoolWriter(spool, wake_fd=first.wake_w) as writer:
        _, events = invocation(0, 5)
        writer.append(body(events[1:-1]), 5)
        wait_for(lambda: len(hec.requests()) >= 1)  # record 0 is on the wire, and held
        writer.append(body([{"time": events[1]["time"], "type": "function", "record": ""}]), 1)
    time.sleep(1.5)
    assert read_committed(spool) == -1
    first.kill()
    hec.clear_faults()
    make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
    wait_for(lambda: read_committed(spool) >= 1)
    assert function_lines(hec) == [f"inv0-{i} hello" for i in range(5)]


def test_shutdown_waits_for_a_late_report_while_the_window_allows(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    # Lambda may deliver the last platform.report late in the 2 s window (here at +1.2 s): the
    # sender keeps only the time the drain needs, so the report still reaches HEC, and it
    # exits before the deadline.
    sender = make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
    rid, events = invocation(0, 5)
    report = {"time": events[-1]["time"], "type": "platform.report",
              "record": {"requestId": rid, "status": "success"}}
    with SpoolWriter(spool, wake_fd=sender.wake_w) as writer:
        writer.append(body(events), len(events))
        wait_for(lambda: read_committed(spool) >= 0)
        deadline = time.time() + 2.0
        assert control.send(sender.ctl_w, control.Drain(int(deadline * 1000), rid))
        time.sleep(1.2)
        assert sender.proc is not None and sender.proc.poll() is None  # still waiting
        writer.append(body([report]), 1)
    assert sender.proc.wait(timeout=5) == 0
    assert time.time() < deadline
    kinds = [json.loads(e.event)["type"] for e in hec.events(sourcetype="aws:lambda:platform")]
    assert kinds.count("platform.report") == 1


def test_a_record_nested_too_deep_is_counted_in_splunk_and_stops_nothing(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    # Issue 16: a function record nested ~5,000 deep makes a decode raise RecursionError. The
    # listener keeps such events as text; one that reaches the spool otherwise (an older
    # version's spool) is dropped by the sender's mapping, counted in a notice to Splunk, and
    # what follows is delivered: the sender never crash-loops on it.
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    poison = f'[{{"time":"2026-11-26T12:00:00.000Z","type":"function","record":{deep}}}]'
    with SpoolWriter(spool) as writer:
        expected = spool_invocations(writer, 1, 3)
        writer.append(poison.encode(), 1)
        expected += spool_invocations(writer, 1, 3)
        last = writer.next_seq - 1
    sender = make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1")
    wait_for(lambda: read_committed(spool) >= last)
    assert function_lines(hec) == expected
    assert sender.proc is not None and sender.proc.poll() is None  # never died
    notices = [json.loads(e.event) for e in hec.events(sourcetype="aws:lambda:extension")]
    malformed = [n for n in notices if n.get("type") == "splunk-extension.malformed-events"]
    assert [n["malformed_events"] for n in malformed] == [1]
    sender.stop()


@pytest.mark.timing  # the second flush is answered within 0.5 s
def test_a_hanging_hec_is_not_waited_for_until_it_answers_fast_again(
    spool: Path, hec: HecReceiver, sender_factory: list[SenderProc]
) -> None:
    # Issue 16: HEC accepts connections and never answers. After one request timed out, a
    # flush is answered Failing at once (main does not hold the invocation) while the courier
    # keeps probing; once HEC answers again, everything is delivered.
    hec.set_fault("delay", seconds=3.0, store=False)
    sender = make(sender_factory, spool, hec, DISPATCH_MIN_BATCH_SIZE="1",
                  SPLUNK_REQUEST_TIMEOUT_MS="1000")
    answers = control.Inbox(sender.status_r)
    got: list[control.Message] = []

    def answer_for(rid: str) -> control.Message:
        """The first answer about `rid` (Running is news, not an answer)."""
        def about(m: control.Message) -> bool:
            return getattr(m, "request_id", None) == rid and not isinstance(m, control.Running)

        wait_for(lambda: any(map(about, gather(got, answers))), timeout=10)
        return next(m for m in got if about(m))

    with SpoolWriter(spool, wake_fd=sender.wake_w) as writer:
        rids = []
        for n in range(2):
            rid, events = invocation(n, 3)
            writer.append(body(events), len(events))
            rids.append(rid)
            asked = time.monotonic()
            assert control.send(sender.ctl_w, control.Flush(rid))
            assert answer_for(rid) == control.Failing(rid)
            waited = time.monotonic() - asked
            if n == 0:  # answered when its budget passed: let the request time out too
                time.sleep(max(0.0, 1.2 - waited))
        assert waited < 0.5  # the second flush: no new 1 s timeout to sit through
    hec.clear_faults()
    assert answer_for(rids[1]) in (control.Failing(rids[1]), control.Delivered(rids[1]))
    wait_for(lambda: control.Delivered(rids[1]) in gather(got, answers), timeout=30)
    assert len(function_lines(hec)) == 6
