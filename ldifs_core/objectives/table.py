"""The README's objectives table, generated from the registry: `python -m ldifs_core.objectives.table` rewrites
the part of README.md between the markers (`make docs`); with --check it only says whether that part is stale."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

START, END = "<!-- objectives-table:start -->", "<!-- objectives-table:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def objectives_table() -> str:
    """One row per objective: what it does, its default λ, and its own options with their flag, default and range."""
    from ldifs_core.config import RUN_SETTINGS
    from ldifs_core.objectives import OBJECTIVE_TYPES

    def described(option) -> str:
        declared = RUN_SETTINGS[option.name]
        flag = f"--{option.name.replace('_', '-')}" if declared.flag is None else declared.flag
        shown = ("off" if option.default is False else option.default)
        bound = f", {declared.bound()}" if declared.least is not None or declared.most is not None else ""
        return f"`{flag or option.name}`{'' if flag else ' (no flag)'} ({shown}{bound}): {declared.help}"

    rows = ["| objective | what it does | λ (default) | its own options |", "|---|---|---|---|"]
    for name, kind in OBJECTIVE_TYPES.items():
        lam = "—" if kind.default_lam is None else f"{kind.default_lam:g}"
        options = "<br>".join(described(option) for option in kind.options) or "—"
        rows.append(f"| `{name}` | {kind.summary} | {lam} | {options} |")
    return "\n".join(rows)


def with_table(text: str) -> str:
    """`text` with the part between the markers replaced by the current table; ValueError without the markers."""
    if START not in text or END not in text:
        raise ValueError(f"the markers {START} and {END} are missing")
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{objectives_table()}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ldifs_core.objectives.table", description=__doc__)
    parser.add_argument("readme", nargs="?", type=Path, default=README)
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed table is stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    fresh = with_table(text)
    if args.check:
        if fresh != text:
            print(f"{args.readme}: the objectives table is stale; run `make docs`.", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
