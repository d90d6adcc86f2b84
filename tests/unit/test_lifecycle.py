"""The main process's error policy, with stand-ins for the Extensions API and the children."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext import control, errors
from ext.flush_policy import RELIABLE_GAPS
from ext.main import events, lifecycle, minijson, supervisor

ENV = {"SPLUNK_HOST": "https://splunk.example:8088", "SPLUNK_HEC_TOKEN": "secret-token"}


class FakeApi:
    def __init__(self, events: list[bytes]) -> None:
        self.events = events
        self.reports: list[tuple[str, str, str]] = []

    def account_id(self) -> str:
        return "123456789012"

    def connection_fd(self) -> int:
        return -1

    def next_event(self, wait: object = None) -> bytes:
        if not self.events:
            raise errors.ApiError("/next", 500, b"")
        return self.events.pop(0)

    def init_error(self, error_type: str, message: str) -> None:
        self.reports.append(("init", error_type, message))

    def exit_error(self, error_type: str, message: str) -> None:
        self.reports.append(("exit", error_type, message))


class StubLoop:
    def __init__(self, api: FakeApi, config: object, function_name: str) -> None:
        self.api = api
        self.stopped = False

    def start(self) -> None:
        pass

    def serve(self) -> int:
        self.api.next_event()
        return 0

    def stop_children(self) -> None:
        self.stopped = True


def test_bad_config_reports_init_error_naming_variables() -> None:
    api = FakeApi([])
    code = lifecycle.run(api, {"DISPATCH_MIN_BATCH_SIZE": "x"})  # type: ignore[arg-type]
    assert code == 1
    [(kind, error_type, message)] = api.reports
    assert (kind, error_type) == ("init", errors.CONFIG_INVALID)
    for variable in ("SPLUNK_HOST", "SPLUNK_HEC_TOKEN", "DISPATCH_MIN_BATCH_SIZE"):
        assert variable in message


def test_disable_mode_stays_dormant_until_shutdown() -> None:
    api = FakeApi([b'{"eventType":"INVOKE","requestId":"r"}', b'{"eventType":"SHUTDOWN"}'])
    env = {"SPLUNK_ON_CONFIG_ERROR": "disable"}
    assert lifecycle.run(api, env) == 0  # type: ignore[arg-type]
    assert api.reports == [] and api.events == []


@pytest.fixture
def taken_port() -> Iterator[int]:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_listener_port_that_cannot_be_bound_is_an_init_error_naming_it(
    taken_port: int, tmp_path: Path,
) -> None:
    api = FakeApi([])
    env = {**ENV, "SPLUNK_SPOOL_DIR": str(tmp_path), "SPLUNK_LISTENER_HOST": "127.0.0.1",
           "SPLUNK_LISTENER_PORT": str(taken_port)}
    assert lifecycle.run(api, env) == 1  # type: ignore[arg-type]
    [(kind, error_type, message)] = api.reports
    assert (kind, error_type) == ("init", errors.CONFIG_INVALID)
    assert f"SPLUNK_LISTENER_HOST=127.0.0.1 and SPLUNK_LISTENER_PORT={taken_port}" in message
    assert "(Address already in use)" in message and "Errno" not in message


def test_a_listener_host_not_of_this_machine_is_a_config_error_disable_mode_survives(
    tmp_path: Path,
) -> None:
    api = FakeApi([b'{"eventType":"INVOKE","requestId":"r"}', b'{"eventType":"SHUTDOWN"}'])
    env = {**ENV, "SPLUNK_SPOOL_DIR": str(tmp_path), "SPLUNK_ON_CONFIG_ERROR": "disable",
           "SPLUNK_LISTENER_HOST": "192.0.2.1"}  # TEST-NET: no DNS asked
    assert lifecycle.run(api, env) == 0  # type: ignore[arg-type]
    assert api.reports == [] and api.events == []


def test_unrecoverable_error_after_init_reports_exit_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle, "MainLoop", StubLoop)
    api = FakeApi([])
    assert lifecycle.run(api, ENV) == 1  # type: ignore[arg-type]
    [(kind, error_type, message)] = api.reports
    assert (kind, error_type) == ("exit", errors.RUNTIME_FAILED)
    assert "secret-token" not in message


def test_event_parsing() -> None:
    event = events.Event(b'{"eventType":"SHUTDOWN","shutdownReason":"timeout","deadlineMs":5}')
    assert (event.kind, event.reason, event.deadline_ms, event.request_id) == (
        "SHUTDOWN", "timeout", 5, None)
    odd = events.Event(b'["not an object"]')
    assert (odd.kind, odd.request_id, odd.deadline_ms) == ("", None, 0)


class Main:
    """A MainLoop whose sender is the test: it reads main's messages and answers (or not)."""

    def __init__(self, budget_ms: int = 150, **more: str) -> None:
        from ext import config

        # A spool of its own: at shutdown main reads it once the sender is done (_unsent).
        self.spool_dir = tempfile.mkdtemp(prefix="main-spool-")
        weakref.finalize(self, shutil.rmtree, self.spool_dir, True)  # closed or not
        env = {**ENV, "SPLUNK_FLUSH_BUDGET_MS": str(budget_ms), "SPLUNK_LISTENER_HOST": "127.0.0.1",
               "SPLUNK_SPOOL_DIR": self.spool_dir, **more}
        self.loop = lifecycle.MainLoop(FakeApi([]), config.load(env), "fn")  # type: ignore[arg-type]
        self.inbox = control.Inbox(self.loop.ctl_r)
        self.noted = control.Inbox(self.loop.notes_r)

    def flush(self, answer: control.Message | None = None, after_s: float = 0.0,
              then: tuple[float, control.Message] | None = None) -> float:
        """main flushes "rid"; the stand-in sender, once asked, answers `after_s` later, and
        sends `then` (delay, message) after that; returns how long main waited."""
        def sender() -> None:
            end = time.monotonic() + 2
            while not self.inbox.read() and time.monotonic() < end:
                time.sleep(0.002)
            time.sleep(after_s)
            if answer is not None:
                control.send(self.loop.status_w, answer)
            if then is not None:
                time.sleep(then[0])
                control.send(self.loop.status_w, then[1])

        thread = threading.Thread(target=sender)
        thread.start()
        start = time.monotonic()
        self.loop.flush_invocation("rid", time.time() + 60)
        elapsed = time.monotonic() - start
        thread.join()
        return elapsed

    def close(self) -> None:
        self.loop.server.close()
        for fd in self.loop._all_fds()[1:]:
            os.close(fd)


