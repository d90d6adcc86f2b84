"""Filters and masks telemetry before it reaches the spool (listener process; no I/O).

Applied to each batch intake admitted, in this order, to `function` and `extension` records
(and to records the extension keeps as text, `splunk-extension.too-deep`):

1. SPLUNK_MIN_LEVEL drops a line whose level ranks below it. The level is `[LEVEL]\\t` at the
   start of a text line (Python runtimes; the sender indexes it), the third tab-separated
   column after an ISO time (Node.js runtimes), or the `level` field of a JSON log line. Lines
   without a level, or with a level name not known, are kept.
2. SPLUNK_DROP_REGEX drops a line it matches anywhere: the text of a text line, the JSON text
   of a JSON log line.
3. SPLUNK_MASK rewrites every string of what is left (a text line; every key and string value of
   a JSON log line), rule after rule, until no rule changes it: what reaches the spool, and so
   HEC, holds no match but the rules' own output (a match a rule would write back as it is,
   like the `password=***` of `(password=)\\S+=>\\1***`). A string still changed after
   MAX_MASK_ROUNDS passes (rules that keep re-creating each other's matches) is not kept: its
   event is dropped and counted. A text line
   is checked with and without its trailing newline (Splunk receives it without); a masked one
   is spooled without it, so the spooled text is exactly what Splunk receives. A masked JSON
   line is re-encoded (msgspec; same values, numbers may be spelled differently); a line no
   rule matches keeps its bytes. A line msgspec cannot decode (invalid UTF-8, a number beyond
   a float's range: intake admits both) is masked as the text it decodes to with U+FFFD for
   each invalid byte, or else as the text of its JSON, which becomes its record if a rule
   matched. A rule set without anchors or lookarounds (`\\b` and `\\B` are fine) is first
   searched once per _CHUNK events (their strings joined), then per _PART events inside a chunk
   it matches: only the lines of a part it matches are looked at one by one.

`platform.*` records are Lambda's own (ids, metrics, names) and pass untouched, so the sender
always finds the request ids it needs. Dropped events are counted by reason; the listener
reports the counts to Splunk (`splunk-extension.filtered`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ext import schema
from ext.config import LEVEL_RANKS
from ext.listener.intake import TOO_DEEP_TYPE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ext.config import Config

FILTERED_TYPE = "splunk-extension.filtered"
MAX_MASK_ROUNDS = 4
_CHUNK = 32  # events checked together by a context-free rule set (see _suspect_chunks)
_PART = 4  # events re-checked together inside a chunk that matched
_LINE_KINDS = frozenset({"function", "extension", TOO_DEEP_TYPE})
_LEVEL_KINDS = frozenset({"function", "extension"})
_text = msgspec.json.Decoder(str)


class _UnresolvedError(Exception):
    """A mask rule still changes a string after MAX_MASK_ROUNDS rounds."""


class Outcome:
    """The filtered batch: `payload` (a JSON array) of `events` events, and the drops."""

    __slots__ = ("dropped", "events", "masked", "payload")

    def __init__(self, payload: bytes, events: int, dropped: dict[str, int], masked: int) -> None:
        self.payload = payload
        self.events = events
        self.dropped = dropped  # reason -> events: level, drop_regex, mask_unresolved
        self.masked = masked  # events kept with at least one string masked


class LineFilter:
    def __init__(self, config: Config) -> None:
        self.min_rank = LEVEL_RANKS[config.min_level] if config.min_level else None
        self.drop = config.drop_pattern
        self.masks = config.mask_rules
        self.active = self.min_rank is not None or self.drop is not None or bool(self.masks)
        # A rule without anchors or lookarounds matches a string wherever that string sits, so
        # one search over all of a batch's strings joined tells whether any of them matches.
        self._batch_check = all(_context_free(pattern.pattern) for pattern, _ in self.masks)
        self._changed = False

    def apply(self, events: Sequence[schema.IntakeEvent]) -> Outcome | None:
        """The filtered batch, or None when nothing was dropped or changed (keep the body)."""
        kept: list[schema.IntakeEvent] = []
        dropped: dict[str, int] = {}
        masked = 0
        touched = False
        masks = bool(self.masks)
        suspects: set[int] | None = None  # chunks of events a rule may match; None: all
        if masks and self._batch_check:
            suspects = self._suspect_chunks(events)
            masks = bool(suspects)
            if not masks and self.min_rank is None and self.drop is None:
                return None
        filtering = self.min_rank is not None or self.drop is not None
        for index, event in enumerate(events):
            kind = event.type
            if kind not in _LINE_KINDS or (not filtering and (
                    suspects is not None and index // _PART not in suspects)):
                kept.append(event)  # nothing to drop, no rule matches near it: as it is
                continue
            raw = event.record
            kept_event = event
            text: str | None = None
            if memoryview(raw)[0] == 0x22:  # a JSON string: a text line
                try:
                    text = _text.decode(raw)
                except msgspec.DecodeError:  # invalid UTF-8, which intake does not look at
                    value = _value(raw)
                    text = value if isinstance(value, str) else None
            reason = self._drop_reason(kind, raw, text)
            if reason is None and masks and (suspects is None or index // _PART in suspects):
                try:
                    new = self._masked(raw, text)
                except _UnresolvedError:
                    reason = "mask_unresolved"
                else:
                    if new is not None:
                        touched = True
                        if self._changed:
                            masked += 1
                        kept_event = msgspec.structs.replace(event, record=msgspec.Raw(new))
            if reason is not None:
                dropped[reason] = dropped.get(reason, 0) + 1
                touched = True
                continue
            kept.append(kept_event)
        if not touched:
            return None
        return Outcome(schema.encoder.encode(kept), len(kept), dropped, masked)

    def _drop_reason(self, kind: object, raw: msgspec.Raw, text: str | None) -> str | None:
        if self.min_rank is not None and kind in _LEVEL_KINDS:
            level = _text_level(text) if text is not None else _json_level(raw)
            if level is not None:
                rank = LEVEL_RANKS.get(level.upper())
                if rank is not None and rank < self.min_rank:
                    return "level"
        if self.drop is not None:
            line = text if text is not None else bytes(raw).decode("utf-8", "replace")
            if self.drop.search(line):
                return "drop_regex"
        return None

    def _masked(self, raw: msgspec.Raw, text: str | None) -> bytes | None:
        """The record's new JSON, or None when it stays byte for byte."""
        self._changed = False
        if text is not None:
            stripped = text[:-1] if text.endswith("\n") else text
            if not self._hits(text) and (stripped is text or not self._hits(stripped)):
                return None
            return schema.encoder.encode(self._mask_text(stripped))
        if memoryview(raw)[0] not in b"{[":
            return None  # a number, true, false or null: no string in it
        new_value = self._mask_value(_value(raw))
        return schema.encoder.encode(new_value) if self._changed else None

    def _suspect_chunks(self, events: Sequence[schema.IntakeEvent]) -> set[int]:
        """The parts of _PART events in which some mask rule may match some string: one search
        per rule over each _CHUNK events' strings joined, then over each part of a chunk that
        matched, instead of one per string."""
        found: set[int] = set()
        for start in range(0, len(events), _CHUNK):
            chunk = events[start:start + _CHUNK]
            if not self._joined_match(chunk):
                continue
            for part in range(0, len(chunk), _PART):
                if self._joined_match(chunk[part:part + _PART]):
                    found.add((start + part) // _PART)
        return found

    def _joined_match(self, events: Sequence[schema.IntakeEvent]) -> bool:
        values = [_value(event.record) for event in events if event.type in _LINE_KINDS]
        texts = [value for value in values if type(value) is str]
        if len(texts) < len(values):
            for value in values:
                if type(value) is not str:
                    _strings(value, texts)
        joined = "\n".join(texts)
        return any(pattern.search(joined) is not None for pattern, _ in self.masks)

    def _hits(self, text: str) -> bool:
        return any(pattern.search(text) is not None for pattern, _ in self.masks)

    def _mask_text(self, text: str) -> str:
        """`text` with every rule applied until none changes it (the same object if none
        matched).

        Until none *changes* it, not until none matches: a rule's own output may match it again
        (`(password=)\\S+=>\\1***` writes `password=***`, which it matches), and what it then
        writes is that same text. Such a string is masked; counted as unresolved, its whole
        line was dropped."""
        for pattern, _ in self.masks:  # the common case, no match: a search is the cheapest
            if pattern.search(text) is not None:
                break
        else:
            return text
        for _ in range(MAX_MASK_ROUNDS):
            changed = False
            for pattern, replacement in self.masks:
                new = pattern.sub(replacement, text)
                if new != text:
                    text, changed = new, True
            if not changed:
                return text
            self._changed = True
        raise _UnresolvedError

    def _mask_value(self, value: object) -> object:
        if isinstance(value, str):
            return self._mask_text(value)
        if isinstance(value, dict):
            return {self._mask_text(k): self._mask_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask_value(item) for item in value]
        return value


def _value(raw: msgspec.Raw) -> object:
    """The record's value. Intake admits what msgspec's skipping accepts, which decoding may
    not: invalid UTF-8 in a string (decoded here with U+FFFD in its place) or a number beyond a
    float's range (the record is then taken as the text of its JSON). A record is never left
    unmasked, nor its batch unanswered, because it does not decode."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        repaired = bytes(raw).decode("utf-8", "replace")
        try:
            return msgspec.json.decode(repaired)
        except msgspec.DecodeError:
            return repaired


def _strings(value: object, into: list[str]) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            into.append(key)
            _strings(item, into)
    elif isinstance(value, list):
        for item in value:
            _strings(item, into)


def _context_free(regex: str) -> bool:
    """True when the regex has no anchor or lookaround (whose match depends on what surrounds
    it); checked on the text, conservatively (`[^` is a negated class). A word boundary
    (`\\b`, `\\B`) is no reason: the strings are joined with a newline, a non-word character
    as the edge of a string is, so a boundary holds at a string's edge exactly where it holds
    in the joined text."""
    text = regex.replace("[^", "[")
    return not any(mark in text for mark in ("^", "$", "\\A", "\\Z", "(?=", "(?!", "(?<"))


def _text_level(line: str) -> str | None:
    """`[LEVEL]\\t...` (Python) or `<ISO time>\\t<request id>\\t<LEVEL>\\t...` (Node.js)."""
    if line.startswith("["):
        close = line.find("]", 1, 12)
        if close > 0 and line[close + 1 : close + 2] == "\t":
            return line[1:close]
        return None
    if line[24:25] == "\t" and line[10:11] == "T":
        parts = line.split("\t", 3)
        if len(parts) == 4 and 0 < len(parts[2]) <= 8:
            return parts[2]
    return None


def _json_level(raw: msgspec.Raw) -> str | None:
    try:
        view = schema.log_view.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    return view.level if isinstance(view.level, str) else None


def notice(counts: dict[str, int], now_iso: str) -> bytes:
    """A telemetry event of the extension's own counting the events the filters dropped."""
    record = {"dropped_events": sum(counts.values()), "by_reason": counts}
    return schema.encoder.encode({"time": now_iso, "type": FILTERED_TYPE, "record": record})
