"""Fault injection for the embedded HEC receiver: the switchable modes of hec.md 3.6.

A FaultBoard holds an ordered list of active faults per target (data requests, /ack, health,
the sticky-cookie check); each request takes the first live one. Set from tests in-process or
from another process through POST /_admin/fault. Thread-safe; no I/O.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FaultMode(StrEnum):
    """Every injectable fault; the value is the name used by the admin endpoint and the CLI."""

    BUSY = "busy"  # 503 code 9, optional Retry-After
    THROTTLE = "throttle"  # 429 code 26 (or 27), optional Retry-After
    SERVER_ERROR = "server_error"  # 500 code 8
    NOT_FOUND = "not_found"  # transient 404 (Splunk Cloud maintenance)
    TOO_LARGE = "too_large"  # 413 HTML for bodies of at least min_bytes
    INVALID_EVENT = "invalid_event"  # 400 code 6/7/12/13/15 at event `index`, partial or atomic
    AUTH = "auth"  # 401/403 with code 1-4 (token rotation: fails, then recovers)
    SHUTTING_DOWN = "shutting_down"  # 503 code 23
    WARNING = "warning"  # 200 with code 24 or 25, events stored
    RESET_AFTER_STORE = "reset_after_store"  # store, then TCP RST without a reply
    DELAY = "delay"  # store, then reply only after `seconds`
    CLOSE_AFTER_RESPONSE = "close_after_response"  # reply, then FIN the keep-alive connection
    STALE_KEEPALIVE = "stale_keepalive"  # reply, then RST the next request on that connection
    ACK_PENDING = "ack_pending"  # ids issued now answer false for `polls` queries
    ACK_LOST = "ack_lost"  # ids issued now never become true (evicted)
    ACK_ERROR = "ack_error"  # /ack itself answers an HEC error code (default 8)
    UNHEALTHY = "unhealthy"  # health answers 503 code 18/19/20/23
    STICKY_COOKIE = "sticky_cookie"  # ack-token requests without an LB cookie get 400


DATA = "data"
ACK = "ack"
HEALTH = "health"
COOKIE = "cookie"

# mode -> (target, allowed params with defaults)
_SPEC: dict[FaultMode, tuple[str, dict[str, Any]]] = {
    FaultMode.BUSY: (DATA, {"retry_after": None}),
    FaultMode.THROTTLE: (DATA, {"retry_after": None, "code": 26}),
    FaultMode.SERVER_ERROR: (DATA, {}),
    FaultMode.NOT_FOUND: (DATA, {}),
    FaultMode.TOO_LARGE: (DATA, {"min_bytes": 0}),
    FaultMode.INVALID_EVENT: (DATA, {"code": 6, "index": 0, "partial": False}),
    FaultMode.AUTH: (DATA, {"code": 4}),
    FaultMode.SHUTTING_DOWN: (DATA, {}),
    FaultMode.WARNING: (DATA, {"code": 24}),
    FaultMode.RESET_AFTER_STORE: (DATA, {"store": True}),
    FaultMode.DELAY: (DATA, {"seconds": 5.0, "store": True}),
    FaultMode.CLOSE_AFTER_RESPONSE: (DATA, {}),
    FaultMode.STALE_KEEPALIVE: (DATA, {}),
    FaultMode.ACK_PENDING: (DATA, {"polls": 3}),
    FaultMode.ACK_LOST: (DATA, {}),
    FaultMode.ACK_ERROR: (ACK, {"code": 8}),
    FaultMode.UNHEALTHY: (HEALTH, {"code": 18}),
    FaultMode.STICKY_COOKIE: (COOKIE, {"cookie": "AWSALB"}),
}
_ALLOWED_CODES = {
    FaultMode.THROTTLE: {26, 27},
    FaultMode.INVALID_EVENT: {6, 7, 12, 13, 15},
    FaultMode.AUTH: {1, 2, 3, 4},
    FaultMode.WARNING: {24, 25},
    FaultMode.UNHEALTHY: {18, 19, 20, 23},
}
# Cookies an AWS load balancer sets; Splunk's headerEnforcementMode=block wants one of them.
LB_COOKIES = ("AWSELB", "AWSALB", "AWSALBCORS", "AWSELBCORS")


@dataclass
class Fault:
    """One active fault: mode, parameters, and how many more requests it applies to."""

    mode: FaultMode
    params: dict[str, Any]
    remaining: int | None  # None: until cleared
    applied: int = 0
    target: str = field(default=DATA)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the admin endpoint."""
        return {
            "mode": str(self.mode),
            "params": self.params,
            "remaining": self.remaining,
            "applied": self.applied,
            "target": self.target,
        }


def make_fault(mode: FaultMode | str, count: int | None = None, **params: Any) -> Fault:
    """Validate a fault request; raises ValueError on an unknown mode, parameter or code."""
    fault_mode = FaultMode(mode)
    target, defaults = _SPEC[fault_mode]
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(f"fault {fault_mode} takes {sorted(defaults)}, not {sorted(unknown)}")
    merged = {**defaults, **params}
    codes = _ALLOWED_CODES.get(fault_mode)
    if codes is not None and merged["code"] not in codes:
        raise ValueError(f"fault {fault_mode} code must be one of {sorted(codes)}")
    if count is not None and count < 1:
        raise ValueError("count must be >= 1 (omit it for 'until cleared')")
    return Fault(fault_mode, merged, count, target=target)


class FaultBoard:
    """The active faults, consulted once per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def set(self, fault: Fault) -> None:
        """Replace every fault of the same target with this one."""
        with self._lock:
            self._faults = [f for f in self._faults if f.target != fault.target] + [fault]

    def add(self, fault: Fault) -> None:
        """Queue this fault after the existing ones (scripted sequences)."""
        with self._lock:
            self._faults.append(fault)

    def clear(self, target: str | None = None) -> None:
        """Drop all faults, or those of one target."""
        with self._lock:
            self._faults = [f for f in self._faults if target is not None and f.target != target]

    def take(self, target: str, body_bytes: int = 0) -> Fault | None:
        """The first live fault for `target`, counted as applied once; None if there is none."""
        with self._lock:
            for fault in self._faults:
                if fault.target != target:
                    continue
                if fault.mode is FaultMode.TOO_LARGE and body_bytes < fault.params["min_bytes"]:
                    continue
                fault.applied += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return Fault(fault.mode, dict(fault.params), fault.remaining, fault.applied, target)
        return None

    def peek(self, target: str) -> Fault | None:
        """The first live fault for `target` without consuming it (sticky-cookie check)."""
        with self._lock:
            return next((f for f in self._faults if f.target == target), None)

    def snapshot(self) -> list[dict[str, Any]]:
        """All active faults as dicts."""
        with self._lock:
            return [f.to_json() for f in self._faults]
