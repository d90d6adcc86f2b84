"""Runs the extension's sender alone, as its own process, for tests and benchmarks.

argv: function-name wake-fd control-fd status-fd [notes-fd]; configuration from the environment.
"""

from __future__ import annotations

import logging
import os
import sys

from ext import config
from ext.sender.process import Sender


def main() -> None:
    name, wake, ctl, status, *notes = sys.argv[1], *map(int, sys.argv[2:6])
    logging.basicConfig(
        level="WARNING", format="[splunk-hec-ext] %(levelname)s sender: %(message)s"
    )
    for fd in (wake, ctl, status, *notes):
        os.set_blocking(fd, False)
    Sender(config.load(os.environ), name, wake, ctl, status,
           notes_fd=notes[0] if notes else -1).run()


if __name__ == "__main__":
    main()
