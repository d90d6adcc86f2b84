"""The README's configuration table, made from the one table of settings (ext/config.py SETTINGS).

    .venv/bin/python -m scripts.config_table            # prints the table
    .venv/bin/python -m scripts.config_table --write    # puts it into README.md
    .venv/bin/python -m scripts.config_table --check    # exit 1 when README.md differs

The table sits in README.md between the two marker comments below; tests/unit/test_config_table.py
fails when it differs from what this script makes, so the README and the code cannot drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NamedTuple

from ext import config

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- configuration table: made by scripts/config_table.py, do not edit -->"
END = "<!-- end of the configuration table -->"
DASH = "\N{EN DASH}"
HEADER = ("| variable | default | meaning |", "|---|---|---|")
BOUNDED_KINDS = ("integer", "megabytes")


class Setting(NamedTuple):
    """A row of ext/config.py SETTINGS with its columns named (the runtime keeps plain tuples:
    no objects built on the cold-start path)."""

    name: str
    field: str
    kind: str
    default: object
    limits: Any
    shown: str
    flags: str
    help: str


def settings() -> list[Setting]:
    return [Setting(*row) for row in config.SETTINGS]


def default_text(setting: Setting) -> str | None:
    """The default written as a value of the variable (it parses back to the default), or None
    when the default is no value."""
    default = setting.default
    if default is None or default in ((), ""):
        return None
    if setting.kind == "megabytes" and isinstance(default, int):
        return str(default // 2**20)
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple):
        return ",".join(default)
    return str(default)


def default_cell(setting: Setting) -> str:
    """What the README says about the default; an integer's bounds follow."""
    text = default_text(setting)
    cell = setting.shown or (f"`{text}`" if text is not None else DASH)
    if setting.kind in BOUNDED_KINDS:
        low, high = setting.limits
        cell += f" ({low}{DASH}{high})"
    return cell


def render() -> str:
    """The Markdown table, one row per variable in the order of SETTINGS."""
    rows = [f"| `{s.name}` | {default_cell(s)} | {s.help} |" for s in settings()]
    return "\n".join([*HEADER, *rows]) + "\n"


def readme_table(text: str) -> str:
    """The part of the README between the markers."""
    if START not in text or END not in text:
        raise ValueError(f"README.md has no {START!r} ... {END!r} section")
    return text.split(START, 1)[1].split(END, 1)[0].lstrip("\n")


def with_table(text: str, table: str) -> str:
    """`text` (the README) with the part between the markers replaced by `table`."""
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="update README.md")
    action.add_argument("--check", action="store_true", help="exit 1 when README.md differs")
    args = parser.parse_args(argv)
    table = render()
    if args.write:
        README.write_text(with_table(README.read_text(), table))
    elif args.check:
        if readme_table(README.read_text()) != table:
            print("README.md's configuration table differs from ext/config.py SETTINGS: "
                  "run `python -m scripts.config_table --write`", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
