"""Maps Telemetry API events to Splunk HEC event envelopes (JSON bytes), in the sender process.

The mapping is documented in the README: `time` from the telemetry event, one sourcetype per
telemetry kind, source `lambda:<function>`, a few indexed fields. Records are embedded as the
raw JSON bytes msgspec handed us, so a log line reaches Splunk byte for byte. This module is the
per-event hot path: it works on bytes and caches per-second timestamps.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import date, datetime
from typing import TYPE_CHECKING

import msgspec

from ext import schema
from ext.config import OWN_LOG_MARKER
from ext.listener import intake
from ext.sender import derived
from ext.sender.enrichment import INIT_KINDS, Enrichment
from ext.sender.invocations import DROPPED

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ext.config import Config

DEFAULT_SOURCETYPES = {
    "function": "aws:lambda:function",
    "extension": "aws:lambda:extension",
    "platform": "aws:lambda:platform",
}
_REQUEST_KINDS = frozenset({"platform.start", "platform.runtimeDone", "platform.report"})
_OWN_LOG_PREFIX = b'"' + OWN_LOG_MARKER.encode()
# The extension's own warnings and errors are forwarded even without SPLUNK_FORWARD_OWN_LOGS:
# with CloudWatch Logs denied, Splunk is the only place they can be seen (issue 11).
_OWN_LOUD_PREFIXES = tuple(_OWN_LOG_PREFIX + b" " + level for level in (b"WARN", b"ERROR", b"CRIT"))
_EMPTY_RECORDS = frozenset({b"null", b'""', b'"\\n"', b"{}"})
# The second byte of a record that may be blank (whitespace only, an empty object or array),
# and every byte such a record can hold (an escape's letters among them): _blank.
_BLANK_SECOND = frozenset({b" ", b"\\", b"]", b"\t", b"\r", b"\n"})  # '""', "{}": above
_BLANK_BYTES = b' \t\r\n\\"{}[]tnru0129aAdD'  # escapes too: \u0020, \u0009, \u000a, \u000d
_TAB = b"\\t"  # a tab inside a JSON string, as the raw record bytes carry it
_REQUEST_ID_LEN = 36
_UUID_BYTES = b"0123456789abcdefABCDEF-"
_OWN_KIND = "splunk-extension."  # events of the extension's own, e.g. the listener's drop notices
MALFORMED_NOTICE = "splunk-extension.malformed-events"  # events the sender could not decode
_COLD = b',"cold_start":"true"'  # on the events of the first invocation after an init
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def _json_str(text: str) -> bytes:
    return schema.encoder.encode(text)


class EnvelopeBuilder:
    """Turns the raw body of one Telemetry POST into HEC envelopes, one per event.

    Stateful: function log lines in text format carry no request id of their own beyond the
    logging-module prefix, so the id of the last platform.start seen is applied to them; not on
    Lambda Managed Instances, where invocations run at once and a line after a start may be
    another's: there a line has the id it carries, or none.
    """

    def __init__(self, config: Config, function_name: str) -> None:
        host = config.event_host or function_name
        source = config.source or f"lambda:{function_name}"
        index = f',"index":{_json_str(config.index).decode()}' if config.index else ""
        self._heads: dict[str, bytes] = {}
        for kind, default in DEFAULT_SOURCETYPES.items():
            sourcetype = config.sourcetype or default
            self._heads[kind] = (
                f',"host":{_json_str(host).decode()},"source":{_json_str(source).decode()}'
                f',"sourcetype":{_json_str(sourcetype).decode()}{index}'
                f',"fields":{{"function_name":{_json_str(function_name).decode()}'
            ).encode()
        self.enrichment = Enrichment(config, function_name)
        self.cold_request: bytes | None = self.enrichment.cold_request
        self._prefixes: dict[str, bytes] = {}
        self._kind_fields: dict[str, bytes] = {}
        self._build_prefixes()
        self._forward_own_logs = config.forward_own_logs
        self._second_cache: dict[str, bytes] = {}
        self._last_iso: str | int | float = ""  # only ever a str (numbers are not cached)
        self._last_stamp = b"null"
        self._tie = 0
        # Telemetry time -> HEC time, for repeats; str keys only (numbers are converted anew).
        self._stamps: dict[str | int | float, bytes] = {}
        self.request_id: bytes | None = None  # JSON-encoded id of the invocation in progress
        # Invocations one at a time: a line belongs to the last start (none on Managed
        # Instances), and starts and ends mark where the sender's flushes end (none either:
        # no flush waits there, and a start there ends no other invocation).
        self._one_at_a_time = not config.managed_instances
        # The request id fields of the last id seen (and the cold start it was compared with).
        self._id_key: bytes | None = None
        self._id_cold: bytes | None = None
        self._id_fields = b""
        # start/runtimeDone/report: (kind, request id, event time), for the sender's flushes;
        # a platform.logsDropped too (no request id: b""), as an invocation's end may be in it.
        self.landmarks: list[tuple[str, bytes, str | int | float]] = []
        self.dropped_records = 0  # what Lambda's platform.logsDropped records say it dropped
        self.skipped_own = 0
        self.skipped_empty = 0
        self.malformed = 0
        self.derived: list[bytes] = []  # metrics and alerts made from platform records
        self.derivation = derived.PlatformDerivation(config, host, source)

    def build(self, payload: bytes) -> list[bytes]:
        """Envelopes for every event of one Telemetry POST body; malformed bodies are counted."""
        [envelopes] = self.build_parts(payload, sys.maxsize)
        return envelopes

    def build_parts(self, payload: bytes, part_events: int) -> Iterator[list[bytes]]:
        """build()'s envelopes, those of `part_events` events at a time, so that the caller can
        compress each part before the next is made: a batch of 1,000 events is ~650 KB of
        envelopes, which would otherwise all be alive at once (docs/memory.md). The last part
        also holds what the batch derived (metrics, alerts, a notice of malformed events)."""
        dropped = 0
        try:
            events = schema.telemetry_batch.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            before = self.malformed
            events = self._salvage(payload)
            dropped = self.malformed - before
        envelope = self.envelope
        start = 0
        while len(events) - start > part_events:
            yield [e for e in map(envelope, events[start:start + part_events]) if e is not None]
            start += part_events
        rest = events[start:] if start else events
        out = [e for e in map(envelope, rest) if e is not None]
        if self.derived:
            out.extend(self.derived)
            self.derived.clear()
        if dropped:
            # The listener only spools what decodes, so this is a record from elsewhere (an older
            # version's spool, a bug): what it cost must still be counted in Splunk.
            out.append(self.notice(MALFORMED_NOTICE, {"malformed_events": dropped}))
        yield out

    def notice(self, kind: str, details: dict[str, int | str]) -> bytes:
        """An event of the extension's own (e.g. spool losses), stamped now."""
        body = schema.encoder.encode({"type": kind, **details})
        fields = self._prefixes["extension"] + b',"telemetry_type":' + _json_str(kind)
        return b'{"time":' + f"{time.time():.3f}".encode() + fields + b'},"event":' + body + b"}"

    def _salvage(self, payload: bytes) -> list[schema.TelemetryEvent]:
        """Keeps the valid events of a batch in which some are malformed (counted)."""
        items = intake.elements(payload)
        if items is None:
            self.malformed += 1
            return []
        events = []
        for item, too_deep in items:
            if too_deep:
                self.malformed += 1
                continue
            try:
                events.append(schema.telemetry_event.decode(item))
            except (msgspec.DecodeError, RecursionError):
                self.malformed += 1
        return events

    def envelope(self, event: schema.TelemetryEvent) -> bytes | None:
        kind = event.type
        record = bytes(event.record)
        level: bytes | None = None
        request_id = self.request_id
        if kind == "function" or kind == "extension":  # noqa: PLR1714 - hot path, no set
            if len(record) < 5 and record in _EMPTY_RECORDS:
                # HEC rejects a null or blank event (codes 12/13); an empty line carries nothing.
                self.skipped_empty += 1
                return None
            first = record[:1]
            if first == b'"':
                if kind == "extension" and not self._forward_own_logs and (
                    record.startswith(_OWN_LOG_PREFIX)
                    and not record.startswith(_OWN_LOUD_PREFIXES)
                ):
                    self.skipped_own += 1
                    return None
                # Only a line ending in a newline or opening with `[` has anything to take.
                if record.endswith(b'\\n"') or record.startswith(b'"['):
                    record, level, line_id = _text_line(record)
                    if line_id is not None:
                        request_id = line_id
            elif first == b"{":
                level, line_id = _json_line(record)
                if line_id is not None:
                    request_id = line_id
            if record[1:2] in _BLANK_SECOND and _blank(record):
                self.skipped_empty += 1  # as HEC would refuse it, and it carries nothing
                return None
            body = record
        else:
            if not isinstance(kind, str):
                kind = _number_text(kind)
            request_id = self._platform_seen(kind, record, request_id, event.time)
            body = b"".join((b'{"type":', _json_str(kind), b',"record":', record, b"}"))
            if kind in derived.DERIVED_KINDS:
                self.derived.extend(self.derivation.derive(self, kind, event.time, record))
                if self.derivation.drop_events and self.derivation.metric_made:
                    return None  # SPLUNK_PLATFORM_EVENTS=false: its figures went as a metric
        fields = self._kind_fields.get(kind)
        if fields is None:
            fields = self._fields_for(kind)
        # The same id (object) event after event: its fields are made once.
        id_fields = (self._id_fields if request_id is self._id_key
                     and self.cold_request is self._id_cold else self._request_fields(request_id))
        return b"".join((
            b'{"time":', self._ordered_time(event.time), fields, id_fields,
            b',"level":' + level if level is not None else b"",
            b'},"event":', body, b"}",
        ))  # fmt: skip

    def _request_fields(self, request_id: bytes | None) -> bytes:
        """The request id fields of an envelope, the cold start included; kept for the next."""
        self._id_key, self._id_cold = request_id, self.cold_request
        self._id_fields = b"" if request_id is None else b',"request_id":' + request_id + (
            _COLD if request_id == self.cold_request else b"")
        return self._id_fields

    def _platform_seen(self, kind: str, record: bytes, request_id: bytes | None,
                       time: str | int | float) -> bytes | None:
        """Learns from a platform event (invocation bounds, inits); returns its request id."""
        if kind in _REQUEST_KINDS:
            request_id = _platform_request_id(record)
            if kind == "platform.start":
                if self._one_at_a_time:
                    self.request_id = request_id
                if request_id is not None and self.enrichment.enabled:
                    self.enrichment.invocation_started(request_id)
                    self.cold_request = self.enrichment.cold_request
            if request_id is not None and self._one_at_a_time:
                self.landmarks.append((kind, request_id, time))  # the sender's flushes
        elif kind in INIT_KINDS:
            if kind == "platform.initStart":
                self.request_id = None
                request_id = None
            if self.enrichment.init_seen(record):
                self._build_prefixes()
            self.cold_request = self.enrichment.cold_request
        elif kind == DROPPED:
            self.dropped_records += _dropped_records(record)
            self.landmarks.append((kind, b"", time))
        return request_id

    def _build_prefixes(self) -> None:
        """The constant head of every envelope per sourcetype kind, up to and including the
        common indexed fields: the one place every event's (and metric's) fields come from."""
        common = self.enrichment.fields()
        self._prefixes = {kind: head + common for kind, head in self._heads.items()}
        self._kind_fields.clear()

    def _fields_for(self, kind: str) -> bytes:
        prefix = self._prefixes["function" if kind == "function" else
                               "extension" if kind == "extension" or kind.startswith(_OWN_KIND)
                               else "platform"]
        fields = prefix + b',"telemetry_type":' + _json_str(kind)
        if len(self._kind_fields) < 256:  # kinds are few; never let odd input grow this
            self._kind_fields[kind] = fields
        return fields

    def _ordered_time(self, iso: str | int | float) -> bytes:
        """Epoch time plus a microsecond tiebreak, so Splunk keeps the order of events that
        share a telemetry millisecond (Splunk sorts by _time, which keeps 6 decimals).
        A numeric time (not from Lambda) is converted as it is, without a tiebreak."""
        if iso == self._last_iso:  # a str: a number never equals one
            if self._last_stamp == b"null":
                return self._last_stamp
            # Past the 999th, the rest of the millisecond shares its last microsecond: never a
            # time earlier than the events before them, nor one in the next millisecond.
            self._tie = min(self._tie + 1, 999)
            return self._last_stamp + b"%03d" % self._tie
        stamp = self._stamps.get(iso)
        if stamp is None:
            if not isinstance(iso, str):
                return _number_time(iso)
            # epoch()'s common case inline (one call less per event): a second seen before.
            seconds = self._second_cache.get(iso[:19]) if _zulu_ms(iso) else None
            stamp = self.epoch(iso) if seconds is None else seconds + b"." + iso[20:23].encode()
            if len(self._stamps) >= 8192:
                self._stamps.clear()
            self._stamps[iso] = stamp
        self._last_iso, self._last_stamp, self._tie = iso, stamp, 0
        return stamp

    def seconds(self, time: str | int | float) -> float | None:
        """An event's `time` as epoch seconds; None when it is not a time."""
        stamp = self.stamp(time)
        return None if stamp == b"null" else float(stamp)

    def stamp(self, time: str | int | float) -> bytes:
        """An event's `time` as HEC's `time`, without a tiebreak (the events derived from it)."""
        return self.epoch(time) if isinstance(time, str) else _number_time(time)

    def epoch(self, iso: str) -> bytes:
        """ISO-8601 (ms, Z) to HEC `<seconds>.<ms>`; the per-second prefix is cached."""
        if _zulu_ms(iso):
            seconds = self._second_cache.get(iso[:19])
            if seconds is None:
                whole = _utc_seconds(iso[:19])
                if whole is None or whole < 0:  # before 1970: "-1" + ".500" would be -1.5
                    return _slow_epoch(iso)
                seconds = str(whole).encode()
                if len(self._second_cache) > 4096:
                    self._second_cache.clear()
                self._second_cache[iso[:19]] = seconds
            return seconds + b"." + iso[20:23].encode()
        return _slow_epoch(iso)


