"""The token cache and its re-fetch policy (ext/sender/token_source.py), on a fake store and
clock; and HecClient holding data without sending when there is no token."""

from __future__ import annotations

import itertools
import json
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


def test_at_shutdown_a_token_waiting_out_its_backoff_is_read_once_at_once() -> None:
    # The data waiting for a token is lost with the environment: an IAM policy fixed during a
    # long backoff would otherwise go unseen through the whole drain.
    tokens, store, clock = source(*[denied()] * 8, "tok-1")
    tokens.current()
    for _ in range(7):
        clock.now += FETCH_RETRY_CAP_S
        tokens.current()
    clock.now += 1  # the ninth read due a minute or more from now
    assert tokens.current() is None and store.calls == 8
    tokens.draining()
    assert tokens.current() == "tok-1" and store.calls == 9


def test_at_shutdown_a_failed_read_backs_off_as_before_and_never_spins() -> None:
    tokens, store, _ = source(denied())
    tokens.current()
    tokens.draining()
    assert tokens.current() is None and store.calls == 2  # the one read the drain allows
    for _ in range(100):
        tokens.current()
    assert store.calls == 2  # then the backoff again


def test_at_shutdown_a_rejected_token_is_read_again_at_once_and_a_good_one_is_not() -> None:
    tokens, store, _ = source("old", "new", refetch_s=30)
    assert tokens.current() == "old"
    tokens.draining()
    assert tokens.current() == "old" and store.calls == 1  # usable: not read again
    tokens.rejected("old")
    tokens.draining()
    assert tokens.current() == "new" and store.calls == 2  # not 30 s after the last read


def test_a_static_token_has_nothing_to_read_at_shutdown() -> None:
    static = StaticToken("tok-9")
    static.draining()
    assert static.current() == "tok-9"


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
    assert repr(tokens) == f"FetchedToken({REF!r}, cached=False)"
    tokens.current()
    assert repr(tokens) == f"FetchedToken({REF!r}, cached=True)"  # says so, never the value


@pytest.mark.parametrize(("old", "new"), [("tok-b", "tok-a"), ("tok-a", "tok-b")])
def test_a_rejection_of_an_older_token_is_ignored_however_the_two_sort(old: str, new: str) -> None:
    tokens, store, clock = source(old, new, refetch_s=1)
    assert tokens.current() == old
    tokens.rejected(old)
    clock.now += 1
    assert tokens.current() == new
    tokens.rejected(old)  # a request sent before the re-fetch
    clock.now += 5
    assert tokens.current() == new and store.calls == 2
    assert tokens.accepted() is not None  # the hold the first rejection began
    assert tokens.accepted() is None


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


# --- the backoff in seconds, the log lines, the notice's figures ------------------------------


class Draw:
    """Stands in for the module's `random`: every jittered wait drawn at its low or high end."""

    def __init__(self, end: str) -> None:
        self.end = end

    def uniform(self, low: float, high: float) -> float:
        return low if self.end == "low" else high


def retries(tokens: FetchedToken, store: FakeStore, clock: Clock, waits: list[float]) -> list[str]:
    """After a failed read, each wait in turn: "early" if the store is read again a millisecond
    before it is over, "on time" if at its end, else "late"."""
    seen = []
    for wait in waits:
        failed_at, calls = clock.now, store.calls
        clock.now = failed_at + wait - 0.001
        tokens.current()
        if store.calls == calls:
            clock.now = failed_at + wait
            tokens.current()
        seen.append("early" if clock.now < failed_at + wait else
                    "on time" if store.calls == calls + 1 else "late")
    return seen


@pytest.mark.parametrize(("end", "waits"), [
    # Documented (docs/deploy.md): 1 s doubling to 5 min, each drawn between half and all of it.
    ("high", [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]),
    ("low", [0.5, 1, 2, 4, 8, 16, 32, 64, 128, 150, 150, 150]),
])
def test_a_failed_read_is_retried_after_1_s_doubling_to_5_min(
    monkeypatch: pytest.MonkeyPatch, end: str, waits: list[float],
) -> None:
    monkeypatch.setattr("ext.sender.token_source.random", Draw(end))
    tokens, store, clock = source(denied())
    assert tokens.current() is None
    assert retries(tokens, store, clock, waits) == ["on time"] * len(waits)


