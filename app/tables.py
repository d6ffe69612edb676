"""Run metrics (the documented metrics.json) and run records as pandas tables, for display and plots (the CSV
download is ldifs_core.export's, shared with the CLI).

Pure functions of plain data, so the pages stay thin and the shapes are unit-testable.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

import pandas as pd

from ldifs_core.stats import rank_forgotten

PROBES = {"zs": "zero-shot", "lp": "linear probe"}
PER_CLASS = {"zs": "per_class", "lp": "per_class_lp"}  # where a forgetting report keeps each probe's concepts
FINE_TUNED = "fine-tuning task"
CHECKED = "checked for forgetting"
RUN_COLUMNS = ["run", "status", "message", "objective", "λ", "dataset", "model", "steps", "seed", "accuracy after",
               "mean zero-shot Δ", "mean linear-probe Δ", "created"]
ACCURACY_COLUMNS = ["dataset", "role", "n", "before", "before_low", "before_high", "after", "after_low", "after_high",
                    "change", "change_low", "change_high"]
CLASS_COLUMNS = ["dataset", "class_name", "n", "before", "after", "change", "change_low", "change_high"]
MINUS = "\u2212"


def signed(value: float, digits: int = 1) -> str:
    """+1.2 / −1.2 with a true minus sign, as the page text writes changes."""
    return f"{value:+.{digits}f}".replace("-", MINUS)


def with_interval(value: float, interval, unit: str = "points") -> str:
    """'−2.4 points (95 % CI −3.1 to −1.7)': a change with its 95 % interval."""
    low, high = interval
    return f"{signed(value)} {unit} (95 % CI {signed(low)} to {signed(high)})"


def _accuracy_row(dataset: str, role: str, n: int, before, before_ci, after, after_ci, change, change_ci) -> dict:
    return {"dataset": dataset, "role": role, "n": n, "before": before, "before_low": before_ci[0],
            "before_high": before_ci[1], "after": after, "after_low": after_ci[0], "after_high": after_ci[1],
            "change": change, "change_low": change_ci[0], "change_high": change_ci[1]}


def accuracy_rows(metrics: dict, probe: str = "zs") -> pd.DataFrame:
    """One row per dataset with n and the 95 % intervals: the fine-tuning task first (zero-shot before → tuned
    classifier after), then the forgetting datasets with the chosen probe (zero-shot or linear probe)."""
    task = metrics["downstream"]
    rows = [_accuracy_row(task["dataset"], FINE_TUNED, task["n"], task["zero_shot_before"], task["zero_shot_before_ci"],
                          task["accuracy_after"], task["accuracy_after_ci"], task["change"], task["change_ci"])]
    rows += [_accuracy_row(r["dataset"], CHECKED, r["n"], r[f"{probe}_before"], r[f"{probe}_before_ci"],
                           r[f"{probe}_after"], r[f"{probe}_after_ci"], r[f"{probe}_delta"], r[f"{probe}_delta_ci"])
             for r in metrics["forgetting"]]
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


def concept_datasets(metrics: dict, probe: str = "zs") -> list[str]:
    """Datasets with per-concept numbers for the probe: the task has zero-shot-before vs tuned classifier only."""
    checked = [report["dataset"] for report in metrics["forgetting"]]
    return [metrics["downstream"]["dataset"], *checked] if probe == "zs" else checked


def class_rows(metrics: dict, dataset: str, probe: str = "zs") -> list[dict]:
    if dataset == metrics["downstream"]["dataset"] and probe == "zs":
        return metrics["downstream"]["per_class"]
    report = next(r for r in metrics["forgetting"] if r["dataset"] == dataset)
    return report[PER_CLASS[probe]]


def class_changes(metrics: dict, dataset: str, probe: str = "zs", min_n: int = 1) -> pd.DataFrame:
    """Per-concept accuracy before and after on one dataset with n and the change's 95 % interval, for concepts
    with at least `min_n` test images, most surely forgotten first (`ldifs_core.stats.rank_forgotten`: by the
    upper end of the change's interval, so a concept resting on one or two images does not top the list)."""
    ranked = rank_forgotten([row for row in class_rows(metrics, dataset, probe) if row["n"] >= min_n])
    table = pd.DataFrame(
        [{"dataset": dataset, "class_name": row["class_name"], "n": row["n"], "before": row["before"],
          "after": row["after"], "change": row["change"], "change_low": row["change_ci"][0],
          "change_high": row["change_ci"][1]} for row in ranked], columns=CLASS_COLUMNS)
    return table.astype({"n": int})


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


def comparison(runs: dict[str, dict]) -> pd.DataFrame:
    """Runs side by side: one row per dataset, one accuracy-change column per run (name → metrics)."""
    columns = {name: accuracy_rows(metrics).set_index("dataset")["change"] for name, metrics in runs.items()}
    table = pd.DataFrame(columns)
    table.index.name = "dataset"
    return table.reset_index()


def metrics_json(metrics: dict) -> str:
    return json.dumps(metrics, indent=2)


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
