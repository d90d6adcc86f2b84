"""What several spool test files do alike: a segment's path, measure the segments on disk, drain a
spool."""

from __future__ import annotations

import os
from pathlib import Path

from ext.spool import SpoolReader, SpoolRecord, layout
from ext.spool.layout import list_segments


def segment_path(directory: str | os.PathLike[str], base: int) -> Path:
    """A segment's file as a Path (the spool itself keeps paths as str)."""
    return Path(layout.segment_path(os.fspath(directory), base))


def on_disk(directory: Path) -> int:
    """Bytes in the spool's segment files."""
    bases = list_segments(os.fspath(directory))
    return sum(os.stat(segment_path(directory, b)).st_size for b in bases)


def drain(directory: Path) -> tuple[list[SpoolRecord], SpoolReader]:
    """Every record a new reader finds, each batch committed as the sender would; the reader is
    left open for the caller to look at (and close)."""
    reader = SpoolReader(directory)
    out: list[SpoolRecord] = []
    while batch := reader.read(1000, 1 << 20):
        out += batch
        reader.commit(batch[-1].seq)
    return out, reader
