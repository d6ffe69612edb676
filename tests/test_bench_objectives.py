"""The comparison bench: ls, flyp_ce, lora, lipsum, zscl, and LDIFS's tap ablations, each held to its definition."""
import copy

import pytest
import torch
import torch.nn.functional as F

from ldifs_core import cli, ldifs_distance
from ldifs_core.config import RunConfig, parse_ldifs_taps
from ldifs_core.datasets import load_split
from ldifs_core.errors import BadConfig
from ldifs_core.ldifs import tap_modules
from ldifs_core.lora import add_adapters, adapted_weights, merge_adapters
from ldifs_core.objectives import OBJECTIVE_TYPES, Batch, TrainingSetup
from ldifs_core.runner import weights_to_save
from ldifs_core.train import finetune

CPU = torch.device("cpu")
TINY = dict(steps=3, batch_size=16, train_limit=200)




def built(objective: str, model, data, **settings):
    """An objective built as finetune builds it, on a fresh copy of θ₀."""
    cfg = RunConfig(objective=objective, **{**TINY, **settings}).validate()
    kind = OBJECTIVE_TYPES[objective]
    return kind(TrainingSetup(cfg, model, copy.deepcopy(model.clip), kind.initial_head(cfg, model, data), data, CPU))


def first_batch(model, data, size=16) -> Batch:
    from ldifs_core.encoding import model_inputs

    return Batch(model_inputs(model, data.images[:size], CPU), data.labels[:size], torch.arange(size))


