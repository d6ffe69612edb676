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
                                       comparison, concept_datasets, measured_with, signed, with_interval)
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


def tradeoff_points(table: pd.DataFrame) -> pd.DataFrame:
    """Finished runs with both headline numbers: downstream accuracy and mean forgetting."""
    done = table[(table["status"] == "done") & table["accuracy after"].notna() & table["mean zero-shot Δ"].notna()]
    return done[["run", "objective", "λ", "dataset", "accuracy after", "mean zero-shot Δ"]].reset_index(drop=True)


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
