"""minijson's edges, example by example: what it must refuse (and with JsonError, never an
IndexError or a plain ValueError from a conversion), escapes, numbers' types, nesting, and
dumps_str. The properties against the json module are in test_minijson.py."""

from __future__ import annotations

import json
import sys

import pytest

from ext.main import minijson
from ext.main.minijson import JsonError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"0", 0), (b"-0", 0), (b"7", 7), (b"-12", -12), (b"10", 10), (b"1200", 1200),
        (b"1.5", 1.5), (b"-0.25", -0.25), (b"10.05", 10.05), (b"1e3", 1000.0), (b"1E3", 1000.0),
        (b"1e+3", 1000.0), (b"1e-3", 0.001), (b"2.5E-1", 0.25), (b"0e0", 0.0), (b"0.0", 0.0),
        (b"123456789012345678901234567890", 123456789012345678901234567890),
    ],
)
def test_numbers_parse_to_the_type_json_gives(text: bytes, expected: int | float) -> None:
    value = minijson.loads(text)
    assert value == expected and type(value) is type(expected) is type(json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        b"01", b"-01", b"00", b"+1", b"--1", b"-", b".5", b"1.", b"1.e3", b"1e", b"1E", b"1e+",
        b"1e-", b"1ee3", b"1e3.5", b"1.5.5", b"1-2", b"1+2", b"0x10", b"NaN", b"-Infinity",
        b"Infinity", b"-a", b"1.a", b"1ea",
    ],
)
def test_malformed_numbers_are_refused(text: bytes) -> None:
    with pytest.raises(JsonError):
        minijson.loads(text)
    with pytest.raises(JsonError):  # the same inside a container, where no end check follows
        minijson.loads(b"[" + text + b"]")


@pytest.mark.parametrize(
    "text",
    [
        b"", b" ", b"{", b"[", b'"', b'"abc', b'"\\', b'"\\u', b'"\\u12', b'"\\u12"', b'"\\u12g4"',
        b'"\\uD834\\u', b'"\\U0041"', b'"\\x41"', b'"\\a"', b"{ ", b'{"a"', b'{"a" ',
        b'{"a":', b'{"a": ', b'{"a":1', b'{"a":1 ', b'{"a":1,', b'{"a":1, ', b'{"a":1,}',
        b'{"a" 1}', b'{"a":1 "b":2}', b"{a:1}", b"{1:1}", b"{,}", b'{"a":1}}', b"[ ", b"[1",
        b"[1 ", b"[1,", b"[1, ", b"[1,]", b"[,1]", b"[1 2]", b"]", b"}", b"[1]]", b"tru", b"nul",
        b"fals", b"True", b"nulls", b"[truex]", b"1 2", b'"a" "b"', b"\xff", b'"\xc3"',
        b'"\x00"', b'"\x1f"', b'"a\nb"', b'"\t"', b"\xef\xbb\xbf1", b"\xc2\xa01",
        # Characters just above or below the one expected, which a looser comparison would take
        # for it: `{`, `"`, `}`, `,`, `]`, `:` and the `u` of an escape.
        b"|}", b"~}", b"\xc3\xa9}", b'!a"', b'\x01a"', b"{~", b'{"a":1~', b'{"a":1\xc3\xa9',
        b'{!a":1}', b'{\x01a":1}', b'{"a";1}', b'{"a"=1}', b'{"a":1!"b":2}', b'{"a":1+"b":2}',
        b"[1!2]", b"[1 +2]", b"[1}", b"[1x", b"[1~", b'"\\x0041"', b'"\\v0041"', b'"\\z0041"',
    ],
)
def test_malformed_text_is_refused_with_json_error(text: bytes) -> None:
    with pytest.raises(JsonError):
        minijson.loads(text)


def test_an_integer_past_the_interpreters_digit_limit_is_refused_with_json_error() -> None:
    limit = sys.get_int_max_str_digits()  # 4,300 unless the process changed it
    assert minijson.loads(b"9" * limit) == int("9" * limit)
    with pytest.raises(JsonError, match=f"integer of {limit + 1} digits"):
        minijson.loads(b"[" + b"9" * (limit + 1) + b"]")


def test_whitespace_is_the_four_json_characters_anywhere_between_tokens() -> None:
    text = b' \t\r\n{ \t\r\n"a" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\n{ } , [ ] ] , "b":2 } \n\t'
    assert minijson.loads(text) == {"a": [1, {}, []], "b": 2}
    assert minijson.loads(b"[ ]") == [] and minijson.loads(b"{ }") == {}
    assert minijson.loads(b"  7  ") == 7
    for other in (b"\x0b1", b"\x0c1", b"1\x0b", b"[1\x0c]", b"\xe2\x80\x831"):
        with pytest.raises(JsonError):
            minijson.loads(other)