def nudge(visual: torch.nn.Module, scale: float) -> None:
    """Move every weight of the tower by `scale` times fixed noise."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in visual.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


# -- ls -----------------------------------------------------------------------------------------------


def test_label_smoothing_with_factor_zero_trains_exactly_like_ce(model, digits):
    ce = finetune(RunConfig(objective="ce", **TINY), model, digits, CPU).clip.visual.state_dict()
    ls = finetune(RunConfig(objective="ls", ls_factor=0.0, **TINY), model, digits, CPU).clip.visual.state_dict()
    smoothed = finetune(RunConfig(objective="ls", ls_factor=0.2, **TINY), model, digits, CPU).clip.visual.state_dict()
    for key, value in ce.items():
        torch.testing.assert_close(ls[key], value, rtol=0, atol=0)
    assert any(not torch.equal(smoothed[key], value) for key, value in ce.items())


# -- flyp_ce ------------------------------------------------------------------------------------------


def test_flyp_ce_tunes_the_text_tower_and_keeps_it_with_the_weights(model, digits):
    result = finetune(RunConfig(objective="flyp_ce", **TINY), model, digits, CPU)
    before = model.clip.state_dict()
    moved_text = [k for k, v in result.clip.state_dict().items()
                  if not k.startswith("visual.") and k != "logit_scale" and not torch.equal(v, before[k])]
    assert moved_text, "the text tower did not change"
    assert {f"clip.{k}" for k in moved_text} <= set(weights_to_save(result, "flyp_ce"))


def test_flyp_ce_is_cross_entropy_over_one_prompt_per_class(model, digits):
    objective = built("flyp_ce", model, digits)
    batch = first_batch(model, digits)
    objective.rng.seed(5)
    loss, _ = objective.loss(batch)
    objective.rng.seed(5)  # the same template draw, by hand
    picks = torch.tensor([objective.rng.randrange(objective.prompt_tokens.shape[1]) for _ in digits.class_names])
    clip = objective.setup.tuned
    text = F.normalize(clip.encode_text(objective.prompt_tokens[torch.arange(len(picks)), picks]), dim=-1)
    image = F.normalize(clip.visual(batch.images), dim=-1)
    expected = F.cross_entropy(clip.logit_scale.exp().clamp(max=100) * image @ text.T, batch.labels)
    torch.testing.assert_close(loss, expected)


# -- lora ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tower", ["embedded_vit", "small_resnet"])
def test_lora_merged_equals_unmerged_and_leaves_an_ordinary_tower(tower, model, small_resnet):
    visual = copy.deepcopy(model.clip.visual if tower == "embedded_vit" else small_resnet)
    keys = set(visual.state_dict())
    adapters = add_adapters(visual, rank=4, alpha=8.0, seed=0)
    with torch.no_grad():  # trained adapters: B is no longer zero
        for adapter in adapters:
            adapter.up.normal_(0, 0.05)
    visual.eval()
    size = model.image_size if tower == "embedded_vit" else 64
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unmerged = visual(images)
        merge_adapters(visual)
        merged = visual(images)
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)
    assert set(visual.state_dict()) == keys
    assert not any(hasattr(module, "parametrizations") for module in visual.modules())


def test_lora_of_rank_r_trains_only_rank_r_updates_of_the_adapted_weights(model, digits):
    rank = 2
    objective = built("lora", model, digits, lora_rank=rank)
    head = set(map(id, objective.setup.head.parameters()))
    adapter_params = [p for p in objective.trainable_parameters() if id(p) not in head]
    shapes = [(getattr(m, n).shape[0], getattr(m, n)[0].numel()) for m, n in adapted_weights(model.clip.visual)]
    assert sum(p.numel() for p in adapter_params) == sum(rank * (rows + cols) for rows, cols in shapes)

    result = finetune(RunConfig(objective="lora", lora_rank=rank, lr=1e-2, **TINY), model, digits, CPU)
    base, tuned = model.clip.visual.state_dict(), result.clip.visual.state_dict()
    adapted = {name for name in base if name.endswith(("in_proj_weight", "out_proj.weight", "c_fc.weight",
                                                      "c_proj.weight"))}
    for name in base:
        delta = (tuned[name] - base[name]).flatten(1) if name in adapted else tuned[name] - base[name]
        if name in adapted:
            assert 0 < torch.linalg.matrix_rank(delta, rtol=1e-4) <= rank, name
        else:
            assert not delta.any(), f"{name} is not adapted, yet it moved"


# -- lipsum and zscl ----------------------------------------------------------------------------------


@pytest.mark.parametrize("objective_name", ["lipsum", "zscl"])
def test_regulariser_is_zero_at_the_pretrained_weights_and_grows_as_they_move(objective_name, model, digits):
    objective = built(objective_name, model, digits)
    batch = first_batch(model, digits)

    def regulariser() -> float:
        objective.generator.manual_seed(0)  # the same random texts / reference images each time
        with torch.no_grad():
            return objective.regulariser(batch, objective.classifier.visual(batch.images)).item()

    distances = [regulariser()]
    for step in (0.002, 0.008):
        nudge(objective.setup.tuned.visual, step)
        distances.append(regulariser())
    assert distances[0] == pytest.approx(0.0, abs=1e-7)
    assert 0 < distances[1] < distances[2]


def test_zscl_reference_images_never_include_the_task(model, digits):
    objective = built("zscl", model, digits)
    mnist = load_split("mnist", "train").images.flatten(1)
    seen = {bytes(row.numpy()) for row in mnist[:2000]}
    assert not any(bytes(row.numpy()) in seen for row in objective.reference.flatten(1)[:500])


def test_zscl_can_take_its_reference_from_one_named_domain(model, digits):
    objective = built("zscl", model, digits, zscl_reference="animals")
    animals = load_split("animals", "train")
    assert len(objective.reference) == min(len(animals), objective.per_reference_dataset)
    assert objective.captions.shape[0] == animals.num_classes
    with pytest.raises(BadConfig, match="fine-tuning task itself"):
        RunConfig(objective="zscl", zscl_reference="mnist").validate()


# -- LDIFS taps ---------------------------------------------------------------------------------------


def test_tap_groups_pick_the_named_layers(small_vit, small_resnet):
    blocks = list(small_vit.transformer.resblocks)
    assert tap_modules(small_vit, "last") == [blocks[-1]]
    assert tap_modules(small_vit, "stem+blocks") == [small_vit.ln_pre, *blocks]
    assert tap_modules(small_vit, "embedding+stem") == [small_vit.ln_pre, small_vit]
    assert tap_modules(small_vit, 2) == [small_vit.ln_pre, blocks[1], blocks[3]]
    assert tap_modules(small_resnet, "last") == [small_resnet.layer4]


def test_ldifs_on_the_embedding_alone_is_the_squared_distance_of_unit_embeddings(small_vit):
    tuned = copy.deepcopy(small_vit)
    nudge(tuned, 0.05)
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    per_sample, per_layer = ldifs_distance(small_vit, tuned, images, taps="embedding")
    with torch.no_grad():
        expected = (F.normalize(tuned(images), dim=-1) - F.normalize(small_vit(images), dim=-1)).pow(2).sum(dim=1)
    assert per_layer.shape == (1, 4)
    torch.testing.assert_close(per_sample, expected)


def test_tap_specs_are_checked():
    assert parse_ldifs_taps("3") == 3 and parse_ldifs_taps("last+stem+last") == ("last", "stem")
    for bad in (0, "", "last+middle", "blocks,last"):
        with pytest.raises(ValueError):
            parse_ldifs_taps(bad)


# -- settings checked before any work -----------------------------------------------------------------


@pytest.mark.parametrize("settings, says", [
    (dict(ls_factor=1.0), "ls_factor"), (dict(lora_rank=0), "lora_rank"), (dict(lora_alpha=float("nan")), "lora_alpha"),
    (dict(lora_dropout=1.0), "lora_dropout"), (dict(lipsum_texts=0), "lipsum_texts"),
    (dict(lipsum_length=200), "lipsum_length"), (dict(objective="zscl", zscl_reference="/no/such/folder"), "zscl_reference"),
    (dict(ldifs_taps="middle"), "ldifs_taps"),
])
def test_bad_bench_settings_are_refused_in_one_line(settings, says):
    with pytest.raises(BadConfig) as refused:
        RunConfig(**settings).validate()
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_lipsum_text_longer_than_the_model_context_is_refused_before_training(model, digits):
    with pytest.raises(BadConfig, match="lipsum_length"):
        built("lipsum", model, digits, lipsum_length=model.clip.context_length)


@pytest.mark.parametrize("argv", [
    ["run", "--ldifs-taps", "1,4"], ["run", "--ldifs-taps", "middle"], ["sweep", "--ldifs-variant", "paper,other"],
    ["run", "--lora-rank", "0"], ["run", "--grad-clip", "0"], ["run", "--objective", "zscl", "--zscl-reference", "/nope"],
])
def test_cli_refuses_bad_bench_flags_with_exit_code_2(argv, store_dir, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_sweep_grids_ldifs_over_taps_and_variants_and_runs_other_objectives_once(store_dir):
    args = cli.build_parser().parse_args(["sweep", "--objectives", "ce,ldifs", "--ldifs-taps", "last,4",
                                          "--ldifs-variant", "paper,released", "--weight-decay", "0.01",
                                          "--warmup-steps", "0", "--grad-clip", "5"])
    configs = cli.sweep_configs(args)
    assert [(c.objective, c.ldifs_taps, c.ldifs_variant) for c in configs] == [
        ("ce", 4, "paper"), ("ldifs", "last", "paper"), ("ldifs", "last", "released"),
        ("ldifs", 4, "paper"), ("ldifs", 4, "released")]
    assert {(c.weight_decay, c.warmup_steps, c.grad_clip) for c in configs} == {(0.01, 0, 5.0)}