def _number_text(value: int | float) -> str:
    """A numeric telemetry `type` as text (5 and 5.0 both give "5")."""
    if isinstance(value, int) or not math.isfinite(value) or value != int(value):
        return repr(value)
    return str(int(value))


def _number_time(value: int | float) -> bytes:
    """A numeric telemetry `time` as HEC epoch seconds: values past year 5138 in seconds are
    taken as milliseconds."""
    try:
        seconds = float(value)
    except OverflowError:
        return b"null"
    if seconds >= 1e11:
        seconds /= 1000
    if not 0 <= seconds < 1e11:  # negative or non-finite: HEC then uses the index time
        return b"null"
    return f"{seconds:.3f}".encode()


def _zulu_ms(iso: str) -> bool:
    """`<19 characters>.mmmZ`: three ASCII digits of milliseconds, copied into the HEC time as
    they are (anything else there would make the envelope invalid JSON: parsed in full)."""
    return (len(iso) == 24 and iso[19] == "." and iso[23] == "Z"
            and (ms := iso[20:23]).isdigit() and ms.isascii())


def _utc_seconds(text: str) -> int | None:
    """`YYYY-MM-DDTHH:MM:SS` (UTC) as epoch seconds; None when it is not a valid time.

    Digit arithmetic for the ASCII form Lambda sends. Anything else goes through strptime, which
    also takes a few odd forms (a lowercase `t`, a day written " 5", non-ASCII digits): what it
    accepts is unchanged, and its first call imports _strptime (~2 ms) only for such input."""
    digits = text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
    if text[4:17:3] == "--T::" and digits.isascii() and digits.isdigit():
        hour, minute, second = int(digits[8:10]), int(digits[10:12]), int(digits[12:14])
        if hour > 23 or minute > 59 or second > 59:
            return None
        try:
            day = date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8])).toordinal()
        except ValueError:  # year 0, month 13, 30 February...
            return None
        return (day - _EPOCH_DAY) * 86400 + hour * 3600 + minute * 60 + second
    try:
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return _naive_utc_seconds(parsed)


