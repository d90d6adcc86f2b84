from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.sender.batching import (
    Gathering,
    HecBatch,
    Planner,
    plan_batches,
    seal,
    split_batch,
    without,
)

events = st.lists(st.text(max_size=60), max_size=12)
records = st.lists(events, max_size=15)


def envelope(text: str, n: int) -> bytes:
    return json.dumps({"time": 1.0, "event": f"{n}:{text}"}).encode()


def build(recs: list[list[str]]) -> list[tuple[int, list[bytes]]]:
    out, n = [], 0
    for seq, texts in enumerate(recs, start=10):
        envs = []
        for text in texts:
            envs.append(envelope(text, n))
            n += 1
        out.append((seq, envs))
    return out


def parse_concatenated(body: bytes) -> list[dict[str, object]]:
    decoder, text, pos, found = json.JSONDecoder(), body.decode(), 0, []
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        obj, pos = decoder.raw_decode(text, pos)
        found.append(obj)
    return found


@settings(max_examples=300, deadline=None)
@given(recs=records, max_bytes=st.integers(min_value=1, max_value=600))
def test_batches_bounded_ordered_exactly_once(recs: list[list[str]], max_bytes: int) -> None:
    planned = build(recs)
    batches = plan_batches(list(planned), max_bytes)  # a copy typed as its (int | None) seqs
    sent = [env for b in batches for env in b.envelopes()]
    assert sent == [env for _, envs in planned for env in envs]
    for b in batches:
        body = b.joined()
        assert len(body) == b.size
        assert len(body) <= max_bytes or len(b.envelopes()) == 1
        assert [json.dumps(o).encode() for o in parse_concatenated(body)] == b.envelopes()
    # A record's seq is completed only by the batch holding its last envelope (or later).
    position = 0
    for seq, envs in planned:
        position += len(envs)
        owner = _batch_at(batches, position)
        assert owner is not None
        completes = [b.completes_seq for b in batches[owner:] if b.completes_seq is not None]
        assert completes and completes[0] >= seq
    completed = [b.completes_seq for b in batches if b.completes_seq is not None]
    assert completed == sorted(completed)
    if planned:
        assert batches[-1].completes_seq == planned[-1][0]


def _batch_at(batches: list[HecBatch], position: int) -> int | None:
    seen = 0
    for i, b in enumerate(batches):
        seen += len(b.envelopes())
        if seen >= position:
            return i
    return len(batches) - 1 if batches else None


@given(st.lists(st.binary(min_size=1, max_size=20), min_size=2, max_size=30))
def test_split_keeps_everything(envs: list[bytes]) -> None:
    batch = seal(envs, 7, 1)
    first, second = split_batch(batch)
    assert first.envelopes() + second.envelopes() == envs
    assert first.completes_seq is None and second.completes_seq == 7
    assert first.size == len(first.joined()) and second.size == len(second.joined())


@given(st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=30), st.data())
def test_without_removes_one(envs: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(envs) - 1))
    rest = without(seal(envs, 3, 1), index)
    assert rest.envelopes() == envs[:index] + envs[index + 1 :]
    assert rest.size == len(rest.joined())


def test_record_without_events_still_completes() -> None:
    batches = plan_batches([(4, [])], 100)
    assert len(batches) == 1 and batches[0].completes_seq == 4 and not batches[0].envelopes()


def greedy(planned: list[tuple[int, list[bytes]]], max_bytes: int) -> list[tuple[int, int | None]]:
    """(envelope count, completes_seq) of each batch, cutting before any envelope that would
    not fit: the plan taken one envelope at a time."""
    out: list[tuple[int, int | None]] = []
    count, size, completes = 0, 0, None
    for seq, envs in planned:
        for env in envs:
            if count and size + 1 + len(env) > max_bytes:
                out.append((count, completes))
                count, size, completes = 0, 0, None
            size += len(env) + (1 if count else 0)
            count += 1
        completes = seq
    if count or completes is not None:
        out.append((count, completes))
    return out


@settings(max_examples=300, deadline=None)
@given(recs=records, max_bytes=st.integers(min_value=1, max_value=600))
def test_a_record_taken_whole_cuts_where_one_envelope_at_a_time_would(
    recs: list[list[str]], max_bytes: int,
) -> None:
    planned = build(recs)
    batches = plan_batches(list(planned), max_bytes)
    assert [(len(b.envelopes()), b.completes_seq) for b in batches] == greedy(planned, max_bytes)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=200), st.integers(min_value=0, max_value=9))
def test_a_batch_holds_its_body_as_sent_and_gives_its_envelopes_back(
    envs: list[bytes], level: int,
) -> None:
    # Envelopes may hold raw newlines (a record embedded as Lambda sent it): the lengths, not
    # the separators, say where each one ends.
    batch = seal(envs, 5, level)
    joined = b"\n".join(envs)
    assert batch.joined() == joined and batch.size == len(joined)
    assert batch.envelopes() == envs and batch.count == len(envs)
    if envs:  # the body as HEC gets it
        assert (gzip.decompress(batch.body) if level else batch.body) == joined
    else:
        assert batch.body == b""


