"""Examples at the edges of the intake decision: the depth bound (64 levels), the batches that
end an invocation (notable), bytes around the array, and the extension's own time stamps."""

from __future__ import annotations

import json
import time

import pytest

from ext.listener import intake

TIME = "2026-10-08T07:30:28.235Z"


def event(record: object, kind: str = "function") -> bytes:
    return json.dumps({"time": TIME, "type": kind, "record": record}).encode()


def batch(*events: bytes, comma: bytes = b", ") -> bytes:
    return b"[" + comma.join(events) + b"]"


def spaced(*events: bytes) -> bytes:
    """A batch with whitespace around each element: only a byte-for-byte pass keeps it."""
    return b"[ " + b" ,\n ".join(events) + b"\n]"


def nested(levels: int, objects: bool = False) -> object:
    """A record `levels` deep (an event holding it is one level more), of arrays or objects."""
    value: object = "leaf"
    for _ in range(levels):
        value = {"k": value} if objects else [value]
    return value


def kept(verdict: intake.Verdict) -> list[dict[str, object]]:
    assert verdict.payload is not None
    return list(json.loads(bytes(verdict.payload)))


@pytest.mark.parametrize("objects", [False, True])
@pytest.mark.parametrize("filler", [0, 70])  # a small batch, and one past the per-event check
def test_an_event_64_levels_deep_is_kept_and_65_is_kept_as_text(
        filler: int, objects: bool) -> None:
    others = [event(f"line {n}") for n in range(filler)]
    fits = intake.inspect(batch(*others, event(nested(63, objects))))
    assert (fits.too_deep, fits.dropped) == (0, 0)
    assert kept(fits)[-1]["record"] == nested(63, objects)
    deep = intake.inspect(batch(*others, event(nested(64, objects))))
    assert deep.too_deep == 1
    assert kept(deep)[-2]["type"] == intake.TOO_DEEP_TYPE
    assert json.loads(kept(deep)[-2]["record"]) == json.loads(  # type: ignore[arg-type]
        event(nested(64, objects)))
    assert kept(deep)[-1]["record"] == {"dropped_events": 0, "too_deep_kept_as_text": 1,
                                        "max_depth": 64}


@pytest.mark.parametrize("filler", [0, 70])
def test_a_record_far_deeper_than_the_bound_is_kept_as_text(filler: int) -> None:
    others = [event(f"line {n}") for n in range(filler)]
    for levels in (100, 900):  # msgspec decodes both: the depth check alone finds them
        verdict = intake.inspect(batch(*others, event(nested(levels))))
        assert (verdict.too_deep, verdict.events) == (1, filler + 2)


@pytest.mark.parametrize("record", [
    "x" * 300,  # a long line of text
    "[" * 200,  # brackets inside a string are text
    {"message": "y" * 300, "level": "INFO"},  # a long object, shallow
    [[] for _ in range(80)],  # many brackets, two levels
    [{"a": [1]} for _ in range(40)],
])
@pytest.mark.parametrize("filler", [0, 70])
def test_a_long_but_shallow_record_is_spooled_byte_for_byte(record: object, filler: int) -> None:
    body = spaced(*(event(f"line {n}") for n in range(filler)), event(record))
    verdict = intake.inspect(body)
    assert bytes(verdict.payload or b"") == body
    assert (verdict.events, verdict.dropped, verdict.too_deep) == (filler + 1, 0, 0)


def test_a_memoryview_body_gets_the_verdict_of_its_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1791444628.0)  # one stamp for both
    for filler in (1, 70):
        body = batch(*(event(f"line {n}") for n in range(filler)), event(nested(64)))
        assert kept(intake.inspect(memoryview(body))) == kept(intake.inspect(body))
        clean = batch(*(event(f"line {n}") for n in range(filler)))
        assert bytes(intake.inspect(memoryview(clean)).payload or b"") == clean


@pytest.mark.parametrize("filler", [0, 70])
@pytest.mark.parametrize("kind", ["platform.runtimeDone", "platform.report"])
def test_a_batch_that_ends_an_invocation_is_notable(filler: int, kind: str) -> None:
    others = [event(f"line {n}") for n in range(filler)]
    assert intake.inspect(batch(*others, event({"requestId": "r"}, kind))).notable
    # ... also when intake had to salvage it
    salvaged = intake.inspect(batch(b"3", *others, event({"requestId": "r"}, kind), b"4"))
    assert salvaged.dropped == 2 and salvaged.notable


@pytest.mark.parametrize("filler", [0, 70])
def test_other_batches_are_not_notable(filler: int) -> None:
    others = [event(f"line {n}") for n in range(filler)]
    for body in (
        batch(*others, event({"requestId": "r"}, "platform.start")),
        batch(*others, event("platform.runtimeDone is what a log line says")),
        batch(b"3", *others, event({"requestId": "r"}, "platform.start")),  # salvaged
    ):
        verdict = intake.inspect(body)
        assert verdict.payload is not None and not verdict.notable
        assert not verdict.ends_invocation


