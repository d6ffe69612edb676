"""Fine-tuned checkpoints made elsewhere, read as weights of a base model: every accepted format of a perturbed copy
of the embedded model reads back as the same weights, and every bad input is refused with what to do."""
import json

import pytest
import torch
from open_clip.model import _build_vision_tower
from PIL import Image
from safetensors.torch import save_file

from ldifs_core.checkpoints import IMAGE_TOWER, WHOLE_MODEL, load_tuned_clip, read_tuned_weights
from ldifs_core.errors import BadCheckpoint, ModelUnavailable
from ldifs_core.models import EMBEDDED_MODEL, load_model
from ldifs_core.paths import ASSETS_DIR
from tests.conftest import perturbed_clip

CONFIG = json.loads((ASSETS_DIR / "model" / f"{EMBEDDED_MODEL}.json").read_text())


@pytest.fixture(scope="module")
def base():
    return load_model()


@pytest.fixture(scope="module")
def tuned_clip(base):
    """The embedded CLIP with every weight moved a little (both towers), as a fine-tuning elsewhere would."""
    return perturbed_clip(base.clip, image_tower=0.01, rest=0.01)


def prefixed(state, prefix):
    return {prefix + key: value for key, value in state.items()}


def save_torch(path, content):
    torch.save(content, path)
    return path


def save_safetensors(path, state):
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path


