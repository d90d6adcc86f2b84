"""ext/rules.py on its own: how SPLUNK_MASK is split into rules, which rules and sets of rules
are refused and what the refusal says. test_filters.py reads the same rules through the config
and the line filter."""

from __future__ import annotations

import re

import pytest

from ext import rules
from ext.rules import RuleError


def patterns(text: str) -> list[tuple[str, str]]:
    return [(pattern.pattern, replacement) for pattern, replacement in rules.compile_masks(text)]


def test_rules_are_split_at_double_semicolons_and_at_each_rules_last_arrow() -> None:
    assert patterns("a=>b") == [("a", "b")]
    assert patterns(" a+=>[x] ;;\tb=>=>\n") == [("a+", "[x]"), ("b=>", "")]
    assert patterns("(?<=>)x=>y") == [("(?<=>)x", "y")]
    assert patterns("x;y=>z,w") == [("x;y", "z,w")]


def test_empty_rules_between_separators_are_skipped_not_the_end() -> None:
    assert patterns(";;a=>1;;;;  ;;b=>2;;") == [("a", "1"), ("b", "2")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "rule 1 is not `regex=>replacement`"),
        ("=>x", "rule 1 is not `regex=>replacement`"),
        ("a=>1;;=>x", "rule 2 is not `regex=>replacement`"),
        ("a=>1;;;;b", "rule 3 is not `regex=>replacement`"),
        ("a=>1;;[=>x", "rule 2: the regex does not compile"),
        ("a=>1;;b*=>x", "rule 2: the regex can match an empty string"),
        (r"a=>1;;b=>x;;(c)=>\2", "rule 3: the replacement is not valid"),
        ("", "no rule"),
        (" ;; ;;", "no rule"),
    ],
)
def test_a_refused_rule_is_named_by_its_place(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)):
        rules.compile_masks(text)


@pytest.mark.parametrize(
    "regex",
    [
        "a{4294967296}",  # OverflowError from the compiler
        "(" * 2000 + "a" + ")" * 2000,  # RecursionError
        "[",  # re.error
        "(?P<x>a)(?P<x>b)",
    ],
)
def test_a_regex_that_does_not_compile_is_a_rule_error(regex: str) -> None:
    with pytest.raises(RuleError, match="does not compile"):
        rules.compile_drop(regex)
    with pytest.raises(RuleError, match="rule 1: the regex does not compile"):
        rules.compile_masks(regex + "=>x")


@pytest.mark.parametrize("regex", [
    "a*", r"\b", "^", "$", "x?", "(?=a)", r"\s*", "a|", "(?m)^",
    # empty only where no short probe reaches: masking inserted the replacement again at every
    # pass after `card=`, and dropped each such line as unresolved instead of masking it
    r"(?<=card=)\d*", r"(?<=pin=)[0-9]*", "(?<=a)(?=b)", r"(?<=token:)\s*\S*",
])
def test_a_regex_that_can_match_an_empty_string_is_refused(regex: str) -> None:
    with pytest.raises(RuleError, match="can match an empty string"):
        rules.compile_drop(regex)
    with pytest.raises(RuleError, match="can match an empty string"):
        rules.compile_masks(regex + "=>x")


@pytest.mark.parametrize("regex", ["a", "a+", "health.?check", r"\d{4}", "zzz", "a b",
                                   r"(?<=card=)\d+", r"\bfoo\b"])
def test_a_regex_that_matches_something_or_nothing_but_never_empty_is_kept(regex: str) -> None:
    assert rules.compile_drop(regex).pattern == regex
    assert patterns(regex + "=>x") == [(regex, "x")]


@pytest.mark.parametrize(
    "replacement", [r"\3", r"\g<nope>", r"\g<9>", "x\\", r"\g<>"],
)
def test_a_replacement_naming_a_group_the_regex_lacks_is_refused(replacement: str) -> None:
    with pytest.raises(RuleError, match="rule 1: the replacement is not valid"):
        rules.compile_masks(rf"(a)(?P<n>b)=>{replacement}")


