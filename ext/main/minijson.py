"""A small JSON reader for the main process's few control messages (Extensions API events).

The main process sits on the cold-start path until its first event/next; `json` (which pulls
in `re`) and msgspec (typing, datetime, uuid, decimal...) each cost more to import than the
whole parse of an INVOKE event. This reads standard JSON (RFC 8259) into dicts, lists, strings,
ints, floats, booleans and None; the listener and sender use msgspec.
"""

from __future__ import annotations

_WHITESPACE = b" \t\r\n"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NUMBER_CHARS = frozenset(b"+-0123456789.eE")
_MAX_DEPTH = 64


class JsonError(ValueError):
    """The text is not valid JSON."""


def loads(data: bytes) -> object:
    """Parses one JSON value; raises JsonError (a ValueError) on anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise JsonError("not UTF-8") from err
    value, end = _value(text, _skip(text, 0), 0)
    if _skip(text, end) != len(text):
        raise JsonError(f"extra data at {end}")
    return value


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _value(text: str, pos: int, depth: int) -> tuple[object, int]:
    if depth > _MAX_DEPTH:
        raise JsonError("nested too deeply")
    if pos >= len(text):
        raise JsonError("unexpected end")
    char = text[pos]
    if char == "{":
        return _object(text, pos + 1, depth + 1)
    if char == "[":
        return _array(text, pos + 1, depth + 1)
    if char == '"':
        return _string(text, pos + 1)
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, pos):
            return value, pos + len(word)
    return _number(text, pos)


def _object(text: str, pos: int, depth: int) -> tuple[dict[str, object], int]:
    result: dict[str, object] = {}
    pos = _skip(text, pos)
    if pos < len(text) and text[pos] == "}":
        return result, pos + 1
    while True:
        if pos >= len(text) or text[pos] != '"':
            raise JsonError(f"expected a key at {pos}")
        key, pos = _string(text, pos + 1)
        pos = _skip(text, pos)
        if pos >= len(text) or text[pos] != ":":
            raise JsonError(f"expected ':' at {pos}")
        result[key], pos = _value(text, _skip(text, pos + 1), depth)
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "}":
            return result, pos + 1
        raise JsonError(f"expected ',' or '}}' at {pos}")


def _array(text: str, pos: int, depth: int) -> tuple[list[object], int]:
    result: list[object] = []
    pos = _skip(text, pos)
    if pos < len(text) and text[pos] == "]":
        return result, pos + 1
    while True:
        item, pos = _value(text, _skip(text, pos), depth)
        result.append(item)
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "]":
            return result, pos + 1
        raise JsonError(f"expected ',' or ']' at {pos}")


def _string(text: str, pos: int) -> tuple[str, int]:
    parts: list[str] = []
    start = pos
    while True:
        if pos >= len(text):
            raise JsonError("unterminated string")
        char = text[pos]
        if char == '"':
            parts.append(text[start:pos])
            return "".join(parts), pos + 1
        if char == "\\":
            parts.append(text[start:pos])
            char, pos = _escape(text, pos + 1)
            parts.append(char)
            start = pos
            continue
        if char < " ":
            raise JsonError(f"control character in string at {pos}")
        pos += 1


def _escape(text: str, pos: int) -> tuple[str, int]:
    if pos >= len(text):
        raise JsonError("unterminated escape")
    char = text[pos]
    if char in _ESCAPES:
        return _ESCAPES[char], pos + 1
    if char != "u":
        raise JsonError(f"bad escape at {pos}")
    code = _hex4(text, pos + 1)
    pos += 5
    if 0xD800 <= code < 0xDC00 and text.startswith("\\u", pos):
        low = _hex4(text, pos + 2)
        if 0xDC00 <= low < 0xE000:
            return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), pos + 6
    return chr(code), pos


def _hex4(text: str, pos: int) -> int:
    digits = text[pos : pos + 4]
    if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise JsonError(f"bad \\u escape at {pos}")
    return int(digits, 16)


def _number(text: str, pos: int) -> tuple[int | float, int]:
    end = pos
    while end < len(text) and ord(text[end]) in _NUMBER_CHARS:
        end += 1
    token = text[pos:end]
    if not token or not _valid_number(token):
        raise JsonError(f"unexpected {text[pos:pos + 10]!r} at {pos}")
    if any(c in token for c in ".eE"):
        return float(token), end
    try:
        return int(token), end
    except ValueError:  # past the interpreter's limit on integer digits (4,300 by default)
        raise JsonError(f"integer of {len(token)} digits at {pos}") from None


def _valid_number(token: str) -> bool:
    """RFC 8259 number grammar: -?(0|[1-9]\\d*)(\\.\\d+)?([eE][+-]?\\d+)?"""
    i = 1 if token.startswith("-") else 0
    digits = _run(token, i)
    if digits == i or (token[i] == "0" and digits > i + 1):
        return False
    i = digits
    if i < len(token) and token[i] == ".":
        end = _run(token, i + 1)
        if end == i + 1:
            return False
        i = end
    if i < len(token) and token[i] in "eE":
        i += 1
        if i < len(token) and token[i] in "+-":
            i += 1
        end = _run(token, i)
        if end == i:
            return False
        i = end
    return i == len(token)


def _run(token: str, i: int) -> int:
    while i < len(token) and token[i].isdigit() and token[i].isascii():
        i += 1
    return i


def dumps_str(value: str) -> str:
    """A JSON string literal for `value` (used to build the few bodies main sends)."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


__all__ = ["JsonError", "dumps_str", "loads"]
_ = _WHITESPACE