@pytest.fixture
def main() -> Iterator[Main]:
    made = Main()
    yield made
    made.close()


@pytest.mark.timing  # answered within 150 ms
def test_flush_ends_when_the_sender_says_delivered(main: Main) -> None:
    assert main.flush(control.Delivered("rid")) < 0.15
    assert main.loop.answers == {"rid": True}


@pytest.mark.timing  # answered within 150 ms
def test_flush_ends_when_the_sender_says_failing(main: Main) -> None:
    assert main.flush(control.Failing("rid")) < 0.15
    assert main.loop.answers == {"rid": False}


@pytest.mark.timing  # within the budget
def test_flush_waits_no_longer_than_the_budget_when_nothing_answers(main: Main) -> None:
    elapsed = main.flush(None)
    assert 0.13 <= elapsed < 0.6  # budget 150 ms less 15 ms for main to answer: a silent sender
    assert main.flush(control.Delivered("other"), after_s=0.01) >= 0.13  # not its answer


@pytest.mark.timing  # waits past the budget only while the invocation runs
def test_a_running_invocation_is_waited_for_past_the_budget_until_its_answer(main: Main) -> None:
    # Its platform.start is in; the function runs on for 0.4 s, ends, and HEC accepts its lines.
    elapsed = main.flush(control.Running("rid"), then=(0.4, control.Delivered("rid")))
    assert 0.39 <= elapsed < 1.0  # budget 150 ms: counted from the end, which the sender sees
    assert main.loop.answers == {"rid": True}


