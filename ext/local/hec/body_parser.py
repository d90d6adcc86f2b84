"""Request-body parsing for the embedded HEC receiver: JSON envelopes and /raw lines to events.

Pure functions run by the handler threads. The event value and `fields` are kept as the exact
bytes that were sent (msgspec.Raw), so the store can prove byte equality. Validation mirrors
Splunk as recorded in hec.md 1.3-1.5, 1.11 and 3.5 (codes 5, 6, 7, 12, 13, 15).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import msgspec

from ext.local.hec.model import HecToken, ParsedEvent

Scalar = str | int | float | bool | None


class _Envelope(msgspec.Struct):
    event: msgspec.Raw = msgspec.Raw(b"")
    time: float | str | None = None
    host: str | None = None
    source: str | None = None
    sourcetype: str | None = None
    index: str | None = None
    fields: msgspec.Raw = msgspec.Raw(b"")


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ENVELOPES = msgspec.json.Decoder(list[_Envelope])
_FLAT_FIELDS = msgspec.json.Decoder(dict[str, Scalar | list[Scalar]])
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)

# Raw \t \r \n cannot occur inside a JSON string, and "}" ws "{" cannot occur inside one valid
# value, so this only matches real boundaries of a valid stream. Each piece is then decoded on
# its own, which keeps the split sound for invalid bodies too (a bad piece falls to the scanner).
_NEWLINE_BOUNDARY = re.compile(rb"(?<=\})[ ]*[\t\r\n][ \t\r\n]*(?=\{)")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|"|[{}\[\]]', re.DOTALL)
_SCALAR = re.compile(rb'[^ \t\r\n{}\[\]"]+')
_SPACE = re.compile(rb"[ \t\r\n]*")
_BLANK_EVENT = re.compile(
    rb'"(?:[ \t\r\n]|\\[tnr]|\\u00(?:20|09|0[aAdD]))*"|\{[ \t\r\n]*\}|\[[ \t\r\n]*\]'
)
_BLANK_SECOND = frozenset({b" ", b"\t", b"\r", b"\n", b"\\", b'"', b"}", b"]"})
_RAW_LINES = re.compile(rb"[\r\n]+")
METRIC_EVENT = b'"metric"'


@dataclass(frozen=True)
class ParseContext:
    """What parsing needs besides the body: token defaults, client host, limits."""

    token: HecToken
    host: str
    max_event_size: int
    index_quirk: bool = True
    metrics_indexes: frozenset[str] = frozenset()  # besides the token's metric_indexes

    def is_metrics_index(self, index: str) -> bool:
        """True when `index` is a metrics index (it takes metric events and nothing else)."""
        return index in self.metrics_indexes or index in self.token.metric_indexes


@dataclass(frozen=True)
class ParseOutcome:
    """Events accepted in document order, up to the first failure (code, event number)."""

    events: list[ParsedEvent]
    error_code: int | None = None
    event_number: int | None = None


class _RejectError(Exception):
    def __init__(self, code: int, shift: int = 0) -> None:
        super().__init__(code)
        self.code = code
        self.shift = shift  # added to the event number (code 7 quirk)


def parse_event_body(body: bytes, ctx: ParseContext) -> ParseOutcome:  # noqa: PLR0911
    """Parse a /event body: concatenated objects (any whitespace) or one JSON array of them."""
    start = _SPACE.match(body).end()  # type: ignore[union-attr]
    if start == len(body):
        return ParseOutcome([], 5)
    events: list[ParsedEvent] = []
    if body[start : start + 1] == b"[":
        try:
            chunks = _ARRAY.decode(body)
        except _DECODE_ERRORS:
            return ParseOutcome(events, 6, 0)
        return _accept_all([bytes(c) for c in chunks], ctx, events)
    # Fast path for the common newline-separated stream: a raw newline never occurs inside a
    # JSON string, so if every line is one envelope the whole body decodes as one array.
    if b"\n" in body:
        fast = _accept_stream([line for line in body.split(b"\n") if line.strip()], ctx)
        if fast is not None:
            return fast
    for piece in _NEWLINE_BOUNDARY.split(body):
        try:
            envelope = _ENVELOPE.decode(piece)
        except msgspec.DecodeError:
            outcome = _accept_all(_scan_values(piece), ctx, events)
            if outcome.error_code is not None:
                return outcome
            continue
        except (msgspec.ValidationError, UnicodeDecodeError):
            return ParseOutcome(events, 6, len(events))
        try:
            events.append(_to_event(envelope, ctx))
        except _RejectError as err:
            return ParseOutcome(events, err.code, len(events) + err.shift)
    return ParseOutcome(events)


def _accept_stream(pieces: list[bytes], ctx: ParseContext) -> ParseOutcome | None:
    """Fast path: every piece an envelope object, decoded in one msgspec call.

    None when any piece does not decode, so the per-piece loop can find which one (and keep
    the events before it, as Splunk's error index requires).
    """
    joined = b"[" + b",".join(pieces) + b"]"
    try:
        values = _ARRAY.decode(joined)
        # Joining with commas could make an invalid stream valid (a value split across lines,
        # two values on one line): each line must be exactly one value, byte for byte.
        if len(values) != len(pieces) or any(
            bytes(value) != piece.strip() for value, piece in zip(values, pieces, strict=True)
        ):
            return None
        envelopes = _ENVELOPES.decode(joined)
    except _DECODE_ERRORS:
        return None
    events: list[ParsedEvent] = []
    for envelope in envelopes:
        try:
            events.append(_to_event(envelope, ctx))
        except _RejectError as err:
            return ParseOutcome(events, err.code, len(events) + err.shift)
    return ParseOutcome(events)


def _accept_all(values: list[bytes], ctx: ParseContext, events: list[ParsedEvent]) -> ParseOutcome:
    for value in values:
        try:
            events.append(_to_event(_ENVELOPE.decode(value), ctx))
        except _DECODE_ERRORS:
            return ParseOutcome(events, 6, len(events))
        except _RejectError as err:
            return ParseOutcome(events, err.code, len(events) + err.shift)
    return ParseOutcome(events)


def _scan_values(buf: bytes) -> list[bytes]:
    """Cut `buf` into top-level JSON values by bracket depth; slow path, used rarely."""
    values: list[bytes] = []
    pos = _SPACE.match(buf).end()  # type: ignore[union-attr]
    while pos < len(buf):
        end = _value_end(buf, pos)
        values.append(buf[pos:end])
        pos = _SPACE.match(buf, end).end()  # type: ignore[union-attr]
    return values


def _value_end(buf: bytes, pos: int) -> int:
    first = buf[pos : pos + 1]
    if first not in (b"{", b"[", b'"'):
        scalar = _SCALAR.match(buf, pos)
        return scalar.end() if scalar else pos + 1
    depth = 0
    for token in _TOKEN.finditer(buf, pos):
        text = token.group()
        if text == b'"':  # unterminated string: the rest is one broken value
            return len(buf)
        if text in (b"{", b"["):
            depth += 1
        elif text in (b"}", b"]"):
            depth -= 1
        if depth <= 0:
            return token.end()
    return len(buf)


def _to_event(env: _Envelope, ctx: ParseContext) -> ParsedEvent:
    raw_event = bytes(env.event)
    if not raw_event or raw_event == b"null":
        raise _RejectError(12)
    # The regex only where a blank value is possible: most events start with a letter.
    if raw_event[1:2] in _BLANK_SECOND and _BLANK_EVENT.fullmatch(raw_event):
        raise _RejectError(13)
    raw_fields = bytes(env.fields)
    fields = _check_fields(raw_fields)
    time = _check_time(env.time)
    token = ctx.token
    index = env.index or token.default_index
    if not token.allows_index(index):
        raise _RejectError(7, 1 if ctx.index_quirk else 0)
    metric = raw_event == METRIC_EVENT
    if metric != ctx.is_metrics_index(index):
        # A metric event outside a metrics index, or a log event in one (hec.md 1.5).
        raise _RejectError(6)
    if metric:
        _check_metric_fields(raw_fields)
    if len(raw_event) > ctx.max_event_size:
        raise _RejectError(6)
    try:
        event_text = raw_event.decode()
    except UnicodeDecodeError:
        raise _RejectError(6) from None
    return ParsedEvent(
        time,
        env.host or ctx.host,
        env.source or token.source or f"http:{token.name}",
        env.sourcetype or token.sourcetype or "httpevent",
        index,
        fields,
        event_text,
        "metric" if raw_event == METRIC_EVENT else "event",
    )


def _check_fields(raw: bytes) -> str | None:
    if not raw or raw == b"null":
        return None
    known = _FIELDS_SEEN.get(raw)
    if known is not None:
        return known
    text = _validate_fields(raw)
    if len(_FIELDS_SEEN) >= 4096:  # senders repeat a few field sets; never grow unbounded
        _FIELDS_SEEN.clear()
    _FIELDS_SEEN[raw] = text
    return text


# Validated `fields` values by their exact bytes (validation is a pure function of them).
_FIELDS_SEEN: dict[bytes, str] = {}


def _validate_fields(raw: bytes) -> str:
    try:
        _FLAT_FIELDS.decode(raw)
    except msgspec.ValidationError:
        # A nested value is code 15; "fields" that is not an object at all is code 6 (hecpoc).
        raise _RejectError(15 if raw[:1] == b"{" else 6) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise _RejectError(6) from None
    return raw.decode()


_METRIC_FIELDS = msgspec.json.Decoder(dict[str, Scalar | list[Scalar]])
METRIC_NAME_PREFIX = "metric_name:"


def _check_metric_fields(raw: bytes) -> None:
    """A multi-metric event (hec.md 1.5): at least one `metric_name:<name>` key, each with a
    number (a numeric string is accepted, as Splunk does); other fields are dimensions."""
    known = _METRICS_SEEN.get(raw)
    if known:
        return
    fields = _METRIC_FIELDS.decode(raw) if raw and raw != b"null" else {}
    names = [k for k in fields if k.startswith(METRIC_NAME_PREFIX)]
    if not names or any(not _metric_value(fields[k]) or k == METRIC_NAME_PREFIX for k in names):
        raise _RejectError(6)
    if len(_METRICS_SEEN) >= 4096:
        _METRICS_SEEN.clear()
    _METRICS_SEEN[raw] = True


_METRICS_SEEN: dict[bytes, bool] = {}


def _metric_value(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _check_time(value: float | str | None) -> float | None:
    if value is None or isinstance(value, float):
        return value
    try:
        return float(value)
    except ValueError:
        raise _RejectError(15) from None  # Splunk 10.4.2 answers 15 for a non-numeric time (mockdr)


@dataclass(frozen=True)
class RawMeta:
    """Metadata of a /raw request, taken from its query string."""

    host: str | None = None
    source: str | None = None
    sourcetype: str | None = None
    index: str | None = None
    time: str | None = None


def parse_raw_body(body: bytes, meta: RawMeta, ctx: ParseContext) -> ParseOutcome:
    """Parse a /raw body: one event per non-blank line, metadata from the query string."""
    if not body.strip():
        return ParseOutcome([], 5)
    token = ctx.token
    index = meta.index or token.default_index
    if not token.allows_index(index):
        return ParseOutcome([], 7)
    time: float | None = None
    if meta.time is not None:
        if not meta.time.isdigit():
            return ParseOutcome([], 6)
        time = float(meta.time)
    host = meta.host or ctx.host
    source = meta.source or token.source or f"http:{token.name}"
    sourcetype = meta.sourcetype or token.sourcetype or "httpevent"
    events = [
        # Invalid UTF-8 is accepted on /raw by Splunk (hecpoc); it is stored with U+FFFD.
        ParsedEvent(
            time, host, source, sourcetype, index, None, line.decode(errors="replace"), "raw"
        )
        for line in _RAW_LINES.split(body)
        if line.strip()
    ]
    return ParseOutcome(events)
