"""CommitOrder: the committable spool position moves only over batches that are answered or had
nothing to send, oldest first, one answer per sent batch."""

from __future__ import annotations

from ext.sender.commit_order import CommitOrder


def test_one_answer_commits_one_sent_batch_only() -> None:
    order = CommitOrder()
    order.sent(1)
    order.sent(2)
    assert order.delivered(1) == 1
    assert order.delivered(0) is None  # batch 2 is still on the wire
    assert len(order) == 1
    assert order.delivered(1) == 2
    assert len(order) == 0


def test_an_answer_is_not_spent_on_a_batch_that_needed_none() -> None:
    order = CommitOrder()
    order.sent(1)
    assert order.skipped(2) is None  # queued behind batch 1
    order.sent(3)
    assert order.delivered(1) == 2  # batch 1 answered, the empty batch 2 rides along
    assert order.delivered(0) is None
    assert order.delivered(1) == 3


def test_a_batch_that_completes_no_record_moves_nothing_but_is_waited_for() -> None:
    order = CommitOrder()
    order.sent(None)  # the first part of a record split over several batches
    order.sent(4)
    assert order.delivered(1) is None
    assert order.delivered(1) == 4


def test_an_empty_batch_alone_is_committable_at_once() -> None:
    order = CommitOrder()
    assert order.skipped(7) == 7
    assert len(order) == 0
