"""The token cache and its re-fetch policy (ext/sender/token_source.py), on a fake store and
clock; and HecClient holding data without sending when there is no token."""

from __future__ import annotations

import itertools
import logging

import pytest

from ext import config
from ext.sender.hec import HecClient, Verdict
from ext.sender.secret_store import TokenFetchError
from ext.sender.token_source import FETCH_RETRY_CAP_S, THROTTLED_MIN_S, FetchedToken, StaticToken

REF = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hec-AbCdEf"


class FakeStore:
    reference = REF
    operation = "GetSecretValue"

    def __init__(self) -> None:
        self.answers: list[str | TokenFetchError] = []
        self.calls = 0

    def fetch(self) -> str:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, TokenFetchError):
            raise answer
        return answer

    def close(self) -> None:
        """Nothing to close."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def source(*answers: str | TokenFetchError, refetch_s: float = 30) -> tuple[
        FetchedToken, FakeStore, Clock]:
    store, clock = FakeStore(), Clock()
    store.answers = list(answers)
    return FetchedToken(store, refetch_s, clock), store, clock


def denied() -> TokenFetchError:
    return TokenFetchError(REF, "AccessDeniedException", "not authorized")


def test_fetched_once_and_cached() -> None:
    tokens, store, clock = source("tok-1")
    assert store.calls == 0  # nothing at construction: never on the register path
    assert tokens.current() == "tok-1"
    clock.now += 3600
    assert tokens.current() == "tok-1"
    assert store.calls == 1
    assert tokens.accepted() is None  # no hold, no notice


def test_failures_back_off_then_recover_with_one_notice(caplog: pytest.LogCaptureFixture) -> None:
    tokens, store, clock = source(denied(), denied(), denied(), "tok-1")
    caplog.set_level(logging.WARNING)
    start = clock.now
    assert tokens.current() is None
    assert "AccessDeniedException" in tokens.problem and REF in tokens.problem
    assert tokens.current() is None and store.calls == 1  # waiting out the backoff
    waits = []
    while tokens.current() is None:
        before = store.calls
        clock.now += 0.25
        if store.calls > before:
            waits.append(clock.now)
    assert store.calls == 4
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    assert gaps == sorted(gaps)  # the backoff grows
    clock.now += 5
    details = tokens.accepted()
    assert details is not None
    assert details["held_ms"] == int((clock.now - start) * 1000)
    assert details["failed_fetches"] == 3 and details["last_error"] == "AccessDeniedException"
    assert details["token_source"] == REF
    assert tokens.accepted() is None  # one notice per hold
    logged = caplog.text
    assert REF in logged and "AccessDeniedException" in logged and "tok-1" not in logged


def test_backoff_is_capped_and_throttling_waits_longer() -> None:
    tokens, store, clock = source(denied())
    for _ in range(30):
        tokens.current()
        clock.now += FETCH_RETRY_CAP_S
    assert store.calls == 30  # never longer than the cap between tries
    throttled = TokenFetchError(REF, "ThrottlingException", throttled=True)
    tokens, store, clock = source(throttled)
    tokens.current()
    clock.now += THROTTLED_MIN_S - 0.01
    tokens.current()
    assert store.calls == 1


def test_rotation_refetches_at_most_once_per_interval() -> None:
    tokens, store, clock = source("old", "old", "new", refetch_s=30)
    assert tokens.current() == "old"
    clock.now += 10
    tokens.rejected("old")
    assert tokens.current() == "old"  # 10 s after the fetch: not yet
    assert store.calls == 1
    clock.now += 20
    assert tokens.current() == "old"  # re-read, but the operator has not rotated yet
    assert store.calls == 2
    tokens.rejected("old")
    clock.now += 29
    assert tokens.current() == "old" and store.calls == 2
    clock.now += 1
    assert tokens.current() == "new" and store.calls == 3
    details = tokens.accepted()
    assert details is not None and details["rejections"] == 2
    assert details["last_error"] == "rejected by HEC"


def test_a_rejected_token_hec_then_accepts_is_not_read_again() -> None:
    # HEC refused the token once (a token still propagating to an indexer, a disabled token
    # enabled again), then accepted it: it is good, and no re-read is due any more.
    tokens, store, clock = source("tok", refetch_s=30)
    assert tokens.current() == "tok"
    tokens.rejected("tok")
    clock.now += 1
    assert tokens.current() == "tok" and store.calls == 1  # within the interval: not yet
    assert tokens.accepted() is not None  # HEC took a request with it
    clock.now += 3600
    assert tokens.current() == "tok"
    assert store.calls == 1


def test_a_rejection_of_an_older_token_is_ignored() -> None:
    tokens, store, clock = source("old", "new", refetch_s=1)
    tokens.current()
    tokens.rejected("old")
    clock.now += 1
    assert tokens.current() == "new"
    tokens.rejected("old")  # a request sent before the re-fetch
    clock.now += 5
    assert tokens.current() == "new" and store.calls == 2


def test_failed_refetch_keeps_the_cached_token() -> None:
    tokens, store, clock = source("old", denied(), refetch_s=2)
    tokens.current()
    tokens.rejected("old")
    clock.now += 2
    assert tokens.current() == "old"  # still tried: HEC may accept it again
    assert store.calls == 2
    clock.now += 1
    tokens.current()
    assert store.calls == 2  # backoff at least the re-fetch interval


def test_reprs_hide_the_token() -> None:
    assert "s3cret" not in repr(StaticToken("s3cret"))
    tokens, _, _ = source("s3cret")
    tokens.current()
    assert "s3cret" not in repr(tokens)


class NoToken:
    problem = f"GetSecretValue on {REF}: AccessDeniedException"

    def current(self) -> str | None:
        return None


def test_hec_client_holds_without_sending_when_there_is_no_token() -> None:
    cfg = config.load({"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "x"})
    client = HecClient(cfg, NoToken())  # type: ignore[arg-type]
    outcome = client.post(b"{}")
    assert outcome.verdict is Verdict.HOLD
    assert outcome.status == 0  # no request went out (port 9 would refuse: RETRY)
    assert REF in outcome.text
