"""Where the HEC client gets its token: the configured value, or a secret fetched at run time.

Runs in the sender process; HecClient asks `current()` before each request and reports what HEC
said (`rejected`, `accepted`). A fetched token lives in memory only. It is fetched on first use
(never on the register path), re-fetched when HEC rejects it (rotation; at most once per
`token_refetch_s`), and a failed fetch is retried with capped backoff while the data waits in the
spool. Failures are logged with the secret's name and AWS's error type, never a value.
"""

from __future__ import annotations

import logging
import random
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from ext.config import Config
    from ext.sender.secret_store import TokenFetchError

    class TokenStore(Protocol):
        reference: str
        operation: str

        def fetch(self) -> str: ...

        def close(self) -> None: ...


log = logging.getLogger(__name__)

FETCH_RETRY_BASE_S = 1.0
FETCH_RETRY_CAP_S = 300.0
THROTTLED_MIN_S = 5.0


class StaticToken:
    """SPLUNK_HEC_TOKEN: the value itself, never re-read."""

    problem = ""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(***)"

    def current(self) -> str | None:
        return self._token

    def rejected(self, token: str) -> None:
        """Nothing to re-read: the operator must fix the variable; the data waits meanwhile."""

    def draining(self) -> None:
        """Nothing to read again at shutdown."""

    def accepted(self) -> dict[str, int | str] | None:
        return None

    def close(self) -> None:
        """Holds no connection."""


class FetchedToken:
    """A token read from Secrets Manager or SSM, cached in memory, re-read on rotation."""

    def __init__(self, store: TokenStore, refetch_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.refetch_s = refetch_s
        self.clock = clock
        self.problem = "not fetched yet"
        self._token: str | None = None
        self._fetched_at: float | None = None
        self._next_fetch = 0.0
        self._stale = False
        self._failures = 0
        self._rejections = 0
        self._held_since: float | None = None
        self._last_error = ""

    def __repr__(self) -> str:
        return f"FetchedToken({self.store.reference!r}, cached={self._token is not None})"

    def current(self) -> str | None:
        """The token to send now; None while none could be fetched (the caller holds the data)."""
        now = self.clock()
        if (self._token is None or self._stale) and now >= self._next_fetch:
            self._fetch(now)
        return self._token

    def rejected(self, token: str) -> None:
        """HEC answered "invalid token" or "token disabled": the secret may have been rotated."""
        if token != self._token:
            return  # a request sent before the last re-fetch; it says nothing of the new token
        if self._held_since is None:
            self._held_since = self.clock()
        if not self._stale:
            self._rejections += 1
            log.warning("HEC rejected the token from %s; events stay spooled; re-reading it "
                        "(at most every %s s)", self.store.reference, int(self.refetch_s))
        self._stale = True
        self._last_error = "rejected by HEC"
        if self._fetched_at is not None:
            self._next_fetch = max(self._next_fetch, self._fetched_at + self.refetch_s)

    def draining(self) -> None:
        """The environment shuts down: what waits for a token is lost with it unless one is
        read in the window. Without a usable token, one read is allowed at once, whatever the
        backoff (minutes after many failures: an IAM policy fixed meanwhile would go unseen) or
        the re-read limit after a rejection; a failure sets the next one as usual: no spin."""
        if self._token is None or self._stale:
            self._next_fetch = min(self._next_fetch, self.clock())

    def accepted(self) -> dict[str, int | str] | None:
        """Called when HEC accepted a request; after a hold, the details for one notice."""
        self._stale = False  # HEC takes the token: a rejection before is no reason to re-read
        if self._held_since is None:
            return None
        held_ms = int((self.clock() - self._held_since) * 1000)
        details: dict[str, int | str] = {
            "held_ms": held_ms,
            "token_source": self.store.reference,
            "last_error": self._last_error,
            "failed_fetches": self._failures,
            "rejections": self._rejections,
        }
        log.warning("HEC accepts the token from %s again; delivery was held %.1f s",
                    self.store.reference, held_ms / 1000)
        self._held_since = None
        self._failures = self._rejections = 0
        return details

    def close(self) -> None:
        self.store.close()

    def _fetch(self, now: float) -> None:
        from ext.sender.secret_store import TokenFetchError

        try:
            token = self.store.fetch()
        except TokenFetchError as err:
            self._failed(now, err)
            return
        rotated = self._token is not None and token != self._token
        self._token, self._fetched_at, self._stale = token, now, False
        self._next_fetch = now + self.refetch_s
        self.problem = ""
        if self._failures or rotated:
            log.warning("HEC token read from %s%s", self.store.reference,
                        " (a new value)" if rotated else f" after {self._failures} failures")

    def _failed(self, now: float, err: TokenFetchError) -> None:
        self._failures += 1
        if self._held_since is None:
            self._held_since = now
        delay = min(FETCH_RETRY_CAP_S, FETCH_RETRY_BASE_S * 2.0 ** min(self._failures - 1, 10))
        delay = random.uniform(delay / 2, delay)
        if err.throttled:
            delay = max(delay, THROTTLED_MIN_S)
        if self._token is not None:
            delay = max(delay, self.refetch_s)  # a cached token keeps being tried meanwhile
        self._next_fetch = now + delay
        self._last_error = err.reason
        self.problem = f"{self.store.operation} on {err}"
        log.error("cannot read the HEC token: %s on %s; events stay spooled; retrying in %.0f s",
                  self.store.operation, err, delay)


def for_config(config: Config) -> StaticToken | FetchedToken:
    """The token source the configuration names."""
    if config.token_source == "value":  # noqa: S105 - the name of a source
        return StaticToken(config.hec_token)
    # Imported only here: a static token costs the sender nothing of the AWS code.
    from ext.sender.secret_store import SecretStore

    return FetchedToken(SecretStore(config), config.token_refetch_s)