@pytest.mark.parametrize("filler", [0, 70])
def test_only_a_runtime_done_ends_an_invocation(filler: int) -> None:
    """What the sender reads at once (a flush may wait for it); a report alone may wait."""
    others = [event(f"line {n}") for n in range(filler)]
    report = event({"requestId": "r"}, "platform.report")
    done = event({"requestId": "r"}, "platform.runtimeDone")
    assert not intake.inspect(batch(*others, report)).ends_invocation
    assert intake.inspect(batch(report, *others, done)).ends_invocation
    assert intake.inspect(batch(done, *others, report)).ends_invocation  # wherever it sits
    # A salvaged batch is read at once if it holds either (it is rare; no second look).
    assert intake.inspect(batch(b"3", *others, report)).ends_invocation


@pytest.mark.parametrize("trailing", [b"x", b" 7 ", b"[]", b'{"time":"t","record":1,"x":0}'])
def test_bytes_after_the_array_are_counted_as_one_dropped_element(trailing: bytes) -> None:
    verdict = intake.inspect(batch(event("a"), event("b")) + trailing)
    assert [e["record"] for e in kept(verdict)[:2]] == ["a", "b"]
    assert (verdict.events, verdict.dropped) == (3, 1)


@pytest.mark.parametrize("space", [b"", b" "])
def test_an_event_after_the_closing_bracket_is_kept(space: bytes) -> None:
    verdict = intake.inspect(batch(event("a")) + space + event("b") + space)
    assert [e["record"] for e in kept(verdict)] == ["a", "b"]
    assert (verdict.events, verdict.dropped) == (2, 0)


@pytest.mark.parametrize("tail", [b",]", b", ]", b",\n]"])
def test_a_trailing_comma_counts_as_one_dropped_element(tail: bytes) -> None:
    verdict = intake.inspect(b"[" + event("a") + tail)
    assert [e["record"] for e in kept(verdict)[:1]] == ["a"]
    assert (verdict.events, verdict.dropped) == (2, 1)


@pytest.mark.parametrize("filler", [0, 70])
def test_a_record_63_deep_with_many_brackets_is_kept(filler: int) -> None:
    record = [nested(62), [[] for _ in range(10)]]  # 63 deep, 73 brackets: the count passes
    body = spaced(*(event(f"line {n}") for n in range(filler)), event(record))
    verdict = intake.inspect(body)
    assert (verdict.too_deep, verdict.dropped) == (0, 0)
    assert bytes(verdict.payload or b"") == body  # taken as it came, not salvaged


@pytest.mark.parametrize("deep_at", [0, 69, None])
def test_many_structured_records_are_checked_for_depth(deep_at: int | None) -> None:
    # JSON log lines: past _FEW long object records the body's brackets are counted first.
    records: list[object] = [{"message": f"line {n} " + "y" * 150, "level": "INFO", "n": [n]}
                             for n in range(70)]
    if deep_at is not None:
        records[deep_at] = {"message": "z" * 150, "deep": nested(63, objects=True)}
    body = spaced(*(event(record) for record in records))
    verdict = intake.inspect(body)
    if deep_at is None:
        assert bytes(verdict.payload or b"") == body
        assert (verdict.events, verdict.too_deep) == (70, 0)
    else:
        assert (verdict.events, verdict.too_deep, verdict.dropped) == (71, 1, 0)
        assert kept(verdict)[deep_at]["type"] == intake.TOO_DEEP_TYPE


def test_an_array_never_closed_keeps_what_it_holds() -> None:
    verdict = intake.inspect(b"[" + event("a") + b"," + event("b"))
    assert [e["record"] for e in kept(verdict)] == ["a", "b"]
    assert (verdict.dropped, verdict.events) == (0, 2)
    cut = intake.inspect(b"[" + event("a") + b"," + event("b")[:-3])
    assert [e["record"] for e in kept(cut)[:1]] == ["a"]
    assert (cut.dropped, cut.events) == (1, 2)


@pytest.mark.parametrize("body", [b"", b"   ", b"{}", b' {"a": [1]}', b"\n]", b"1", b'"["'])
def test_a_body_that_is_not_an_array_has_no_elements_and_no_payload(body: bytes) -> None:
    assert intake.elements(body) is None
    verdict = intake.inspect(body + b"x")  # not valid JSON either: the salvage path says so
    assert verdict.payload is None and verdict.events == 0 and not verdict.notable


def test_a_long_blank_body_is_not_an_array() -> None:
    blank = b" \n" * 200  # offsets past CPython's small ints
    assert intake.elements(blank) is None
    assert intake.inspect(blank).payload is None


