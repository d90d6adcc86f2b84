"""In CI (CI=true) a spool property test runs the same examples whatever else pytest collects.

Hypothesis mixes the literal constants of every imported local module into what it draws; a run
that also collected tests/integration/test_sender.py used to see other examples than the spool
tests alone (tests/conftest.py pins that pool). Each run records the choice sequence of every
example through a small plugin; the two runs must match example for example.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROPERTY = "tests/unit/test_spool_frame.py::test_any_single_byte_flip_is_detected_never_delivered"
OTHER_FILE = "tests/integration/test_sender.py"  # imports the HEC receiver, the sandbox, msgspec...
TRACE_PLUGIN = '''
import hashlib, os
from hypothesis.internal.conjecture import engine

_run = engine.ConjectureRunner.test_function

def test_function(self, data):
    result = _run(self, data)
    with open(os.environ["SPOOL_EXAMPLES_OUT"], "a") as out:
        out.write(hashlib.sha1(repr(data.choices).encode()).hexdigest() + "\\n")
    return result

engine.ConjectureRunner.test_function = test_function
'''


def examples(tmp_path: Path, name: str, *extra: str) -> list[str]:
    out = tmp_path / f"{name}.txt"
    env = {
        **os.environ,
        "CI": "true",
        "SPOOL_EXAMPLES_OUT": str(out),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "spool_trace",
         PROPERTY, *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text().split()


@pytest.mark.skipif(sys.platform != "linux", reason="the spool runs on Linux only")
def test_ci_examples_do_not_depend_on_what_else_is_collected(tmp_path: Path) -> None:
    (tmp_path / "spool_trace.py").write_text(TRACE_PLUGIN)
    alone = examples(tmp_path, "alone")
    with_other = examples(tmp_path, "with_other", OTHER_FILE, "--deselect", OTHER_FILE)
    assert len(alone) >= 100
    assert alone == with_other