def test_a_planned_batch_keeps_its_envelopes_gzipped_not_as_objects() -> None:
    # What the sender holds across a freeze: several requests of ~700-byte envelopes.
    envs = [b'{"time":1.000,"event":"line %d of the same function log"}' % n for n in range(2000)]
    batches = plan_batches([(1, envs[:1000]), (2, envs[1000:])], 64 * 1024, level=1)
    assert [e for b in batches for e in b.envelopes()] == envs
    for b in batches:
        assert len(b.body) * 5 < b.size  # gzip, once, when planned
        assert not any(isinstance(getattr(b, f), list) for f in HecBatch.__struct_fields__)


def plan_of(batches: list[HecBatch]) -> list[tuple[list[bytes], int | None, int, bytes]]:
    return [(b.envelopes(), b.completes_seq, b.size, b.joined()) for b in batches]


@settings(max_examples=300, deadline=None)
@given(recs=records, max_bytes=st.integers(min_value=1, max_value=600),
       stream_after=st.integers(min_value=0, max_value=800), level=st.sampled_from([0, 1, 6]),
       shutdown=st.booleans())
def test_a_gathering_cuts_what_plan_batches_cuts_whenever_it_starts_streaming(
    recs: list[list[str]], max_bytes: int, stream_after: int, level: int, shutdown: bool,
) -> None:
    planned: list[tuple[int | None, list[bytes]]] = list(build(recs))
    if shutdown:  # the extension's own envelopes, completing no record, after the last one
        planned.append((None, [envelope("self-metrics", -1)]))
    gathering = Gathering(max_bytes, level, stream_after)
    for seq, envs in planned:
        gathering.add(seq, envs)
    assert bool(gathering) == bool(planned)
    assert gathering.events == sum(len(envs) for _, envs in planned)
    assert gathering.size == sum(len(e) + 1 for _, envs in planned for e in envs)
    batches = gathering.take()
    assert plan_of(batches) == plan_of(plan_batches(planned, max_bytes, level))
    for b in batches:
        assert (gzip.decompress(b.body) if level and b.body else b.body) == b.joined()
    assert not gathering and gathering.take() == []  # it starts anew
    assert gathering.size == gathering.events == 0


def test_a_gathering_past_its_threshold_holds_its_envelopes_gzipped_not_as_objects() -> None:
    envs = [b'{"time":1.000,"event":"line %d of the same function log"}' % n for n in range(3000)]
    gathering = Gathering(1024 * 1024, 1, stream_after=64 * 1024)
    for seq in range(30):
        gathering.add(seq, envs[seq * 100:(seq + 1) * 100])
        streaming = sum(map(len, envs[:(seq + 1) * 100])) + (seq + 1) * 100 >= 64 * 1024
        assert bool(gathering.records) != streaming  # below the threshold: as read
        if streaming:
            assert gathering.planner is not None and gathering.planner.envelopes == []
    [batch] = gathering.take()
    assert batch.envelopes() == envs and batch.completes_seq == 29
    # The same request bytes as a request cut at once: a body this large gets the full window.
    assert batch.body == plan_batches([(29, envs)], 1024 * 1024, 1)[0].body


def test_a_gathering_streams_from_exactly_its_threshold() -> None:
    below, at = Gathering(1000, 1, stream_after=11), Gathering(1000, 1, stream_after=10)
    for gathering in (below, at):
        gathering.add(0, [b"123456789"])  # 9 bytes and its separator
    assert below.records and below.planner is None
    assert not at.records and at.planner is not None
    assert [b.envelopes() for b in at.take()] == [[b"123456789"]]


def test_a_gathering_holds_its_envelopes_as_read_until_64_kib_by_default() -> None:
    # docs/memory.md: the few KB of most invocations get a compressor sized to their request.
    envelope = b"x" * 1023  # 1 KiB with its separator
    gathering = Gathering(1024 * 1024, 1)
    for seq in range(63):
        gathering.add(seq, [envelope])
    gathering.add(63, [b"x" * 1022])  # 1 byte short of 64 KiB
    assert (streams(gathering), len(gathering.records)) == (False, 64)
    gathering.add(64, [b""])  # its separator reaches 64 KiB: gzipped from now on
    assert (streams(gathering), len(gathering.records)) == (True, 0)


def streams(gathering: Gathering) -> bool:
    return gathering.planner is not None


@pytest.mark.parametrize("stream", [False, True])
def test_a_planner_at_level_0_keeps_its_bodies_as_is_even_asked_to_stream(stream: bool) -> None:
    planner = Planner(12, level=0, stream=stream)
    planner.add(1, [b"aaaa", b"bbbb"])
    planner.add(2, [b"cccc"])
    assert [(b.body, b.level) for b in planner.take()] == [(b"aaaa\nbbbb", 0), (b"cccc", 0)]


def test_a_planner_gzips_at_level_1_unless_told() -> None:
    envelopes = [b'{"event":"line %d"}' % n for n in range(100)]
    planner = Planner(1 << 20)
    planner.add(1, envelopes)
    [batch] = planner.take()
    assert batch.level == 1 and batch.body == plan_batches([(1, envelopes)], 1 << 20, 1)[0].body
