"""Batch planning at its edges: exact fits, the greedy fill, halving tiny batches."""

from __future__ import annotations

from ext.sender.batching import HecBatch, plan_batches, seal, split_batch, without

# plan_batches takes (seq, envelopes) records; seq None: envelopes that complete no record.
Records = list[tuple[int | None, list[bytes]]]


def shapes(batches: list[HecBatch]) -> list[tuple[list[bytes], int, int | None]]:
    return [(b.envelopes(), b.size, b.completes_seq) for b in batches]


def test_an_envelope_that_fits_exactly_joins_the_batch() -> None:
    # "aaaa\nbbbb" is 9 bytes: a bound of 9 holds both, a bound of 8 does not.
    records: Records = [(1, [b"aaaa", b"bbbb"])]
    assert shapes(plan_batches(records, 9)) == [([b"aaaa", b"bbbb"], 9, 1)]
    assert shapes(plan_batches(records, 8)) == [([b"aaaa"], 4, None), ([b"bbbb"], 4, 1)]


def test_batches_are_filled_before_a_new_one_starts() -> None:
    records: Records = [(5, [b"a", b"b"]), (6, [b"c"]), (7, [b"d", b"e"])]
    assert shapes(plan_batches(records, 5)) == [
        ([b"a", b"b", b"c"], 5, 6),  # records 5 and 6 end inside this batch
        ([b"d", b"e"], 3, 7),
    ]


def test_an_oversized_envelope_goes_alone() -> None:
    records: Records = [(1, [b"a", b"x" * 20, b"b"])]
    assert shapes(plan_batches(records, 10)) == [
        ([b"a"], 1, None), ([b"x" * 20], 20, None), ([b"b"], 1, 1),
    ]


def test_a_batch_completes_only_records_that_ended_before_it_was_closed() -> None:
    records: Records = [(1, [b"aaa"]), (2, [b"bbb", b"ccc"]), (3, [])]
    assert shapes(plan_batches(records, 7)) == [
        ([b"aaa", b"bbb"], 7, 1), ([b"ccc"], 3, 3),
    ]


def test_nothing_to_plan_is_no_batch() -> None:
    assert plan_batches([], 100) == []


def test_halving_small_batches() -> None:
    one, empty = split_batch(seal([b"only"], 9, 1))
    assert shapes([one, empty]) == [([b"only"], 4, None), ([], 0, 9)]
    first, second = split_batch(seal([b"a", b"bb", b"ccc"], 4, 1))
    assert shapes([first, second]) == [([b"a"], 1, None), ([b"bb", b"ccc"], 6, 4)]
    first, second = split_batch(seal([b"a", b"bb", b"ccc", b"d"], 4, 1))
    assert shapes([first, second]) == [([b"a", b"bb"], 4, None), ([b"ccc", b"d"], 5, 4)]


def test_halving_is_at_the_middle_whatever_the_count() -> None:
    for count in range(2, 12):
        envelopes = [b"%d" % n for n in range(count)]
        first, second = split_batch(seal(envelopes, 1, 1))
        assert (len(first.envelopes()), len(second.envelopes())) == (count // 2, count - count // 2)


def test_without_the_last_envelope_leaves_an_empty_batch_that_still_completes() -> None:
    assert shapes([without(seal([b"poison"], 3, 1), 0)]) == [([], 0, 3)]
    assert shapes([without(seal([b"a", b"b", b"c"], 3, 1), 1)]) == [([b"a", b"c"], 3, 3)]


def test_a_batch_of_no_envelopes_is_empty_and_completes_nothing() -> None:
    fresh = seal([], None, 1)
    assert (fresh.envelopes(), fresh.size, fresh.completes_seq) == ([], 0, None)
    assert fresh.joined() == b""
    assert (fresh.count, fresh.body) == (0, b"")
