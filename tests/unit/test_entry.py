"""The entry point in process (ext/__main__.py): the name it registers, the exit code and line
of each refusal, and what it does not disguise as one."""

from __future__ import annotations

import socket

import pytest

from ext import __main__ as entry
from ext.main import extensions_api, lifecycle
from tests.unit.lambda_api_stub import ScriptedApi, reply

REGISTERED = reply(200, b'{"functionName":"f"}', {"Lambda-Extension-Identifier": "id-1"})


def start(monkeypatch: pytest.MonkeyPatch, argv: list[str],
          answers: list[bytes | None]) -> tuple[int, ScriptedApi, list[object]]:
    """main() against a scripted Extensions API, lifecycle.run stood in for."""
    stub = ScriptedApi([answers])
    ran: list[object] = []

    def run(api: object, environ: object) -> int:
        ran.append(api)
        return 7

    monkeypatch.setenv(entry.RUNTIME_API, f" {stub.address}\n")  # as a shell may leave it
    monkeypatch.setattr("sys.argv", argv)
    monkeypatch.setattr(lifecycle, "run", run)
    try:
        return entry.main(), stub, ran
    finally:
        stub.close()


@pytest.mark.parametrize(("argv", "name"), [
    (["/opt/extensions/splunk-hec"], entry.DEFAULT_NAME),
    ([], entry.DEFAULT_NAME),
    (["/opt/extensions/splunk-hec", "my-ext"], "my-ext"),
    (["/opt/extensions/splunk-hec", "my-ext", "more"], "my-ext"),
])
def test_the_name_registered_is_the_launcher_s_or_the_default(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], name: str,
) -> None:
    # Lambda sends SHUTDOWN only to an extension registered under its file's name.
    code, stub, ran = start(monkeypatch, argv, [REGISTERED])
    assert code == 7 and len(ran) == 1  # lifecycle.run's own status is the process's
    [(line, headers, _)] = stub.requests
    assert line == f"POST {extensions_api.REGISTER_PATH} HTTP/1.1"
    assert headers[extensions_api.NAME_HEADER.lower()] == name


@pytest.mark.parametrize("value", [None, "", "  \n"])
def test_without_the_runtime_api_it_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], value: str | None,
) -> None:
    if value is None:
        monkeypatch.delenv(entry.RUNTIME_API, raising=False)
    else:
        monkeypatch.setenv(entry.RUNTIME_API, value)
    assert entry.main() == 2
    err = capfd.readouterr().err
    assert "AWS_LAMBDA_RUNTIME_API is not set" in err and err.count("\n") == 1


def test_a_refused_registration_exits_2_naming_the_answer(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    refused = reply(403, b'{"errorType":"Extension.TooManyExtensions"}')
    code, _, ran = start(monkeypatch, ["ext", "my-ext"], [refused])
    assert (code, ran) == (2, [])
    err = capfd.readouterr().err
    assert "/register answered 403" in err and "TooManyExtensions" in err
    assert err.count("\n") == 1


def test_an_unreachable_api_exits_2_with_the_system_s_words(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv(entry.RUNTIME_API, address)
    monkeypatch.setattr("sys.argv", ["ext"])
    assert entry.main() == 2
    err = capfd.readouterr().err
    assert f"{entry.RUNTIME_API}={address!r}: Connection refused" in err
    assert "[Errno" not in err  # the strerror, not the exception's repr


def test_an_unexpected_error_is_not_disguised_as_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bug in the client must show its traceback, not read as Lambda turning the extension down.
    def broken(self: object, name: str, events: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(extensions_api.ExtensionsApi, "register", broken)
    with pytest.raises(KeyError, match="bug"):
        start(monkeypatch, ["ext"], [REGISTERED])


def test_the_exit_says_what_is_buffered_and_skips_the_teardown() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = ("import atexit, sys\n"
              "from ext.__main__ import exit_now\n"
              "atexit.register(lambda: print('torn down'))\n"
              "print('buffered', end='')\n"
              "sys.stderr.write('err')\n"
              "exit_now(7)\n")
    import os

    # Block-buffered, as Lambda's pipe makes it: what is not flushed is gone with os._exit.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          text=True, timeout=60, check=False, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (7, "buffered", "err")
