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
was among what Lambda dropped. Its real runtimeDone, if read before it is answered, places its
end there instead (later: safe); read after, it changes nothing.

Lambda may drop an invocation's start and its end alike (one notice after both): the ledger then
reads lines that name no invocation and a drop notice, and learns the request id only when main
asks for it. A notice read after a platform.report, with no start read since, can hold only what
followed that report (the notice follows what it reports, and the report is emitted before the
next invocation starts): the next invocation's records. Such a notice is a gap, and the
invocations main asked for of which nothing was read (no start, no end: unseen) are presumed to
have started and ended in it, once a read finds nothing more spooled: their start was not among
what did arrive. A gap is claimed once; a report or a start closes it. Presumed while nothing
names it, the presumption gives way to its start read before the answer (it runs: the rules
above apply) or its runtimeDone (its end is there).

Every end presumed at a drop notice is provisional until answered: the records read after it
may be the invocation's (it ran on, or the notice held only its start), so its end follows each
read to the last record read. The answer then never comes before whatever of the invocation did
arrive is committed; what arrives after the answer goes with the next batch (late, not lost).
An end presumed at another invocation's start is certain (its records precede that start) and
stays there.
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
        # Ends presumed at a drop notice, not yet answered: moved to each read's last record.
        self.provisional: dict[str, None] = {}
        # Of those, the unseen ones (presumed whole in a gap): their start, read, withdraws it.
        self.unseen_presumed: dict[str, None] = {}
        self.after_report = False  # a platform.report read, and no platform.start since
        self.gap = False  # and a drop notice read since, not yet claimed
        self.read_through = -1  # the seq of the last record read

    def seen(self, kind: str, request_id: str, seq: int) -> list[str]:
        """A platform.start, runtimeDone or report for `request_id` was read from the spool at
        `seq`. Returns the invocations whose end this proves lost (another's start), ended at
        `seq`."""
        self.read_through = max(self.read_through, seq)
        # By kind, not by table: two tables may hold the same entries, and compare equal.
        is_start, is_end, is_report = kind == START, kind == RUNTIME_DONE, kind == REPORT
        table = (self.done_at if is_end else self.report_at if is_report
                 else self.start_at if is_start else None)
        if is_report:
            self.after_report, self.gap = True, False  # what follows is the next invocation's
        elif is_start and request_id not in self.start_at:
            self.after_report = self.gap = False  # a notice after this start cannot hold it whole
            if request_id in self.unseen_presumed:
                self._unpresume(request_id)  # it started after all: the usual rules apply
            self._settle_provisional(seq)
        elif is_end and request_id in self.provisional:
            self._unpresume(request_id)  # its real end, read before the answer: placed there
        if table is None or request_id in table:
            return []  # the first one read counts (a batch the platform sent again repeats it)
        lost: list[str] = []
        if is_end:
            self._ended_at(request_id, seq)
            self.open.pop(request_id, None)
        else:
            self._remember(table, request_id, seq)
            if is_start:
                lost = self._end_open(seq)
                if request_id not in self.done_at:  # its end may come before its start
                    self.open[request_id] = None
        if (self.wait_every and not is_report and request_id not in self.waiting
                and not (is_start and request_id in self.done_at)):
            # (A start read after its end, read or presumed: waited for from then on, and maybe
            # answered already; waiting again would answer again.)
            self._wait_for(request_id)
        return lost

    def dropped(self, seq: int) -> list[str]:
        """A platform.logsDropped was read at `seq`: the invocations started and not ended may
        have lost their end in it. Returns them, ended at `seq` (see the module's docstring)."""
        self.read_through = max(self.read_through, seq)
        lost = self._end_open(seq)
        self.provisional.update(dict.fromkeys(lost))
        if self.after_report:
            self.gap = True  # it may hold the next invocation whole
        return lost

    def read_to(self, seq: int | None, caught_up: bool) -> list[str]:
        """The sender read the spool through `seq` (None: nothing new; `caught_up`: everything
        spooled so far). Ends presumed at a notice and not yet answered move to the last record
        read; caught up, with a gap standing, the unseen invocations main asked for are presumed
        ended there. Returns those (see the module's docstring)."""
        if seq is not None:
            self.read_through = max(self.read_through, seq)
        seq = self.read_through
        done_at = self.done_at
        for request_id in list(self.provisional):
            if request_id in done_at:
                done_at[request_id] = seq  # kept in place: the table's order is its age
            else:
                self._unpresume(request_id)  # forgotten (KEEP)
        if not (caught_up and self.gap):
            return []
        lost = [rid for rid in self.waiting if self.unseen(rid)]
        if lost:
            self.gap = False  # claimed: the next whole invocation needs a notice of its own
            for request_id in lost:
                self._ended_at(request_id, seq)
            self.provisional.update(dict.fromkeys(lost))
            self.unseen_presumed.update(dict.fromkeys(lost))
        return lost

    def _settle_provisional(self, seq: int) -> None:
        """Another invocation started at `seq`: the ends presumed at a notice after an
        invocation's own start lie before it (one at a time), and stop there. Not those presumed
        unseen: nothing read says theirs came before this one."""
        for request_id in list(self.provisional):
            if request_id not in self.unseen_presumed and request_id in self.done_at:
                self.done_at[request_id] = seq
                del self.provisional[request_id]

    def unseen(self, request_id: str) -> bool:
        """Nothing read names it: neither its start nor its end."""
        return request_id not in self.start_at and request_id not in self.done_at

    def _unpresume(self, request_id: str) -> None:
        """A presumed end gives way to what was read of the invocation itself."""
        self.provisional.pop(request_id, None)
        self.unseen_presumed.pop(request_id, None)
        self.done_at.pop(request_id, None)
        self.tracked.pop(request_id, None)

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
        for rid in settled:  # answered: its end stays where it was
            self.provisional.pop(rid, None)
            self.unseen_presumed.pop(rid, None)
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
