"""A run's metrics.json as pandas tables: accuracy per dataset (either probe, each with n and its 95 % intervals),
per concept (most surely forgotten first), and several runs side by side.

Pure functions of plain data, shared by the app's pages and charts and by the HTML report (report.py). The rows
and their column names are metrics.estimate_rows', the flattening the CSV export writes too.
"""
from __future__ import annotations

import pandas as pd

from ldifs_core.metrics import TUNED, Evaluation, estimate_rows

PROBES = {"zs": "zero-shot", "lp": "linear probe"}
PER_CLASS = {"zs": "per_class", "lp": "per_class_lp"}  # where a forgetting report keeps each probe's concepts
FINE_TUNED = "fine-tuning task"
CHECKED = "checked for forgetting"
ROLE_NAMES = {"downstream": FINE_TUNED, "forgetting": CHECKED}  # how pages and the report name each row's role
ACCURACY_COLUMNS = ["dataset", "role", "n", "before", "before_ci_low", "before_ci_high", "after", "after_ci_low",
                    "after_ci_high", "change", "change_ci_low", "change_ci_high"]
CLASS_COLUMNS = ["dataset", "class_name", "n", "before", "after", "change", "change_ci_low", "change_ci_high"]
MINUS = "\u2212"


def signed(value: float, digits: int = 1) -> str:
    """+1.2 / −1.2 with a true minus sign, as the page text writes changes."""
    return f"{value:+.{digits}f}".replace("-", MINUS)


def with_interval(value: float, interval, unit: str = "points") -> str:
    """'−2.4 points (95 % CI −3.1 to −1.7)': a change with its 95 % interval."""
    low, high = interval
    return f"{signed(value)} {unit} (95 % CI {signed(low)} to {signed(high)})"


def task_dataset(metrics: dict) -> str | None:
    """The dataset the run fine-tuned on (or a check named); None for a check that named no task."""
    down = metrics.get("downstream")
    return down["dataset"] if down else None


def task_accuracy(metrics: dict) -> str:
    """The task's accuracy after, as shown beside its label; a check that named no task has none."""
    down = metrics.get("downstream")
    return f"{down['accuracy_after']:.1f}%" if down else "no task given"


def _dataset_rows(metrics: dict, *probes: tuple[str, str]) -> list[dict]:
    """The dataset rows of the given (role, probe) pairs."""
    rows = estimate_rows(Evaluation.from_json(metrics), concepts_of=lambda dataset, probe: False)
    return [row for row in rows if (row["role"], row["probe"]) in probes]


def accuracy_rows(metrics: dict, probe: str = "zs") -> pd.DataFrame:
    """One row per dataset with n and the 95 % intervals: the fine-tuning task first (zero-shot before → tuned
    classifier after), then the forgetting datasets with the chosen probe (zero-shot or linear probe); role is
    "downstream" or "forgetting" (ROLE_NAMES says how to show it)."""
    rows = _dataset_rows(metrics, ("downstream", TUNED), ("forgetting", probe))
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


def concept_datasets(metrics: dict, probe: str = "zs") -> list[str]:
    """Datasets with per-concept numbers for the probe: the task has zero-shot-before vs tuned classifier only."""
    checked = [report["dataset"] for report in metrics["forgetting"]]
    task = task_dataset(metrics)
    return [task, *checked] if probe == "zs" and task is not None else checked


def measured_with(metrics: dict, dataset: str, probe: str = "zs") -> str:
    """How a dataset's concept numbers were measured, for titles: the task's are zero-shot before → its tuned
    classifier after, a checked dataset's the chosen probe on both sides."""
    if dataset == task_dataset(metrics) and probe == "zs":
        return "zero-shot before → fine-tuned classifier after"
    return PROBES[probe]


def class_rows(metrics: dict, dataset: str, probe: str = "zs") -> list[dict]:
    if dataset == task_dataset(metrics) and probe == "zs":
        return metrics["downstream"]["per_class"]
    report = next(r for r in metrics["forgetting"] if r["dataset"] == dataset)
    return report[PER_CLASS[probe]]


def class_changes(metrics: dict, dataset: str, probe: str = "zs", min_n: int = 1) -> pd.DataFrame:
    """Per-concept accuracy before and after on one dataset with n and the change's 95 % interval, for concepts
    with at least `min_n` test images, most surely forgotten first (`ldifs_core.stats.rank_forgotten`: by the
    upper end of the change's interval, so a concept resting on one or two images does not top the list)."""
    if dataset == task_dataset(metrics) and probe == "zs":
        probe = TUNED  # the task's concepts: zero-shot before, its tuned classifier after
    rows = estimate_rows(Evaluation.from_json(metrics), concepts_of=lambda *pair: pair == (dataset, probe))
    table = pd.DataFrame([row for row in rows if row["class_name"] is not None and row["n"] >= min_n],
                         columns=CLASS_COLUMNS)
    return table.astype({"n": int})


def class_gains(metrics: dict, dataset: str, probe: str = "zs", min_n: int = 1) -> pd.DataFrame:
    """class_changes with the concepts that most surely gained first: by the lower end of the change's interval."""
    changes = class_changes(metrics, dataset, probe, min_n)
    return changes.sort_values(["change_ci_low", "change", "class_name"], ascending=[False, False, True],
                               ignore_index=True)


def comparison(runs: dict[str, dict]) -> pd.DataFrame:
    """Runs side by side: one row per dataset, one accuracy-change column per run (name → metrics)."""
    columns = {name: accuracy_rows(metrics).set_index("dataset")["change"] for name, metrics in runs.items()}
    table = pd.DataFrame(columns)
    table.index.name = "dataset"
    return table.reset_index()