@pytest.mark.timing  # within 100 ms
def test_a_send_the_pipe_refuses_ends_the_flush_at_once(main: Main) -> None:
    while control.send(main.loop.ctl_w, control.Flush("filler")):
        pass  # the sender is stuck: its pipe is full
    start = time.monotonic()
    main.loop.flush_invocation("rid", time.time() + 60)
    assert time.monotonic() - start < 0.1


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12))
def test_event_bodies_parse_as_minijson_parses_them(value: object) -> None:
    body = json.dumps({"eventType": "INVOKE", "requestId": "r", "extra": value}).encode()
    assert events._parse_event(body) == minijson.loads(body)
    for broken in (body[:-1], body + b"x", b"{bad", b'{"a": Infinity}', b"[NaN]"):
        with pytest.raises(ValueError):
            events._parse_event(broken)


def test_adaptive_keeps_no_memory_of_answered_invocations(main: Main) -> None:
    for n in range(5):  # the rhythm is learnt; then dense invocations are not waited for
        main.loop.adapt(f"r{n}", time.time() + 60)
        control.send(main.loop.status_w, control.Delivered(f"r{n}"))
    for n in range(5, 200):
        main.loop.adapt(f"r{n}", time.time() + 60)
        control.send(main.loop.status_w, control.Delivered(f"r{n}"))
    assert len(main.loop.answers) <= 1
    assert len(main.loop.adaptive.undelivered) <= 2


def _backlog_of_one(main: Main) -> None:
    """A learnt 0.5 s rhythm, everything delivered but the last invocation ("b", 1.6 s ago):
    the next one finds a backlog too old for the 2 s bound, with a gap that fits it."""
    policy = main.loop.adaptive
    now = time.monotonic()
    for n in range(RELIABLE_GAPS + 1):
        start = now - 1.6 - (RELIABLE_GAPS + 1 - n) * 0.5
        policy.decide(f"w{n}", start)
        policy.delivered(f"w{n}")
    policy.decide("b", now - 1.6)


def _answer_in_thread(main: Main, answers: list[tuple[float, control.Message]], asks: int = 2,
                      ) -> tuple[threading.Thread, list[control.Message]]:
    """A stand-in sender: collects what main asks for (`asks` messages), then sends each answer
    after its delay."""
    asked: list[control.Message] = []

    def sender() -> None:
        end = time.monotonic() + 2
        while len(asked) < asks and time.monotonic() < end:
            asked.extend(main.inbox.read())
            time.sleep(0.002)
        for delay, answer in answers:
            time.sleep(delay)
            control.send(main.loop.status_w, answer)

    thread = threading.Thread(target=sender)
    thread.start()
    return thread, asked


@pytest.mark.timing  # answered within 150 ms
def test_a_backlog_is_waited_for_and_the_new_invocation_only_sent(main: Main) -> None:
    _backlog_of_one(main)
    thread, asked = _answer_in_thread(main, [(0.01, control.Delivered("b"))], asks=1)
    start = time.monotonic()
    main.loop.adapt("c", time.time() + 60)
    elapsed = time.monotonic() - start
    thread.join()
    # "c" lingers (0 + 0.5 s gap + 1 s linger fit 2 s), so the sender is not even told of it;
    # main waits for "b" alone
    assert asked == [control.FlushBacklog("b")]
    assert elapsed < 0.15
    assert list(main.loop.adaptive.undelivered) == ["c"]


@pytest.mark.timing  # within the budget
def test_a_backlog_is_not_waited_for_past_the_budget_whatever_its_records_say(main: Main) -> None:
    # Its platform.start is spooled and its runtimeDone is not (dropped telemetry): Running
    # must not hold main until the deadline, as it would for the invocation that just started
    _backlog_of_one(main)
    thread, asked = _answer_in_thread(main, [(0.0, control.Running("b")),
                                             (0.6, control.Delivered("b"))])
    start = time.monotonic()
    main.loop.adapt("c", time.time() + 60)
    elapsed = time.monotonic() - start
    thread.join()
    assert control.FlushBacklog("b") in asked
    assert 0.13 <= elapsed < 0.5  # budget 150 ms less main's reaction, from the asking


