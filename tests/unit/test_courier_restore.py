"""The courier after a SnapStart restore (`Courier.restored`), against a scripted client: it
cuts the client's old connection, connects ahead again on its thread, and the sender's thread
keeps off the client until that is done; a request the cut ended is sent again at once and is no
failure (`_cut`), and only that one.

The courier's thread is held at a chosen point by its own condition (`HeldCondition`): once it
has woken for the restore, and before it acts on it, the test looks at what the sender's thread
may do meanwhile. No timing decides an outcome.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ext import config
from ext.sender import courier as courier_module
from ext.sender.batching import HecBatch, seal
from ext.sender.courier import Courier
from ext.sender.hec import HecOutcome, Verdict
from tests.unit.test_courier_delivery import done

ACCEPTED = HecOutcome(Verdict.ACCEPTED, 200, 0, "Success")
WAIT_S = 5.0


class HeldCondition(threading.Condition):
    """The courier's condition: `waiting` while the courier's thread waits on it; with `hold`
    set, the thread's next wake-up lets go of the lock and waits for `hold` before it goes on
    (`woken` tells it got there)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = False
        self.hold: threading.Event | None = None
        self.woken = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        mine = threading.current_thread().name == "courier"
        self.waiting = mine
        try:
            woke = super().wait(timeout)
        finally:
            self.waiting = False
        hold = self.hold
        if mine and hold is not None:
            self.hold = None
            self.woken.set()
            self.release()
            try:
                assert hold.wait(WAIT_S)
            finally:
                self.acquire()
        return woke


class Client:
    """Stands in for HecClient: notes each call and the thread it came from."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.prepared = threading.Event()  # set at each `prepare`

    def _note(self, call: str) -> None:
        self.calls.append((call, threading.current_thread().name))

    def post(self, body: bytes, within_s: float | None = None) -> HecOutcome:
        self._note("post")
        return ACCEPTED

    def trust(self) -> None:
        """No CAs to load."""

    def prepare(self) -> None:
        self._note("prepare")
        self.prepared.set()

    def restored(self) -> None:
        self._note("restored")

    def close(self) -> None:
        pass


Made = tuple[Courier, Client, HeldCondition]


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Made]]:
    made: list[tuple[Courier, HeldCondition]] = []

    def make() -> Made:
        held = HeldCondition()
        client = Client()
        monkeypatch.setattr(courier_module, "threading", types.SimpleNamespace(
            Condition=lambda: held, Thread=threading.Thread))
        monkeypatch.setattr(courier_module, "HecClient", lambda _: client)
        env = {"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "t"}
        courier = Courier(config.load(env), str(tmp_path))
        monkeypatch.undo()
        made.append((courier, held))
        return courier, client, held

    yield make
    for courier, held in made:
        hold = held.hold
        if hold is not None:
            hold.set()
        courier.stop()


def batch(seq: int) -> HecBatch:
    return seal([b'{"event":"x"}'], seq, 1)


def warmed(make: Callable[[], Made]) -> Made:
    """A courier that connected ahead and delivered one batch through its thread (HEC's round
    trip known: a lone batch may go inline), its thread idle, waiting on its condition."""
    courier, client, held = make()
    assert courier.offer(batch(1))
    assert done(courier) == [1]
    client.calls.clear()
    client.prepared.clear()
    return courier, client, held


def wait_in_condition(held: HeldCondition) -> None:
    """Returns once the courier's thread waits on its condition (bounded)."""
    ends = time.monotonic() + WAIT_S
    while True:
        with held:
            if held.waiting:  # read with the lock: the thread let go of it in wait()
                return
        assert time.monotonic() < ends, "the courier thread never waited"
        threading.Event().wait(0.002)


def restore_and_hold(courier: Courier, held: HeldCondition) -> threading.Event:
    """Tells the courier of the restore while its thread waits idle, and holds the thread as
    it wakes for it, before it acts on it; the event lets it go on."""
    wait_in_condition(held)
    hold = threading.Event()
    with held:  # re-entrant: the thread cannot take the lock before `hold` is set
        held.hold = hold
        courier.restored()
    assert held.woken.wait(WAIT_S)
    return hold


