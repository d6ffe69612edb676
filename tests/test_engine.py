"""Training and evaluation behaviour the app, the CLI and the science table rely on."""
import copy
import json
import math

import pytest
import torch

from ldifs_core.config import RunConfig
from ldifs_core.datasets import load_split
from ldifs_core.config import OBJECTIVES
from ldifs_core.errors import BadConfig, DatasetUnavailable, LabError
from ldifs_core.objectives import OBJECTIVE_TYPES, Batch, TrainingSetup
from ldifs_core.objectives.l2sp import L2SP
from ldifs_core.runner import execute
from ldifs_core.store import RunStore
from ldifs_core.train import finetune
from ldifs_core.wise import mix_weights, wise_ft_metrics
from tests.recording_hooks import RecordingHooks

TINY = dict(steps=4, batch_size=16, eval_limit=120, probe_limit=12, umap_points=40, train_limit=200,
            eval_datasets=["animals"])




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


def test_l2sp_adds_lambda_times_the_squared_distance_to_the_pretrained_weights(model, digits):
    tuned = copy.deepcopy(model.clip)
    with torch.no_grad():
        for p in tuned.visual.parameters():
            p.add_(0.01)
    expected = sum((p1 - p0).pow(2).sum()
                   for p1, p0 in zip(tuned.visual.parameters(), model.clip.visual.parameters())).item()
    head = torch.nn.Linear(model.clip.visual.output_dim, 10)
    cfg = RunConfig(objective="l2sp", lam=0.5, **TINY)
    objective = L2SP(TrainingSetup(cfg, model, tuned, head, digits, torch.device("cpu")))
    x = torch.randn(4, 3, 28, 28)
    _, parts = objective.loss(Batch(x, torch.tensor([0, 1, 2, 3]), torch.arange(4)))
    assert parts["l2sp"].item() == pytest.approx(0.5 * expected, rel=1e-4)


def test_every_objective_the_front_ends_offer_builds_itself():
    assert set(OBJECTIVE_TYPES) == set(OBJECTIVES)


def test_wise_ft_endpoints_are_the_pretrained_and_the_finetuned_weights(model, digits):
    result = finetune(RunConfig(objective="ce", **TINY), model, digits, torch.device("cpu"))
    at_zero, at_one = mix_weights(model.clip, result.clip, 0.0), mix_weights(model.clip, result.clip, 1.0)
    for key, value in model.clip.state_dict().items():
        torch.testing.assert_close(at_zero.state_dict()[key], value)
        torch.testing.assert_close(at_one.state_dict()[key], result.clip.state_dict()[key])
    head = OBJECTIVE_TYPES["ce"].mixed_head(model, at_zero, result.initial_head, result.head, 0.0, digits)
    assert torch.equal(head.weight, result.initial_head.weight)


def test_flyp_wise_ft_head_comes_from_the_mixed_text_tower(model, digits):
    """FLYP's head is text-derived: a mix recomputes it from the mixed text tower instead of interpolating."""
    from ldifs_core.objectives import text_head

    result = finetune(RunConfig(objective="flyp", lr=1e-3, **TINY), model, digits, torch.device("cpu"))
    mixed = mix_weights(model.clip, result.clip, 0.5)
    head = OBJECTIVE_TYPES["flyp"].mixed_head(model, mixed, result.initial_head, result.head, 0.5, digits)
    torch.testing.assert_close(head.weight, text_head(model.with_clip(mixed), digits).weight)
    interpolated = torch.lerp(result.initial_head.weight, result.head.weight, 0.5)
    assert not torch.allclose(head.weight, interpolated, atol=1e-4)


