"""Runs the extension's sender alone, as its own process, for tests and benchmarks.

argv: function-name wake-fd control-fd status-fd; configuration from the environment.
"""

from __future__ import annotations

import logging
import os
import sys

from ext import config
from ext.sender.process import Sender


def main() -> None:
    name, wake, ctl, status = sys.argv[1], *map(int, sys.argv[2:5])
    logging.basicConfig(
        level="WARNING", format="[splunk-hec-ext] %(levelname)s sender: %(message)s"
    )
    for fd in (wake, ctl, status):
        os.set_blocking(fd, False)
    Sender(config.load(os.environ), name, wake, ctl, status).run()


if __name__ == "__main__":
    main()
