"""The sender's knowledge of invocations: where each one's end sits in the spool, who waits.

The sender reads and maps every record anyway, so it learns there at which spool seq each
invocation's platform.runtimeDone (and platform.report) was spooled. The main process asks,
per request id, to be told once everything up to that runtimeDone is accepted by HEC (with
adaptive flushing it is told of every invocation unasked: `tell_every`; with sync flushing main
waits for every invocation, which the sender takes as asked once it reads the invocation's start
or end: `wait_every`; adaptive's notes, read with the spool, are requests like a Flush, one
for an invocation main only hurries not `waited`); this ledger keeps those requests and says
which ones the committed position now settles. It is the only place that bookkeeping lives.
Pure: no I/O, no clock.

An invocation's runtimeDone may never be read: Lambda drops telemetry a subscriber does not take
fast enough and then sends a platform.logsDropped (lambda-protocol.md §2.4), which does not say
what it dropped. Main, told Running, would wait for that end up to the function's deadline, all
of it billed once the runtime is done. So the ledger presumes the end of an invocation that
started and did not end lost at the first evidence, and places it there: a drop notice read
after its start (the notice follows what it reports, so one read before the start cannot hold
its end), or the start of another invocation (an environment runs one at a time). Committing
through that point delivers everything of it that did arrive. If the drop was of its lines alone
and it runs on, main stops waiting early and the rest goes with the next batch (at the next thaw
at worst): late, never lost, where waiting would have cost up to the deadline whenever the end
was among what Lambda dropped. Its real runtimeDone, if read later, changes nothing.
"""

from __future__ import annotations

START = "platform.start"
RUNTIME_DONE = "platform.runtimeDone"
REPORT = "platform.report"
DROPPED = "platform.logsDropped"
KEEP = 64  # invocations remembered; older ones can no longer be asked about


class InvocationLedger:
    def __init__(self, keep: int = KEEP, *, tell_every: bool = False,
                 wait_every: bool = False) -> None:
        self.keep = keep
        # Adaptive flushing: main hears of every invocation's delivery (its flush decisions learn
        # from them) without asking for each, which would wake this process at every INVOKE.
        self.tell_every = tell_every
        # Sync flushing: main waits for every invocation, and asks only when late (FlushLate).
        self.wait_every = wait_every
        self.done_at: dict[str, int] = {}  # request id -> seq of its spooled runtimeDone
        self.report_at: dict[str, int] = {}  # request id -> seq of its spooled platform.report
        self.start_at: dict[str, int] = {}  # request id -> seq of its spooled platform.start
        # Started, end not read: one at most after each start (the others' ends are presumed).
        self.open: dict[str, None] = {}
        # Flush requests not yet settled -> already told Failing (or never to be: main does not
        # wait for it, only wants it sent as soon as its end is read).
        self.waiting: dict[str, bool] = {}
        self.tracked: dict[str, None] = {}  # invocations main only wants news of (tell_every)
        self.committed = -1

    def seen(self, kind: str, request_id: str, seq: int) -> list[str]:
        """A platform.start, runtimeDone or report for `request_id` was read from the spool at
        `seq`. Returns the invocations whose end this proves lost (another's start), ended at
        `seq`."""
        table = (self.done_at if kind == RUNTIME_DONE else self.report_at if kind == REPORT
                 else self.start_at if kind == START else None)
        if table is None or request_id in table:
            return []  # the first one read counts (a batch the platform sent again repeats it)
        lost: list[str] = []
        if table is self.done_at:
            self._ended_at(request_id, seq)
            self.open.pop(request_id, None)
        else:
            self._remember(table, request_id, seq)
            if table is self.start_at:
                lost = self._end_open(seq)
                if request_id not in self.done_at:  # its end may come before its start
                    self.open[request_id] = None
        if self.wait_every and table is not self.report_at and request_id not in self.waiting:
            self._wait_for(request_id)
        return lost

    def dropped(self, seq: int) -> list[str]:
        """A platform.logsDropped was read at `seq`: the invocations started and not ended may
        have lost their end in it. Returns them, ended at `seq` (see the module's docstring)."""
        return self._end_open(seq)

    def _end_open(self, seq: int) -> list[str]:
        lost = list(self.open)
        self.open.clear()
        for request_id in lost:
            self._ended_at(request_id, seq)
        return lost

    def _ended_at(self, request_id: str, seq: int) -> None:
        self._remember(self.done_at, request_id, seq)
        if self.tell_every:
            self.tracked[request_id] = None
            if len(self.tracked) > self.keep:
                del self.tracked[next(iter(self.tracked))]

    def _remember(self, table: dict[str, int], request_id: str, seq: int) -> None:
        table[request_id] = seq
        if len(table) > self.keep:
            del table[next(iter(table))]

    def request(self, request_id: str, *, waited: bool = True) -> list[str]:
        """The main process waits for `request_id` (or, not `waited`, only wants it sent as soon
        as its end is read: never told Failing, as if told already); returns it at once if
        already settled."""
        self._wait_for(request_id, told=not waited)
        return self.settle(self.committed)

    def _wait_for(self, request_id: str, told: bool = False) -> None:
        self.waiting[request_id] = told
        if len(self.waiting) > self.keep:
            # The oldest main no longer waits for goes first (told Failing, or only hurried: it
            # loses no more than a Delivered nobody waits for). After an HEC outage, the notes of
            # the many invocations main hurried meanwhile are read in one pass, after the Flush
            # main is waiting on: forgetting the oldest forgot that one (no Running, no budget,
            # not sent at once). Only when every request is waited for does the oldest go.
            waiting = self.waiting
            told_one = next((rid for rid, told_it in waiting.items() if told_it), None)
            del waiting[next(iter(waiting)) if told_one is None else told_one]

    def urgent(self) -> bool:
        """A flush waits on a runtimeDone already read: send everything read now, whatever the
        minimum batch size says. Until then the usual batching applies, so what arrives first
        in a thaw (the previous invocation's platform.report) rides with the lines after it."""
        done_at = self.done_at
        return any(request_id in done_at for request_id in self.waiting)

    def settle(self, committed: int) -> list[str]:
        """The requests (waited for or tracked) whose runtimeDone is now committed, each told
        once; they are forgotten."""
        self.committed = max(self.committed, committed)
        settled: dict[str, None] = {}  # a waited-for invocation is tracked too: one answer
        for table in (self.waiting, self.tracked):
            done = [rid for rid in table
                    if self.done_at.get(rid, self.committed + 1) <= self.committed]
            for rid in done:
                del table[rid]
            settled.update(dict.fromkeys(done))
        return list(settled)

    def failing(self) -> list[str]:
        """HEC failed an attempt: the waiting requests not yet told so (each is told once; it
        stays waiting, and is settled later like any other)."""
        told = [rid for rid, already in self.waiting.items() if not already]
        for rid in told:
            self.waiting[rid] = True
        return told

    def running(self, request_id: str) -> bool:
        """Started (its platform.start was read) and not ended (no runtimeDone read yet)."""
        return request_id in self.start_at and request_id not in self.done_at

    def tell_failing(self, request_id: str) -> bool:
        """Marks one waiting request as told Failing; False if it was already, or is settled."""
        if self.waiting.get(request_id, True):
            return False
        self.waiting[request_id] = True
        return True

    def report_spooled(self, request_id: str) -> bool:
        return request_id in self.report_at
