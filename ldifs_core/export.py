"""A run's metrics as flat rows and CSV: the one export used by the CLI (`export --format csv`) and the app.

Every accuracy comes with the number of test images it rests on and its 95 % interval (from metrics.json,
schema 2); concept rows follow `stats.rank_forgotten`, so the concepts that surely lost most come first.
"""
from __future__ import annotations

import csv
import io
import math

COLUMNS = ["run_id", "role", "dataset", "probe", "class_name", "label", "n",
           "before", "before_ci_low", "before_ci_high", "after", "after_ci_low", "after_ci_high",
           "change", "change_ci_low", "change_ci_high"]
DECIMALS = 2


def metrics_rows(metrics: dict) -> list[dict]:
    """Rows with the keys of COLUMNS, in this order:

    - role "downstream" (the fine-tuning task): probe "tuned" (before: zero-shot of the base model, after: the
      tuned classifier) with its concept rows, then probe "zs" (zero-shot before and after; no change interval);
    - role "forgetting", per dataset checked: probe "zs" (zero-shot) then "lp" (linear probe), each a dataset
      row followed by its concept rows;
    - role "mean": the mean change over the forgetting datasets per probe (change and interval only).

    Dataset rows leave class_name and label empty. Numbers are rounded to 2 decimals; missing ones are "".
    """
    from ldifs_core.stats import rank_forgotten

    run_id = metrics["run_id"]
    down = metrics["downstream"]
    rows = [_row(run_id, "downstream", down["dataset"], "tuned", n=down["n"],
                 before=(down["zero_shot_before"], down["zero_shot_before_ci"]),
                 after=(down["accuracy_after"], down["accuracy_after_ci"]),
                 change=(down["change"], down["change_ci"]))]
    rows += [_class_row(run_id, "downstream", down["dataset"], "tuned", c) for c in rank_forgotten(down["per_class"])]
    rows.append(_row(run_id, "downstream", down["dataset"], "zs", n=down["n"],
                     before=(down["zero_shot_before"], down["zero_shot_before_ci"]),
                     after=(down["zero_shot_after"], down["zero_shot_after_ci"]),
                     change=(down["zero_shot_after"] - down["zero_shot_before"], None)))
    for report in metrics["forgetting"]:
        for probe, per_class in (("zs", report["per_class"]), ("lp", report["per_class_lp"])):
            rows.append(_row(run_id, "forgetting", report["dataset"], probe, n=report["n"],
                             before=(report[f"{probe}_before"], report[f"{probe}_before_ci"]),
                             after=(report[f"{probe}_after"], report[f"{probe}_after_ci"]),
                             change=(report[f"{probe}_delta"], report[f"{probe}_delta_ci"])))
            rows += [_class_row(run_id, "forgetting", report["dataset"], probe, c) for c in rank_forgotten(per_class)]
    for probe in ("zs", "lp"):
        rows.append(_row(run_id, "mean", "", probe,
                         change=(metrics[f"mean_{probe}_delta"], metrics[f"mean_{probe}_delta_ci"])))
    return rows


def _csv(columns: list[str] | tuple[str, ...], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def metrics_csv(metrics: dict) -> str:
    """metrics_rows as CSV text with a header line of COLUMNS."""
    return _csv(COLUMNS, metrics_rows(metrics))


def _class_row(run_id: str, role: str, dataset: str, probe: str, row: dict) -> dict:
    return _row(run_id, role, dataset, probe, class_name=row["class_name"], label=row["label"], n=row["n"],
                before=(row["before"], row["before_ci"]), after=(row["after"], row["after_ci"]),
                change=(row["change"], row["change_ci"]))


Estimate = tuple[float | None, list[float] | None]


def _row(run_id: str, role: str, dataset: str, probe: str, *, class_name: str = "", label: int | str = "",
         n: int | str = "", before: Estimate = (None, None), after: Estimate = (None, None),
         change: Estimate = (None, None)) -> dict:
    row = {"run_id": run_id, "role": role, "dataset": dataset, "probe": probe, "class_name": class_name,
           "label": label, "n": n}
    for name, (value, interval) in (("before", before), ("after", after), ("change", change)):
        low, high = interval if interval is not None else (None, None)
        row.update({name: _number(value), f"{name}_ci_low": _number(low), f"{name}_ci_high": _number(high)})
    return row


def _number(value: float | None) -> float | str:
    if value is None or not math.isfinite(value):
        return ""
    return round(float(value), DECIMALS)


# -- sequences (continual fine-tuning): the forgetting matrix as rows ------------------------------------------

SEQUENCE_COLUMNS = ["sequence_id", "stage", "trained_on", "dataset", "role", "probe", "n", "accuracy",
                    "accuracy_ci_low", "accuracy_ci_high", "change_from_before"]


def sequence_rows(summary: dict) -> list[dict]:
    """One row per (stage, probe, dataset) of a sequence's JSON (`SequenceState.to_dict`): stage 0 is θ₀ (no
    interval stored), then each finished stage; role says whether the dataset is a task of the sequence or never
    trained on; change_from_before is after − θ₀ in points."""
    matrix = summary["matrix"]
    if matrix is None:
        return []
    rows = []
    for probe in ("zs", "lp"):
        before = matrix["before"][probe]
        stages = [(0, "", before, [None] * len(before))]
        stages += [(k + 1, summary["tasks"][k], accuracy, ci)
                   for k, (accuracy, ci) in enumerate(zip(matrix[probe], matrix[f"{probe}_ci"]))]
        for stage, trained_on, accuracy, intervals in stages:
            for column, dataset in enumerate(matrix["datasets"]):
                low, high = intervals[column] if intervals[column] is not None else (None, None)
                rows.append({"sequence_id": summary["sequence_id"], "stage": stage, "trained_on": trained_on,
                             "dataset": dataset, "role": "task" if dataset in matrix["tasks"] else "never trained",
                             "probe": probe, "n": matrix["n"][column], "accuracy": _number(accuracy[column]),
                             "accuracy_ci_low": _number(low), "accuracy_ci_high": _number(high),
                             "change_from_before": _number(accuracy[column] - before[column])})
    return rows


def sequence_csv(summary: dict) -> str:
    """sequence_rows as CSV text with a header line of SEQUENCE_COLUMNS."""
    return _csv(SEQUENCE_COLUMNS, sequence_rows(summary))
