"""The extension's own log lines (stderr, which Lambda sends to CloudWatch and to `extension`
telemetry). Every line carries OWN_LOG_MARKER so the sender can recognise (and by default
skip) them.

The main process writes with `note` (no `logging` import on the cold-start path); the listener
and sender call `configure_logging` after the fork and use the logging module.
"""

from __future__ import annotations

import os

from ext.config import OWN_LOG_MARKER

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_threshold = 30
# A secret shorter than this (a test's, not a HEC token's GUID or an AWS key) is not masked: it
# would mask any word it is part of.
MIN_MASKED_SECRET = 8


def without_secret(data: bytes, secret: str | None, mask: bytes) -> bytes:
    """`data` with `secret` replaced by `mask`: a server's (or a proxy's) answer may echo the
    request's headers, and its text is logged or kept."""
    if not secret or len(secret) < MIN_MASKED_SECRET:
        return data
    for form in _echoed_forms(secret):
        data = data.replace(form, mask)
    return data


def _echoed_forms(secret: str) -> tuple[bytes, ...]:
    """`secret` as sent, and as an echo may spell it: HTML-escaped (a proxy's error page),
    JSON-escaped, percent-encoded. A GUID (a HEC token) has one spelling only; the token may be
    any printable ASCII. Longest first: no form is cut by another's mask. Made once per secret
    (every HEC answer is masked)."""
    forms = _ECHOED.get(secret)
    if forms is None:
        spelt = {secret}
        if not all(c.isalnum() or c == "-" for c in secret):  # a GUID imports nothing
            import json  # both loaded in the sender already (its HEC client, urllib3)
            from urllib.parse import quote

            html = secret.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            escaped = json.dumps(secret)[1:-1]
            spelt |= {html, html.replace('"', "&quot;").replace("'", "&#x27;"), escaped,
                      escaped.replace("/", "\\/"), quote(secret, safe=""), quote(secret)}
        forms = tuple(sorted((f.encode() for f in spelt), key=len, reverse=True))
        if len(_ECHOED) >= 8:  # a rotated token, a credential or two: never many
            _ECHOED.clear()
        _ECHOED[secret] = forms
    return forms


_ECHOED: dict[str, tuple[bytes, ...]] = {}


def set_level(level: str) -> None:
    global _threshold
    _threshold = _LEVELS.get(level, 30)


def enabled(level: str) -> bool:
    """Whether `note` writes lines of this level (a costly message is then worth making)."""
    return _LEVELS.get(level, 40) >= _threshold


def note(level: str, message: str) -> None:
    """Writes one line from the main process if `level` passes the configured threshold."""
    if _LEVELS.get(level, 40) < _threshold:
        return
    line = f"{OWN_LOG_MARKER} {level} main: {message}".replace("\n", " ") + "\n"
    try:
        os.write(2, line.encode("utf-8", "replace"))
    except OSError:
        return  # a closed stderr must not take the extension down


def configure_logging(level: str, role: str) -> None:
    """Logging for a child process: one format, the role in every line."""
    import logging

    logging.basicConfig(
        level=level, format=f"{OWN_LOG_MARKER} %(levelname)s {role}: %(message)s", force=True
    )
    # urllib3 logs every request at DEBUG; forwarded as our own `extension` telemetry that
    # would be one more request per request, a feedback loop. Its warnings still show.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, _LEVELS.get(level, 30)))
