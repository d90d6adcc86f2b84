"""The receiver CLI as a real process: serve prints a ready line, faults switch over the admin
endpoint from this (another) process, query shows what arrived, SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_hec_receiver_helpers import CHANNEL, EVENT, request, splunk_auth

pytestmark = pytest.mark.integration

APP_TOKEN = "aaaaaaaa-0000-0000-0000-000000000001"
ACK_TOKEN = "aaaaaaaa-0000-0000-0000-000000000002"


def read_ready_line(proc: subprocess.Popen[str], deadline_s: float = 20) -> dict[str, Any]:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if selector.select(timeout=0.2):
                line = proc.stdout.readline()
                assert line, f"serve exited early: rc={proc.poll()}"
                ready: dict[str, Any] = json.loads(line)
                return ready
            assert proc.poll() is None, f"serve exited early: rc={proc.returncode}"
    raise AssertionError("no ready line before the deadline")


def run_serve(args: list[str]) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ext.local.hec", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, read_ready_line(proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    yield from run_serve(
        [
            "--db",
            str(tmp_path / "hec.db"),
            "--token",
            f"app={APP_TOKEN},index=lambda,index=audit,default_index=lambda",
            "--token",
            f"acker={ACK_TOKEN},ack=1",
        ]
    )


def query(db: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "ext.local.hec", "query", "--db", db, "--json", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_serve_faults_query_and_stop(served: tuple[subprocess.Popen[str], dict[str, Any]]) -> None:
    proc, ready = served
    url, db = ready["url"], ready["db"]
    assert url.startswith("http://127.0.0.1:") and ready["tokens"] == ["app", "acker"]
    body = (
        b'{"event":{"m":1},"sourcetype":"a","fields":{"fn":"x"}}\n{"event":"two","sourcetype":"b"}'
    )
    assert request(url, EVENT, body, splunk_auth(APP_TOKEN)).status == 200
    bad_index = request(url, EVENT, b'{"event":1,"index":"main"}', splunk_auth(APP_TOKEN))
    assert bad_index.json()["code"] == 7

    fault = json.dumps({"mode": "throttle", "count": 1, "retry_after": 4}).encode()
    assert request(url, "/_admin/fault", fault).status == 200
    throttled = request(url, EVENT, b'{"event":3}', splunk_auth(APP_TOKEN))
    assert (throttled.status, throttled.headers["retry-after"]) == (429, "4")

    acked = request(
        url, EVENT, b'{"event":4}', {**splunk_auth(ACK_TOKEN), "X-Splunk-Request-Channel": CHANNEL}
    )
    assert acked.json() == {"text": "Success", "code": 0, "ackId": 0}

    assert {r["sourcetype"]: r["count"] for r in query(db, "counts")} == {
        "a": 1,
        "b": 1,
        "httpevent": 1,
    }
    assert [r["event"] for r in query(db, "tail", "-n", "2")] == ['"two"', "4"]
    assert [r["event"] for r in query(db, "search", "--field", "fn=x")] == ['{"m":1}']
    assert [r["index"] for r in query(db, "search", "--token-name", "app")] == ["lambda", "lambda"]

    proc.terminate()
    assert proc.wait(10) == 0


def test_serve_from_config_file(tmp_path: Path) -> None:
    config = tmp_path / "hec.json"
    config.write_text(
        json.dumps(
            {
                "tokens": [{"name": "cfg", "value": APP_TOKEN, "allow_query_auth": True}],
                "limits": {"max_event_size": 10},
                "partial_prefix": True,
            }
        )
    )
    for _proc, ready in run_serve(["--db", str(tmp_path / "db"), "--config", str(config)]):
        answer = request(
            ready["url"], f"{EVENT}?token={APP_TOKEN}", b'{"event":"ok"}{"event":"much too long"}'
        )
        assert answer.json() == {
            "text": "Invalid data format",
            "code": 6,
            "invalid-event-number": 1,
        }
        stats = request(ready["url"], "/_admin/stats", method="GET").json()
        assert stats["stored_events"] == 1  # partial prefix kept


def test_query_missing_db_fails_cleanly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ext.local.hec", "query", "--db", str(tmp_path / "none"), "tail"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "no such store" in done.stderr