@contextlib.contextmanager
def _forked_sender(made: Main, entry: Callable[[], None]) -> Iterator[supervisor.Child]:
    """A real sender process running `entry`, forked as main forks it; stopped, and main's
    pipes closed, at the end (gc.freeze is main's, before its forks)."""
    import gc

    sender = made.loop.sender
    sender.entry, sender.log_level = entry, "CRITICAL"
    try:
        supervisor.spawn(sender, made.loop._all_fds())
        yield sender
    finally:
        supervisor.stop([sender], time.monotonic() + 1)
        made.close()
        gc.unfreeze()


def _cannot_start() -> None:
    raise OSError("the spool cannot be opened")  # a fault every new child meets again


@pytest.mark.timing  # a crash loop within one 1 s flush budget
def test_a_sender_that_crashes_at_every_start_is_not_forked_again_and_again() -> None:
    made = Main(budget_ms=1000)
    with _forked_sender(made, _cannot_start) as sender:
        start = time.monotonic()
        made.loop.flush_invocation("rid", time.time() + 60)
        elapsed = time.monotonic() - start
        # It was forked again at each death, as fast as main could (~50 in the budget, on
        # the function's CPU), and the waited invocation was billed its whole budget.
        assert sender.restarts <= 3  # a couple at once, then held back
        assert elapsed < 0.5  # a sender backing off answers nothing: no wait for it


def test_the_children_do_not_hold_main_s_connection_to_the_extensions_api() -> None:
    # No list of fds to close named it: each child held main's keep-alive connection, so one
    # main closed (Connection: close, a reconnect, its exit) stayed open on Lambda's side.
    import gc
    import socket

    from ext.main import supervisor
    from ext.main.extensions_api import ExtensionsApi, LambdaApiClient

    made = Main()
    with socket.create_server(("127.0.0.1", 0)) as server:
        host, port = server.getsockname()
        api = ExtensionsApi(LambdaApiClient(f"{host}:{port}"))
        made.loop.api = api
        asked = threading.Thread(target=api.next_event)
        asked.start()
        lambda_side, _ = server.accept()
        lambda_side.recv(65_536)
        lambda_side.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}')  # kept alive
        asked.join()
        live_r, live_w = os.pipe()
        sender = made.loop.sender
        sender.keep_fds = (live_r,)

        def sender_lives_on() -> None:
            os.read(live_r, 1)

        sender.entry = sender_lives_on
        try:
            supervisor.spawn(sender, made.loop._all_fds())
            api.client.close()
            lambda_side.settimeout(2.0)
            assert lambda_side.recv(1) == b""  # closed, though the sender lives on
        finally:
            os.write(live_w, b"x")
            supervisor.stop([sender], time.monotonic() + 1)
            lambda_side.close()
            for fd in (live_r, live_w):
                os.close(fd)
            made.close()
            gc.unfreeze()


def _stops_itself() -> None:
    import signal

    os.kill(os.getpid(), signal.SIGSTOP)  # alive, and answering nothing, until SIGKILLed
    time.sleep(60)


def test_a_stopped_sender_is_killed_and_restarted_after_a_few_silent_waits() -> None:
    made = Main(budget_ms=150)
    with _forked_sender(made, _stops_itself) as sender:
        stopped = sender.pid
        for n in range(20):  # 150 ms each: a second of them is 8 (unfixed: none ever ends it)
            made.loop.flush_invocation(f"r{n}", time.time() + 60)
            made.loop._restart_dead_children()  # at the next event, as serve does
            if sender.restarts:
                break
        assert sender.restarts == 1 and sender.hangs == 1
        assert sender.pid not in (0, stopped)
        with pytest.raises(ProcessLookupError):
            os.kill(stopped, 0)  # killed and reaped


