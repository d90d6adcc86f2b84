"""Builds a layer-like /opt folder from this checkout, so the emulator runs the extension exactly
as Lambda would: `<opt>/extensions/<name>` is the real bootstrap launcher and `<opt>/<name>/`
holds the `ext` package and its dependencies (symlinks into this environment, no copy).
"""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION_NAME = "splunk-hec-extension"
_DEPENDENCIES = ("msgspec", "urllib3")


def make_local_opt(dest: Path, name: str = EXTENSION_NAME, code: Path | None = None) -> Path:
    """Creates (or refreshes) `dest` as an /opt folder holding the extension; returns `dest`.
    `code`: the `ext` package it runs, when not this checkout's (another checkout's, to compare
    trees like for like)."""
    extensions = dest / "extensions"
    extensions.mkdir(parents=True, exist_ok=True)
    launcher = extensions / name
    shutil.copyfile(REPO_ROOT / "bootstrap", launcher)
    launcher.chmod(0o755)
    folder = dest / name
    folder.mkdir(parents=True, exist_ok=True)
    _link(folder / "ext", code or REPO_ROOT / "ext")
    for module in _DEPENDENCIES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{module} is not installed in this environment")
        _link(folder / module, Path(spec.origin).parent)
    return dest


def _link(path: Path, target: Path) -> None:
    if path.is_symlink() or path.exists():
        if path.resolve() == target.resolve():
            return
        path.unlink()
    path.symlink_to(target, target_is_directory=True)


def unpack_layer(zip_path: Path, dest: Path) -> Path:
    """Extracts a layer zip as Lambda does into `dest` (its /opt), file modes included."""
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            archive.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                (dest / info.filename).chmod(mode)
    return dest
