"""Parses and checks the user's regular expressions: SPLUNK_DROP_REGEX and SPLUNK_MASK.

Imported by ext/config.py only when one of those variables is set, so `re` stays off the main
process's cold-start path otherwise (tests/unit/test_architecture.py); the compiled patterns
travel to the listener in the Config, through the fork. No I/O.

SPLUNK_MASK holds one or more rules `regex=>replacement` separated by `;;` (a run of two
semicolons is rare in a regex, unlike `,`, `;` or `|`). Each rule is split at its *last* `=>`, so
the replacement cannot contain `=>` while the regex can (e.g. a lookbehind `(?<=>)`).
Whitespace around a rule is ignored. The replacement may use `\\1` or `\\g<name>`.
A rule is refused when its regex does not compile, can match an empty string (it would match
everywhere), or names a group it does not have in the replacement; a set of rules is refused
when replacements re-create matches in a cycle (a rule that changes its own replacement's
literal text again, or rule 1 changing rule 2's and 2 changing 1's): masking would then never
end. A rule that matches its own replacement but writes it back as it is (`password=\\S+=>
password=***`) is no cycle: masking ends when no rule changes the text.
"""

from __future__ import annotations

import re

RULE_SEPARATOR = ";;"
ARROW = "=>"


class RuleError(ValueError):
    """A rule cannot be used; the message says why without repeating the variable's value."""


def compile_drop(text: str) -> re.Pattern[str]:
    """SPLUNK_DROP_REGEX: one regex; a line it matches (anywhere, `search`) is dropped."""
    pattern = _compile(text)
    _refuse_empty_match(pattern)
    return pattern


def compile_masks(text: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """SPLUNK_MASK: the (pattern, replacement) rules, in the order they are applied."""
    rules: list[tuple[re.Pattern[str], str]] = []
    for number, part in enumerate(text.split(RULE_SEPARATOR), 1):
        rule = part.strip()
        if not rule:
            continue
        regex, arrow, replacement = rule.rpartition(ARROW)
        if not arrow or not regex:
            raise RuleError(f"rule {number} is not `regex=>replacement`")
        try:
            pattern = _compile(regex)
            _refuse_empty_match(pattern)
            _template_text(pattern, replacement)
        except RuleError as err:
            raise RuleError(f"rule {number}: {err}") from None
        rules.append((pattern, replacement))
    if not rules:
        raise RuleError("no rule (expected `regex=>replacement`, rules separated by `;;`)")
    _refuse_cycles(rules)
    return tuple(rules)


def _refuse_cycles(rules: list[tuple[re.Pattern[str], str]]) -> None:
    """Refuses rules whose replacements re-create each other's matches in a cycle (a rule's
    replacement changed by itself again, or 1 -> 2 -> 1): masking would never end. A chain is
    fine, and so is a rule that writes its match back as it is (masking stops there)."""
    literals = [_template_text(pattern, replacement) for pattern, replacement in rules]
    feeds = {i: [j for j, (rule, replacement) in enumerate(rules)
                 if rule.sub(replacement, literals[i]) != literals[i]]
             for i in range(len(rules))}
    for start in range(len(rules)):
        path = [start]
        stack = [(start, iter(feeds[start]))]
        while stack:
            node, following = stack[-1]
            nxt = next(following, None)
            if nxt is None:
                stack.pop()
                path.pop()
                continue
            if nxt == start:
                cycle = " -> ".join(str(i + 1) for i in [*path, start])
                raise RuleError(f"rule {nxt + 1} rewrites the replacement of rule {node + 1} "
                                f"(cycle {cycle}): masking would never end")
            if nxt not in path:
                path.append(nxt)
                stack.append((nxt, iter(feeds[nxt])))


def _compile(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except (re.error, OverflowError, RecursionError) as err:
        raise RuleError(f"the regex does not compile: {err}") from None


def _refuse_empty_match(pattern: re.Pattern[str]) -> None:
    """Refuses a regex whose shortest match is empty, wherever that match would be: probing a
    few texts showed `a*`, but not `(?<=card=)\\d*`, empty only after `card=`, where masking
    inserted its replacement again at every pass. The width is the one `re` computes itself."""
    from re import _parser

    if not _parser.parse(pattern.pattern, pattern.flags).getwidth()[0]:
        raise RuleError("the regex can match an empty string (its shortest match is empty, "
                        "here or after some text: `+` instead of `*`?)")


def _template_text(pattern: re.Pattern[str], replacement: str) -> str:
    """The replacement with every group reference empty; raises for a bad reference.

    `regex|` (newline first, which ends a verbose-mode comment) always matches the empty
    string with the same groups as the rule, so Match.expand checks the references.
    """
    try:
        empty = re.compile(pattern.pattern + "\n|", pattern.flags).match("")
        if empty is None:  # cannot happen: the empty alternative always matches
            raise RuleError("the replacement cannot be checked")
        return empty.expand(replacement)
    except (re.error, IndexError) as err:
        raise RuleError(f"the replacement is not valid: {err}") from None
