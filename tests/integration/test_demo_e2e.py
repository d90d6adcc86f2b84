"""`./dev demo`, the README's first command, end to end: every line the function wrote reaches
Splunk through an outage, a timeout and an out-of-memory kill (each a reset), at 128 MB's CPU
share where the machine allows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ext.local import demo

pytestmark = pytest.mark.integration


def test_the_demo_loses_no_line_and_recovers_from_each_reset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # With a 2 s timeout at 128 MB the init after the timeout's reset did not fit in the next
    # invocation's timeout, nor in any after it: 60 of 240 lines were never written.
    summary = demo.run_demo(12, 5, tmp_path)
    printed = capsys.readouterr().out
    assert summary["lines_written"] == 60
    assert summary["lines_missing"] == 0 and summary["lines_duplicated"] == 0, printed
    statuses = [line.split()[1] for line in printed.splitlines() if line.startswith("demo0")]
    assert statuses.count("timeout") == 1, printed  # the one planned, no other after it
    assert "extension exited by itself" in printed
