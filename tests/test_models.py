"""The model loader: the embedded default, open_clip names and tags, local checkpoints, and their failures."""
import json

import open_clip
import pytest
import torch

from ldifs_core import models
from ldifs_core.datasets import BANK_NAMES, load_split
from ldifs_core.encoding import zero_shot_accuracy
from ldifs_core.errors import BadCheckpoint, BadConfig, ModelUnavailable
from scripts.model_card import CARD_JSON
from ldifs_core.models import EMBEDDED_CHECKPOINT, EMBEDDED_MODEL, load_model
from ldifs_core.paths import ASSETS_DIR

CARD_TOLERANCE_POINTS = 0.5  # fp16 storage and BLAS summation order move a few test images at most


def test_embedded_model_loads_through_open_clip_exactly_like_a_zoo_model():
    models.register_embedded_config()
    clip, _, preprocess = open_clip.create_model_and_transforms(EMBEDDED_MODEL, pretrained=str(EMBEDDED_CHECKPOINT))
    assert isinstance(clip, open_clip.model.CLIP)
    assert clip.visual.image_size == (28, 28)
    assert sum(p.numel() for p in clip.visual.parameters()) < 1_000_000


def test_default_load_needs_no_arguments_and_no_network():
    model = load_model()
    assert model.name == EMBEDDED_MODEL and model.image_size == 28
    assert models.weights_available(None, None)


def test_committed_assets_stay_within_their_size_budgets():
    assert EMBEDDED_CHECKPOINT.stat().st_size <= 10 * 2**20
    assert sum(f.stat().st_size for f in ASSETS_DIR.rglob("*") if f.is_file()) <= 32 * 2**20


@pytest.mark.slow
def test_embedded_model_reproduces_its_model_card_and_leaves_room_to_fine_tune():
    """Measured from the committed checkpoint: the card's zero-shot numbers, well above chance everywhere, and
    the fine-tuning tasks neither hopeless nor already solved (25-85 %)."""
    card = json.loads(CARD_JSON.read_text())
    model = load_model()
    for name in BANK_NAMES:
        test = load_split(name, "test")
        measured = zero_shot_accuracy(model, test)
        assert measured == pytest.approx(card["domains"][name]["zero_shot"], abs=CARD_TOLERANCE_POINTS), name
        assert measured > 3 * 100 / test.num_classes, f"{name} zero-shot is not well above chance"
        if name in card["finetune_tasks"]:
            assert 25 <= measured <= 85, f"{name} leaves fine-tuning no room"


def test_unknown_model_name_is_refused_with_the_embedded_hint():
    with pytest.raises(ModelUnavailable, match="Unknown open_clip model 'ViT-Nope'.*embedded default"):
        load_model("ViT-Nope", "openai")


def test_zoo_model_without_cached_weights_offline_says_it_needs_a_network(monkeypatch):
    monkeypatch.setattr(models, "weights_host_reachable", lambda *a, **k: False)
    monkeypatch.setattr(models, "cached_weights_path", lambda *a, **k: None)
    assert not models.weights_available("ViT-B-32", "openai")
    with pytest.raises(ModelUnavailable, match="network.*local checkpoint.*embedded default"):
        load_model("ViT-B-32", "openai")


def test_every_zoo_entry_can_be_checked_for_cached_weights():
    """Hub ids with a file name once made this raise; every entry must get a plain yes or no."""
    answers = {(name, tag): models.weights_available(name, tag) for name, tag in open_clip.list_pretrained()}
    assert len(answers) > 100 and all(isinstance(answer, bool) for answer in answers.values())


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(ModelUnavailable, match="Known tags: .*openai"):
        load_model("ViT-B-32", "not-a-tag")


def test_missing_checkpoint_path_is_reported_as_missing(tmp_path):
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_model(EMBEDDED_MODEL, str(tmp_path / "nothing.pt"))


def test_corrupt_checkpoint_is_refused(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(BadCheckpoint, match="is not a checkpoint: it is a text file"):
        load_model(EMBEDDED_MODEL, str(path))


class Payload:
    """Anything that is not a plain tensor needs unpickling code to load."""


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(BadCheckpoint, match="pickled objects"):
        load_model(EMBEDDED_MODEL, str(path))


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), path)
    with pytest.raises(BadCheckpoint, match="does not hold weights for"):
        load_model(EMBEDDED_MODEL, str(path))


def test_local_plain_state_dict_checkpoint_loads(tmp_path):
    path = tmp_path / "copy.pt"
    torch.save(load_model().clip.state_dict(), path)
    assert load_model(EMBEDDED_MODEL, str(path)).pretrained == str(path)


def test_loading_weights_draws_no_random_numbers_and_gives_exactly_the_checkpoint(tmp_path):
    """Random initialisation is skipped when weights are loaded over it (1.8 s of a ViT-B-32 start), so the global
    generator a caller seeded is left as it was."""
    path = tmp_path / "copy.pt"
    saved = {key: value + 0.25 for key, value in load_model().clip.state_dict().items()
             if value.is_floating_point()}
    torch.save({**load_model().clip.state_dict(), **saved}, path)
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    loaded = load_model(EMBEDDED_MODEL, str(path)).clip.state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(loaded[key], value) for key, value in saved.items())


def test_a_checkpoint_missing_one_tensor_is_refused_not_left_uninitialised(tmp_path):
    weights = load_model().clip.state_dict()
    weights.pop(next(key for key in weights if key.startswith("visual.")))
    path = tmp_path / "partial.pt"
    torch.save(weights, path)
    with pytest.raises(BadCheckpoint, match="does not hold weights for"):
        load_model(EMBEDDED_MODEL, str(path))


def test_non_embedded_model_without_weights_needs_a_tag():
    with pytest.raises(BadConfig, match="needs a pretrained tag"):
        load_model("ViT-B-32", None)


def test_device_choice_refuses_unavailable_accelerators():
    if not torch.cuda.is_available():
        with pytest.raises(BadConfig, match="no CUDA GPU"):
            models.pick_device("cuda")
    assert models.pick_device("cpu").type == "cpu"
    with pytest.raises(BadConfig, match="Unknown device"):
        models.pick_device("tpu")
