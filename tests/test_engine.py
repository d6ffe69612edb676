"""Training and evaluation behaviour the app, the CLI and the science table rely on."""
import copy
import json
import math

import pytest
import torch

from ldifs_core.config import RunConfig
from ldifs_core.datasets import load_split
from ldifs_core.errors import BadConfig, DatasetUnavailable, LabError
from ldifs_core.evaluate import mix_heads, wise_ft
from ldifs_core.models import load_model
from ldifs_core.objectives import L2SP, Batch, TunedClassifier
from ldifs_core.runner import execute, wise_ft_metrics
from ldifs_core.store import RunStore
from ldifs_core.train import finetune

TINY = dict(steps=4, batch_size=16, eval_limit=120, probe_limit=120, umap_points=40, train_limit=200,
            eval_datasets=["animals"])


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def digits():
    return load_split("mnist", "train").subset(200, seed=0)


def visual_state(result):
    return {k: v.clone() for k, v in result.clip.visual.state_dict().items()}


def test_ldifs_with_lambda_zero_trains_exactly_like_ce(model, digits):
    ce = finetune(RunConfig(objective="ce", **TINY), model, digits, torch.device("cpu"))
    ldifs = finetune(RunConfig(objective="ldifs", lam=0.0, **TINY), model, digits, torch.device("cpu"))
    for key, value in visual_state(ce).items():
        torch.testing.assert_close(visual_state(ldifs)[key], value)


def test_ldifs_keeps_the_encoder_closer_to_the_pretrained_one(model, digits):
    def drift(cfg):
        tuned = finetune(cfg, model, digits, torch.device("cpu")).clip.visual.state_dict()
        base = model.clip.visual.state_dict()
        return sum((tuned[k] - base[k]).pow(2).sum().item() for k in base)

    settings = {**TINY, "steps": 8, "lr": 1e-3}
    assert drift(RunConfig(objective="ldifs", lam=100.0, **settings)) < drift(RunConfig(objective="ce", **settings))


def test_finetuning_never_modifies_the_loaded_model(model, digits):
    before = copy.deepcopy(model.clip.state_dict())
    finetune(RunConfig(objective="flyp", **TINY), model, digits, torch.device("cpu"))
    for key, value in model.clip.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_linear_probe_objective_leaves_the_encoder_untouched(model, digits):
    result = finetune(RunConfig(objective="lp", **TINY), model, digits, torch.device("cpu"))
    for key, value in model.clip.visual.state_dict().items():
        assert torch.equal(result.clip.visual.state_dict()[key], value)


def test_l2sp_adds_lambda_times_the_squared_distance_to_the_pretrained_weights(model):
    frozen = model.clip.visual
    tuned = copy.deepcopy(frozen)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.01)
    expected = sum((p1 - p0).pow(2).sum() for p1, p0 in zip(tuned.parameters(), frozen.parameters())).item()
    head = torch.nn.Linear(frozen.output_dim, 10)
    objective = L2SP(TunedClassifier(tuned, head), lam=0.5, frozen_visual=frozen)
    x = torch.randn(4, 3, 28, 28)
    _, parts = objective.loss(Batch(x, torch.tensor([0, 1, 2, 3]), torch.arange(4)))
    assert parts["l2sp"] == pytest.approx(0.5 * expected, rel=1e-4)


def test_wise_ft_endpoints_are_the_pretrained_and_the_finetuned_weights(model, digits):
    result = finetune(RunConfig(objective="ce", **TINY), model, digits, torch.device("cpu"))
    at_zero, at_one = wise_ft(model.clip, result.clip, 0.0), wise_ft(model.clip, result.clip, 1.0)
    for key, value in model.clip.state_dict().items():
        torch.testing.assert_close(at_zero.state_dict()[key], value)
        torch.testing.assert_close(at_one.state_dict()[key], result.clip.state_dict()[key])
    assert torch.equal(mix_heads(result.initial_head, result.head, 0.0).weight, result.initial_head.weight)


def test_precomputed_frozen_features_give_the_same_training(model, digits):
    live = finetune(RunConfig(objective="ldifs", lam=10.0, **TINY), model, digits, torch.device("cpu"))
    cached = finetune(RunConfig(objective="ldifs", lam=10.0, precompute_frozen=True, **TINY), model, digits,
                      torch.device("cpu"))
    for key, value in visual_state(live).items():
        torch.testing.assert_close(visual_state(cached)[key], value, atol=2e-4, rtol=1e-3)  # fp16 cache


