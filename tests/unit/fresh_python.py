"""What a probe prints in a fresh `python -S` with this checkout first on its path: the imports a
cold start makes, without the site-packages this machine's Python would load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def probe_output(probe: str) -> list[str]:
    """The words `probe` prints; it finds the checkout's path in sys.argv[1]."""
    return subprocess.run([sys.executable, "-S", "-c", probe, str(ROOT)], capture_output=True,
                          text=True, check=True).stdout.split()
