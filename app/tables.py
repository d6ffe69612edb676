"""Run metrics (the documented metrics.json) and run records as pandas tables, for display and plots (the CSV
download is ldifs_core.export's, shared with the CLI).

Pure functions of plain data, so the pages stay thin and the shapes are unit-testable.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

import pandas as pd

# The metrics tables the HTML report shares live in ldifs_core.metrics_tables; pages reach them through this module.
from ldifs_core.metrics_tables import (ACCURACY_COLUMNS, CHECKED, CLASS_COLUMNS, FINE_TUNED, MINUS,  # noqa: F401
                                       PER_CLASS, PROBES, accuracy_rows, class_changes, class_gains, class_rows,
                                       comparison, concept_datasets, measured_with, signed, task_accuracy,
                                       task_dataset, with_interval)
from ldifs_core.drift_records import MovedConcept

RUN_COLUMNS = ["run", "status", "message", "objective", "λ", "dataset", "model", "steps", "seed", "accuracy after",
               "mean zero-shot Δ", "mean linear-probe Δ", "created"]


def drift_numbers(metrics: dict) -> pd.DataFrame:
    """The projection-free drift measures per dataset (they do not depend on the 2-D picture)."""
    return pd.DataFrame(
        [{"dataset": r["dataset"], "LDIFS distance": r["ldifs_distance"], "centroid shift": r["centroid_shift"],
          "k-NN overlap": r["knn_overlap"], "test images": r["test_images"]} for r in metrics["forgetting"]],
        columns=["dataset", "LDIFS distance", "centroid shift", "k-NN overlap", "test images"])


def runs_table(records: Iterable) -> pd.DataFrame:
    """Every run as one row (RunRecords, newest first); failed, cancelled and interrupted runs keep their reason."""
    rows = []
    for record in records:
        cfg, summary = record.config, record.summary
        rows.append({
            "run": record.run_id, "status": record.status, "objective": cfg.objective, "λ": cfg.effective_lam,
            "dataset": cfg.dataset, "model": model_name(cfg), "steps": cfg.steps, "seed": cfg.seed,
            "accuracy after": summary.get("accuracy_after"), "mean zero-shot Δ": summary.get("mean_zs_delta"),
            "mean linear-probe Δ": summary.get("mean_lp_delta"),
            "created": datetime.fromtimestamp(record.created_at).replace(microsecond=0),
            "message": record.message,
        })
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def model_name(cfg) -> str:
    """How tables name a run's base model: 'embedded' for the default, else name (tag or file)."""
    if cfg.model is None:
        return "embedded"
    return f"{cfg.model} ({cfg.pretrained})" if cfg.pretrained else cfg.model


TRADEOFF_COLUMNS = ["run", "objective", "λ", "dataset", "model", "steps", "seed", "accuracy after",
                    "mean zero-shot Δ", "mean linear-probe Δ"]


def tradeoff_points(table: pd.DataFrame) -> pd.DataFrame:
    """Finished runs with both headline numbers: downstream accuracy and mean forgetting."""
    done = table[(table["status"] == "done") & table["accuracy after"].notna() & table["mean zero-shot Δ"].notna()]
    return done[TRADEOFF_COLUMNS].reset_index(drop=True)