@pytest.mark.parametrize(("flush", "budget_ms"), [
    ("background", 150),
    ("sync", 0),  # a budget of 0: main never waits but for the probe's few waits
])
def test_a_stopped_sender_is_killed_and_restarted_where_main_never_waits(
    monkeypatch: pytest.MonkeyPatch, flush: str, budget_ms: int,
) -> None:
    # Looked at from the first INVOKE, its probe judged 50 ms later (5 s and 1 s in Lambda)
    monkeypatch.setattr(lifecycle, "PROBE_AFTER_S", 0.0)
    monkeypatch.setattr(lifecycle, "PROBE_READ_S", 0.05)
    made = Main(budget_ms=budget_ms, SPLUNK_FLUSH=flush)
    sender = made.loop.sender

    def next_event(wait: object = None) -> bytes:
        if sender.restarts or len(served) == 200:  # unfixed: nothing ever judged it
            raise errors.ApiError("/next", 500, b"")
        served.append(time.monotonic())
        time.sleep(0.02)  # the function runs; the listener spools its telemetry
        os.write(made.loop.wake_w, b"!")
        return b'{"eventType":"INVOKE","requestId":"r%d","deadlineMs":%d}' % (
            len(served), int(time.time() * 1000 + 60_000))

    served: list[float] = []
    made.loop.api.next_event = next_event  # type: ignore[method-assign]
    with _forked_sender(made, _stops_itself):
        stopped = sender.pid
        with pytest.raises(errors.ApiError):
            made.loop.serve()
        assert sender.restarts == 1 and sender.hangs == 1
        assert sender.pid not in (0, stopped)
        with pytest.raises(ProcessLookupError):
            os.kill(stopped, 0)  # killed and reaped


def test_a_stopped_sender_holds_the_shutdown_no_longer_than_its_window() -> None:
    made = Main()
    with _forked_sender(made, _stops_itself) as sender:
        start = time.monotonic()
        made.loop.shutdown(time.time() * 1000 + 1000, "spindown")  # a 1 s window
        assert time.monotonic() - start < 5  # the window less its margin, then SIGKILL
        if sender.pid:  # not reaped within KILL_REAP_S: a loaded machine, the exit comes later
            _, status = os.waitpid(sender.pid, 0)
            supervisor._forget(sender, os.waitstatus_to_exitcode(status))
        assert sender.exit_status == -signal.SIGKILL  # killed, never answering the Drain


def _hangs_once_started(made: Main, hung: Path) -> Callable[[], None]:
    """A sender that says Ready and stops itself (alive, reading nothing) the first time; the
    one restarted after it reads its Drain and keeps its deadline in `hung`, then exits as a
    drained sender does."""
    def entry() -> None:
        control.send(made.loop.status_w, control.Ready())
        if not hung.exists():
            hung.write_text("")
            os.kill(os.getpid(), signal.SIGSTOP)
            time.sleep(60)
        inbox = control.Inbox(made.loop.ctl_r)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            for message in inbox.read():
                if isinstance(message, control.Drain):
                    hung.write_text(str(message.deadline_ms))
                    return
            time.sleep(0.005)

    return entry


def test_a_sender_hung_at_shutdown_is_killed_and_a_new_one_drains_before_the_deadline(
    tmp_path: Path,
) -> None:
    made = Main()
    hung = tmp_path / "hung"
    with _forked_sender(made, _hangs_once_started(made, hung)) as sender:
        made.loop._await_sender_start(time.monotonic() + 10)
        assert made.loop.sender_started
        stopped = sender.pid
        window_ms = time.time() * 1000 + 2000  # Lambda's 2 s
        made.loop.shutdown(window_ms, "spindown")
        exited_ms = time.time() * 1000
        assert sender.hangs == 1 and sender.restarts == 1  # unfixed: nothing drained
        with pytest.raises(ProcessLookupError):
            os.kill(stopped, 0)  # killed and reaped
        assert sender.pid == 0 and sender.exit_status == supervisor.EXIT_OK  # drained
        # The new sender drained to the window less main's margin, and main exited before it
        drain_ms = int(hung.read_text())
        assert abs(drain_ms - (window_ms - lifecycle.SHUTDOWN_MARGIN_S * 1000)) < 100
        assert exited_ms < window_ms + 1000  # generous: a loaded machine's scheduling
