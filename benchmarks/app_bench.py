"""Server-side speed of the app: the first page load and switching pages/runs once results are cached.

Run: .venv/bin/python benchmarks/app_bench.py   (prints figures with their budgets; never fails on a number)

Every figure is the time of an AppTest script run, which is what the server spends per browser interaction.
The store holds sample finished runs (tests/app/sample_runs.py), so no training happens here.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAIN = str(ROOT / "app" / "main.py")
FIRST_LOAD_BUDGET_S = 5.0
SWITCH_BUDGET_S = 0.3
REPEATS = 7
RESULT_PAGES = ("views/forgetting.py", "views/drift.py", "views/runs.py", "views/learn.py", "views/launch.py")

# Runs in a fresh interpreter: the clock starts before streamlit or the app is imported.
FIRST_LOAD = """
import json, os, sys, time
started = time.perf_counter()
from streamlit.testing.v1 import AppTest
app = AppTest.from_file(sys.argv[1], default_timeout=120)
app.run()
ready = loaded = time.perf_counter()
if len(sys.argv) > 2:
    app.switch_page(sys.argv[2])
    app.run()
    loaded = time.perf_counter()
print(json.dumps({"first_page_s": ready - started, "next_page_s": loaded - ready,
                  "errors": [str(e.value) for e in app.exception]}), flush=True)
os._exit(0)  # the worker's warm-up thread may still be compiling; do not wait for it
"""

def fill_store(root: Path) -> list[str]:
    from ldifs_core.store import RunStore
    from tests.app.sample_runs import add_ended_run, add_finished_run

    store = RunStore(root)
    runs = [add_finished_run(store, objective="ce"), add_finished_run(store, objective="ldifs", lam=10.0),
            add_finished_run(store, objective="ldifs", lam=1.0, seed=1)]
    add_ended_run(store, "failed", "The loss became nan at step 3: lower the learning rate.")
    return runs


def fresh_process_load(store: Path, page: str | None = None) -> dict:
    args = [sys.executable, "-c", FIRST_LOAD, MAIN] + ([page] if page else [])
    env = {**os.environ, "LDIFS_STORE": str(store), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def timed_run(app) -> float:
    started = time.perf_counter()
    app.run()
    return time.perf_counter() - started


def switching_times(store: Path, run_ids: list[str]) -> dict[str, float]:
    """Median server time per page switch and per run switch, after each page has been visited once."""
    os.environ["LDIFS_STORE"] = str(store)
    from streamlit.testing.v1 import AppTest

    from app import jobs
    from ldifs_core.store import RunStore

    idle_runner = jobs.JobRunner(RunStore(store))  # steady state: no warm-up competing for the CPU
    jobs.job_runner = lambda: idle_runner
    app = AppTest.from_file(MAIN, default_timeout=120)
    app.run()
    for page in RESULT_PAGES:
        app.switch_page(page).run()
    figures = {}
    for page in RESULT_PAGES:
        samples = []
        for _ in range(REPEATS):
            app.switch_page(page)
            samples.append(timed_run(app))
        figures[f"switch to {Path(page).stem}"] = statistics.median(samples)
    for page in ("views/forgetting.py", "views/drift.py"):
        app.switch_page(page).run()
        samples = []
        for i in range(REPEATS):
            app.selectbox[0].set_value(run_ids[i % len(run_ids)])
            samples.append(timed_run(app))
        figures[f"switch run on {Path(page).stem}"] = statistics.median(samples)
    return figures


def row(name: str, seconds: float, budget_s: float | None) -> str:
    value = f"{seconds * 1000:8.0f} ms" if seconds < 1 else f"{seconds:8.2f} s "
    if budget_s is None:
        return f"  {name:<46}{value}   (no budget)"
    limit = f"{budget_s * 1000:.0f} ms" if budget_s < 1 else f"{budget_s:.0f} s"
    return f"  {name:<46}{value}   budget {limit:>6}   ratio {seconds / budget_s:4.2f}"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "runs"
        run_ids = fill_store(store)
        landing = fresh_process_load(store)
        launch = fresh_process_load(store, "views/launch.py")
        switches = switching_times(store, run_ids)
    print(f"App server timings ({os.cpu_count()} CPUs; AppTest script runs, sample store with {len(run_ids)} runs)")
    print("First page load, fresh process (imports included):")
    print(row("landing page (Learn)", landing["first_page_s"], FIRST_LOAD_BUDGET_S))
    print(row("then Launch (waits for open_clip's import)", launch["next_page_s"], None))
    print(f"Cached results, median of {REPEATS}:")
    for name, seconds in switches.items():
        print(row(name, seconds, SWITCH_BUDGET_S))
    errors = landing["errors"] + launch["errors"]
    if errors:
        print("Pages raised:", *errors, sep="\n  ")


if __name__ == "__main__":
    main()
