"""The concept gallery on a 345-class dataset, and the HTML report of two runs: time and size against the budgets.

Run: .venv/bin/python benchmarks/report_bench.py   (prints figures with their budgets; never fails on a number)

- Gallery: a CE run checked on quickdraw (345 concepts, ~7000 test images, a thumbnail for every flipped image up
  to MAX_THUMBS), made by tests/app/sample_runs.py with per-image records (real quickdraw test images, so the
  arrays have a real run's sizes; no training). Figures: the library call the page makes per rerun (find the
  concept's flipped images, scale their thumbnails up), median over REPEATS concepts; the gallery section's cost
  as the difference between the Forgetting page's rerun with it and on a run without records (a note instead);
  and, for reference, AppTest's whole-page rerun after choosing a concept (in a browser that choice reruns only
  the gallery, an st.fragment).
- Report: `report.run_report` of two such runs (CE and LDIFS, checked on fashion_mnist, quickdraw and animals):
  the first report of a process (it also packs plotly.js once) and the next one, and the file's size.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.budget_rows import budget_row  # noqa: E402

MAIN = str(ROOT / "app" / "main.py")
GALLERY_BUDGET_S = 0.5
REPORT_BUDGET_S = 3.0
REPORT_BUDGET_BYTES = 5 * 10**6
REPEATS = 7
DATASET = "quickdraw"


def page_rerun(app, run_id: str) -> float:
    """Median seconds of the Forgetting page's rerun on `run_id` with quickdraw chosen and nothing else changed."""
    app.selectbox[0].set_value(run_id).run()
    next(s for s in app.selectbox if s.label == "Dataset").set_value(DATASET).run()
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        app.run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def gallery_times(store_root: Path, run_id: str, without_records: str) -> dict[str, float]:
    """Median seconds of the gallery's library work and of the page's rerun when another concept is chosen; the
    page's plain rerun with and without a gallery (a run without records shows a note instead) tells its share."""
    os.environ["LDIFS_STORE"] = str(store_root)
    from streamlit.testing.v1 import AppTest

    from app import jobs
    from ldifs_core import gallery, metrics_tables
    from ldifs_core.store import RunStore

    store = RunStore(store_root)
    metrics, arrays = store.metrics(run_id), store.arrays(run_id)
    concepts = list(metrics_tables.class_changes(metrics, DATASET, "zs")["class_name"][:REPEATS])
    library = []
    for concept in concepts:
        started = time.perf_counter()
        flips = gallery.flipped_examples(arrays, metrics, DATASET, concept, "zs", gallery.BECAME_WRONG, 32)
        [gallery.crisp(image.thumbnail) for image in flips.examples]
        library.append(time.perf_counter() - started)

    idle_runner = jobs.JobRunner(store)  # steady state: no warm-up competing for the CPU
    jobs.job_runner = lambda: idle_runner
    app = AppTest.from_file(MAIN, default_timeout=120)
    app.run()
    app.switch_page("views/forgetting.py").run()
    plain = {"with": page_rerun(app, run_id), "without": page_rerun(app, without_records)}
    app.selectbox[0].set_value(run_id).run()
    next(s for s in app.selectbox if s.label == "Dataset").set_value(DATASET).run()
    page = []
    for concept in concepts[1:] + concepts[:1]:
        app.selectbox(key=f"gallery-concept-{DATASET}-zs-{gallery.BECAME_WRONG}").set_value(concept)
        started = time.perf_counter()
        app.run()
        page.append(time.perf_counter() - started)
        assert not app.exception, [e.value for e in app.exception]
    return {"library": statistics.median(library), "page": statistics.median(page), "rerun": plain["with"],
            "rerun without": plain["without"]}


def row(name: str, value: float, budget: float, unit: str = "s") -> str:
    return budget_row(name, value, budget, unit, width=58)


def main() -> None:
    from ldifs_core.report import run_report
    from ldifs_core.store import RunStore
    from tests.app.sample_runs import add_finished_run

    with tempfile.TemporaryDirectory() as tmp:
        store_root = Path(tmp) / "runs"
        store = RunStore(store_root)
        checked = ["fashion_mnist", DATASET, "animals"]
        ce = add_finished_run(store, records="matching", objective="ce", eval_datasets=checked)
        ldifs = add_finished_run(store, records="matching", objective="ldifs", lam=10.0, eval_datasets=checked)
        without_records = add_finished_run(store, records="none", objective="ce", seed=1, eval_datasets=checked)
        arrays = store.arrays(ce)
        images, thumbs = len(arrays[f"eval_labels/{DATASET}"]), len(arrays[f"thumb_ids/{DATASET}"])
        started = time.perf_counter()
        page = run_report(store, [ce, ldifs])
        first_report = time.perf_counter() - started
        started = time.perf_counter()
        run_report(store, [ce, ldifs])
        next_report = time.perf_counter() - started
        size = len(page.encode("utf-8"))
        gallery = gallery_times(store_root, ce, without_records)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"Gallery and HTML report ({os.cpu_count()} CPUs, load average {load}: figures are noisy when the CPUs "
          f"are shared)")
    print(f"Gallery on {DATASET}: 345 concepts, {images} test images, {thumbs} thumbnails; median of {REPEATS} "
          f"concepts:")
    print(row("flipped_examples + crisp thumbnails (library)", gallery["library"], GALLERY_BUDGET_S))
    print(row("gallery section: page rerun with it − without it", gallery["rerun"] - gallery["rerun without"],
              GALLERY_BUDGET_S))
    print(f"  (the gallery is a fragment: in a browser, choosing a concept reruns only it. For reference, AppTest "
          f"reruns the whole page: {gallery['page'] * 1000:.0f} ms after choosing a concept; a plain rerun "
          f"{gallery['rerun'] * 1000:.0f} ms with the gallery, {gallery['rerun without'] * 1000:.0f} ms on a run "
          f"without records)")
    print("HTML report of two runs (task + 3 checked datasets each, with images):")
    print(row("first report of the process (packs plotly.js once)", first_report, REPORT_BUDGET_S))
    print(row("next report", next_report, REPORT_BUDGET_S))
    print(row("file size", size, REPORT_BUDGET_BYTES, unit="MB"))


if __name__ == "__main__":
    main()
