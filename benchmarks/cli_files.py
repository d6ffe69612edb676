"""How many project files one CLI `run` passes through, from flags to stored metrics (issue 19's budget: ≤ 10).

Counts the files of ldifs_core/ and app/ whose functions are called while `cli.main` runs (sys.setprofile on
every thread; module bodies, i.e. imports, left out), then lists them. Prints figures, never pass/fail.

Run: `.venv/bin/python benchmarks/cli_files.py` (a 12-step run on small limits into a temporary store); any
other `run` arguments may follow, e.g. `benchmarks/cli_files.py --objective ce`.
"""
from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_FILES = 10
SMALL_RUN = ["--dataset", "mnist", "--objective", "ldifs", "--lam", "10", "--steps", "12", "--eval-limit", "100",
             "--probe-limit", "5", "--probe-cap", "50", "--train-limit", "200", "--no-umap"]


def main() -> None:
    from ldifs_core.cli import main as cli

    called: set[str] = set()
    project = tuple(str(ROOT / folder) for folder in ("ldifs_core", "app"))

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(project) and code.co_name != "<module>":
            called.add(str(Path(code.co_filename).relative_to(ROOT)))

    with tempfile.TemporaryDirectory() as store:
        argv = ["run", *SMALL_RUN, *sys.argv[1:], "--store", store]
        sys.setprofile(profile)
        threading.setprofile(profile)
        try:
            code = cli(argv)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
    print(f"`run {' '.join(argv[1:-2])}` exited {code}; project files called: {len(called)}, budget "
          f"{BUDGET_FILES}, ratio {len(called) / BUDGET_FILES:.1f}")
    for name in sorted(called):
        print(f"  {name}")


if __name__ == "__main__":
    main()
