"""A run's metrics.json as pandas tables: accuracy per dataset (either probe, each with n and its 95 % intervals),
per concept (most surely forgotten first), and several runs side by side.

Pure functions of plain data, shared by the app's pages and charts and by the HTML report (report.py).
"""
from __future__ import annotations

import pandas as pd

from ldifs_core.stats import rank_forgotten

PROBES = {"zs": "zero-shot", "lp": "linear probe"}
PER_CLASS = {"zs": "per_class", "lp": "per_class_lp"}  # where a forgetting report keeps each probe's concepts
FINE_TUNED = "fine-tuning task"
CHECKED = "checked for forgetting"
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


def measured_with(metrics: dict, dataset: str, probe: str = "zs") -> str:
    """How a dataset's concept numbers were measured, for titles: the task's are zero-shot before → its tuned
    classifier after, a checked dataset's the chosen probe on both sides."""
    if dataset == metrics["downstream"]["dataset"] and probe == "zs":
        return "zero-shot before → fine-tuned classifier after"
    return PROBES[probe]


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



def class_gains(metrics: dict, dataset: str, probe: str = "zs", min_n: int = 1) -> pd.DataFrame:
    """class_changes with the concepts that most surely gained first: by the lower end of the change's interval."""
    changes = class_changes(metrics, dataset, probe, min_n)
    return changes.sort_values(["change_low", "change", "class_name"], ascending=[False, False, True],
                               ignore_index=True)


def comparison(runs: dict[str, dict]) -> pd.DataFrame:
    """Runs side by side: one row per dataset, one accuracy-change column per run (name → metrics)."""
    columns = {name: accuracy_rows(metrics).set_index("dataset")["change"] for name, metrics in runs.items()}
    table = pd.DataFrame(columns)
    table.index.name = "dataset"
    return table.reset_index()