def test_batchnorm_statistics_stay_put_for_lp_and_for_frozen_bn_and_move_for_end_to_end_runs():
    """A ModifiedResNet tower: `lp` and bn="frozen" must not change the running statistics; bn="train" does."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from ldifs_core.models import FoundationModel

    torch.manual_seed(0)
    clip = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=(1, 1, 1, 1), width=8, image_size=64, head_width=8),
                text_cfg=CLIPTextCfg(width=16, heads=2, layers=1))
    base = FoundationModel(clip.eval().requires_grad_(False), open_clip.get_tokenizer("RN50"), "RN-tiny", "random", 64,
                           (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    train = load_split("mnist", "train").subset(64, seed=0)
    stats = lambda c: [m.running_mean.clone() for m in c.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    base_stats = stats(base.clip)
    settings = dict(TINY, steps=2, probe_limit=5, init="zs")
    for cfg, moves in ((RunConfig(objective="lp", **settings), False),
                       (RunConfig(objective="ce", bn="frozen", **settings), False),
                       (RunConfig(objective="ce", bn="train", **settings), True)):
        tuned = finetune(cfg, base, train, torch.device("cpu")).clip
        changed = any(not torch.equal(a, b) for a, b in zip(stats(tuned), base_stats))
        assert changed == moves, (cfg.objective, cfg.bn)


def test_precomputed_frozen_features_give_the_same_training(model, digits):
    live = finetune(RunConfig(objective="ldifs", lam=10.0, **TINY), model, digits, torch.device("cpu"))
    cached = finetune(RunConfig(objective="ldifs", lam=10.0, precompute_frozen=True, **TINY), model, digits,
                      torch.device("cpu"))
    for key, value in visual_state(live).items():
        torch.testing.assert_close(visual_state(cached)[key], value, atol=2e-4, rtol=1e-3)  # fp16 cache


@pytest.mark.slow
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


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_metrics(store_dir):
    store = RunStore()
    cfg = dict(TINY, umap_points=0)
    first = store.metrics(execute(RunConfig(objective="ldifs", **cfg), store))
    second = store.metrics(execute(RunConfig(objective="ldifs", **cfg), store))
    for key in ("downstream", "forgetting", "mean_zs_delta", "mean_lp_delta"):
        assert first[key] == second[key]


@pytest.mark.slow
def test_wise_ft_of_a_finished_run_at_alpha_zero_is_the_pretrained_model(store_dir):
    store = RunStore()
    metrics = store.metrics(execute(RunConfig(objective="ce", **TINY), store))
    wise = wise_ft_metrics(store, metrics["run_id"], 0.0)
    assert wise["mean_zs_delta"] == pytest.approx(0.0, abs=1e-6)
    assert wise["downstream"]["zero_shot_after"] == pytest.approx(metrics["downstream"]["zero_shot_before"])


def test_cancelling_stops_within_a_step_and_is_recorded(store_dir):
    store = RunStore()
    run_id = execute(RunConfig(**TINY), store, hooks=RecordingHooks(stop_when=lambda hooks: len(hooks.events) >= 2))
    record = store.get(run_id)
    assert record.status == "cancelled" and "step 2" in record.message
    assert len(store.history(run_id)) == 2


def test_a_non_finite_loss_stops_the_run_with_a_clear_message(store_dir, monkeypatch):

    monkeypatch.setattr(OBJECTIVE_TYPES["ldifs"], "loss",
                        lambda self, batch: (torch.tensor(math.nan, requires_grad=True), {"ce": torch.tensor(math.nan)}))
    store = RunStore()
    with pytest.raises(LabError, match="loss became nan.*Lower the learning rate"):
        execute(RunConfig(**TINY), store)
    (record,) = store.list()
    assert record.status == "failed" and "Lower the learning rate" in record.message


@pytest.mark.parametrize("change, error, words", [
    ({"dataset": "no_such_set"}, DatasetUnavailable, "Unknown dataset"),
    ({"objective": "magic"}, BadConfig, "objective 'magic' is unknown"),
    ({"steps": 0}, BadConfig, "steps must be"),
    ({"objective": "ldifs", "lam": -1.0}, BadConfig, "λ must be"),
    ({"objective": "ce", "lam": 5.0}, BadConfig, "ce has no regulariser"),
    ({"batch_size": 100000}, BadConfig, "batch size"),
    ({"batch_size": 300}, BadConfig, "larger than the fine-tuning pool"),
    ({"seed": 2**70}, BadConfig, "seed must be between"),
    ({"eval_datasets": []}, BadConfig, "no dataset is left to check"),
    ({"eval_datasets": ["mnist"]}, BadConfig, "no dataset is left to check"),
    ({"precompute_frozen": True, "augment": True}, BadConfig, "augmentation"),
    ({"bn": "sometimes"}, BadConfig, "bn 'sometimes'"),
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


def test_a_one_class_folder_is_refused_instead_of_reporting_100_to_100(store_dir, tmp_path):
    from PIL import Image

    folder = tmp_path / "one_class" / "cat"
    folder.mkdir(parents=True)
    for i in range(30):
        Image.new("L", (28, 28), color=i * 8).save(folder / f"{i}.png")
    with pytest.raises(DatasetUnavailable, match="at least two"):
        execute(RunConfig(**{**TINY, "dataset": str(tmp_path / "one_class"), "batch_size": 4}), RunStore())


def test_probe_subsets_give_every_class_images_within_the_cap():
    quickdraw = load_split("quickdraw", "train")
    subset = quickdraw.per_class_subset(100, cap=5000, seed=0)
    counts = torch.bincount(subset.labels, minlength=quickdraw.num_classes)
    assert len(subset) <= 5000 and counts.min() >= 14 and counts.max() == counts.min()
    assert torch.equal(subset.labels, quickdraw.per_class_subset(100, cap=5000, seed=0).labels)
    small = load_split("mnist", "train").per_class_subset(20, cap=None, seed=0)
    assert torch.bincount(small.labels).tolist() == [20] * 10


@pytest.mark.slow
def test_every_number_in_the_report_carries_its_n_and_an_interval_that_contains_it(store_dir):
    store = RunStore()
    metrics = store.metrics(execute(RunConfig(objective="ce", **{**TINY, "eval_datasets": ["animals", "quickdraw"]}),
                                    store))

    def check(value, interval):
        assert interval[0] - 0.01 <= value <= interval[1] + 0.01, (value, interval)

    down = metrics["downstream"]
    for key in ("zero_shot_before", "accuracy_after", "change"):
        check(down[key], down[f"{key}_ci"])
    for entry in metrics["forgetting"]:
        assert entry["n"] == entry["test_images"] == 120
        for probe in ("zs", "lp"):
            for key in ("before", "after", "delta"):
                check(entry[f"{probe}_{key}"], entry[f"{probe}_{key}_ci"])
        for row in entry["per_class"] + entry["per_class_lp"]:
            assert row["n"] >= 1
            check(row["change"], row["change_ci"])
        assert sum(row["n"] for row in entry["per_class"]) == entry["n"]
    for probe in ("zs", "lp"):
        low, high = metrics[f"mean_{probe}_delta_ci"]
        assert -100 <= low <= metrics[f"mean_{probe}_delta"] <= high <= 100 and high - low < 30
    quickdraw = metrics["forgetting"][1]
    assert quickdraw["probe_images"] == 345 * 12  # probe_limit is per class: every concept gets images


def test_an_edited_folder_is_read_again_instead_of_served_from_the_cache(tmp_path):
    from PIL import Image

    from ldifs_core.runner import prepare

    def add_images(label, count, start=0):
        (tmp_path / "shapes" / label).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + count):
            Image.new("L", (28, 28), color=(i * 7) % 256).save(tmp_path / "shapes" / label / f"{i}.png")

    add_images("circle", 10)
    add_images("square", 10)
    cfg = RunConfig(dataset=str(tmp_path / "shapes"), batch_size=4, eval_datasets=["animals"], probe_limit=5,
                    eval_limit=20)
    before = prepare(cfg)
    add_images("square", 10, start=10)
    after = prepare(cfg)
    assert len(after.train) + len(after.test) == len(before.train) + len(before.test) + 10


def test_reading_losses_every_few_steps_reports_every_step_unchanged_and_still_catches_divergence(model, digits,
                                                                                                   monkeypatch):
    """What an accelerator run does (one host synchronisation per ACCELERATOR_READ_EVERY steps), on the CPU."""
    from ldifs_core import train

    cfg = RunConfig(objective="ldifs", **{**TINY, "steps": 7})
    every_step = RecordingHooks()
    finetune(cfg, model, digits, torch.device("cpu"), every_step)
    monkeypatch.setattr(train, "host_read_interval", lambda device: 3)
    batched = RecordingHooks()
    finetune(cfg, model, digits, torch.device("cpu"), batched)
    every_step, batched = every_step.events, batched.events
    assert [e.step for e in batched] == list(range(1, 8))
    assert [(e.loss, e.parts, e.lr) for e in batched] == [(e.loss, e.parts, e.lr) for e in every_step]

    real_loss = OBJECTIVE_TYPES["ldifs"].loss
    calls = []

    def diverging(self, batch):
        calls.append(1)
        loss, parts = real_loss(self, batch)
        return (loss * math.nan if len(calls) == 4 else loss), parts

    monkeypatch.setattr(OBJECTIVE_TYPES["ldifs"], "loss", diverging)
    with pytest.raises(LabError, match="loss became nan at step 4"):
        finetune(cfg, model, digits, torch.device("cpu"))
    assert len(calls) == 6  # caught at the read after step 6, before step 7 was queued
