"""The tables behind the pages and the downloads keep the shapes users read and import elsewhere."""
from __future__ import annotations

import json

import pytest

from app import tables
from ldifs_core import stats
from ldifs_core.config import RunConfig
from tests.app.sample_runs import CHECKED, add_ended_run, add_finished_run, sample_metrics, sample_wise

RUN_ID = "20260101-000000-cccccc"


def metrics() -> dict:
    return sample_metrics(RunConfig(objective="ldifs", lam=10.0, eval_datasets=list(CHECKED)), RUN_ID)


def test_json_download_is_the_complete_metrics():
    assert json.loads(tables.metrics_json(metrics())) == metrics()


def test_class_changes_rank_concepts_by_the_upper_end_of_their_change_interval_with_n():
    report = metrics()["forgetting"][0]
    changes = tables.class_changes(metrics(), CHECKED[0])
    ranked = stats.rank_forgotten(report["per_class"])
    assert list(changes["class_name"]) == [row["class_name"] for row in ranked]
    assert list(changes["n"]) == [row["n"] for row in ranked]
    assert list(changes["change_ci_high"]) == [row["change_ci"][1] for row in ranked]
    assert (changes["change_ci_low"] <= changes["change"]).all()
    assert (changes["change"] <= changes["change_ci_high"]).all()


def test_a_concept_resting_on_two_images_no_longer_tops_the_forgotten_list():
    data = metrics()
    rows = data["forgetting"][0]["per_class"]
    rows[0].update(n=2, before=100.0, after=0.0, change=-100.0, change_ci=[-100.0, 15.0])
    rows[1].update(n=200, before=90.0, after=50.0, change=-40.0, change_ci=[-47.0, -33.0])
    changes = tables.class_changes(data, CHECKED[0])
    assert changes["class_name"][0] == rows[1]["class_name"]
    assert rows[0]["class_name"] not in set(tables.class_changes(data, CHECKED[0], min_n=5)["class_name"])


def test_class_changes_keep_only_concepts_with_at_least_the_minimum_n():
    every = tables.class_changes(metrics(), CHECKED[0])
    enough = tables.class_changes(metrics(), CHECKED[0], min_n=20)
    assert (enough["n"] >= 20).all() and len(enough) == (every["n"] >= 20).sum() > 0


def test_class_changes_of_the_linear_probe_come_from_per_class_lp():
    report = metrics()["forgetting"][0]
    changes = tables.class_changes(metrics(), CHECKED[0], probe="lp")
    assert list(changes["change"]) == [row["change"] for row in stats.rank_forgotten(report["per_class_lp"])]
    assert tables.concept_datasets(metrics(), "lp") == list(CHECKED)
    assert tables.concept_datasets(metrics(), "zs") == ["mnist", *CHECKED]


def test_accuracy_rows_carry_n_and_the_intervals_of_before_after_and_change():
    data = metrics()
    rows = tables.accuracy_rows(data, "zs")
    assert list(rows["n"]) == [data["downstream"]["n"]] + [r["n"] for r in data["forgetting"]]
    first = data["forgetting"][0]
    change = rows.loc[1, ["change", "change_ci_low", "change_ci_high"]].tolist()
    assert change == [first["zs_delta"], *first["zs_delta_ci"]]
    assert rows.loc[0, ["after_ci_low", "after_ci_high"]].tolist() == data["downstream"]["accuracy_after_ci"]


def test_a_wise_ft_mix_without_settings_or_timings_reads_like_a_run():
    mix = sample_wise(metrics(), 0.5)
    assert "config" not in mix and "timings" not in mix
    rows = tables.accuracy_rows(mix, "lp")
    assert rows.loc[0, "after"] == mix["downstream"]["accuracy_after"]
    same = [tables.class_changes(data, CHECKED[1])["class_name"].tolist() for data in (mix, metrics())]
    assert same[0] == same[1]


@pytest.mark.parametrize("value, interval, expected", [
    (-2.44, [-3.1, -1.72], "−2.4 points (95 % CI −3.1 to −1.7)"),
    (0.04, [-0.5, 0.61], "+0.0 points (95 % CI −0.5 to +0.6)"),
])
def test_a_mean_change_is_written_with_its_interval(value, interval, expected):
    assert tables.with_interval(value, interval) == expected


def test_runs_table_keeps_the_reason_of_runs_that_did_not_finish(store):
    done = add_finished_run(store, objective="ce")
    failed = add_ended_run(store, "failed", "Lower the learning rate.")
    table = tables.runs_table(store.list()).set_index("run")
    assert table.loc[failed, "message"] == "Lower the learning rate."
    assert table.loc[done, "model"] == "embedded" and table.loc[done, "accuracy after"] > 0
    assert list(tables.tradeoff_points(table.reset_index())["run"]) == [done]