def test_the_three_words() -> None:
    assert minijson.loads(b"[true,false,null]") == [True, False, None]
    assert minijson.loads(b'{"t":true,"f":false,"n":null}') == {"t": True, "f": False, "n": None}
    assert minijson.loads(b"true") is True and minijson.loads(b"false") is False
    assert minijson.loads(b"null") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'""', ""), (b'"a"', "a"), (b'"\\""', '"'), (b'"\\\\"', "\\"), (b'"\\/"', "/"),
        (b'"\\b\\f\\n\\r\\t"', "\b\f\n\r\t"), (b'"a\\nb\\tc"', "a\nb\tc"),
        (b'"\\u0041"', "A"), (b'"\\u00e9\\u00C9"', "\u00e9\u00c9"), (b'"\\u0000"', "\x00"),
        (b'"\\uFFFF"', "\uffff"), (b'"x\\u0041y"', "xAy"),
        # A surrogate pair is one character; its edges: the first and last high and low halves.
        (b'"\\ud834\\udd1e"', "\U0001d11e"), (b'"\\uD800\\uDC00"', "\U00010000"),
        (b'"\\uDBFF\\uDFFF"', "\U0010ffff"), (b'"\\ud83d\\ude00!"', "\U0001f600!"),
        # A half alone stays as json leaves it; a high half before a non-low escape is alone.
        (b'"\\ud834"', "\ud834"), (b'"\\udd1e"', "\udd1e"), (b'"\\ud834x"', "\ud834x"),
        (b'"\\ud834\\u0041"', "\ud834A"), (b'"\\ud834\\ud834"', "\ud834\ud834"),
        (b'"\\udc00\\udc00"', "\udc00\udc00"), (b'"\\ud7ff\\udc00"', "\ud7ff\udc00"),
        (b'"\\ud834\\ue000"', "\ud834\ue000"), (b'"\\ud834\\udbff"', "\ud834\udbff"),
        (b'"\\ud834\\n"', "\ud834\n"),
        # Only a high half before a low one is a pair: not a low half or a private-use character
        # first, nor a private-use one second (U+E000 and up, just past the low halves).
        (b'"\\udd1e\\udc00"', "\udd1e\udc00"), (b'"\\ue000\\udc00"', "\ue000\udc00"),
        (b'"\\udc01\\udc01"', "\udc01\udc01"), (b'"\\ud834\\ue001"', "\ud834\ue001"),
        (b'"\\ud834\\uffff"', "\ud834\uffff"),
        ('"é€\U0001f600\x7f"'.encode(), "é€\U0001f600\x7f"),
    ],
)
def test_strings_and_escapes(text: bytes, expected: str) -> None:
    assert minijson.loads(text) == expected == json.loads(text)
    assert minijson.loads(b'{"k":' + text + b"}") == {"k": expected}
    assert minijson.loads(b"{" + text + b":1}") == {expected: 1}


def test_escapes_in_keys_and_values_keep_their_neighbours() -> None:
    text = b'{"a\\"b":"c\\\\d","\\u0065":["\\n",""],"":"x"}'
    assert minijson.loads(text) == {'a"b': "c\\d", "e": ["\n", ""], "": "x"}


def test_an_error_names_its_cause() -> None:
    cases = {
        b'"\\u12x4"': "bad \\\\u escape",
        b'"\\u12': "bad \\\\u escape",
        b'"\\ud834\\u12"': "bad \\\\u escape",
        b'"\\q"': "bad escape",
        b'"\\': "unterminated escape",
        b'"ab': "unterminated string",
        b'"a\x01"': "control character",
        b"[1 2]": "expected ',' or ']'",
        b'{"a":1 2}': "expected ',' or '}'",
        b'{"a" 1}': "expected ':'",
        b"{1}": "expected a key",
        b"1 2": "extra data",
        b"": "unexpected end",
        b"[": "unexpected end",
        b"@": "unexpected '@'",
        b"\xff": "not UTF-8",
    }
    for text, message in cases.items():
        with pytest.raises(JsonError, match=message):
            minijson.loads(text)


def test_an_unexpected_character_is_shown_with_the_nine_after_it() -> None:
    with pytest.raises(JsonError) as raised:
        minijson.loads(b"[1, @abcdefghijklmnop]")
    assert str(raised.value) == "unexpected '@abcdefghi' at 4"


def test_the_error_is_a_value_error() -> None:
    assert issubclass(JsonError, ValueError)