def test_the_courier_connects_ahead_once_as_it_starts(make: Callable[[], Made]) -> None:
    courier, client, held = make()
    wait_in_condition(held)  # idle: done with its start
    assert client.calls == [("prepare", "courier")]
    assert courier.offer(batch(1))
    assert done(courier) == [1]
    wait_in_condition(held)
    assert client.calls == [("prepare", "courier"), ("post", "courier")]


def test_a_restore_cuts_the_old_connection_and_connects_ahead_again(
    make: Callable[[], Made],
) -> None:
    courier, client, held = warmed(make)
    hold = restore_and_hold(courier, held)
    assert client.calls == [("restored", threading.current_thread().name)]
    hold.set()
    assert client.prepared.wait(WAIT_S)
    assert client.calls[1:] == [("prepare", "courier")]
    # Connected again: a lone batch goes on the caller's thread as before the restore, and the
    # thread still takes what is offered to it.
    assert courier.deliver_now(batch(2), 0.5)
    assert client.calls[2:] == [("post", threading.current_thread().name)]
    assert courier.offer(batch(3))
    assert done(courier) == [3]
    assert client.calls[3:] == [("post", "courier")]


def test_until_it_connected_again_the_sender_keeps_off_the_client(
    make: Callable[[], Made],
) -> None:
    # The Restored and the next Flush may be read in one pass of the sender (its CPU is scarce
    # right after the restore): its inline attempt must not use the client while the courier's
    # thread connects ahead on it.
    courier, client, held = warmed(make)
    hold = restore_and_hold(courier, held)
    assert not courier.deliver_now(batch(2), 0.5)  # handed to the thread
    hold.set()
    assert done(courier) == [2]
    assert [name for _, name in client.calls[1:]] == ["courier"]  # its one post, no prepare
    # The batch connected again as it was sent: the next lone one goes inline again.
    assert courier.deliver_now(batch(3), 0.5)
    assert client.calls[2:] == [("post", threading.current_thread().name)]


def test_a_restore_while_a_batch_is_on_the_wire_connects_ahead_after_it(
    make: Callable[[], Made],
) -> None:
    courier, client, _ = warmed(make)
    gate = threading.Event()
    posting = threading.Event()

    def post(body: bytes, within_s: float | None = None) -> HecOutcome:
        client.calls.append(("post", threading.current_thread().name))
        posting.set()
        assert gate.wait(WAIT_S)
        return ACCEPTED

    client.post = post  # type: ignore[method-assign]
    assert courier.offer(batch(2))
    assert posting.wait(WAIT_S)
    courier.restored()  # the sender's thread, while the courier's waits on HEC
    gate.set()
    assert done(courier) == [2]
    assert client.prepared.wait(WAIT_S)
    assert client.calls == [("post", "courier"), ("restored", threading.current_thread().name),
                            ("prepare", "courier")]


RETRY = HecOutcome(Verdict.RETRY, text="ProtocolError")  # as the client names a cut request
HOLD = HecOutcome(Verdict.HOLD, 403, 4, "Invalid token")


def answering(courier: Courier, client: Client, *answers: tuple[HecOutcome, bool]) -> None:
    """The client answers its posts in turn with `answers`, (outcome, cut): with `cut`, the
    restore is told while that request is on the wire (from within the post: the courier is
    then as the sender's thread finds it while the courier's waits on HEC).

    The client replaces a kept-alive connection found dropped within the post itself
    (ext/sender/hec.py); what reaches the courier as RETRY is a request the cut ended on a
    connection made for it."""
    script = list(answers)

    def post(body: bytes, within_s: float | None = None) -> HecOutcome:
        client.calls.append(("post", threading.current_thread().name))
        outcome, cut = script.pop(0)
        if cut:
            courier.restored()
        return outcome

    client.post = post  # type: ignore[method-assign]


def posts(client: Client) -> int:
    return sum(call == "post" for call, _ in client.calls)


