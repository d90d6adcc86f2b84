"""Durable, bounded, crash-safe spool between the listener (writer) and the sender (reader).

Stdlib only. The listener and the sender import it before they are forked, after the main process
registered (it is not on the cold-start path). Format, guarantees and failure analysis:
docs/spool.md.
"""

from __future__ import annotations

from ext.spool.ackstate import LossReport, SpoolStats, read_committed
from ext.spool.layout import SpoolLocked
from ext.spool.reader import SpoolReader, SpoolRecord
from ext.spool.writer import RecordTooLargeError, SpoolWriter

__all__ = [
    "LossReport",
    "RecordTooLargeError",
    "SpoolLocked",
    "SpoolReader",
    "SpoolRecord",
    "SpoolStats",
    "SpoolWriter",
    "read_committed",
]
