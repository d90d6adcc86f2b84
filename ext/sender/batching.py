"""Groups HEC envelopes into requests under a size bound, remembering which spool records end.

Pure functions, used by the sender. A request never exceeds `max_bytes` uncompressed unless a
single envelope alone does (it is then sent on its own: HEC's per-event limit is 5 MB, far above
any telemetry record). A spool record is committed only once every envelope of it was accepted.
"""

from __future__ import annotations

import msgspec


class HecBatch(msgspec.Struct):
    """The envelopes of one HEC request, and the spool seq it completes (if any)."""

    envelopes: list[bytes] = msgspec.field(default_factory=list)
    size: int = 0  # bytes of the newline-joined body
    completes_seq: int | None = None  # every record <= this seq is fully in this or earlier batches

    def body(self) -> bytes:
        return b"\n".join(self.envelopes)


def plan_batches(
    records: list[tuple[int | None, list[bytes]]], max_bytes: int
) -> list[HecBatch]:
    """Splits (seq, envelopes) records, in order, into batches of at most `max_bytes`."""
    batches: list[HecBatch] = []
    # Locals rather than attributes: this loop runs once per event.
    envelopes_out: list[bytes] = []
    size = 0
    completes: int | None = None
    for seq, envelopes in records:
        # A record that fits whole is taken at once: sizes only grow, so no envelope of it
        # would have started a new batch.
        whole = sum(map(len, envelopes)) + len(envelopes) - (0 if envelopes_out else 1)
        fits = bool(envelopes) and size + whole <= max_bytes
        if fits:
            envelopes_out.extend(envelopes)
            size += whole
        for envelope in () if fits else envelopes:
            length = len(envelope)
            if envelopes_out and size + 1 + length > max_bytes:
                batches.append(HecBatch(envelopes_out, size, completes))
                envelopes_out, size, completes = [], 0, None
            size += length + 1 if envelopes_out else length
            envelopes_out.append(envelope)
        if seq is not None:  # a record of the extension's own (self-metrics) completes nothing
            completes = seq
    if envelopes_out or completes is not None:
        batches.append(HecBatch(envelopes_out, size, completes))
    return batches


def split_batch(batch: HecBatch) -> tuple[HecBatch, HecBatch]:
    """Halves a batch (HEC 413); only the second half completes the original seq."""
    middle = max(1, len(batch.envelopes) // 2)
    first, second = batch.envelopes[:middle], batch.envelopes[middle:]
    return (
        HecBatch(first, _joined_size(first), None),
        HecBatch(second, _joined_size(second), batch.completes_seq),
    )


def without(batch: HecBatch, index: int) -> HecBatch:
    """The batch minus the envelope at `index` (a poison event HEC named)."""
    rest = batch.envelopes[:index] + batch.envelopes[index + 1 :]
    return HecBatch(rest, _joined_size(rest), batch.completes_seq)


def _joined_size(envelopes: list[bytes]) -> int:
    return sum(len(e) for e in envelopes) + max(0, len(envelopes) - 1)
