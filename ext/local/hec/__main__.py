"""`python -m ext.local.hec serve|query ...`: see ext.local.hec.cli."""

from __future__ import annotations

import sys

from ext.local.hec.cli import main

if __name__ == "__main__":
    sys.exit(main())
