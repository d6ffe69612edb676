"""Run metrics (the documented metrics.json) and run records as pandas tables, for display, plots and download.

Pure functions of plain data, so the pages stay thin and the shapes are unit-testable.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

import pandas as pd

PROBES = {"zs": "zero-shot", "lp": "linear probe"}
FINE_TUNED = "fine-tuning task"
CHECKED = "checked for forgetting"
RUN_COLUMNS = ["run", "status", "message", "objective", "λ", "dataset", "model", "steps", "seed", "accuracy after",
               "mean zero-shot Δ", "mean linear-probe Δ", "created"]


def accuracy_rows(metrics: dict, probe: str = "zs") -> pd.DataFrame:
    """One row per dataset: the fine-tuning task first (zero-shot before → tuned classifier after), then the
    forgetting datasets with the chosen probe (zero-shot or linear probe) before and after."""
    downstream = metrics["downstream"]
    rows = [{"dataset": downstream["dataset"], "role": FINE_TUNED, "before": downstream["zero_shot_before"],
             "after": downstream["accuracy_after"]}]
    rows += [{"dataset": report["dataset"], "role": CHECKED, "before": report[f"{probe}_before"],
              "after": report[f"{probe}_after"]} for report in metrics["forgetting"]]
    table = pd.DataFrame(rows, columns=["dataset", "role", "before", "after"])
    table["change"] = table["after"] - table["before"]
    return table


def class_changes(metrics: dict, dataset: str) -> pd.DataFrame:
    """Per-concept accuracy before and after on one dataset, the biggest drop first."""
    downstream = metrics["downstream"]
    if dataset == downstream["dataset"]:
        per_class = downstream["per_class"]
    else:
        per_class = next(r["per_class"] for r in metrics["forgetting"] if r["dataset"] == dataset)
    table = pd.DataFrame(per_class, columns=["class_name", "before", "after", "n"])
    table["change"] = table["after"] - table["before"]
    table.insert(0, "dataset", dataset)
    return table.sort_values(["change", "class_name"], kind="stable").reset_index(drop=True)


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


def comparison(runs: dict[str, dict]) -> pd.DataFrame:
    """Runs side by side: one row per dataset, one accuracy-change column per run (name → metrics)."""
    columns = {name: accuracy_rows(metrics).set_index("dataset")["change"] for name, metrics in runs.items()}
    table = pd.DataFrame(columns)
    table.index.name = "dataset"
    return table.reset_index()


def metrics_long(metrics: dict) -> pd.DataFrame:
    """The CSV download: one row per (dataset, metric), tidy enough for any spreadsheet.

    Columns: run_id, section ('downstream' | 'forgetting' | 'summary'), dataset, metric, value.
    Per-class accuracies and per-layer distances stay in the JSON download.
    """
    run_id = metrics["run_id"]
    downstream = metrics["downstream"]
    rows = [(run_id, "downstream", downstream["dataset"], key, downstream[key])
            for key in ("zero_shot_before", "accuracy_after", "zero_shot_after")]
    for report in metrics["forgetting"]:
        rows += [(run_id, "forgetting", report["dataset"], key, report[key])
                 for key in ("zs_before", "zs_after", "lp_before", "lp_after", "ldifs_distance", "centroid_shift",
                             "knn_overlap", "test_images")]
    rows += [(run_id, "summary", "", key, metrics[key]) for key in ("mean_zs_delta", "mean_lp_delta")]
    rows += [(run_id, "summary", "", f"timings.{key}", value) for key, value in metrics.get("timings", {}).items()]
    return pd.DataFrame(rows, columns=["run_id", "section", "dataset", "metric", "value"])


def metrics_csv(metrics: dict) -> str:
    return metrics_long(metrics).to_csv(index=False)


def metrics_json(metrics: dict) -> str:
    return json.dumps(metrics, indent=2)