def test_a_replacement_may_use_the_regexs_groups() -> None:
    text = r"(\d{4})-(?P<last>\d{4})=>\1-\g<last>-\g<1>"
    [(pattern, replacement)] = rules.compile_masks(text)
    assert pattern.sub(replacement, "1234-5678") == "1234-5678-1234"


@pytest.mark.parametrize(
    ("text", "cycle"),
    [
        # Its own replacement grows at each pass: `ba` -> `bba` -> ...
        ("a+=>ba", "rule 1 rewrites the replacement of rule 1 (cycle 1 -> 1)"),
        ("x=>y;;a+=>b;;b+=>a", "rule 2 rewrites the replacement of rule 3 (cycle 2 -> 3 -> 2)"),
        ("a+=>b;;b+=>c;;c+=>a",
         "rule 1 rewrites the replacement of rule 3 (cycle 1 -> 2 -> 3 -> 1)"),
        # Rule 1 feeds a cycle it is no part of: found from rule 2.
        ("x=>b;;b+=>c;;c+=>b", "rule 2 rewrites the replacement of rule 3 (cycle 2 -> 3 -> 2)"),
        # The first way out of rule 1 leads nowhere; the second closes the cycle.
        ("a=>bc;;b=>z;;c=>a", "rule 1 rewrites the replacement of rule 3 (cycle 1 -> 3 -> 1)"),
        # Group references count as empty: the literal text alone is rewritten (`xx` -> `xxxx`).
        (r"(\d?)x=>\1xx;;q=>r", "rule 1 rewrites the replacement of rule 1"),
    ],
)
def test_replacements_that_recreate_matches_in_a_cycle_are_refused(text: str, cycle: str) -> None:
    with pytest.raises(RuleError, match=re.escape(cycle)):
        rules.compile_masks(text)


@pytest.mark.parametrize(
    "text",
    [
        "a+=>b;;b+=>c;;c+=>x",  # a chain ends
        "a=>bc;;b=>d;;c=>d;;d=>x",  # a diamond: two ways to rule 4, no way back
        "a=>b;;a=>c;;b=>d;;c=>d",
        # The group's text is not known: only the literal text is checked (a match a group
        # re-creates and changes ends at the filter's bound on mask rounds).
        r"(\d)x=>\1xx",
        "b=>a;;a=>x",  # rule 1 feeds rule 2, which does not feed it back
        # A rule that matches its own replacement and writes it back as it is: masking stops
        # there, once no rule changes the text.
        r"password=\S+=>password=***",
        r"(\d?)x=>\1x",
        r"ab+=>ab",
    ],
)
def test_replacements_that_feed_each_other_without_a_cycle_are_kept(text: str) -> None:
    assert len(rules.compile_masks(text)) == text.count(";;") + 1


def test_the_rules_keep_their_order() -> None:
    assert [p for p, _ in patterns("c=>1;;a=>2;;b=>3")] == ["c", "a", "b"]


def test_the_drop_regex_is_searched_anywhere_in_a_line() -> None:
    pattern = rules.compile_drop("ping")
    assert pattern.search("GET /ping 200") and not pattern.search("pong")


def test_a_cycle_among_hundreds_of_rules_is_found() -> None:
    # Past 256 rules the indices are ints CPython does not share: the cycle test compares them
    # by value.
    unrelated = ";;".join(f"k{n}z=>-" for n in range(300))
    with pytest.raises(RuleError, match=re.escape(
            "rule 301 rewrites the replacement of rule 301 (cycle 301 -> 301)")):
        rules.compile_masks(unrelated + ";;a+=>ba")
    with pytest.raises(RuleError, match=re.escape("(cycle 301 -> 302 -> 301)")):
        rules.compile_masks(unrelated + ";;a+=>b;;b+=>a")
    assert len(rules.compile_masks(unrelated)) == 300