def test_a_run_reports_every_documented_metric_and_survives_a_new_store(store_dir):
    run_id = execute(RunConfig(objective="ldifs", **TINY), RunStore())
    metrics = RunStore().metrics(run_id)  # a fresh store: what the app sees after a restart
    assert metrics["status"] == "done" and metrics["run_id"] == run_id
    assert set(metrics["downstream"]) >= {"dataset", "zero_shot_before", "accuracy_after"}
    (entry,) = metrics["forgetting"]
    assert entry["dataset"] == "animals"
    assert set(entry) >= {"zs_before", "zs_after", "lp_before", "lp_after", "per_class", "layer_distance"}
    assert len(entry["per_class"]) == 10 and set(entry["per_class"][0]) >= {"class_name", "before", "after"}
    assert len(entry["layer_distance"]) == 5 and entry["ldifs_distance"] > 0
    assert metrics["mean_zs_delta"] == pytest.approx(entry["zs_after"] - entry["zs_before"])
    assert set(metrics["timings"]) == {"train_s", "eval_s", "total_s", "step_ms"}
    arrays = RunStore().arrays(run_id)
    assert arrays["umap_pre/animals"].shape == (40, 2) == arrays["umap_post/animals"].shape
    json.dumps(metrics)


def test_same_config_and_seed_give_the_same_metrics(store_dir):
    store = RunStore()
    cfg = dict(TINY, umap_points=0)
    first = store.metrics(execute(RunConfig(objective="ldifs", **cfg), store))
    second = store.metrics(execute(RunConfig(objective="ldifs", **cfg), store))
    for key in ("downstream", "forgetting", "mean_zs_delta", "mean_lp_delta"):
        assert first[key] == second[key]


def test_wise_ft_of_a_finished_run_at_alpha_zero_is_the_pretrained_model(store_dir):
    store = RunStore()
    metrics = store.metrics(execute(RunConfig(objective="ce", **TINY), store))
    wise = wise_ft_metrics(store, metrics["run_id"], 0.0)
    assert wise["mean_zs_delta"] == pytest.approx(0.0, abs=1e-6)
    assert wise["downstream"]["zero_shot_after"] == pytest.approx(metrics["downstream"]["zero_shot_before"])


def test_cancelling_stops_within_a_step_and_is_recorded(store_dir):
    store = RunStore()
    steps = []
    run_id = execute(RunConfig(**TINY), store, on_event=lambda e: steps.append(e.step), should_stop=lambda: len(steps) >= 2)
    record = store.get(run_id)
    assert record.status == "cancelled" and "step 2" in record.message
    assert len(store.history(run_id)) == 2


def test_a_non_finite_loss_stops_the_run_with_a_clear_message(store_dir, monkeypatch):
    from ldifs_core import objectives

    monkeypatch.setattr(objectives.LDIFS, "loss",
                        lambda self, batch: (torch.tensor(math.nan, requires_grad=True), {"ce": math.nan}))
    store = RunStore()
    with pytest.raises(LabError, match="loss became nan.*Lower the learning rate"):
        execute(RunConfig(**TINY), store)
    (record,) = store.list()
    assert record.status == "failed" and "Lower the learning rate" in record.message


@pytest.mark.parametrize("change, error, words", [
    ({"dataset": "no_such_set"}, DatasetUnavailable, "Unknown dataset"),
    ({"objective": "magic"}, BadConfig, "objective 'magic' is unknown"),
    ({"steps": 0}, BadConfig, "steps must be"),
    ({"lam": -1.0}, BadConfig, "lam must be"),
    ({"batch_size": 100000}, BadConfig, "batch size"),
])
def test_bad_settings_fail_clearly_and_no_run_is_marked_done(store_dir, change, error, words):
    store = RunStore()
    with pytest.raises(error, match=words):
        execute(RunConfig(**{**TINY, **change}), store)
    assert all(r.status == "failed" for r in store.list())


def test_an_empty_image_folder_is_a_clear_error(store_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetUnavailable):
        execute(RunConfig(**{**TINY, "dataset": str(empty)}), RunStore())