def _naive_utc_seconds(moment: datetime) -> int:
    """A datetime without a zone, read as UTC, in whole epoch seconds (calendar.timegm's
    figure, without importing calendar and locale at every start for input that is rare)."""
    return ((moment.toordinal() - _EPOCH_DAY) * 86400 + moment.hour * 3600 + moment.minute * 60
            + moment.second)


def _slow_epoch(iso: str) -> bytes:
    try:
        stamp = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return b"null"  # HEC then uses the index time; the event itself is kept
    seconds = (_naive_utc_seconds(stamp) + stamp.microsecond / 1e6 if stamp.tzinfo is None
               else stamp.timestamp())
    # Before 1970, as a numeric time: HEC then uses the index time (_number_time).
    return f"{seconds:.3f}".encode() if seconds >= 0 else b"null"


def _text_line(record: bytes) -> tuple[bytes, bytes | None, bytes | None]:
    """Strips the trailing newline (CRLF too: a stray carriage return shows in Splunk); reads
    level and request id of `[LEVEL]\\t<time>\\t<id>\\t`."""
    if record.endswith(b'\\n"') and not _escaped_backslash_before(record, len(record) - 3):
        record = record[:-3] + b'"'
        if record.endswith(b'\\r"') and not _escaped_backslash_before(record, len(record) - 3):
            record = record[:-3] + b'"'
    if not record.startswith(b'"['):
        return record, None, None
    close = record.find(b"]", 2, 12)
    if close < 0 or record[close + 1 : close + 3] != _TAB:
        return record, None, None
    level = b'"' + record[2:close] + b'"'
    id_start = record.find(_TAB, close + 3, close + 40)
    if id_start < 0:
        return record, level, None
    id_start += 2
    id_end = id_start + _REQUEST_ID_LEN
    request_id = record[id_start:id_end]
    # Only hex digits and dashes: a slice of escaped text could otherwise end inside an escape
    # (`\\` cut in two), and the field's string would swallow its closing quote: an envelope
    # that is not JSON, which HEC refuses and the line would go to the dead letters.
    if (record[id_end : id_end + 2] != _TAB or request_id[8:9] != b"-"
            or request_id.translate(None, _UUID_BYTES)
            or _escaped_backslash_before(record, id_start - 2)):
        return record, level, None
    return record, level, b'"' + request_id + b'"'


