"""What the Runs page sends a browser to draw its charts, on a store with many runs (issue 20, "Load": 20 browsers
took 155 s to draw it while the server answered in 2.2 s, so the cost is the drawing).

Run: .venv/bin/python benchmarks/runs_page_bench.py [RUNS]   (prints figures; never fails on a number)

For the page as it opens, and with each of its chart tabs open: the number of Plotly charts, their traces and points,
and the bytes of the figure JSON the server sends (what the browser parses and plotly.js draws), plus the seconds
of one script run. The store holds sample runs (tests/app/sample_runs.py), so no training happens here.
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = 240
DATASETS = ("mnist", "fashion_mnist", "animals")
OBJECTIVES = ("ce", "ldifs", "l2sp", "flyp", "ls", "lipsum")
LAMBDAS = (0.1, 1.0, 10.0, 100.0)
CHART_TAB = "runs-chart-tab"  # app/views/runs.py (a page script: importing it would run it)
CHART_TABS = ("Trade-off", "Per objective", "λ against accuracy and forgetting")


def fill(store, runs: int) -> None:
    from tests.app.sample_runs import add_finished_run

    settings = itertools.product(range(runs), DATASETS, OBJECTIVES, LAMBDAS)  # seeds vary slowest
    for _, (seed, dataset, objective, lam) in zip(range(runs), settings):
        lam_setting = {"lam": lam} if objective in ("ldifs", "l2sp", "lipsum") else {}
        add_finished_run(store, dataset=dataset, objective=objective, seed=seed, **lam_setting,
                         eval_datasets=[d for d in DATASETS if d != dataset])


def length(values) -> int:
    """Entries of a trace's array, whether a JSON list or plotly's typed base64 form ({"dtype", "bdata"})."""
    if isinstance(values, dict):
        return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize
    return len(values or ())


def charts(app) -> dict:
    specs = [chart.proto.spec for chart in app.get("plotly_chart")]
    figures = [json.loads(spec) for spec in specs]
    traces = [trace for figure in figures for trace in figure["data"]]
    points = sum(length(trace.get("x")) for trace in traces)
    return {"charts": len(figures), "traces": len(traces), "points": points,
            "bytes": sum(len(spec.encode()) for spec in specs)}


def measure(app, chart_tab: str | None) -> tuple[dict, float]:
    """The Runs page's charts as it opens (chart_tab None), or with one chart tab (when the page has them) open."""
    from tests.app.conftest import open_page

    open_page(app, "runs")
    if chart_tab is not None:
        app.session_state[CHART_TAB] = chart_tab
    start = time.perf_counter()
    app.run()
    return charts(app), time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    with tempfile.TemporaryDirectory() as folder:
        os.environ["LDIFS_STORE"] = folder
        os.environ.setdefault("LDIFS_CACHE_DIR", str(Path(folder) / "cache"))
        from streamlit.testing.v1 import AppTest

        from ldifs_core.store import RunStore
        from tests.app.conftest import MAIN

        started = time.perf_counter()
        fill(RunStore(folder), runs)
        print(f"store: {runs} finished runs made in {time.perf_counter() - started:.1f} s")
        for label, chart_tab in (("as the page opens", None), *((f"chart tab '{tab}' open", tab) for tab in CHART_TABS)):
            figures, seconds = measure(AppTest.from_file(MAIN, default_timeout=120), chart_tab)
            print(f"Runs page, {label}: {figures['charts']} charts, {figures['traces']} traces, {figures['points']} "
                  f"points, {figures['bytes'] / 1024:.1f} KiB of figure JSON; script run {seconds:.2f} s")


if __name__ == "__main__":
    main()
