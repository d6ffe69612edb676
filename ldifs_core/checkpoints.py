"""Fine-tuned checkpoints made elsewhere (open_clip's training script, a user's own loop), read as weights of a
base model so the lab can compare the two.

Accepted: a state dict of the whole CLIP or of its image tower only (keys with or without `visual.`), wrapped or
not in an open_clip training checkpoint ({"state_dict": {"module.…": …}, "epoch": …}), saved by torch.save or as
safetensors. Pickled code is never run (torch.load with weights_only). Every refusal says what to do.
"""
from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

import open_clip
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from ldifs_core.errors import BadCheckpoint, ModelUnavailable
from ldifs_core.models import READ_ONLY, load_error, not_a_checkpoint

if TYPE_CHECKING:
    from ldifs_core.models import FoundationModel

WHOLE_MODEL = "whole model"
IMAGE_TOWER = "image tower only"
TOWER = "visual."
WRAPPERS = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
RESAVE = "Save the weights with torch.save(model.state_dict(), path) or safetensors."


def read_tuned_weights(path: str | Path, base: FoundationModel) -> tuple[dict[str, torch.Tensor], str]:
    """The weights in `path` as a complete state dict of `base.clip` (kind WHOLE_MODEL) or of `base.clip.visual`
    (kind IMAGE_TOWER), checked against `base`'s architecture. Tensors of neither (a classifier head) are left out."""
    path = Path(path)
    state = {unwrapped(key): tensor for key, tensor in state_dict_in(read_file(path), path).items()}
    whole = base.clip.state_dict()
    text_keys = {key for key in whole if not key.startswith(TOWER)}
    if any(key.startswith(TOWER) for key in state) and text_keys & state.keys():
        kind, expected = WHOLE_MODEL, whole
    else:
        kind, expected = IMAGE_TOWER, base.clip.visual.state_dict()
        if any(key.startswith(TOWER) for key in state):
            state = {key[len(TOWER):]: tensor for key, tensor in state.items() if key.startswith(TOWER)}
        if not expected.keys() & state.keys():
            raise BadCheckpoint(f"'{path}' holds tensors of neither a CLIP nor its image tower (keys such as "
                                f"{', '.join(list(state)[:3])}). {RESAVE}")
    check_architecture(path, state, expected, kind, base.name)
    return {key: state[key] for key in expected}, kind


def load_tuned_clip(path: str | Path, base: FoundationModel) -> tuple[nn.Module, str]:
    """A copy of `base.clip` with the tuned weights in `path` (an image-tower-only file keeps base's text tower)."""
    state, kind = read_tuned_weights(path, base)
    return clip_with(base, state, kind), kind


def clip_with(base: FoundationModel, state: dict[str, torch.Tensor], kind: str) -> nn.Module:
    """A copy of `base.clip`, where base lives, with the weights `read_tuned_weights` read."""
    clip = copy.deepcopy(base.clip)
    for module in clip.modules():  # the copy is the caller's own, not the shared base
        module.__dict__.pop(READ_ONLY, None)
    (clip if kind == WHOLE_MODEL else clip.visual).load_state_dict(state)
    return clip.eval()


def read_file(path: Path) -> object:
    """What torch.save or safetensors wrote to `path`, read without running code."""
    return _read(path, lazily=False)


def check_file(path: Path) -> None:
    """Refuse, as `read_file` would, a missing, truncated or corrupt file or one holding pickled code, without
    reading its tensors: a torch.save archive's tensors are mapped, not read; of a safetensors file only the header
    is (a check before a run costs milliseconds, not a second read of a 600 MB file)."""
    _read(path, lazily=True)


def _read(path: Path, lazily: bool) -> object:
    if not path.exists():
        raise ModelUnavailable(f"Checkpoint file '{path}' does not exist. Check the path.")
    if path.is_dir():
        raise BadCheckpoint(f"'{path}' is a folder. Give the checkpoint file inside it (.pt, .pth, .bin, "
                            f".safetensors).")
    if kind := not_a_checkpoint(path):
        raise BadCheckpoint(f"'{path}' is not a checkpoint: it is {kind}. {RESAVE}")
    with open(path, "rb") as file:
        head = file.read(4)
    try:
        if head.startswith(b"PK\x03\x04") or head[0] == 0x80:  # torch.save: a zip archive, or a legacy pickle
            return torch.load(path, map_location="cpu", weights_only=True, mmap=lazily and head.startswith(b"PK"))
        if lazily:
            with safe_open(str(path), "pt"):  # reads and checks the header against the file's size
                return None
        return load_file(str(path))
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, SafetensorError) as err:
        if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in str(err):
            raise load_error(err, "", str(path), is_file=True) from None  # the lab's one refusal of pickled code
        first_line = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise BadCheckpoint(f"'{path}' could not be read as a checkpoint: it looks truncated or corrupt "
                            f"({first_line}). Copy it again, or re-save it: torch.save(model.state_dict(), path).") \
            from None


