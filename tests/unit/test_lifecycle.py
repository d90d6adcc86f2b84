"""The main process's error policy, with stand-ins for the Extensions API and the children."""

from __future__ import annotations

import pytest

from ext import errors, lifecycle

ENV = {"SPLUNK_HOST": "https://splunk.example:8088", "SPLUNK_HEC_TOKEN": "secret-token"}


class FakeApi:
    def __init__(self, events: list[bytes]) -> None:
        self.events = events
        self.reports: list[tuple[str, str, str]] = []

    def next_event(self) -> bytes:
        if not self.events:
            raise errors.ApiError("/next", 500, b"")
        return self.events.pop(0)

    def init_error(self, error_type: str, message: str) -> None:
        self.reports.append(("init", error_type, message))

    def exit_error(self, error_type: str, message: str) -> None:
        self.reports.append(("exit", error_type, message))


class StubLoop:
    def __init__(self, api: FakeApi, config: object, function_name: str) -> None:
        self.api = api
        self.stopped = False

    def start(self) -> None:
        pass

    def serve(self) -> int:
        self.api.next_event()
        return 0

    def stop_children(self) -> None:
        self.stopped = True


def test_bad_config_reports_init_error_naming_variables() -> None:
    api = FakeApi([])
    code = lifecycle.run(api, {"DISPATCH_MIN_BATCH_SIZE": "x"})  # type: ignore[arg-type]
    assert code == 1
    [(kind, error_type, message)] = api.reports
    assert (kind, error_type) == ("init", errors.CONFIG_INVALID)
    for variable in ("SPLUNK_HOST", "SPLUNK_HEC_TOKEN", "DISPATCH_MIN_BATCH_SIZE"):
        assert variable in message


def test_disable_mode_stays_dormant_until_shutdown() -> None:
    api = FakeApi([b'{"eventType":"INVOKE","requestId":"r"}', b'{"eventType":"SHUTDOWN"}'])
    env = {"SPLUNK_ON_CONFIG_ERROR": "disable"}
    assert lifecycle.run(api, env) == 0  # type: ignore[arg-type]
    assert api.reports == [] and api.events == []


def test_unrecoverable_error_after_init_reports_exit_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle, "MainLoop", StubLoop)
    api = FakeApi([])
    assert lifecycle.run(api, ENV) == 1  # type: ignore[arg-type]
    [(kind, error_type, message)] = api.reports
    assert (kind, error_type) == ("exit", errors.RUNTIME_FAILED)
    assert "secret-token" not in message


def test_event_parsing() -> None:
    event = lifecycle.Event(b'{"eventType":"SHUTDOWN","shutdownReason":"timeout","deadlineMs":5}')
    assert (event.kind, event.reason, event.deadline_ms, event.request_id) == (
        "SHUTDOWN", "timeout", 5, None)
    odd = lifecycle.Event(b'["not an object"]')
    assert (odd.kind, odd.request_id, odd.deadline_ms) == ("", None, 0)
