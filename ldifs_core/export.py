"""A run's metrics as CSV: the one export used by the CLI (`export --format csv`) and the app.

The rows are metrics.estimate_rows, the one flattening the app's tables and the report read too: every accuracy
comes with the number of test images it rests on and its 95 % interval, and concept rows follow
`stats.rank_forgotten`, so the concepts that surely lost most come first.
"""
from __future__ import annotations

import csv
import io
import math

from ldifs_core.metrics import ROW_COLUMNS, Evaluation, estimate_rows

COLUMNS = ROW_COLUMNS
NUMBERS = [column for column in COLUMNS if column.startswith(("before", "after", "change"))]
DECIMALS = 2


def metrics_rows(metrics: dict) -> list[dict]:
    """The rows of a metrics.json (`estimate_rows`, in its order) as the CSV holds them: numbers rounded to 2
    decimals; missing ones, and the class_name and label of dataset rows, are ""."""
    return [{column: _number(value) if column in NUMBERS else "" if value is None else value
             for column, value in row.items()} for row in estimate_rows(Evaluation.from_json(metrics))]


def _csv(columns: list[str] | tuple[str, ...], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def metrics_csv(metrics: dict) -> str:
    """metrics_rows as CSV text with a header line of COLUMNS."""
    return _csv(COLUMNS, metrics_rows(metrics))


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
