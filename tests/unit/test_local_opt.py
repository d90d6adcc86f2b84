"""The local /opt folder the emulator runs the extension from (ext/local/layer.py)."""

from __future__ import annotations

import os
from pathlib import Path

from ext.local.layer import EXTENSION_NAME, REPO_ROOT, make_local_opt


def test_the_opt_folder_runs_this_checkout_through_the_real_launcher(tmp_path: Path) -> None:
    opt = make_local_opt(tmp_path / "opt")
    launcher = opt / "extensions" / EXTENSION_NAME
    assert launcher.read_bytes() == (REPO_ROOT / "bootstrap").read_bytes()
    assert os.access(launcher, os.X_OK)
    assert (opt / EXTENSION_NAME / "ext").resolve() == (REPO_ROOT / "ext").resolve()
    for module in ("msgspec", "urllib3"):
        assert (opt / EXTENSION_NAME / module / "__init__.py").is_file()


def test_another_checkouts_code_can_be_run_and_then_this_ones_again(tmp_path: Path) -> None:
    older = tmp_path / "older" / "ext"
    older.mkdir(parents=True)
    opt = make_local_opt(tmp_path / "opt", code=older)
    assert (opt / EXTENSION_NAME / "ext").resolve() == older.resolve()
    make_local_opt(tmp_path / "opt")  # refreshed: back to this checkout
    assert (opt / EXTENSION_NAME / "ext").resolve() == (REPO_ROOT / "ext").resolve()
