"""Which spool position the sender may commit, given batches that finish in order or not at all.

The sender hands batches to the courier in spool order; a batch whose events were all filtered
out (empty lines, the extension's own logs) needs no request. Committing such a batch at once
would move the committed position past records still on the wire or held by HEC, and a restart
would then skip them: an empty batch is queued behind the batches before it like any other and
counts as done only when they are. Pure bookkeeping: no I/O.
"""

from __future__ import annotations

from collections import deque


class CommitOrder:
    """The batches not yet committed, oldest first: (completes_seq, needs a HEC answer)."""

    def __init__(self) -> None:
        self._waiting: deque[tuple[int | None, bool]] = deque()
        self._answered = 0  # deliveries reported but not yet matched to a waiting batch

    def __len__(self) -> int:
        return len(self._waiting)

    def sent(self, completes_seq: int | None) -> None:
        """A batch went to the courier; it counts once the courier reports it delivered."""
        self._waiting.append((completes_seq, True))

    def skipped(self, completes_seq: int | None) -> int | None:
        """A batch with nothing to send; returns the position now committable, if any."""
        self._waiting.append((completes_seq, False))
        return self.delivered(0)

    def delivered(self, count: int) -> int | None:
        """`count` more sent batches were accepted (the courier delivers in order).

        Returns the highest spool seq whose records, and every record before them, are all
        accepted or had nothing to send; None when that did not move.
        """
        self._answered += count
        ready: int | None = None
        waiting = self._waiting
        while waiting:
            seq, needs_answer = waiting[0]
            if needs_answer:
                if not self._answered:
                    break
                self._answered -= 1
            waiting.popleft()
            if seq is not None:
                ready = seq
        return ready
