"""Build the Learn page's λ grid from runs: CE and LDIFS at each λ, per task and seed, each point summarised over
its seeds into the format of ldifs_core.lambda_grid (which the app reads). `python -m scripts.experiments
--lambda-grid` runs it.
"""
from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence

from ldifs_core.config import RunConfig
from ldifs_core.lambda_grid import ForgottenConcept, GridCell, GridGap, LambdaGrid, Spread
from ldifs_core.reuse import finished_run
from ldifs_core.runner import execute
from ldifs_core.stats import rank_forgotten
from ldifs_core.store import RunStore

GRID_TASKS = ("mnist", "fashion_mnist")  # the science table's fine-tuning tasks
GRID_LAMBDAS = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0)  # λ = 0 is plain CE (objective "ce")
GRID_SEEDS = (0, 1, 2)
TOP_CONCEPTS = 5  # most-forgotten concepts kept per checked dataset and cell
PER_RUN_SETTINGS = ("dataset", "objective", "lam", "seed")  # what varies across the grid; the rest is shared


def grid_config(task: str, lam: float, seed: int, **settings) -> RunConfig:
    """The run behind one grid point: plain CE for λ = 0, else LDIFS with that λ; defaults otherwise."""
    if lam == 0:
        return RunConfig(dataset=task, objective="ce", seed=seed, umap_points=0, **settings)
    return RunConfig(dataset=task, objective="ldifs", lam=float(lam), seed=seed, umap_points=0, **settings)


def shared_settings(cfg: RunConfig) -> dict:
    return {key: value for key, value in cfg.to_dict().items() if key not in PER_RUN_SETTINGS}


def grid_cell(task: str, lam: float, runs: Sequence[tuple[str, int, dict]], top: int = TOP_CONCEPTS) -> GridCell:
    """Summarise the finished runs (run id, seed, metrics.json) of one grid point."""
    metrics = [m for _, _, m in runs]
    return GridCell(
        task=task, lam=float(lam), seeds=tuple(seed for _, seed, _ in runs), run_ids=tuple(r for r, _, _ in runs),
        zero_shot_before=statistics.mean(m["downstream"]["zero_shot_before"] for m in metrics),
        accuracy=Spread.of([m["downstream"]["accuracy_after"] for m in metrics]),
        zs_delta=Spread.of([m["mean_zs_delta"] for m in metrics]),
        lp_delta=Spread.of([m["mean_lp_delta"] for m in metrics]),
        forgotten=tuple(concept for report in metrics[0]["forgetting"]
                        for concept in most_forgotten(report["dataset"], metrics, top)))


def most_forgotten(dataset: str, metrics: Sequence[dict], top: int) -> list[ForgottenConcept]:
    """The `top` concepts of `dataset` most surely forgotten on average over the runs (only those that lost
    accuracy), from each run's zero-shot class rows."""
    by_concept: dict[str, list[dict]] = {}
    for run in metrics:
        report = next(r for r in run["forgetting"] if r["dataset"] == dataset)
        for row in report["per_class"]:
            by_concept.setdefault(row["class_name"], []).append(row)
    averaged = [{"class_name": name, "n": min(r["n"] for r in rows),
                 **{key: statistics.mean(r[key] for r in rows) for key in ("before", "after", "change")},
                 "change_std": Spread.of([r["change"] for r in rows]).std,
                 "change_ci": (statistics.mean(r["change_ci"][0] for r in rows),
                               statistics.mean(r["change_ci"][1] for r in rows))}
                for name, rows in by_concept.items() if len(rows) == len(metrics)]
    lost = [row for row in rank_forgotten(averaged) if row["change"] < 0]
    return [ForgottenConcept(dataset=dataset, **row) for row in lost[:top]]


def build_grid(store: RunStore, tasks: list[str], lambdas: list[float], seeds: list[int], train: bool = True,
               **settings) -> LambdaGrid:
    """The grid of `grid_config` runs, each summarised over its seeds. Finished runs in the store are
    reused; without `train` nothing is trained and the points not finished yet are listed as missing."""
    cells, missing, model = [], [], ""
    for task in tasks:
        for lam in lambdas:
            runs = []
            for seed in seeds:
                cfg = grid_config(task, lam, seed, **settings).validate()
                run_id = finished_run(store, cfg) or (execute(cfg, store) if train else None)
                if run_id is None:
                    missing.append(GridGap(task, float(lam), seed))
                    continue
                metrics = store.metrics(run_id)
                model = model or metrics["model"]
                runs.append((run_id, seed, metrics))
            if runs:
                cells.append(grid_cell(task, lam, runs))
            print(f"{task} λ={lam:g}: {len(runs)} of {len(seeds)} seeds finished", file=sys.stderr, flush=True)
    shared = shared_settings(grid_config(tasks[0], 0.0, 0, **settings))
    return LambdaGrid(model=model, settings=shared, tasks=tuple(tasks), lambdas=tuple(map(float, lambdas)),
                      seeds=tuple(seeds), cells=tuple(cells), missing=tuple(missing))
