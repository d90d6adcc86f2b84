"""Properties of the intake decision: any mix of valid and invalid events, every valid one kept
(in order, byte for byte), every invalid one counted, and what is kept is what the sender reads."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ext import config
from ext.listener import intake
from ext.sender.envelope import EnvelopeBuilder

TIME = "2026-10-08T07:30:28.235Z"

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                      st.text(max_size=20))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10,
)
valid_event = st.fixed_dictionaries(
    {"time": st.one_of(st.just(TIME), st.integers(0, 2 * 10**12)),
     "type": st.sampled_from(["function", "extension", "platform.report", "platform.start"]),
     "record": st.one_of(st.text(max_size=40), st.dictionaries(st.text(max_size=5), json_value,
                                                                max_size=4))},
).map(lambda e: json.dumps(e).encode())


def nested(levels: int) -> bytes:
    return b'{"time":"%s","type":"function","record":%s}' % (
        TIME.encode(), b"[" * levels + b"]" * levels)


invalid_event = st.one_of(
    st.just(b'{"time":"%s","type":"function","record":"a\\ud800b"}' % TIME.encode()),
    st.just(b'{"time":"%s","type":"function","record":"\\x"}' % TIME.encode()),
    st.just(b"3"), st.just(b'"text"'), st.just(b"null"), st.just(b"[]"),
    st.just(b'{"time":null,"type":"function","record":"r"}'),
    st.just(b'{"time":"t","type":["x"],"record":"r"}'),
    st.just(b'{"time":"t","type":"function","record":"r","more":1}'),
)
too_deep_event = st.integers(intake.MAX_DEPTH, 3_000).map(nested)
tagged = st.one_of(valid_event.map(lambda b: ("valid", b)), invalid_event.map(lambda b: ("bad", b)),
                   too_deep_event.map(lambda b: ("deep", b)))


def builder() -> EnvelopeBuilder:
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"})
    return EnvelopeBuilder(cfg, "fn")


@settings(max_examples=300, deadline=None)
@given(st.lists(tagged, max_size=12), st.sampled_from([b",", b" , ", b",\n"]))
def test_every_valid_event_kept_every_invalid_one_counted(
        items: list[tuple[str, bytes]], comma: bytes) -> None:
    body = b"[" + comma.join(raw for _, raw in items) + b"]"
    verdict = intake.inspect(body)
    assert verdict.payload is not None
    kept = json.loads(bytes(verdict.payload))
    expected = [json.loads(raw) if kind == "valid" else {"type": intake.TOO_DEEP_TYPE,
                                                         "record": raw.decode()}
                for kind, raw in items if kind != "bad"]
    invalid = sum(1 for kind, _ in items if kind == "bad")
    deep = sum(1 for kind, _ in items if kind == "deep")
    assert (verdict.dropped, verdict.too_deep) == (invalid, deep)
    if invalid or deep:
        assert [{k: v for k, v in e.items() if k != "time" or e["type"] != intake.TOO_DEEP_TYPE}
                for e in kept[:-1]] == expected
        assert kept[-1]["type"] == intake.DROPPED_TYPE
        assert kept[-1]["record"]["dropped_events"] == invalid
        assert kept[-1]["record"]["too_deep_kept_as_text"] == deep
        assert verdict.events == len(expected) + 1
    else:
        assert bytes(verdict.payload) == body  # the fast path spools the bytes as they came
        assert verdict.events == len(expected)
    # Whatever is kept, the sender decodes in full: no event of it is malformed there.
    b = builder()
    b.build(bytes(verdict.payload))
    assert b.malformed == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_get_a_verdict_and_what_is_kept_is_readable(junk: bytes) -> None:
    for body in (junk, b"[" + junk, b"[" + junk + b"]"):
        verdict = intake.inspect(body)
        if verdict.payload is not None:
            b = builder()
            b.build(bytes(verdict.payload))
            assert b.malformed == 0


@given(st.integers(0, 200))
def test_depth_counts_structure_outside_strings(levels: int) -> None:
    text = b'["[[[{",' + b"[" * levels + b'"]]}"' + b"]" * levels + b"]"
    assert intake.depth(text) == levels + 1


def test_a_large_batch_takes_the_body_pass_and_still_finds_depth_and_notices() -> None:
    plain = [json.dumps({"time": TIME, "type": "function", "record": f"line {n}"}).encode()
             for n in range(200)]
    done = json.dumps({"time": TIME, "type": "platform.runtimeDone",
                       "record": {"requestId": "r"}}).encode()
    clean = intake.inspect(b"[" + b",".join([*plain, done]) + b"]")
    assert (clean.events, clean.notable, clean.dropped, clean.too_deep) == (201, True, 0, 0)
    quiet = intake.inspect(b"[" + b",".join(plain) + b"]")
    assert not quiet.notable
    deep = intake.inspect(b"[" + b",".join([*plain, nested(intake.MAX_DEPTH)]) + b"]")
    assert (deep.events, deep.too_deep) == (202, 1)  # 200 + the text event + the notice
