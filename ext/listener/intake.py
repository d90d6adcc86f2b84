"""Decides what of one Telemetry POST body the listener spools (listener process; no I/O).

What passes is something the sender can decode: a JSON array of event objects holding only
`time`, `type` (strings or numbers) and `record`, nested at most MAX_DEPTH levels. A batch that
passes as a whole is spooled byte for byte (one msgspec decode, the common case). Otherwise the
array is split into its elements without a JSON decoder, so one bad `\\ud800` escape, one
record nested a thousand levels deep or one element that is not an event costs only itself:
each element is checked alone and the valid ones are spooled as a new array. An element nested
too deep is kept as text: an event of the extension's own (`splunk-extension.too-deep`) whose
record is the element's JSON as a string, so not a byte of it is lost and it cannot stop the
sender. Any other invalid element is dropped. Both are counted in an event appended to the array
(`splunk-extension.intake-dropped`), so the count reaches Splunk with the data it travelled with.
A body that is not a JSON array at all (e.g. `{}`) is refused: there is no event in it to keep.

Why not refuse the whole batch with a 4xx: that loses the valid neighbours too, and Lambda
does not resend a refused batch forever. Lambda never nests a platform record more than a few
levels; only a function's own JSON log line can be that deep, and it is kept (as text).
"""

from __future__ import annotations

import re
import struct
import time
from itertools import accumulate
from typing import TYPE_CHECKING

import msgspec

from ext import schema

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_DEPTH = 64  # levels of arrays/objects in one event, the event object itself included
DROPPED_TYPE = "splunk-extension.intake-dropped"
TOO_DEEP_TYPE = "splunk-extension.too-deep"
RUNTIME_DONE = "platform.runtimeDone"
REPORT = "platform.report"
# A platform.logsDropped may stand for a runtimeDone Lambda dropped (ext/sender/invocations.py):
# a flush may wait for it as for the runtimeDone itself.
NOTIFY_TYPES = frozenset({RUNTIME_DONE, REPORT, "platform.logsDropped"})
_SHORT = 2 * (MAX_DEPTH - 1)  # a record no longer cannot be too deep (two bytes per level)
_FEW = 64  # structured records below which checking each costs less than a body pass

# A string never closed runs to the end of the text (an optional lone backslash before it): a
# failed match would be tried again at each escaped quote after it, a scan of the rest each time
# (hours for a 4 MiB body cut inside a string of JSON text). DOTALL: a backslash before a raw
# newline must not end the string either.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[\]{},]', re.DOTALL)
_DEPTH_TABLE = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_STRUCTURE = bytes(set(range(256)) - set(b"[]{}"))
_WHITESPACE = b" \t\r\n"
# The first byte of a record (a Raw): a third of what memoryview(record)[0] costs.
_first_byte = struct.Struct("B").unpack_from


class Verdict:
    """What to do with one body: spool `payload` (None: nothing) holding `events` events."""

    __slots__ = ("decoded", "dropped", "ends_invocation", "events", "notable", "payload",
                 "too_deep")

    def __init__(self, payload: bytes | bytearray | memoryview | None, events: int,
                 notable: bool, dropped: int = 0, too_deep: int = 0, *,
                 decoded: list[schema.IntakeEvent] | None = None,
                 ends_invocation: bool | None = None) -> None:
        self.payload = payload
        self.decoded = decoded  # the payload's events when inspect decoded them (the filters')
        self.events = events
        self.notable = notable  # it holds a runtimeDone or report the main process waits for
        # It holds a runtimeDone (or a drop notice, which may stand for one): a flush may wait
        # for it, so the sender reads it at once (it may read the rest later, with the next
        # one: ext/sender/process.py).
        self.ends_invocation = notable if ends_invocation is None else ends_invocation
        self.dropped = dropped  # elements not kept
        self.too_deep = too_deep  # elements kept as text because they were nested too deep


NOT_AN_ARRAY = Verdict(None, 0, False)


def inspect(body: bytes | bytearray | memoryview) -> Verdict:
    """The verdict on one POST body; never raises on any input."""
    try:
        events = schema.intake_batch.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return _salvage(body)
    # One look at each event, not passes over the whole body: a body holds ~150 bytes per
    # event, and a C pass over them (bytes.count, `in`) cost more than this loop's step.
    notable = ends = False
    structured: list[msgspec.Raw] = []  # records long enough to be too deep, not strings
    for event in events:
        if event.type in NOTIFY_TYPES:
            notable = True
            ends = ends or event.type != REPORT
        record = event.record
        # A record needs two bytes per level; a string has none.
        if len(record) > _SHORT and _first_byte(record)[0] != 0x22:
            structured.append(record)
    if structured and (len(structured) <= _FEW or _enough_brackets(body, len(events))):
        for record in structured:
            if _too_deep_record(record):
                return _salvage(body)
    return Verdict(body, len(events), notable, decoded=events, ends_invocation=ends)


