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

from ext.config import SETTINGS, Setting

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- configuration table: made by scripts/config_table.py, do not edit -->"
END = "<!-- end of the configuration table -->"
DASH = "\N{EN DASH}"
HEADER = ("| variable | default | meaning |", "|---|---|---|")


def default_cell(setting: Setting) -> str:
    """What the README says about the default: a value that parses to it, or words; an
    integer's bounds follow."""
    if setting.shown_default:
        text = setting.shown_default
    elif setting.default_text is not None:
        text = f"`{setting.default_text}`"
    else:
        text = DASH
    if setting.low is not None and setting.high is not None:
        text += f" ({setting.low}{DASH}{setting.high})"
    return text


def render(settings: tuple[Setting, ...] = SETTINGS) -> str:
    """The Markdown table, one row per variable in the order of `settings`."""
    rows = [f"| `{s.name}` | {default_cell(s)} | {s.doc} |" for s in settings]
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
