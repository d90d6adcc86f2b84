"""`python -m ext.local.sandbox` runs the emulator CLI (cli.py)."""

from __future__ import annotations

import sys

from ext.local.sandbox.cli import main

sys.exit(main())