def test_elements_are_split_at_top_level_commas_with_their_depth() -> None:
    fits = json.dumps(nested(intake.MAX_DEPTH)).encode()  # an element 64 levels deep
    deep = json.dumps(nested(intake.MAX_DEPTH + 1)).encode()
    text = b' [ 1 ,\t"a,]" , {"k": [2, 3]},' + deep + b"," + fits + b"," + fits + b", 2\n] "
    assert [(bytes(e), d) for e, d in intake.elements(text) or []] == [
        (b"1", False), (b'"a,]"', False), (b'{"k": [2, 3]}', False), (deep, True),
        (fits, False), (fits, False), (b"2", False)]
    tail = b"[" + deep + b"," + deep + b"]"
    assert [d for _, d in intake.elements(tail) or []] == [True, True]
    assert intake.elements(b"[]") == []
    assert intake.elements(b"[" + b" " * 300 + b"]") == []  # offsets past CPython's small ints


@pytest.mark.parametrize(("text", "levels"), [
    (b"1", 0), (b'"[[{"', 0), (b"[]", 1), (b'{"a": [[]], "b": {}}', 3), (b'["]"]', 1),
])
def test_depth_of_json_text(text: bytes, levels: int) -> None:
    assert intake.depth(text) == levels


def test_the_extension_stamps_its_events_as_the_telemetry_api_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1791444628.2359)
    assert intake.now_iso() == "2026-10-08T07:30:28.235Z"
    monkeypatch.setattr(time, "time", lambda: 1791444628.007)
    assert intake.now_iso() == "2026-10-08T07:30:28.007Z"
    [notice] = json.loads(b"[" + intake.dropped_notice(2, 1) + b"]")
    assert notice == {"time": "2026-10-08T07:30:28.007Z", "type": intake.DROPPED_TYPE,
                      "record": {"dropped_events": 2, "too_deep_kept_as_text": 1,
                                 "max_depth": 64}}


def test_the_last_element_64_levels_deep_is_not_too_deep() -> None:
    fits = json.dumps(nested(intake.MAX_DEPTH)).encode()
    deep = json.dumps(nested(intake.MAX_DEPTH + 1)).encode()
    assert [(bytes(e), d) for e, d in intake.elements(b"[" + fits + b"]") or []] == [(fits, False)]
    assert [d for _, d in intake.elements(b"[1, " + fits + b" ]") or []] == [False, False]
    assert [d for _, d in intake.elements(b"[1, " + deep + b" ]") or []] == [False, True]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_a_too_deep_record_is_found_in_a_body_with_just_enough_brackets(kind: type) -> None:
    # 69 long numbers (structured, bracket-free) and one record of 64 objects: the body holds
    # exactly the opening brackets a too-deep record needs (the array's, one per event, 64).
    number = "1" + "0" * 200
    events = [b'{"time": "%s", "type": "function", "record": %s}' % (TIME.encode(), number.encode())
              for _ in range(69)]
    events.append(event(nested(intake.MAX_DEPTH, objects=True)))
    body = batch(*events)
    assert body.count(b"{") + body.count(b"[") == 1 + len(events) + intake.MAX_DEPTH
    verdict = intake.inspect(kind(body))
    assert (verdict.events, verdict.too_deep, verdict.dropped) == (71, 1, 0)
    assert kept(verdict)[69]["type"] == intake.TOO_DEEP_TYPE
    assert [e["record"] for e in kept(verdict)[:69]] == [int(number)] * 69


@pytest.mark.parametrize("tail", [b"", b"\\", b"\\\n"])
def test_a_string_never_closed_costs_one_pass_not_one_per_escaped_quote(tail: bytes) -> None:
    # A body cut inside a string that holds JSON as text (a function's log line): each escaped
    # quote after the cut must not start a scan of the rest. 80 KB here (the body may be 4 MiB):
    # one pass takes milliseconds, one per escaped quote took 108 s; the bound is no benchmark,
    # only far from both.
    cut = b'{"time":"' + TIME.encode() + b'","type":"function","record":"{' + b'\\"k\\":1,' * 10_000
    body = b"[" + event("before") + b"," + cut + tail
    start = time.perf_counter()
    verdict = intake.inspect(body)
    intake.depth(cut + tail)
    assert time.perf_counter() - start < 5.0
    assert [e["record"] for e in kept(verdict)[:1]] == ["before"]
    assert (verdict.dropped, verdict.events) == (1, 2)


@pytest.mark.parametrize("filler", [0, 70])
def test_a_drop_notice_is_read_at_once(filler: int) -> None:
    """Lambda's platform.logsDropped may stand for an invocation's lost runtimeDone: a flush may
    wait for it (ext/sender/invocations.py), so the sender reads it at once, salvaged or not."""
    others = [event(f"line {n}") for n in range(filler)]
    dropped = event({"droppedBytes": 10, "droppedRecords": 1, "reason": "r"},
                    "platform.logsDropped")
    assert intake.inspect(batch(*others, dropped)).ends_invocation
    assert intake.inspect(batch(b"3", *others, dropped)).ends_invocation
