"""metrics.json as a typed record: runs stored by this version read and write back byte for byte, and valid JSON
of another shape is refused with the place where it differs."""
import json
from pathlib import Path

import pytest

from ldifs_core.config import RunConfig
from ldifs_core.export import metrics_csv
from ldifs_core.metrics import MetricsShapeError, RunMetrics
from ldifs_core.store import RunStore
from tests.app.sample_runs import sample_metrics, small_metrics

# Written by a short real run of the current code (runner.execute: 2 steps, 40 test images of animals).
STORED = Path(__file__).parent / "fixtures" / "metrics_v2.json"


def test_a_metrics_json_stored_by_this_version_round_trips_byte_for_byte():
    text = STORED.read_text()
    record = RunMetrics.from_json(json.loads(text))
    assert json.dumps(record.to_json()) == text  # the store writes json.dumps of the dict, keys in this order
    assert record.forgetting[0].dataset == "animals" and record.downstream.dataset == "mnist"
    assert record.run_config().eval_datasets == ["animals"]


def test_the_store_reads_and_exports_a_run_stored_by_this_version(tmp_path):
    stored = json.loads(STORED.read_text())
    store = RunStore(tmp_path)
    run_id = store.create(RunConfig.from_dict(stored["config"]))
    store.finish(run_id, stored)
    assert store.get(run_id).status == "done"
    assert store.metrics(run_id) == {**stored, "run_id": run_id}
    assert metrics_csv(store.metrics(run_id)).count("\n") > 10


@pytest.mark.parametrize("cfg", [RunConfig(objective="ldifs", lam=10.0, eval_datasets=["fashion_mnist", "animals"]),
                                 RunConfig(objective="ce", eval_datasets=["animals"], sequence_id="seq-x", stage=2)])
def test_sample_runs_and_a_sequence_stages_own_task_round_trip(cfg):
    metrics = sample_metrics(cfg, "20260101-000000-aaaaaa")
    assert RunMetrics.from_json(metrics).to_json() == metrics
    assert ("stage_task" in metrics) == bool(cfg.sequence_id)


def test_keys_this_version_does_not_know_are_ignored_and_optional_ones_may_be_absent():
    metrics = small_metrics()
    metrics.pop("code_version", None)  # runs stored before it existed
    record = RunMetrics.from_json({**metrics, "notes": "from a later version"})
    assert record.code_version is None and record.stage_task is None
    assert record.to_json() == metrics


@pytest.mark.parametrize("change, where", [
    (lambda m: m["downstream"].pop("per_class"), "metrics.json: downstream lacks per_class"),
    (lambda m: m["forgetting"][0]["per_class_lp"][1].update(n=True), "forgetting[0].per_class_lp[1].n is True, not a"),
    (lambda m: m["forgetting"][0].update(layer_distance=[0.1, "far"]), "forgetting[0].layer_distance[1] is 'far'"),
    (lambda m: m.update(mean_lp_delta_ci=[1.0, 2.0, 3.0]), "mean_lp_delta_ci is [1.0, 2.0, 3.0], not an interval"),
    (lambda m: m["timings"].update(total_s=None), "metrics.json: timings.total_s is None, not a number"),
])
def test_a_value_of_the_wrong_kind_is_refused_saying_where(change, where):
    metrics = small_metrics()
    change(metrics)
    with pytest.raises(MetricsShapeError) as refused:
        RunMetrics.from_json(metrics)
    assert where in str(refused.value)