def test_a_request_the_restore_cuts_is_sent_again_at_once_and_is_no_failure(
    make: Callable[[], Made],
) -> None:
    courier, client, _ = warmed(make)
    courier.stats.take()
    answering(courier, client, (RETRY, True), (ACCEPTED, False))
    assert courier.offer(batch(2))
    assert done(courier) == [2]
    assert posts(client) == 2  # sent again, and delivered only once HEC accepted it
    assert (courier.failing, courier.failures) == (False, 0)
    stats = courier.stats.take()
    assert (stats["hec.requests"], stats["hec.retries"]) == (2, 0)


def test_a_failure_after_the_cut_request_was_sent_again_counts(
    make: Callable[[], Made],
) -> None:
    # The cut excuses the one request it ended, not HEC failing the next.
    courier, client, _ = warmed(make)
    answering(courier, client, (RETRY, True), (RETRY, False), (ACCEPTED, False))
    assert courier.offer(batch(2))
    assert done(courier) == [2]
    assert posts(client) == 3
    assert (courier.failing, courier.failures) == (False, 1)


def test_a_request_answered_before_the_cut_reached_it_leaves_the_next_failure_counted(
    make: Callable[[], Made],
) -> None:
    courier, client, _ = warmed(make)
    answering(courier, client, (ACCEPTED, True), (RETRY, False), (ACCEPTED, False))
    assert courier.offer(batch(2))
    assert done(courier) == [2]
    assert courier.offer(batch(3))
    assert done(courier) == [3]
    assert posts(client) == 3
    assert courier.failures == 1


def test_a_restore_while_no_request_is_on_the_wire_leaves_the_next_failure_counted(
    make: Callable[[], Made],
) -> None:
    courier, client, held = warmed(make)
    wait_in_condition(held)
    courier.restored()
    assert client.prepared.wait(WAIT_S)  # connected ahead again: nothing on the wire now
    answering(courier, client, (RETRY, False), (ACCEPTED, False))
    assert courier.offer(batch(2))
    assert done(courier) == [2]
    assert posts(client) == 2
    assert courier.failures == 1


def test_a_request_hec_answered_before_the_cut_is_a_failure_as_answered(
    make: Callable[[], Made],
) -> None:
    # Only a request the cut ended (RETRY) is excused: HEC's own refusal is told, and held.
    courier, client, _ = warmed(make)
    answering(courier, client, (HOLD, True), (ACCEPTED, False))
    assert courier.offer(batch(2))
    ends = time.monotonic() + WAIT_S
    while not courier.failing and time.monotonic() < ends:
        threading.Event().wait(0.002)
    assert (courier.failing, courier.failures) == (True, 1)
    assert posts(client) == 1  # held HOLD_BASE_S, not sent again at once


def test_a_restore_while_the_courier_connects_ahead_leaves_the_next_failure_counted(
    make: Callable[[], Made],
) -> None:
    # Connecting ahead counts as a request on the wire for `stalled`, but no batch rides on it:
    # a restore then cuts no request, and HEC failing the next one is a failure to tell.
    courier, client, held = warmed(make)
    wait_in_condition(held)
    connecting = threading.Event()
    gate = threading.Event()

    def prepare() -> None:
        client.calls.append(("prepare", threading.current_thread().name))
        connecting.set()
        assert gate.wait(WAIT_S)
        client.prepared.set()

    client.prepare = prepare  # type: ignore[method-assign]
    courier.restored()  # the thread connects ahead again
    assert connecting.wait(WAIT_S)
    courier.restored()  # a second restore while it connects
    gate.set()
    assert client.prepared.wait(WAIT_S)
    answering(courier, client, (RETRY, False), (ACCEPTED, False))
    assert courier.offer(batch(2))
    assert done(courier) == [2]
    assert posts(client) == 2
    assert courier.failures == 1


def test_a_restore_while_the_courier_backs_off_between_attempts_excuses_neither(
    make: Callable[[], Made],
) -> None:
    # Busy with a batch, but nothing on the wire: both failures are HEC's.
    courier, client, _ = warmed(make)
    courier._pause = lambda seconds, floor_s=0.0: courier.restored()  # type: ignore[method-assign]
    answering(courier, client, (RETRY, False), (RETRY, False), (ACCEPTED, False))
    assert courier.offer(batch(2))
    assert done(courier) == [2]
    assert posts(client) == 3
    assert courier.failures == 2