def nested(depth: int, inner: bytes = b"1") -> bytes:
    """`depth` containers around `inner`, arrays and objects in turn."""
    head = b"".join(b"[" if n % 2 == 0 else b'{"k":' for n in range(depth))
    tail = b"".join(b"]" if n % 2 == 0 else b"}" for n in reversed(range(depth)))
    return head + inner + tail


def test_a_value_sixty_four_containers_deep_parses_and_one_more_is_refused() -> None:
    assert minijson.loads(nested(64)) == json.loads(nested(64))
    assert minijson.loads(b"[" * 64 + b"]" * 64) == json.loads(b"[" * 64 + b"]" * 64)
    for text in (nested(65), b"[" * 65 + b"1" + b"]" * 65, b"[" * 66 + b"]" * 66, nested(500)):
        with pytest.raises(JsonError, match="nested too deeply"):
            minijson.loads(text)


def test_siblings_do_not_add_to_the_depth() -> None:
    deep = nested(63)
    text = b"[" + b",".join([deep] * 5) + b"]"
    assert minijson.loads(text) == json.loads(text)
    text = b"{" + b",".join(b'"%d":' % n + deep for n in range(5)) + b"}"
    assert minijson.loads(text) == json.loads(text)


def test_containers() -> None:
    text = b'{"a":[1,[2,[3,{}]],{"b":{"c":[]}}],"d":{"e":null},"f":"g"}'
    assert minijson.loads(text) == json.loads(text)
    assert minijson.loads(b'{"a":1,"a":2}') == {"a": 2}  # the last of duplicate keys, as json
    assert minijson.loads(b"[[],[[]],{}]") == [[], [[]], {}]
    assert minijson.loads(b'[1,"2",3.5,null]') == [1, "2", 3.5, None]


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("", '""'), ("abc", '"abc"'), ('a"b', '"a\\"b"'), ("a\\b", '"a\\\\b"'),
        ("\x00\x1f", '"\\u0000\\u001f"'), ("\n", '"\\u000a"'), (" ~\x7f", '" ~\x7f"'),
        ("é\U0001f600", '"é\U0001f600"'), ("/", '"/"'),
    ],
)
def test_dumps_str_escapes_only_what_json_requires(value: str, literal: str) -> None:
    assert minijson.dumps_str(value) == literal
    assert minijson.loads(literal.encode()) == value


# Past 256 characters positions are ints CPython does not share, so `pos is len(text)` would
# differ from `==` there: the cuts and the ends below stand that far in.
LONG = (
    '{"pad":"' + "x" * 300 + '", "a" : [ 1 , -2.5e3 , true,false,null, 0, 12 ,'
    ' "\\u00e9\\ud834\\udd1e\\n\\"" ], "o":{"k":{}}, "e":[], "n": 7 }'
)


def test_every_cut_of_a_long_document_is_refused_with_json_error() -> None:
    assert minijson.loads(LONG.encode()) == json.loads(LONG)
    for cut in range(len(LONG)):
        with pytest.raises(JsonError):
            minijson.loads(LONG[:cut].encode())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1" * 300, int("1" * 300)), ("-" + "2" * 300, -int("2" * 300)),
        ("1." + "5" * 300, float("1." + "5" * 300)), ("3" * 300 + ".25", float("3" * 300 + ".25")),
        ("1e" + "0" * 300, 1.0), ("4" * 300 + "e-300", float("4" * 300 + "e-300")),
        ("0." + "0" * 300 + "1e2", float("0." + "0" * 300 + "1e2")),
    ],
)
def test_numbers_longer_than_256_characters(text: str, expected: int | float) -> None:
    value = minijson.loads(text.encode())
    assert value == expected and type(value) is type(expected)
    assert minijson.loads(f"[{text}]".encode()) == [expected]


@pytest.mark.parametrize(
    "text", ["1" * 300 + ".", "1" * 300 + "e", "1" * 300 + "e+", "1" * 300 + ".e1",
             "0" + "1" * 300, "1." + "5" * 300 + "e", "1" * 300 + "x"],
)
def test_malformed_numbers_longer_than_256_characters_are_refused(text: str) -> None:
    with pytest.raises(JsonError):
        minijson.loads(text.encode())


def test_a_value_may_end_a_long_text() -> None:
    pad = " " * 300
    for text, expected in ((pad + "12", 12), (pad + "-0.5", -0.5), (pad + "true", True),
                           (pad + '"s"', "s"), (pad + "[]", []), (pad + "{}", {}),
                           ("[" + pad + "1" + pad + "]", [1]), (pad + "1e2" + pad, 100.0)):
        assert minijson.loads(text.encode()) == expected
