"""Issue 13's masking property: no string matching a mask rule ever reaches the spool files or
HEC, whatever the line around it.

Batches of function and extension records (text lines, JSON log lines, nested JSON) with
secrets at random places inside arbitrary text go through the real listener into a real spool;
then every spool file is read byte for byte, and every spooled record is mapped by the sender's
envelope builder into what would be POSTed to HEC. (Rules that match their own output, like
`(password=)\\S+=>\\1***`, leave that output, and only it: test_filters.py's properties.)
"""

from __future__ import annotations

import json
import re
import socket
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ext import config
from ext.listener.process import Listener
from ext.sender.envelope import EnvelopeBuilder
from ext.spool import SpoolReader

# Three rule sets: with lookarounds (each line is searched on its own), with word boundaries
# and without any (a batch's lines are first searched together, ext/listener/filters.py).
MASK_SETS = {
    "per-line": ";;".join([r"(?<!\d)(?:\d[ -]?){12,15}\d(?!\d)=>[card]",
                           r"Bearer\s+[A-Za-z0-9._~+/-]+=*=>Bearer [token]",
                           r"AKIA[0-9A-Z]{16}=>[aws-key]"]),
    "joined, word boundaries": ";;".join([r"\b(?:\d[ -]?){12,15}\d\b=>[card]",
                                          r"Bearer\s+[A-Za-z0-9._~+/-]+=*=>Bearer [token]",
                                          r"AKIA[0-9A-Z]{16}=>[aws-key]"]),
    "joined": ";;".join([r"(?:\d[ -]?){12,15}\d=>[card]",
                         r"Bearer\s+[A-Za-z0-9._~+/-]+=*=>Bearer [token]",
                         r"AKIA[0-9A-Z]{16}=>[aws-key]"]),
}


def rules_of(masks: str) -> list[re.Pattern[str]]:
    return [re.compile(part.rpartition("=>")[0]) for part in masks.split(";;")]


TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
DIGITS = st.text("0123456789", min_size=4, max_size=4)
CARDS = st.builds(lambda groups, sep: sep.join(groups), st.lists(DIGITS, min_size=4, max_size=4),
                  st.sampled_from(["", " ", "-"]))
TOKENS = st.builds("Bearer{}{}".format, st.sampled_from([" ", "  ", "\t"]),
                   st.text("abcXYZ019._~+/-", min_size=1, max_size=30))
KEYS = st.builds("AKIA{}".format, st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                                          min_size=16, max_size=16))
SECRETS = st.one_of(CARDS, TOKENS, KEYS)
LINES = st.builds(lambda a, s, b, s2: a + s + b + s2, TEXT, SECRETS, TEXT,
                  st.one_of(st.just(""), SECRETS))


@st.composite
def records(draw: st.DrawFn) -> tuple[str, object]:
    kind = draw(st.sampled_from(["function", "extension"]))
    line = draw(LINES)
    shape = draw(st.sampled_from(["text", "text-newline", "json", "nested"]))
    if shape == "text":
        return kind, line
    if shape == "text-newline":
        return kind, line + "\n"
    if shape == "json":
        return kind, {"level": "INFO", "message": line, draw(TEXT): draw(LINES)}
    return kind, {"a": [1, {"b": [line, None, 2.5]}], line: True}


@st.composite
def clean_records(draw: st.DrawFn) -> tuple[str, object]:
    """Lines without a planted secret (most lines): batches mix both, so some groups of
    lines searched together match and some do not."""
    return draw(st.sampled_from(["function", "extension"])), draw(TEXT)


@st.composite
def batches_of_lines(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Up to 80 lines, mostly clean, with a few secrets planted anywhere: some groups of lines
    searched together hold one, others none."""
    count = draw(st.integers(0, 80))  # hypothesis favours short lists: ask for the length
    lines = draw(st.lists(clean_records(), min_size=count, max_size=count))
    for _ in range(draw(st.integers(1, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(records()))
    return lines


def strings(value: object) -> list[str]:
    """Every string of a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [key, *strings(item)]]
    return []


def matching(texts: list[str], rules: list[re.Pattern[str]]) -> list[str]:
    return [t for t in texts if any(rule.search(t) for rule in rules)]


@pytest.mark.parametrize("masks", list(MASK_SETS.values()), ids=list(MASK_SETS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batches_of_lines(), min_size=1, max_size=3))
def test_no_masked_string_reaches_the_spool_or_hec(
    masks: str, batches: list[list[tuple[str, object]]]
) -> None:
    rules = rules_of(masks)
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t",
                           "SPLUNK_SPOOL_DIR": str(spool), "SPLUNK_MASK": masks})
        server = socket.socket()
        listener = Listener(cfg, server, -1)
        server.close()
        try:
            for batch in batches:
                body = json.dumps([{"time": "2026-10-08T07:30:28.235Z", "type": kind,
                                    "record": record} for kind, record in batch])
                assert listener.accept_batch(body.encode()).startswith(b"HTTP/1.1 200")
        finally:
            listener.close()
        assert listener.filtered_total == {}  # nothing dropped: every event masked and kept

        # The spool files byte for byte (whatever the reader would skip): every JSON string.
        raw = b"".join(p.read_bytes() for p in spool.iterdir() if p.is_file())
        assert matching(_json_strings(raw), rules) == []

        with SpoolReader(spool) as reader:
            payloads = [bytes(r.payload) for r in reader.read(1_000, 2**30)]
        spooled = [event for payload in payloads for event in json.loads(payload)]
        assert len(spooled) == sum(map(len, batches))
        assert matching([s for event in spooled for s in strings(event["record"])], rules) == []

        builder = EnvelopeBuilder(cfg, "fn")
        sent = [json.loads(e) for payload in payloads for e in builder.build(payload)]
        assert matching([s for envelope in sent for s in strings(envelope["event"])], rules) == []


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _json_strings(raw: bytes) -> list[str]:
    """The JSON string literals in raw bytes (frame headers between them are skipped)."""
    found = []
    for literal in _JSON_STRING.findall(raw):
        try:
            found.append(json.loads(literal))
        except ValueError:
            continue
    return found