def _blank(record: bytes) -> bool:
    """True for a string of whitespace only, or an empty object or array: an event HEC
    refuses as blank (code 13, hec.md 1.3), which would cost a refused request and a dead
    letter."""
    if record.translate(None, _BLANK_BYTES):
        return False  # a byte no blank record holds: nearly every line that gets here
    try:
        value = msgspec.json.decode(record)
    except (msgspec.DecodeError, RecursionError):
        return False
    if isinstance(value, str):
        return not value.strip(" \t\r\n")  # HEC's whitespace: a no-break space is content
    return isinstance(value, (dict, list)) and not value


def _escaped_backslash_before(record: bytes, index: int) -> bool:
    """True when the backslash at `index` is itself escaped (an odd run before it)."""
    run = 0
    while index - 1 - run >= 0 and record[index - 1 - run] == 0x5C:
        run += 1
    return run % 2 == 1


def _json_line(record: bytes) -> tuple[bytes | None, bytes | None]:
    try:
        view = schema.log_view.decode(record)
    except (msgspec.DecodeError, RecursionError):
        return None, None
    level = _json_str(view.level) if isinstance(view.level, str) else None
    request_id = _json_str(view.requestId) if isinstance(view.requestId, str) else None
    return level, request_id


def _dropped_records(record: bytes) -> int:
    try:
        return max(0, schema.drop_notice.decode(record).droppedRecords)
    except (msgspec.DecodeError, RecursionError):
        return 0


def _platform_request_id(record: bytes) -> bytes | None:
    try:
        ref = schema.request_ref.decode(record)
    except (msgspec.DecodeError, RecursionError):
        return None
    return _json_str(ref.requestId) if ref.requestId else None
