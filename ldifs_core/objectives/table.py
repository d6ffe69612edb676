"""The objectives tables, generated from the registry: `python -m ldifs_core.objectives.table` (`make docs`) rewrites
the part between the markers of README.md (a short table) and of docs/objectives.md (with every objective's own
options); with --check it only says whether either is stale."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

START, END = "<!-- objectives-table:start -->", "<!-- objectives-table:end -->"
ROOT = Path(__file__).resolve().parents[2]
README, REFERENCE = ROOT / "README.md", ROOT / "docs" / "objectives.md"


def objectives_table(with_options: bool = False) -> str:
    """One row per objective: what it does, its default λ and, `with_options`, its own options with their flag,
    default and range."""
    from ldifs_core.config import RUN_SETTINGS
    from ldifs_core.objectives import OBJECTIVE_TYPES

    def described(option) -> str:
        declared = RUN_SETTINGS[option.name]
        flag = f"--{option.name.replace('_', '-')}" if declared.flag is None else declared.flag
        shown = ("off" if option.default is False else option.default)
        bound = f", {declared.bound()}" if declared.least is not None or declared.most is not None else ""
        return f"`{flag or option.name}`{'' if flag else ' (no flag)'} ({shown}{bound}): {declared.help}"

    extra = (" its own options |", "---|") if with_options else ("", "")
    rows = ["| objective | what it does | λ (default) |" + extra[0], "|---|---|---|" + extra[1]]
    for name, kind in OBJECTIVE_TYPES.items():
        lam = "—" if kind.default_lam is None else f"{kind.default_lam:g}"
        options = f" {'<br>'.join(described(option) for option in kind.options) or '—'} |" if with_options else ""
        rows.append(f"| `{name}` | {kind.summary} | {lam} |{options}")
    return "\n".join(rows)


def with_table(text: str, with_options: bool = False) -> str:
    """`text` with the part between the markers replaced by the current table; ValueError without the markers."""
    if START not in text or END not in text:
        raise ValueError(f"the markers {START} and {END} are missing")
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{objectives_table(with_options)}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ldifs_core.objectives.table", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed table is stale")
    args = parser.parse_args(argv)
    stale = False
    for path, with_options in ((README, False), (REFERENCE, True)):
        text = path.read_text()
        fresh = with_table(text, with_options)
        if fresh != text and args.check:
            print(f"{path}: the objectives table is stale; run `make docs`.", file=sys.stderr)
            stale = True
        elif fresh != text:
            path.write_text(fresh)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
