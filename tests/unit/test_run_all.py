"""benchmarks/run_all.py stops a benchmark past its limit with everything it started: the
benchmark first gets SIGINT (its `finally` blocks run), then its process group is killed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks import run_all

# A "benchmark" that starts a helper (as one starts its HEC receiver), notes both pids, and runs
# past any limit; on SIGINT it writes a marker (its cleanup) and then ignores signals it can.
# The helper survives SIGINT (as a receiver still closing would): only the group's kill ends it.
HELPER = (
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN);"
    " print('ready', flush=True); time.sleep(120)"
)
SCRIPT = f"HELPER = {HELPER!r}\n" + """
import os, signal, subprocess, sys, time
out = sys.argv[1]
helper = subprocess.Popen([sys.executable, "-c", HELPER], stdout=subprocess.PIPE)
helper.stdout.readline()  # its SIGINT is ignored from now on
with open(out + ".pids", "w") as fh:
    fh.write(f"{os.getpid()} {helper.pid}")
try:
    time.sleep(120)
except KeyboardInterrupt:
    with open(out + ".cleaned", "w") as fh:
        fh.write("yes")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    time.sleep(120)  # a cleanup that hangs: the group is killed after the grace period
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != b"Z"


def test_a_benchmark_past_its_limit_is_interrupted_then_killed_with_its_group(
        tmp_path: Path) -> None:
    out = tmp_path / "bench"
    started = time.monotonic()
    code = run_all.run_bounded([sys.executable, "-c", SCRIPT, str(out)], timeout_s=3.0,
                               grace_s=1.0)
    assert code == -1
    assert time.monotonic() - started < 30
    assert (tmp_path / "bench.cleaned").read_text() == "yes"  # SIGINT came first
    bench, helper = (int(p) for p in (tmp_path / "bench.pids").read_text().split())
    deadline = time.monotonic() + 5
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(helper)
    assert not _alive(bench)


def test_a_benchmark_within_its_limit_gives_its_exit_code(tmp_path: Path) -> None:
    assert run_all.run_bounded([sys.executable, "-c", "raise SystemExit(3)"], timeout_s=30) == 3
    assert run_all.run_bounded([sys.executable, "-c", "pass"], timeout_s=30) == 0