def open_clip_training_checkpoint(clip):
    """What open_clip's training script saves (model under DistributedDataParallel), optimizer state included."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    return {"epoch": 3, "name": "my-finetune", "state_dict": prefixed(clip.state_dict(), "module."),
            "optimizer": optimizer.state_dict()}


ACCEPTED = {
    "whole CLIP state dict (.pt)": (lambda p, clip: save_torch(p / "a.pt", clip.state_dict()), WHOLE_MODEL),
    "image tower state dict (.pt)": (lambda p, clip: save_torch(p / "a.pt", clip.visual.state_dict()), IMAGE_TOWER),
    "image tower with visual. keys (.bin)": (
        lambda p, clip: save_torch(p / "a.bin", prefixed(clip.visual.state_dict(), "visual.")), IMAGE_TOWER),
    "open_clip training checkpoint": (
        lambda p, clip: save_torch(p / "epoch_3.pt", open_clip_training_checkpoint(clip)), WHOLE_MODEL),
    "whole CLIP safetensors": (lambda p, clip: save_safetensors(p / "a.safetensors", clip.state_dict()), WHOLE_MODEL),
    "image tower safetensors": (
        lambda p, clip: save_safetensors(p / "a.safetensors", clip.visual.state_dict()), IMAGE_TOWER),
    "image tower and a classifier head (the lab's own layout)": (
        lambda p, clip: save_torch(p / "a.pt", {**prefixed(clip.visual.state_dict(), "visual."),
                                                "head.weight": torch.zeros(10, 128)}), IMAGE_TOWER),
}


@pytest.mark.parametrize("form", list(ACCEPTED))
def test_every_accepted_format_reads_back_as_the_tuned_weights_and_says_what_it_holds(form, base, tuned_clip,
                                                                                       tmp_path):
    save, kind = ACCEPTED[form]
    path = save(tmp_path, tuned_clip)
    state, found = read_tuned_weights(path, base)
    assert found == kind
    expected = tuned_clip.state_dict() if kind == WHOLE_MODEL else tuned_clip.visual.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], expected[key]) for key in expected)

    clip, _ = load_tuned_clip(path, base)
    assert torch.equal(clip.visual.conv1.weight, tuned_clip.visual.conv1.weight)
    text_source = tuned_clip if kind == WHOLE_MODEL else base.clip  # a tower-only file keeps base's text tower
    assert torch.equal(clip.token_embedding.weight, text_source.token_embedding.weight)
    assert not torch.equal(base.clip.visual.conv1.weight, clip.visual.conv1.weight), "base is left as it was"


def test_half_precision_weights_are_accepted(base, tuned_clip, tmp_path):
    path = save_torch(tmp_path / "half.pt", {k: v.half() for k, v in tuned_clip.visual.state_dict().items()})
    clip, kind = load_tuned_clip(path, base)
    assert kind == IMAGE_TOWER and clip.visual.conv1.weight.dtype == torch.float32


def other_tower(**vision_changes):
    torch.manual_seed(0)
    return _build_vision_tower(CONFIG["embed_dim"], {**CONFIG["vision_cfg"], **vision_changes})


def test_another_width_is_named_in_the_users_terms(base, tmp_path):
    path = save_torch(tmp_path / "wide.pt", other_tower(width=64, head_width=32).state_dict())
    with pytest.raises(BadCheckpoint, match=rf"another architecture than {EMBEDDED_MODEL}: width 64 in the file, "
                                            rf"128 for {EMBEDDED_MODEL}\. Give the model the checkpoint was"):
        read_tuned_weights(path, base)


def test_another_depth_and_a_resnet_are_named(base, tmp_path):
    deeper = save_torch(tmp_path / "deeper.pt", other_tower(layers=6).state_dict())
    with pytest.raises(BadCheckpoint, match=rf"layers 6 in the file, 4 for {EMBEDDED_MODEL}"):
        read_tuned_weights(deeper, base)
    resnet = save_torch(tmp_path / "resnet.pt", other_tower(layers=[1, 1, 1, 1], width=16, image_size=64).state_dict())
    with pytest.raises(BadCheckpoint, match=rf"tower ModifiedResNet in the file, ViT for {EMBEDDED_MODEL}"):
        read_tuned_weights(resnet, base)


def test_a_vit_b_32_shaped_file_suggests_the_model_it_came_from(base, tmp_path):
    """Only the tensors the architecture is read from (a real ViT-B-32 tower needs 350 MB)."""
    tower = {"conv1.weight": torch.zeros(768, 3, 32, 32), "class_embedding": torch.zeros(768),
             "positional_embedding": torch.zeros(50, 768), "proj": torch.zeros(768, 512),
             **{f"transformer.resblocks.{i}.ln_1.weight": torch.zeros(768) for i in range(12)}}
    path = save_torch(tmp_path / "b32.pt", prefixed(tower, "visual."))
    with pytest.raises(BadCheckpoint, match=r"width 768 in the file, 128 .*; layers 12 in the file, 4 .*patch size 32 "
                                            r"in the file, 7 .*image size 224 in the file, 28 .*open_clip models of "
                                            r"that shape: .*ViT-B-32"):
        read_tuned_weights(path, base)


def test_a_whole_model_whose_text_tower_differs_names_it(base, tuned_clip, tmp_path):
    state = tuned_clip.state_dict()
    state["token_embedding.weight"] = torch.zeros(49408, 32)
    with pytest.raises(BadCheckpoint, match=rf"text width 32 in the file, 64 for {EMBEDDED_MODEL}\. Give the model "
                                            rf"the checkpoint was fine-tuned from\.$"):
        read_tuned_weights(save_torch(tmp_path / "text.pt", state), base)


def test_other_shape_differences_name_the_tensors(base, tuned_clip, tmp_path):
    state = tuned_clip.state_dict()
    state["positional_embedding"] = torch.zeros(77, 64)  # the text tower's context length
    with pytest.raises(BadCheckpoint, match=r"positional_embedding \(77, 64\) in the file, \(24, 64\) for"):
        read_tuned_weights(save_torch(tmp_path / "context.pt", state), base)


def test_an_incomplete_state_dict_says_how_many_tensors_are_missing(base, tuned_clip, tmp_path):
    state = tuned_clip.visual.state_dict()
    del state["ln_post.weight"], state["ln_post.bias"]
    with pytest.raises(BadCheckpoint, match=r"\(image tower only\) lacks 2 of the \d+ tensors .*ln_post.weight.*"
                                            r"torch.save\(model.state_dict\(\), path\)"):
        read_tuned_weights(save_torch(tmp_path / "partial.pt", state), base)


def test_pickled_code_is_refused_with_how_to_re_save(base, tuned_clip, tmp_path):
    path = save_torch(tmp_path / "model.pt", tuned_clip)  # the whole module, pickled
    with pytest.raises(BadCheckpoint, match=r"pickled objects.*torch.save\(model.state_dict\(\), path\)"):
        read_tuned_weights(path, base)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_truncated_file_is_reported_as_truncated(suffix, base, tuned_clip, tmp_path):
    whole = ACCEPTED["whole CLIP safetensors" if suffix == ".safetensors" else "whole CLIP state dict (.pt)"][0]
    data = whole(tmp_path, tuned_clip).read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(BadCheckpoint, match="looks truncated or corrupt.*Copy it again"):
        read_tuned_weights(path, base)


def test_files_that_are_not_checkpoints(base, tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "photo.pt", format="PNG")
    (tmp_path / "notes.pt").write_text("epoch 3, loss 0.1\n")
    (tmp_path / "folder").mkdir()
    for name, message in [("photo.pt", "is not a checkpoint: it is a PNG image. Save the weights with torch.save"),
                          ("notes.pt", "is not a checkpoint: it is a text file"),
                          ("folder", "is a folder. Give the checkpoint file inside it")]:
        with pytest.raises(BadCheckpoint, match=message):
            read_tuned_weights(tmp_path / name, base)
    with pytest.raises(ModelUnavailable, match="'.*nothing.pt' does not exist. Check the path"):
        read_tuned_weights(tmp_path / "nothing.pt", base)


@pytest.mark.parametrize(("content", "message"), [
    ({"epoch": 3, "optimizer": {}}, "holds no model weights: it is a dict with keys epoch, optimizer"),
    ([torch.zeros(2)], "holds no model weights: it is a list"),
    ({}, "holds no model weights: it is a dict with nothing in it"),
    ({"encoder.layer.0.weight": torch.zeros(2)}, "holds tensors of neither a CLIP nor its image tower \\(keys such "
                                                 "as encoder.layer.0.weight\\)"),
])
def test_content_that_is_not_clip_weights(content, message, base, tmp_path):
    with pytest.raises(BadCheckpoint, match=message):
        read_tuned_weights(save_torch(tmp_path / "other.pt", content), base)