def objective_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Per (objective, dataset): mean and standard deviation of accuracy and of mean zero-shot change, with the
    number of runs n (std 0 when n = 1) and whether no other objective beats it on both (the Pareto front)."""
    grouped = points.groupby(["objective", "dataset"], sort=True)
    summary = grouped.agg(accuracy=("accuracy after", "mean"), accuracy_std=("accuracy after", "std"),
                          forgetting=("mean zero-shot Δ", "mean"), forgetting_std=("mean zero-shot Δ", "std"),
                          n=("accuracy after", "size")).fillna(0.0).reset_index()
    summary["pareto"] = [
        not ((summary["dataset"] == row.dataset) & (summary["accuracy"] >= row.accuracy)
             & (summary["forgetting"] >= row.forgetting)
             & ((summary["accuracy"] > row.accuracy) | (summary["forgetting"] > row.forgetting))).any()
        for row in summary.itertuples()]
    return summary


def metrics_json(metrics: dict) -> str:
    return json.dumps(metrics, indent=2)


# -- feature drift: concepts by how far they moved (Feature drift page) -------------------------------------------

MOVED_COLUMNS = ["class_name", "n", "displacement", "displacement_low", "displacement_high", "zero-shot change"]


def most_moved(metrics: dict, dataset: str, concepts: Sequence[MovedConcept]) -> pd.DataFrame:
    """drift_records.most_moved as a table, most moved first, each concept's zero-shot accuracy change beside it
    (did the concepts that moved also get forgotten?)."""
    change = {row["class_name"]: row["change"] for row in class_rows(metrics, dataset)}
    return pd.DataFrame(
        [{"class_name": c.class_name, "n": c.n, "displacement": c.displacement, "displacement_low": c.low,
          "displacement_high": c.high, "zero-shot change": change.get(c.class_name, float("nan"))} for c in concepts],
        columns=MOVED_COLUMNS)


def colour_order(metrics: dict, dataset: str, concepts: Sequence[MovedConcept] | None,
                 present: Sequence[str]) -> list[str]:
    """The concepts of a drift picture in the order they get colours: most moved first or, for a run that stored
    no displacements, most surely forgotten first; concepts neither ranking knows come last, by name."""
    ranking = ([c.class_name for c in concepts] if concepts is not None
               else class_changes(metrics, dataset)["class_name"].tolist())
    ranked = [name for name in dict.fromkeys(ranking) if name in set(present)]
    return ranked + sorted(set(present) - set(ranked))


# -- λ intuition: the runs table filtered, λ sweeps from runs or from the precomputed grid ----------------------

SWEEP_COLUMNS = ["λ", "n", "seeds", "accuracy", "accuracy_std", "zs", "zs_std", "lp", "lp_std"]
CE_LAMBDA = 0.0  # a sweep's CE row: plain `ce` runs and the regulariser's λ = 0 runs (the same objective)


def filter_runs(table: pd.DataFrame, choices: dict[str, str | None]) -> pd.DataFrame:
    """The rows whose columns equal the chosen values (column → value; None keeps every value)."""
    for column, value in choices.items():
        if value is not None:
            table = table[table[column] == value]
    return table


def lambda_sweep(points: pd.DataFrame, objective: str = "ldifs") -> pd.DataFrame:
    """One row per λ of `objective` among the trade-off points (give one task, model and step count), with the
    mean and standard deviation over its runs (std 0 for one run), n and the seeds; λ = 0 is CE."""
    metrics = {"accuracy after": float, "mean zero-shot Δ": float, "mean linear-probe Δ": float}  # None → NaN
    runs = points[(points["objective"] == objective) | (points["objective"] == "ce")].astype(metrics)
    lam = runs["λ"].where(runs["objective"] == objective, CE_LAMBDA).astype(float)
    grouped = runs.assign(λ=lam).groupby("λ", sort=True)
    sweep = grouped.agg(n=("run", "size"), accuracy=("accuracy after", "mean"), accuracy_std=("accuracy after", "std"),
                        zs=("mean zero-shot Δ", "mean"), zs_std=("mean zero-shot Δ", "std"),
                        lp=("mean linear-probe Δ", "mean"), lp_std=("mean linear-probe Δ", "std")).reset_index()
    sweep["seeds"] = [", ".join(str(seed) for seed in sorted(group["seed"])) for _, group in grouped]
    stds = ["accuracy_std", "zs_std", "lp_std"]
    sweep[stds] = sweep[stds].fillna(0.0)
    return sweep[SWEEP_COLUMNS]


def sweep_task(points: pd.DataFrame, objective: str) -> str:
    """The task a λ sweep of `objective` opens on: the one with the most λ values (CE counting as λ = 0), then the
    most runs, then by name; only tasks where `objective` has runs."""
    runs = points[(points["objective"] == objective) | (points["objective"] == "ce")]
    counts = runs.assign(λ=runs["λ"].where(runs["objective"] == objective, CE_LAMBDA)).groupby("dataset").agg(
        lams=("λ", "nunique"), runs=("run", "size"))
    tasks = set(points.loc[points["objective"] == objective, "dataset"])
    return min(tasks, key=lambda task: (-counts.at[task, "lams"], -counts.at[task, "runs"], task))


def grid_sweep(cells) -> pd.DataFrame:
    """The same table from the precomputed λ grid's cells of one task (ldifs_core.lambda_grid.GridCell)."""
    return pd.DataFrame(
        [{"λ": cell.lam, "n": cell.accuracy.n, "seeds": ", ".join(map(str, cell.seeds)),
          "accuracy": cell.accuracy.mean, "accuracy_std": cell.accuracy.std, "zs": cell.zs_delta.mean,
          "zs_std": cell.zs_delta.std, "lp": cell.lp_delta.mean, "lp_std": cell.lp_delta.std} for cell in cells],
        columns=SWEEP_COLUMNS)


def forgotten_concepts(cell) -> pd.DataFrame:
    """A grid cell's most-forgotten concepts: per checked dataset, zero-shot before → after, mean change and its
    spread over the seeds, and n test images."""
    return pd.DataFrame(
        [{"checked dataset": c.dataset, "concept": c.class_name, "n images": c.n, "before": c.before,
          "after": c.after, "change": c.change, "± std over seeds": c.change_std} for c in cell.forgotten],
        columns=["checked dataset", "concept", "n images", "before", "after", "change", "± std over seeds"])
