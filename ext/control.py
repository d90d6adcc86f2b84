"""Messages between the main process and the sender, over plain pipes (no /dev/shm in Lambda).

The main process talks to the sender only; the listener just spools and wakes the sender. Each
message is one ASCII line: a one-letter kind, then its fields separated by spaces; a request id
is always the last field and takes the rest of the line. Encoding and decoding live here and
nowhere else. Writers never block: a full pipe means the reader is gone or stuck, and the
sender reports that back as a failed send (the spool, not this channel, carries the data).
On the cold-start path: plain classes, no dataclasses or typing.
"""

from __future__ import annotations

import os
import select

# The request id of the answers to Settle (not one Lambda gives: those are UUIDs).
SETTLED = "settled"


class Message:
    """Base of every message; `fields` are encoded in order, a request id last."""

    __slots__ = ()
    kind = b"?"

    def fields(self) -> tuple[object, ...]:
        return ()

    def encode(self) -> bytes:
        words = [str(field) for field in self.fields()]
        text = " ".join(words).replace("\n", " ").replace("\r", " ")
        return self.kind + (b" " + text.encode() if words else b"") + b"\n"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Message) and other.kind == self.kind
                and other.fields() == self.fields())

    def __hash__(self) -> int:
        return hash((self.kind, self.fields()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.fields()!r}"


class AboutOneRequest(Message):
    """Base of the messages about one invocation, whose request id is their only field."""

    __slots__ = ("request_id",)

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id

    def fields(self) -> tuple[object, ...]:
        return (self.request_id,)


class Flush(AboutOneRequest):
    """main -> sender: the invocation ended; send everything up to its platform.runtimeDone now,
    and answer Delivered (or Failing) for it."""

    __slots__ = ()
    kind = b"F"


class FlushBacklog(Flush):
    """main -> sender: as Flush, for an earlier invocation main now waits for (a backlog about
    to exceed the latency bound). It ended an invocation ago, so its budget runs from this
    asking, not from its runtimeDone."""

    __slots__ = ()
    kind = b"B"


class FlushLate(Flush):
    """main -> sender: as Flush, asked only RUNNING_AT through main's wait (a quiet wait: sync
    flushing, or adaptive with an Awaited note, while HEC is healthy; the sender tells the
    delivery unasked, and most come sooner). The sender looks at the spool once more and says
    at once whether the invocation still runs (Running)."""

    __slots__ = ()
    kind = b"L"


class Awaited(AboutOneRequest):
    """main -> sender, on the notes pipe, which wakes nobody: send the invocation as soon as its
    platform.runtimeDone is read, and tell main (adaptive flushing decided at its INVOKE to wait
    for it; main asks with FlushLate only when late). The sender takes it as asked when it next
    reads the spool, before the records that may hold the invocation's start and end, as sync
    flushing takes every invocation: no wake-up of its own at the INVOKE, ~25 ms before the
    invocation's telemetry can arrive."""

    __slots__ = ()
    kind = b"A"


class Hurried(Awaited):
    """main -> sender, on the notes pipe: as Awaited, for an invocation main does not wait for
    (adaptive's `dense`): sent as soon as its runtimeDone is read, and nothing else (no Running,
    no Failing, no budget: nobody listens)."""

    __slots__ = ()
    kind = b"H"


class Restarts(Message):
    """main -> sender, on the notes pipe, which wakes nobody: main's counts over the
    environment's life of listener restarts, sender restarts and senders killed as hung (each
    also a restart), which the sender reports in its self-metrics. A sender takes them at its
    fork from main's memory; this tells it of a listener restarted since (rare), read with the
    spool before the self-metrics that read may emit. Totals: a late one lowers none."""

    __slots__ = ("listener", "sender", "sender_hangs")
    kind = b"P"

    def __init__(self, listener: int, sender: int, sender_hangs: int) -> None:
        self.listener = listener
        self.sender = sender
        self.sender_hangs = sender_hangs

    def fields(self) -> tuple[object, ...]:
        return (self.listener, self.sender, self.sender_hangs)


class Drain(Message):
    """main -> sender: SHUTDOWN; wait for the last invocation's platform.report while the window
    allows, send everything, exit before `deadline_ms` (epoch ms). `request_id` may be empty."""

    __slots__ = ("deadline_ms", "request_id")
    kind = b"S"

    def __init__(self, deadline_ms: int, request_id: str) -> None:
        self.deadline_ms = deadline_ms
        self.request_id = request_id

    def fields(self) -> tuple[object, ...]:
        return (self.deadline_ms, self.request_id)


class Restored(Message):
    """main -> sender: SnapStart resumed this environment from its snapshot. What was connected
    at the snapshot is not connected any more, and a request on the wire then waits for an
    answer that cannot come: drop both, connect again, and take a new HEC channel (every
    environment restored from the snapshot holds the same one)."""

    __slots__ = ()
    kind = b"N"


class Settle(Message):
    """main -> sender, SnapStart, before main's first event/next (after which Lambda may
    snapshot the environment at once): send everything spooled so far, and answer
    Delivered(SETTLED) once it is all in HEC, or Failing(SETTLED) while HEC fails or hangs.
    What is not in HEC at the snapshot is sent again by every environment restored from it."""

    __slots__ = ()
    kind = b"G"


class Delivered(AboutOneRequest):
    """sender -> main: everything up to the invocation's platform.runtimeDone is accepted by HEC."""

    __slots__ = ()
    kind = b"C"


class Failing(AboutOneRequest):
    """sender -> main: HEC is failing (or not answering); the invocation's data stays spooled and
    is delivered later (a Delivered follows then). Do not wait for it."""

    __slots__ = ()
    kind = b"E"


class Running(AboutOneRequest):
    """sender -> main: the invocation has started (its platform.start is spooled) and is not
    delivered 5/8 through main's wait (told then, not at once: most are delivered sooner):
    its flush budget counts from its end, which the sender sees (platform.runtimeDone) and
    answers Delivered or Failing within the budget after. Main may wait up to the deadline."""

    __slots__ = ()
    kind = b"U"


class Ready(Message):
    """sender -> main: started (imports done, spool open); sent once per sender process."""

    __slots__ = ()
    kind = b"R"


def decode(line: bytes) -> Message | None:
    """One line (without its newline) as a message; None if it is not a valid one."""
    kind, rest = line[:1], line[2:].decode(errors="replace")
    about_one = _ABOUT_ONE_REQUEST.get(kind)
    if about_one is not None and rest:
        return about_one(rest)
    plain = _WITHOUT_FIELDS.get(kind)
    if plain is not None:
        return plain()
    if kind == Drain.kind:
        deadline, _, request_id = rest.partition(" ")
        if deadline.isdecimal():  # isdigit() also takes "²", which int() refuses
            return Drain(int(deadline), request_id)
    if kind == Restarts.kind:
        counts = rest.split(" ")
        if len(counts) == 3 and all(count.isdecimal() for count in counts):
            return Restarts(*map(int, counts))
    return None


_WITHOUT_FIELDS: dict[bytes, type[Message]] = {
    cls.kind: cls for cls in (Ready, Restored, Settle)}
_ABOUT_ONE_REQUEST = {cls.kind: cls for cls in (Flush, FlushBacklog, FlushLate, Awaited,
                                                Hurried, Delivered, Failing, Running)}


def send(fd: int, message: Message) -> bool:
    """Writes one message; False if the pipe is full or closed (the message is not sent)."""
    line = message.encode()
    try:
        return os.write(fd, line) == len(line)
    except (BlockingIOError, BrokenPipeError):
        return False


READ_BYTES = 65_536


class Inbox:
    """Decodes messages from a non-blocking pipe; tolerates partial lines across reads.

    Read once per invocation or answer: it asks poll(2) first and stops at a short read, so
    the common cases (nothing there; one message) never make Python raise and catch EAGAIN.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = b""
        self.closed = False
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def read(self) -> list[Message]:
        """Every complete, valid message available now, without blocking."""
        if not self._poll.poll(0):
            return []  # nothing new; a partial line left pending is no message yet
        chunks = [self._pending]
        while True:
            try:
                chunk = os.read(self.fd, READ_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                self.closed = True
                break
            chunks.append(chunk)
            if len(chunk) < READ_BYTES:
                break  # a pipe read short of its size emptied the pipe
        lines = b"".join(chunks).split(b"\n")
        self._pending = lines.pop()
        return [m for m in map(decode, lines) if m is not None]


def unread(fd: int) -> bool:
    """Whether the pipe whose read end is `fd` holds bytes its reader has not taken yet (main
    keeps the read end of the pipes it writes: it tells whether the sender still reads them)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def drain_pipe(fd: int) -> bool:
    """Empties a non-blocking wake-up pipe (its bytes only mean "look again"); True if it held
    any."""
    woken = False
    try:
        while os.read(fd, 65_536):
            woken = True
    except BlockingIOError:
        pass
    return woken


def make_pipe() -> tuple[int, int]:
    """A non-blocking, close-on-exec pipe: (read end, write end)."""
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return read_fd, write_fd
