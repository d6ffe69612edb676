"""The tables behind the pages and the downloads keep the shapes users read and import elsewhere."""
from __future__ import annotations

import io
import json

import pandas as pd

from app import tables
from ldifs_core.config import RunConfig
from tests.app.sample_runs import CHECKED, add_ended_run, add_finished_run, sample_metrics

RUN_ID = "20260101-000000-cccccc"


def metrics() -> dict:
    return sample_metrics(RunConfig(objective="ldifs", lam=10.0, eval_datasets=list(CHECKED)), RUN_ID)


def test_csv_download_has_one_row_per_dataset_and_metric():
    table = pd.read_csv(io.StringIO(tables.metrics_csv(metrics())))
    assert list(table.columns) == ["run_id", "section", "dataset", "metric", "value"]
    assert not table.duplicated(["section", "dataset", "metric"]).any()
    zs_after = table[(table.dataset == CHECKED[0]) & (table.metric == "zs_after")]["value"].item()
    assert zs_after == metrics()["forgetting"][0]["zs_after"]
    assert {"accuracy_after", "mean_zs_delta", "mean_lp_delta", "timings.total_s"} <= set(table.metric)


def test_json_download_is_the_complete_metrics():
    assert json.loads(tables.metrics_json(metrics())) == metrics()


def test_class_changes_put_the_biggest_drop_first():
    changes = tables.class_changes(metrics(), CHECKED[0])
    assert changes["change"].is_monotonic_increasing
    assert (changes["change"] == changes["after"] - changes["before"]).all()


def test_runs_table_keeps_the_reason_of_runs_that_did_not_finish(store):
    done = add_finished_run(store, objective="ce")
    failed = add_ended_run(store, "failed", "Lower the learning rate.")
    table = tables.runs_table(store.list()).set_index("run")
    assert table.loc[failed, "message"] == "Lower the learning rate."
    assert table.loc[done, "model"] == "embedded" and table.loc[done, "accuracy after"] > 0
    assert list(tables.tradeoff_points(table.reset_index())["run"]) == [done]
