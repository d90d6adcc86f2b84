"""ext/diagnostics.py: which of main's lines are written at which level, where they go, a
secret kept out of logged answers, and the children's logging set up."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext import diagnostics
from ext.config import OWN_LOG_MARKER

ROOT = Path(__file__).resolve().parents[2]
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@pytest.fixture(autouse=True)
def threshold() -> Iterator[None]:
    saved = diagnostics._threshold
    yield
    diagnostics._threshold = saved


def written(capfd: pytest.CaptureFixture[str], level: str, message: str = "m") -> str:
    diagnostics.note(level, message)
    out, err = capfd.readouterr()
    assert out == ""
    return err


def test_a_fresh_process_writes_warnings_and_above_and_unknown_levels() -> None:
    script = (
        "from ext import diagnostics\n"
        "for level in ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL', 'LOUD'):\n"
        "    diagnostics.note(level, level.lower())\n"
        "print([diagnostics.enabled(level) for level in ('INFO', 'WARNING', 'LOUD')])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, check=True)
    assert done.stdout == "[False, True, True]\n"
    assert done.stderr.splitlines() == [
        f"{OWN_LOG_MARKER} {level} main: {level.lower()}"
        for level in ("WARNING", "ERROR", "CRITICAL", "LOUD")
    ]


@pytest.mark.parametrize("threshold_level", LEVELS)
def test_a_level_writes_lines_of_its_own_level_and_above(
    threshold_level: str, capfd: pytest.CaptureFixture[str],
) -> None:
    diagnostics.set_level(threshold_level)
    rank = LEVELS.index(threshold_level)
    for n, level in enumerate(LEVELS):
        assert diagnostics.enabled(level) is (n >= rank)
        assert bool(written(capfd, level)) is (n >= rank)
    # A level the table does not know counts as ERROR.
    assert diagnostics.enabled("LOUD") is (rank <= LEVELS.index("ERROR"))
    assert bool(written(capfd, "LOUD")) is (rank <= LEVELS.index("ERROR"))


def test_an_unknown_threshold_is_warning(capfd: pytest.CaptureFixture[str]) -> None:
    diagnostics.set_level("DEBUG")
    diagnostics.set_level("LOUD")
    assert [diagnostics.enabled(level) for level in LEVELS] == [False, False, True, True, True]
    assert written(capfd, "INFO") == ""
    assert written(capfd, "WARNING") != ""


def test_a_line_is_one_line_on_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    diagnostics.set_level("INFO")
    assert written(capfd, "INFO", "two\nlines é") == f"{OWN_LOG_MARKER} INFO main: two lines é\n"


def test_a_line_with_a_lone_surrogate_is_written_with_a_stand_in(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert written(capfd, "ERROR", "bad \udc80") == f"{OWN_LOG_MARKER} ERROR main: bad ?\n"


def test_a_closed_stderr_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def closed(fd: int, data: bytes) -> int:
        raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(os, "write", closed)
    diagnostics.note("ERROR", "nowhere to go")


@pytest.mark.parametrize(
    ("secret", "masked"),
    [("12345678", True), ("a-hec-token-guid", True), ("1234567", False), ("", False),
     (None, False)],
)
def test_a_secret_of_eight_characters_or_more_is_masked(secret: str | None, masked: bool) -> None:
    data = b"echo: 12345678 a-hec-token-guid 1234567 12345678"
    kept = diagnostics.without_secret(data, secret, b"<token>")
    if masked:
        assert secret and secret.encode() not in kept
        assert kept == data.replace(secret.encode(), b"<token>")
    else:
        assert kept is data


@pytest.mark.parametrize("echo", [
    b"a<b&c\"d/e x",  # as sent
    b"a&lt;b&amp;c&quot;d/e x",  # an HTML error page
    b"a&lt;b&amp;c\"d/e x",
    b'a<b&c\\"d\\/e x',  # JSON, "/" escaped or not
    b'a<b&c\\"d/e x',
    b"a%3Cb%26c%22d%2Fe%20x",  # percent-encoded
    b"a%3Cb%26c%22d/e%20x",
])
def test_a_secret_echoed_in_another_spelling_is_masked_too(echo: bytes) -> None:
    # A HEC token is a GUID, one spelling only; but any printable ASCII is a valid token.
    kept = diagnostics.without_secret(b"Authorization: Splunk " + echo + b".", 'a<b&c"d/e x',
                                      b"<token>")
    assert kept == b"Authorization: Splunk <token>."


@pytest.fixture
def logging_kept() -> Iterator[None]:
    root, urllib3 = logging.getLogger(), logging.getLogger("urllib3")
    saved = (root.handlers[:], root.level, urllib3.level)
    yield
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    urllib3.setLevel(saved[2])


@pytest.mark.parametrize(
    ("level", "urllib3_level"),
    [("DEBUG", 30), ("INFO", 30), ("WARNING", 30), ("WARN", 30), ("NOTSET", 30),
     ("ERROR", 40), ("CRITICAL", 50)],
)
def test_a_childs_logging_names_its_role_and_keeps_urllib3_at_warning_or_above(
    level: str, urllib3_level: int, logging_kept: None,
) -> None:
    diagnostics.configure_logging(level, "sender")
    root = logging.getLogger()
    assert root.level == logging.getLevelName("WARNING" if level == "WARN" else level)
    [handler] = root.handlers
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "hello", None, None)
    assert handler.format(record) == f"{OWN_LOG_MARKER} ERROR sender: hello"
    assert logging.getLogger("urllib3").level == urllib3_level