def _enough_brackets(body: bytes | bytearray | memoryview, events: int) -> bool:
    """False when the body holds too few opening brackets for any record to be too deep.

    A record MAX_DEPTH deep holds MAX_DEPTH opening brackets besides the array's and each
    event object's: with fewer in the whole body, no record needs a look (two passes over the
    body in C cost less than a look at each of many structured records).
    """
    data = bytes(body) if isinstance(body, memoryview) else body
    return data.count(b"{") + data.count(b"[") >= 1 + events + MAX_DEPTH


def _too_deep_record(record: msgspec.Raw) -> bool:
    """True when the record (inside the event object and the batch array) is too deep; only
    asked of records over _SHORT bytes that are not strings (no other can be)."""
    raw = bytes(record)
    if raw.count(b"[") + raw.count(b"{") < MAX_DEPTH:
        return False
    return depth(raw) > MAX_DEPTH - 1


def depth(text: bytes | bytearray) -> int:
    """The deepest nesting of arrays/objects in JSON text, brackets inside strings ignored."""
    structure = _STRING.sub(b"", text).translate(_DEPTH_TABLE, _NOT_STRUCTURE)
    if not structure:
        return 0
    return max(0, *accumulate(memoryview(structure).cast("b")))


def elements(body: bytes | bytearray | memoryview) -> list[tuple[memoryview, bool]] | None:
    """The top-level elements of a JSON array, each with "nested deeper than MAX_DEPTH", split
    without a JSON decoder and without copying the body; None when it is not an array. An
    element is not validated: decode it."""
    text = memoryview(body).cast("B")
    start = _skip_space(text, 0, len(text))
    if start >= len(text) or text[start] != 0x5B:  # [
        return None
    return [(text[a:b], deep) for a, b, deep in _elements(text, start)]


def _salvage(body: bytes | bytearray | memoryview) -> Verdict:
    """Keeps the valid elements of an array whose decode failed as a whole; counts the rest."""
    text = memoryview(body).cast("B")
    start = _skip_space(text, 0, len(text))
    if start >= len(text) or text[start] != 0x5B:  # [
        return NOT_AN_ARRAY
    out = bytearray(b"[")
    kept = dropped = too_deep = 0
    notable = False
    for first, end, deep in _elements(text, start):  # offsets: no object per element kept
        element = text[first:end]
        if deep:
            too_deep += 1
            if kept:
                out += b","
            out += as_text(element)
            kept += 1
            continue
        try:
            event = schema.intake_event.decode(element)
        except (msgspec.DecodeError, RecursionError):
            dropped += 1
            continue
        if kept:
            out += b","
        out += element
        kept += 1
        notable = notable or event.type in NOTIFY_TYPES
    if dropped or too_deep:
        if kept:
            out += b","
        out += dropped_notice(dropped, too_deep)
        kept += 1
    out += b"]"
    return Verdict(out, kept, notable, dropped, too_deep)


def _elements(text: memoryview, start: int) -> Iterator[tuple[int, int, bool]]:
    """(first, end, nested too deep) of each top-level element of the array opening at `start`.

    Tolerant: strings are skipped whatever their escapes, and anything left after the closing
    bracket, or an array never closed, becomes one more (invalid) element.
    """
    found = False
    level = 0
    deepest = 0
    begin = start + 1
    end = len(text)
    for match in _TOKEN.finditer(text, start):
        char = text[match.start()]
        if char == 0x22:  # a string
            continue
        if char in b"[{":
            level += 1
            deepest = max(deepest, level)
        elif char in b"]}":
            level -= 1
            if level == 0:
                end = match.start()
                break
        elif level == 1:  # a top-level comma
            yield _strip(text, begin, match.start(), deepest - 1 > MAX_DEPTH)
            found = True
            begin = match.end()
            deepest = 1
    first = _skip_space(text, begin, end)
    if first < end or found:
        yield _strip(text, begin, end, deepest - 1 > MAX_DEPTH)
    if end < len(text) and _skip_space(text, end + 1, len(text)) < len(text):
        yield _strip(text, end + 1, len(text), False)  # trailing bytes: one more element


def _skip_space(text: memoryview, index: int, end: int) -> int:
    while index < end and text[index] in _WHITESPACE:
        index += 1
    return index


def _strip(text: memoryview, first: int, end: int, deep: bool) -> tuple[int, int, bool]:
    first = _skip_space(text, first, end)
    while end > first and text[end - 1] in _WHITESPACE:
        end -= 1
    return first, end, deep


def as_text(element: memoryview) -> bytes:
    """An event of the extension's own that carries a too-deep element as a JSON string."""
    text = bytes(element).decode("utf-8", "replace")
    return schema.encoder.encode({"time": now_iso(), "type": TOO_DEEP_TYPE, "record": text})


def dropped_notice(dropped: int, too_deep: int) -> bytes:
    """A telemetry event of the extension's own that counts what intake dropped or kept as text."""
    record = {"dropped_events": dropped, "too_deep_kept_as_text": too_deep,
              "max_depth": MAX_DEPTH}
    return schema.encoder.encode({"time": now_iso(), "type": DROPPED_TYPE, "record": record})


def now_iso() -> str:
    """The current time as the Telemetry API writes it (ms, Z)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
