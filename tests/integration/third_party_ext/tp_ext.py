#!/usr/bin/env python3
"""A Lambda extension as a third party writes one: plain stdlib, no project code.

Registers (name = its file name), subscribes to the Telemetry API with a tiny HTTP listener, handles
INVOKE/SHUTDOWN, and runs a background ticker whose clock gaps prove it was frozen. Everything it
sees goes as JSON lines to $TP_OUT (with CLOCK_MONOTONIC times, comparable with the emulator's).
$TP_MODE: normal | wrong_name | init_error | exit_error | linger (stays 1.8 s after SHUTDOWN) |
lmi (as on Lambda Managed Instances: tries INVOKE, an internal name and schema 2022-12-13 first,
falls back to SHUTDOWN only and 2025-01-29, and keeps a heartbeat in $TP_OUT.beat).
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"]
NAME = os.path.basename(sys.argv[0])
MODE = os.environ.get("TP_MODE", "normal")
OUT = open(os.environ["TP_OUT"], "a", buffering=1)  # noqa: SIM115
LOCK = threading.Lock()
TICKS = {"last": time.monotonic(), "max_gap": 0.0}


def note(kind: str, **fields: object) -> None:
    with LOCK:
        OUT.write(
            json.dumps({"kind": kind, "t": time.monotonic(), "pid": os.getpid(), **fields}) + "\n"
        )


def call(
    method: str, path: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


class Listener(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        note("telemetry", events=batch)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def ticker() -> None:
    while True:
        now = time.monotonic()
        TICKS["max_gap"] = max(TICKS["max_gap"], now - TICKS["last"])
        TICKS["last"] = now
        time.sleep(0.005)


def heartbeat() -> None:
    """Rewrite $TP_OUT.beat with a counter: it advances only while the process runs."""
    beat = os.environ["TP_OUT"] + ".beat"
    count = 0
    while True:
        count += 1
        with open(beat + ".tmp", "w") as f:
            f.write(f"{count} {time.monotonic()}")
        os.replace(beat + ".tmp", beat)
        time.sleep(0.01)


def register(name: str, events: list[str]) -> tuple[int, dict[str, str]]:
    status, headers, body = call(
        "POST",
        "/2020-01-01/extension/register",
        {"events": events},
        {"Lambda-Extension-Name": name},
    )
    note("register", name=name, events=events, status=status, body=body)
    return status, headers


def main() -> None:
    name = "not-" + NAME if MODE == "wrong_name" else NAME
    if MODE == "lmi":
        register("not-" + NAME, ["INVOKE"])  # internal: no events at all on LMI
    status, headers = register(name, ["INVOKE", "SHUTDOWN"])
    if MODE == "lmi" and status == 403:
        status, headers = register(name, ["SHUTDOWN"])
    if status != 200:
        return  # e.g. a misnamed (internal) extension may not subscribe to SHUTDOWN
    ext_id = headers["Lambda-Extension-Identifier"]
    auth = {"Lambda-Extension-Identifier": ext_id}
    if MODE == "init_error":
        note(
            "init_error",
            result=call(
                "POST",
                "/2020-01-01/extension/init/error",
                {"errorMessage": "boom"},
                {**auth, "Lambda-Extension-Function-Error-Type": "Ext.Boom"},
            ),
        )
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sub = {
        "schemaVersion": "2022-12-13",
        "types": ["platform", "function", "extension"],
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {
            "protocol": "HTTP",
            "URI": f"http://sandbox.localdomain:{server.server_address[1]}/",
        },
    }
    result = call("PUT", "/2022-07-01/telemetry", sub, auth)
    note("subscribe", schema=sub["schemaVersion"], result=result)
    if MODE == "lmi" and result[0] == 400:
        sub["schemaVersion"] = "2025-01-29"
        result = call("PUT", "/2022-07-01/telemetry", sub, auth)
        note("subscribe", schema=sub["schemaVersion"], result=result)
    threading.Thread(target=ticker, daemon=True).start()
    if MODE == "lmi":
        threading.Thread(target=heartbeat, daemon=True).start()
    print(f"{NAME} ready", flush=True)
    while True:
        status, _, event = call("GET", "/2020-01-01/extension/event/next", None, auth)
        # The ticker may not have run yet since the thaw: count the time since its last tick too.
        gap = max(TICKS["max_gap"], time.monotonic() - TICKS["last"])
        TICKS["max_gap"] = 0.0
        note("event", status=status, event=event, max_gap=gap)
        if MODE == "exit_error" and event.get("eventType") == "INVOKE":
            note(
                "exit_error",
                result=call(
                    "POST",
                    "/2020-01-01/extension/exit/error",
                    None,
                    {**auth, "Lambda-Extension-Function-Error-Type": "Ext.X"},
                ),
            )
            return
        if event.get("eventType") == "SHUTDOWN":
            # Let the shutdown window's telemetry arrive.
            time.sleep(1.8 if MODE == "linger" else 0.2)
            note("exit")
            return


if __name__ == "__main__":
    main()
