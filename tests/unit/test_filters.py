"""Filters and masking before the spool: the variables' validation, LineFilter, and the
listener's drops notice."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ext import config, errors, schema
from ext.listener import filters
from ext.listener.process import Listener
from ext.spool import SpoolReader
from tests.unit.fresh_python import probe_output

BASE = {"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"}
TIME = "2026-10-08T07:30:28.235Z"
RID = "79b5e81f-9cdd-4145-b1f6-7c50ef8a2a36"
CARD = r"\d{4}-\d{4}-\d{4}-\d{4}=>[card]"
BEARER = r"Bearer [A-Za-z0-9._-]+=>Bearer [token]"


def load(**extra: str) -> config.Config:
    return config.load({**BASE, **extra})


def problems(**extra: str) -> str:
    with pytest.raises(errors.ConfigError) as caught:
        load(**extra)
    return "; ".join(caught.value.problems)


def line_filter(**extra: str) -> filters.LineFilter:
    return filters.LineFilter(load(**extra))


def events(*items: tuple[str, object]) -> list[schema.IntakeEvent]:
    body = json.dumps([{"time": TIME, "type": kind, "record": record} for kind, record in items])
    return schema.intake_batch.decode(body.encode())


def records(outcome: filters.Outcome | None) -> list[object]:
    assert outcome is not None
    return [event["record"] for event in json.loads(outcome.payload)]


# --- configuration ---------------------------------------------------------------------------

def test_mask_rules_are_split_on_double_semicolons_and_the_last_arrow() -> None:
    cfg = load(SPLUNK_MASK=f" {CARD} ;; {BEARER};;(?<=>)x{{3}}=>y ")
    assert [(p.pattern, r) for p, r in cfg.mask_rules] == [
        (r"\d{4}-\d{4}-\d{4}-\d{4}", "[card]"), (r"Bearer [A-Za-z0-9._-]+", "Bearer [token]"),
        ("(?<=>)x{3}", "y")]


@pytest.mark.parametrize(("value", "why"), [
    ("(unclosed=>x", "does not compile"),
    ("a*=>x", "empty string"),
    (r"\b=>x", "empty string"),
    ("no arrow here", "regex=>replacement"),
    ("=>x", "regex=>replacement"),
    (r"(\d+)=>\2", "replacement is not valid"),
    (r"\d+=>1-2", "rule 1 rewrites the replacement of rule 1"),  # 1-2, 1-2-1-2, ...
    ("x=>y;;a+=>b;;b+=>a", "cycle 2 -> 3 -> 2"),
])
def test_a_bad_mask_fails_init_naming_the_variable_not_its_value(value: str, why: str) -> None:
    message = problems(SPLUNK_MASK=value)
    assert "SPLUNK_MASK is not valid" in message and why in message, message
    assert value not in message


def test_bad_drop_regex_and_min_level_are_named() -> None:
    message = problems(SPLUNK_DROP_REGEX="[oops", SPLUNK_MIN_LEVEL="loud")
    assert "SPLUNK_DROP_REGEX is not valid" in message
    assert "SPLUNK_MIN_LEVEL='loud'" in message


def test_a_chain_of_rules_is_accepted() -> None:
    cfg = load(SPLUNK_MASK="a+=>b;;b+=>c;;c+=>x")
    assert [r for _, r in cfg.mask_rules] == ["b", "c", "x"]


def test_group_references_and_verbose_patterns_are_accepted() -> None:
    cfg = load(SPLUNK_MASK=r"(?x) (\d{12}) (\d{4})  # card=>************\2")
    pattern, replacement = cfg.mask_rules[0]
    assert pattern.sub(replacement, "4111111111111111") == "************1111"


def test_main_process_imports_re_only_when_a_pattern_is_set() -> None:
    probe = ("import sys, os; sys.path.insert(0, sys.argv[1]); from ext import config\n"
             "env = {'SPLUNK_HOST': 'http://h:8088', 'SPLUNK_HEC_TOKEN': 't',"
             " 'SPLUNK_MIN_LEVEL': 'info', 'SPLUNK_FIELDS': 'team=payments'}\n"
             "config.load(env); print('re' in sys.modules)\n"
             "env['SPLUNK_MASK'] = 'x+=>y'; print(config.load(env).mask_rules[0][0].pattern)")
    assert probe_output(probe) == ["False", "x+"]


# --- LineFilter ------------------------------------------------------------------------------

def test_inactive_without_variables() -> None:
    assert not line_filter().active


def test_min_level_drops_lower_lines_and_keeps_lines_without_a_level() -> None:
    f = line_filter(SPLUNK_MIN_LEVEL="warn")
    batch = events(
        ("function", f"[DEBUG]\t{TIME}\t{RID}\tnoise\n"),
        ("function", f"[ERROR]\t{TIME}\t{RID}\tbad\n"),
        ("function", f"{TIME}\t{RID}\tINFO\tnode noise"),
        ("function", f"{TIME}\t{RID}\tWARN\tnode warning"),
        ("function", {"level": "DEBUG", "message": "json noise"}),
        ("function", {"level": "ERROR", "message": "json error"}),
        ("function", "plain line"),
        ("function", "[VERBOSE]\tunknown level kept"),
        ("extension", "[TRACE]\tfrom an extension"),
        ("platform.start", {"requestId": RID}),
    )
    outcome = f.apply(batch)
    assert outcome is not None and outcome.dropped == {"level": 4}
    assert records(outcome) == [
        f"[ERROR]\t{TIME}\t{RID}\tbad\n", f"{TIME}\t{RID}\tWARN\tnode warning",
        {"level": "ERROR", "message": "json error"}, "plain line",
        "[VERBOSE]\tunknown level kept", {"requestId": RID}]
    assert outcome.events == 6


def test_drop_regex_matches_text_lines_and_json_text_but_not_platform_records() -> None:
    f = line_filter(SPLUNK_DROP_REGEX="health.?check")
    outcome = f.apply(events(("function", "GET /healthcheck 200"),
                             ("function", {"path": "/health-check"}),
                             ("function", "GET /orders 200"),
                             ("platform.report", {"requestId": RID, "note": "healthcheck"})))
    assert outcome is not None and outcome.dropped == {"drop_regex": 2}
    assert records(outcome) == ["GET /orders 200", {"requestId": RID, "note": "healthcheck"}]


def test_nothing_to_change_keeps_the_body() -> None:
    f = line_filter(SPLUNK_MASK=CARD, SPLUNK_MIN_LEVEL="debug")
    assert f.apply(events(("function", "[INFO]\tno secret here"),
                          ("platform.start", {"requestId": RID}))) is None


def test_masks_text_lines_json_keys_and_values_and_too_deep_text() -> None:
    f = line_filter(SPLUNK_MASK=f"{CARD};;{BEARER}")
    outcome = f.apply(events(
        ("function", "paid with 4111-1111-1111-1111 auth Bearer abc.def\n"),
        ("function", {"card": ["x", {"n": "4111-1111-1111-1111"}], "Bearer k1": 5, "ok": 1.5}),
        ("splunk-extension.too-deep", '[[["4111-1111-1111-1111"]]]'),
        ("platform.start", {"requestId": RID, "card": "4111-1111-1111-1111"}),
    ))
    assert outcome is not None and outcome.dropped == {} and outcome.masked == 3
    assert records(outcome) == [
        "paid with [card] auth Bearer [token]",
        {"card": ["x", {"n": "[card]"}], "Bearer [token]": 5, "ok": 1.5},
        '[[["[card]"]]]',
        {"requestId": RID, "card": "4111-1111-1111-1111"},  # Lambda's own: untouched
    ]


def test_masking_repeats_until_no_rule_matches() -> None:
    # Removing the dashes of the second rule creates a match for the first.
    f = line_filter(SPLUNK_MASK=r"\d{8}=>#;;(\d{4})-(\d{4})=>\1\2")
    assert records(f.apply(events(("function", "id 1234-5678 end")))) == ["id # end"]


# Rules whose output they match again, as users write them (keep the key, hide the value):
# masking ends once no rule changes the text, so the line is masked, not dropped as unresolved.
SELF_MATCHING = [r"(password=)\S+=>\1***", r"(?<=password=)\S+=>***",
                 r"password=\S+=>password=***"]


@pytest.mark.parametrize("rule", SELF_MATCHING)
def test_a_rule_that_matches_its_own_output_masks_the_line_rather_than_dropping_it(
        rule: str) -> None:
    f = line_filter(SPLUNK_MASK=rule)
    outcome = f.apply(events(("function", "login password=hunter2 ok\n"),
                             ("function", {"msg": "password=hunter2"}),
                             ("function", "already password=***")))
    assert outcome is not None and outcome.dropped == {}
    assert outcome.masked == 2  # the third held nothing to hide
    assert records(outcome) == ["login password=*** ok", {"msg": "password=***"},
                                "already password=***"]


@settings(max_examples=150)
@given(st.sampled_from(SELF_MATCHING), st.text(st.characters(blacklist_categories=["Cs"])),
       st.text("abcXYZ0189_-", min_size=1, max_size=24),
       st.text(st.characters(blacklist_categories=["Cs"])))
def test_what_a_self_matching_rule_writes_holds_no_secret_and_masking_it_again_changes_nothing(
        rule: str, before: str, secret: str, after: str) -> None:
    secret = "sk@" + secret
    assume(secret not in before and secret not in after)  # spaces part it from them
    line = f"{before} password={secret} {after}"
    f = line_filter(SPLUNK_MASK=rule)
    [masked] = records(f.apply(events(("function", line))))
    assert isinstance(masked, str) and secret not in masked and "password=***" in masked
    again = f.apply(events(("function", masked)))
    assert again is None or records(again) == [masked]


def test_a_string_that_never_settles_is_dropped_and_counted() -> None:
    # Each rule's output feeds the other forever (their literal replacements match no rule).
    f = line_filter(SPLUNK_MASK=r"a(b+)=>\1a;;ba=>ab")
    outcome = f.apply(events(("function", "xabbbbbbbbbbbb"), ("function", "clean")))
    assert outcome is not None and outcome.dropped == {"mask_unresolved": 1}
    assert records(outcome) == ["clean"]


def test_a_masked_line_loses_its_trailing_newline_an_unmasked_one_keeps_its_bytes() -> None:
    f = line_filter(SPLUNK_MASK=r"secret$=>[x]")
    outcome = f.apply(events(("function", "a secret\n"), ("function", {"k": "v"})))
    assert records(outcome) == ["a [x]", {"k": "v"}]


# Records intake admits (msgspec skips them) but cannot decode: invalid UTF-8 in a text line,
# a number beyond a float's range in a JSON line. Each carries an AWS key id.
KEY = "AKIAABCDEFGHIJKLMNOP"
LATIN1_LINE = b'"key ' + KEY.encode() + b' caf\xe9\\n"'
HUGE_NUMBER = b'{"level":"INFO","key":"' + KEY.encode() + b'","v":1e400}'
GOOD_LINE = b'"a good line\\n"'


def raw_events(*records: bytes) -> list[schema.IntakeEvent]:
    body = b"[" + b",".join(b'{"time":"%s","type":"function","record":%s}' % (TIME.encode(), r)
                            for r in records) + b"]"
    return schema.intake_batch.decode(body)


@pytest.mark.parametrize("rule", [r"AKIA[0-9A-Z]{16}=>[aws-key]",  # searched batch-wide first
                                  r"\bAKIA[0-9A-Z]{16}\b=>[aws-key]"])  # searched line by line
def test_a_record_that_does_not_decode_is_masked_and_its_neighbours_kept(rule: str) -> None:
    outcome = line_filter(SPLUNK_MASK=rule).apply(
        raw_events(GOOD_LINE, LATIN1_LINE, HUGE_NUMBER, b'"no key"'))
    assert outcome is not None and outcome.dropped == {} and outcome.masked == 2
    assert KEY.encode() not in outcome.payload
    assert records(outcome) == [
        "a good line\n",
        "key [aws-key] caf\ufffd",  # the invalid byte replaced, as any masked line spooled
        '{"level":"INFO","key":"[aws-key]","v":1e400}',  # kept as the text of its JSON
        "no key",
    ]


def test_a_record_that_does_not_decode_and_matches_no_rule_keeps_its_bytes() -> None:
    latin1, huge = LATIN1_LINE.replace(KEY.encode(), b"none"), HUGE_NUMBER.replace(
        KEY.encode(), b"none")
    assert line_filter(SPLUNK_MASK=r"AKIA[0-9A-Z]{16}=>[aws-key]").apply(
        raw_events(GOOD_LINE, latin1, huge)) is None


# --- listener: drops counted and reported ---------------------------------------------------

def spooled(spool: Path) -> list[list[dict[str, object]]]:
    with SpoolReader(spool) as reader:
        return [json.loads(bytes(r.payload)) for r in reader.read(1_000, 2**30)]


def make_listener(tmp_path: Path, **extra: str) -> Listener:
    cfg = load(SPLUNK_SPOOL_DIR=str(tmp_path / "spool"), **extra)
    import socket

    server = socket.socket()
    listener = Listener(cfg, server, -1)
    server.close()
    return listener


def post(listener: Listener, *items: tuple[str, object]) -> bytes:
    body = json.dumps([{"time": TIME, "type": kind, "record": record} for kind, record in items])
    return listener.accept_batch(body.encode())


def test_drops_are_reported_with_the_batch_that_ends_the_invocation(tmp_path: Path) -> None:
    listener = make_listener(tmp_path, SPLUNK_MIN_LEVEL="info", SPLUNK_DROP_REGEX="ping")
    try:
        assert post(listener, ("function", "[DEBUG]\tx"), ("function", "[DEBUG]\ty")).startswith(
            b"HTTP/1.1 200")  # nothing left: nothing spooled, the drops wait
        post(listener, ("function", "ping"), ("function", "[INFO]\tkept"))
        post(listener, ("platform.runtimeDone", {"requestId": RID, "status": "success"}))
        post(listener, ("function", "[DEBUG]\tlater"), ("function", "[INFO]\tkept too"))
        batches = spooled(tmp_path / "spool")
    finally:
        listener.close()
    assert [[e["type"] for e in batch] for batch in batches] == [
        ["function"], ["platform.runtimeDone", filters.FILTERED_TYPE], ["function"]]
    assert batches[1][1]["record"] == {"dropped_events": 3,
                                       "by_reason": {"level": 2, "drop_regex": 1}}
    assert listener.filtered == {"level": 1}
    assert listener.filtered_total == {"level": 3, "drop_regex": 1}


def test_a_batch_with_a_record_that_does_not_decode_is_masked_and_spooled(
    tmp_path: Path,
) -> None:
    listener = make_listener(tmp_path, SPLUNK_MASK=r"AKIA[0-9A-Z]{16}=>[aws-key]")
    try:
        body = b"[" + b",".join(
            b'{"time":"%s","type":"function","record":%s}' % (TIME.encode(), r)
            for r in (GOOD_LINE, LATIN1_LINE, HUGE_NUMBER)) + b"]"
        assert listener.accept_batch(bytearray(body)).startswith(b"HTTP/1.1 200")
        (batch,) = spooled(tmp_path / "spool")
    finally:
        listener.close()
    assert [e["record"] for e in batch] == [
        "a good line\n", "key [aws-key] caf\ufffd",
        '{"level":"INFO","key":"[aws-key]","v":1e400}']


def test_a_refused_append_does_not_count_its_drops(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    listener = make_listener(tmp_path, SPLUNK_MIN_LEVEL="info")
    try:
        def refuse(payload: object, count: int, read_now: bool = True) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(listener.writer, "append", refuse)
        assert post(listener, ("function", "[DEBUG]\tx"), ("function", "kept")).startswith(
            b"HTTP/1.1 503")
    finally:
        listener.close()
    assert listener.filtered == {} and listener.filtered_total == {}  # Lambda sends it again


# --- the batch search with word boundaries ---------------------------------------------------

# Rules with \b or \B, some matching at a string's edge: the batch search joins the strings
# with a newline, which must leave every boundary at an edge as it is in the string alone.
BOUNDARY_MASKS = ";;".join([r"\b\d{4}\b=>[n]", r"\Bab=>[x]", r"\bkey\w*=>[k]",
                            r"-\B=>[dash]"])
EDGE_TEXT = st.text(st.sampled_from("0123456789 ab-key_\n\t."), max_size=12)
EDGE_RECORDS = st.one_of(EDGE_TEXT, st.dictionaries(EDGE_TEXT, EDGE_TEXT, max_size=2),
                         st.lists(EDGE_TEXT, max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["function", "extension", "platform.start"]),
                          EDGE_RECORDS), max_size=70))
def test_rules_with_word_boundaries_mask_as_they_do_line_by_line(
    items: list[tuple[str, object]],
) -> None:
    batched = line_filter(SPLUNK_MASK=BOUNDARY_MASKS)
    one_by_one = line_filter(SPLUNK_MASK=BOUNDARY_MASKS)
    one_by_one._batch_check = False  # every line searched on its own
    assert batched._batch_check
    batch = events(*items)
    expected, got = one_by_one.apply(batch), batched.apply(batch)
    assert (got and (got.payload, got.events, got.dropped, got.masked)) == (
        expected and (expected.payload, expected.events, expected.dropped, expected.masked))


def test_anchors_and_lookarounds_still_search_line_by_line() -> None:
    for rule in (r"^\d{4}", r"\d{4}$", r"\A\d", r"\d\Z", r"(?<=x)\d", r"(?<!x)\d", r"\d(?=x)",
                 r"\d(?!x)"):
        assert not line_filter(SPLUNK_MASK=f"{rule}=>[n]")._batch_check, rule
    assert line_filter(SPLUNK_MASK=r"[^x]\b\d=>[n]")._batch_check


# --- levels, rounds and the filters beside the batch search ---------------------------------

NODE_TS = "2026-10-08T07:30:28.235Z"


@pytest.mark.parametrize(("line", "level"), [
    ("[DEBUG]\tx", "DEBUG"),
    ("[DEBUG]", None),  # nothing after the bracket: not the Python runtime's prefix
    ("[DEBUG] x", None),
    ("[DEBUG]\x01x", None),
    (f"{NODE_TS}\t{RID}\tDEBUG\tmsg", "DEBUG"),
    (f"{NODE_TS}\t{RID}\tDEBUG\tmsg\twith\ttabs", "DEBUG"),
    (f"{NODE_TS}\t{RID}\tDEBUG", None),  # no message field
    (f"{NODE_TS}X\t{RID}\tDEBUG\tmsg", None),  # no tab right after the time
    (f"{NODE_TS[:10]}A{NODE_TS[11:]}\t{RID}\tDEBUG\tmsg", None),  # no T in the time
    (f"{NODE_TS[:10]}Z{NODE_TS[11:]}\t{RID}\tDEBUG\tmsg", None),
    (f"{NODE_TS[:10]}T\ta\tDEBUG\tb", None),  # a T but too short for the time
    (f"{NODE_TS[:10]}X{NODE_TS[11:]}\t{RID}\tDEBUG\tmsg", None),
])
def test_the_level_of_a_text_line_is_read_only_where_a_runtime_puts_it(
    line: str, level: str | None,
) -> None:
    assert filters._text_level(line) == level
    f = line_filter(SPLUNK_MIN_LEVEL="info")
    outcome = f.apply(events(("function", line)))
    assert (outcome is not None and outcome.dropped == {"level": 1}) is (level == "DEBUG")


def test_no_level_is_read_from_a_json_line_too_deep_to_decode() -> None:
    deep = msgspec.Raw(b'{"level":"DEBUG","a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert filters._json_level(deep) is None


def chain(links: int) -> str:
    """Rules each undoing one step of the text: a -> b -> c ..., listed last step first, so that
    each pass over the rules takes one step and `links` steps take `links` changing passes."""
    letters = "abcdefgh"[: links + 1]
    return ";;".join(f"{letters[n]}=>{letters[n + 1]}" for n in reversed(range(links)))


def test_a_string_settles_within_four_passes_and_is_dropped_after() -> None:
    # Three changing passes and a fourth that finds nothing: kept, masked.
    settled = line_filter(SPLUNK_MASK=chain(3)).apply(events(("function", "xa")))
    assert records(settled) == ["xd"]
    unsettled = line_filter(SPLUNK_MASK=chain(4)).apply(events(("function", "xa")))
    assert unsettled is not None and unsettled.dropped == {"mask_unresolved": 1}


def test_a_rule_that_matches_only_without_the_trailing_newline_still_masks() -> None:
    outcome = line_filter(SPLUNK_MASK=r"secret\Z=>[x]").apply(
        events(("function", "a secret\n"), ("function", "a secret")))
    assert records(outcome) == ["a [x]", "a [x]"]


def test_any_filter_makes_the_line_filter_active() -> None:
    assert line_filter(SPLUNK_MIN_LEVEL="warn").active
    assert line_filter(SPLUNK_DROP_REGEX="x").active
    assert line_filter(SPLUNK_MASK=CARD).active


# Lines far from any line a rule may match (another group of the batch search) still go
# through the level and the drop regex.
FAR = [("function", f"[INFO]\tline {n}") for n in range(40)]


@pytest.mark.parametrize("card_at", [None, 39])  # no line a rule matches; one, far away
def test_the_level_applies_beside_mask_rules_whatever_they_match(card_at: int | None) -> None:
    items = list(FAR)
    items[0] = ("function", "[DEBUG]\tnoise")
    if card_at is not None:
        items[card_at] = ("function", "[INFO]\tpaid 4111-1111-1111-1111")
    outcome = line_filter(SPLUNK_MASK=CARD, SPLUNK_MIN_LEVEL="info").apply(events(*items))
    assert outcome is not None and outcome.dropped == {"level": 1}
    assert "[DEBUG]\tnoise" not in records(outcome)


@pytest.mark.parametrize("card_at", [None, 39])
def test_the_drop_regex_applies_beside_mask_rules_whatever_they_match(
    card_at: int | None,
) -> None:
    items = list(FAR)
    items[0] = ("function", "GET /healthcheck")
    if card_at is not None:
        items[card_at] = ("function", "paid 4111-1111-1111-1111")
    outcome = line_filter(SPLUNK_MASK=CARD, SPLUNK_DROP_REGEX="healthcheck").apply(
        events(*items))
    assert outcome is not None and outcome.dropped == {"drop_regex": 1}


def test_a_line_dropped_by_its_level_is_not_masked_nor_counted_as_unresolved() -> None:
    never_settles = r"a(b+)=>\1a;;ba=>ab"
    outcome = line_filter(SPLUNK_MASK=never_settles, SPLUNK_MIN_LEVEL="info").apply(
        events(("function", "[DEBUG]\txabbbb"), ("function", "[INFO]\tclean")))
    assert outcome is not None and outcome.dropped == {"level": 1}