@pytest.mark.parametrize(("end", "waits"), [
    ("high", [5, 5, 5, 8, 16]),  # 1, 2, 4 s raised to 5 s
    ("low", [5, 5, 5, 5, 8]),  # 0.5, 1, 2, 4 s raised to 5 s
])
def test_a_throttled_read_waits_5_s_at_least(
    monkeypatch: pytest.MonkeyPatch, end: str, waits: list[float],
) -> None:
    monkeypatch.setattr("ext.sender.token_source.random", Draw(end))
    throttled = TokenFetchError(REF, "ThrottlingException", throttled=True)
    tokens, store, clock = source(throttled)
    tokens.current()
    assert retries(tokens, store, clock, waits) == ["on time"] * len(waits)


def test_the_first_use_reads_the_token_whatever_the_clock_reads() -> None:
    # A monotonic clock counts from boot: in a microVM started a moment ago it reads under 1 s.
    tokens, store, clock = source("tok")
    clock.now = 0.0
    assert tokens.current() == "tok" and store.calls == 1


def test_the_log_says_when_a_read_brings_a_new_value_or_ends_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ext.sender.token_source")
    # Each read decodes a new string, equal to the last one until the secret is rotated.
    answers = ("tok-b", "tok-b", "tok-a", "tok-c")
    tokens, store, clock = source(*(json.loads(f'"{t}"') for t in answers), refetch_s=30)
    assert tokens.current() == "tok-b"
    assert caplog.messages == []  # the first read is no news
    tokens.rejected("tok-b")
    clock.now += 30
    assert tokens.current() == "tok-b" and store.calls == 2  # the same value: no news
    assert [m for m in caplog.messages if "HEC token read" in m] == []
    tokens.rejected("tok-b")
    clock.now += 30
    assert tokens.current() == "tok-a"  # a new value (sorting before the old one)
    tokens.rejected("tok-a")
    clock.now += 30
    assert tokens.current() == "tok-c"  # and one sorting after it
    assert [m for m in caplog.messages if "HEC token read" in m] == [
        f"HEC token read from {REF} (a new value)"] * 2
    caplog.clear()
    tokens, _, clock = source(denied(), denied(), "tok-c")
    while tokens.current() is None:
        clock.now += FETCH_RETRY_CAP_S
    assert [m for m in caplog.messages if "HEC token read" in m] == [
        f"HEC token read from {REF} after 2 failures"]
    assert not [m for m in caplog.messages if "tok-" in m]  # never a value


def test_each_hold_s_notice_counts_its_own_failures_rejections_and_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ext.sender.token_source")
    tokens, _, clock = source(denied(), "tok", refetch_s=30)
    held_from = clock.now
    assert tokens.current() is None
    clock.now += FETCH_RETRY_CAP_S
    assert tokens.current() == "tok"
    clock.now = held_from + 3600  # an hour until HEC takes it (an operator fixed the policy)
    first = tokens.accepted()
    assert first is not None
    assert (first["held_ms"], first["failed_fetches"], first["rejections"]) == (3_600_000, 1, 0)
    assert f"HEC accepts the token from {REF} again; delivery was held 3600.0 s" in (
        caplog.messages)
    tokens.rejected("tok")  # the second hold: one rejection, no failed read
    clock.now += 2.5
    second = tokens.accepted()
    assert second is not None
    assert (second["held_ms"], second["failed_fetches"], second["rejections"]) == (2500, 0, 1)
    assert second["last_error"] == "rejected by HEC"
    assert caplog.messages[-1] == f"HEC accepts the token from {REF} again; delivery was held 2.5 s"


def test_a_static_token_loads_none_of_the_aws_code() -> None:
    # Imported in main before the fork (ext/main/preload.py): the secret store, the signer and
    # the credentials client cost a function with SPLUNK_HEC_TOKEN nothing.
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import json, sys\n"
        "from ext import config\n"
        "from ext.sender import token_source\n"
        "cfg = config.load({'SPLUNK_HOST': 'http://127.0.0.1:9', 'SPLUNK_HEC_TOKEN': 'x'})\n"
        "source = token_source.for_config(cfg)\n"
        "print(json.dumps([type(source).__name__, sorted(sys.modules)]))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    kind, loaded = json.loads(out)
    assert kind == "StaticToken"
    assert not {"ext.sender.secret_store", "ext.sender.sigv4",
                "ext.sender.container_credentials"} & set(loaded)