def state_dict_in(content: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict itself, out of an open_clip training checkpoint if it is one."""
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if isinstance(content, dict) and content and all(isinstance(value, torch.Tensor) for value in content.values()):
        return content
    found = f"a dict with keys {', '.join(map(str, list(content)[:5]))}" if isinstance(content, dict) and content \
        else f"a {type(content).__name__}" + (" with nothing in it" if not content else "")
    raise BadCheckpoint(f"'{path}' holds no model weights: it is {found}. {RESAVE}")


def unwrapped(key: str) -> str:
    while key.startswith(WRAPPERS):
        key = key.split(".", 1)[1]
    return key


def check_architecture(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], kind: str,
                       model: str) -> None:
    """Refuses weights `model` cannot take, naming the difference the way a user knows it (width, layers, ...)."""
    wrong_shape = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    missing = [key for key in expected if key not in state]
    if not wrong_shape and not missing and state.keys() <= expected.keys():
        return
    ours, theirs = (architecture(weights, kind) for weights in (expected, state))
    differences = [f"{feature} {theirs.get(feature, 'none')} in the file, {value} for {model}"
                   for feature, value in ours.items() if theirs.get(feature) != value]
    if differences:
        similar = matching_models(theirs)
        hint = f" (open_clip models of that shape: {', '.join(similar)})" if similar else ""
        raise BadCheckpoint(f"'{path}' ({kind}) holds weights of another architecture than {model}: "
                            f"{'; '.join(differences)}. Give the model the checkpoint was fine-tuned from{hint}.")
    if not wrong_shape and not missing:
        return  # only extra tensors (a classifier head) beside complete weights of this architecture
    if wrong_shape:
        raise BadCheckpoint(f"'{path}' ({kind}) holds weights of another architecture than {model}: " + "; ".join(
            f"{key} {tuple(state[key].shape)} in the file, {tuple(expected[key].shape)} for {model}"
            for key in wrong_shape[:3]) + ". Give the model the checkpoint was fine-tuned from.")
    raise BadCheckpoint(f"'{path}' ({kind}) lacks {len(missing)} of the {len(expected)} tensors of {model}'s "
                        f"{'CLIP' if kind == WHOLE_MODEL else 'image tower'} (such as {', '.join(missing[:3])}). "
                        f"Save all of them: torch.save(model.state_dict(), path).")


def architecture(state: dict[str, torch.Tensor], kind: str) -> dict[str, object]:
    """The image tower's shape, and of a whole model also its text tower's."""
    if kind == IMAGE_TOWER:
        return tower_architecture(state)
    text = {"text width": state["token_embedding.weight"].shape[1] if "token_embedding.weight" in state else None,
            "text layers": block_count(state, "transformer.resblocks.")}
    return {**tower_architecture({key[len(TOWER):]: tensor for key, tensor in state.items()
                                  if key.startswith(TOWER)}), **text}


def block_count(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    return len({match.group(1) for key in state if (match := pattern.match(key))})


def tower_architecture(tower: dict[str, torch.Tensor]) -> dict[str, object]:
    """An image tower's shape in open_clip's terms (vision_cfg), read from its tensors."""
    if "class_embedding" in tower and "conv1.weight" in tower:
        patch = tower["conv1.weight"].shape[-1]
        grid = round((tower["positional_embedding"].shape[0] - 1) ** 0.5) if "positional_embedding" in tower else 0
        return {"tower": "ViT", "width": tower["class_embedding"].shape[-1],
                "layers": block_count(tower, "transformer.resblocks."), "patch size": patch,
                "image size": grid * patch, "output dim": tower["proj"].shape[1] if "proj" in tower else None}
    if "attnpool.c_proj.weight" in tower and "conv1.weight" in tower:
        return {"tower": "ModifiedResNet", "width": tower["conv1.weight"].shape[0] * 2,
                "layers": tuple(block_count(tower, f"layer{i}.") for i in range(1, 5)),
                "output dim": tower["attnpool.c_proj.weight"].shape[0]}
    return {"tower": "unknown"}


def matching_models(architecture: dict[str, object], at_most: int = 4) -> list[str]:
    """open_clip models whose image tower (and text tower, if known) has this width, depth and patch size."""
    if architecture["tower"] == "unknown":
        return []
    names = []
    for name in open_clip.list_models():
        vision = (open_clip.get_model_config(name) or {}).get("vision_cfg", {})
        layers = vision.get("layers", 12)
        is_resnet = isinstance(layers, (list, tuple))
        if (architecture["tower"] == "ModifiedResNet") != is_resnet or vision.get("timm_model_name"):
            continue
        shape = {"width": vision.get("width", 768 if not is_resnet else 64),
                 "layers": tuple(layers) if is_resnet else layers}
        if not is_resnet:
            shape["patch size"] = vision.get("patch_size", 16)
        if "text width" in architecture:  # a whole model: its text tower too
            text = (open_clip.get_model_config(name) or {}).get("text_cfg", {})
            shape.update({"text width": text.get("width", 512), "text layers": text.get("layers", 12)})
        if all(architecture.get(feature) == value for feature, value in shape.items()):
            names.append(name)
    return names[:at_most]
