"""Embedded Splunk HEC receiver (local tooling): HTTP(S) server, SQLite store, fault injection.

Used by tests, benchmarks and the demo; never imported by the extension core and never shipped
in the layer. It speaks raw JSON and does not import ext core modules. See docs/hec-receiver.md.
"""

from __future__ import annotations

from ext.local.hec.faults import FaultMode
from ext.local.hec.model import DEFAULT_TOKEN_VALUE, HecLimits, HecToken, StoredEvent
from ext.local.hec.receiver import HecReceiver

__all__ = [
    "DEFAULT_TOKEN_VALUE",
    "FaultMode",
    "HecLimits",
    "HecReceiver",
    "HecToken",
    "StoredEvent",
]
