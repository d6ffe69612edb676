"""A finished run's saved weights: read from the store and rebuilt on a model. WiSE-FT mixes them, and a stage
of a sequence starts from the weights of the stage before it."""
from __future__ import annotations

import copy

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ldifs_core.config import RunConfig
from ldifs_core.errors import RunNotFound, RunUnreadable
from ldifs_core.models import FoundationModel
from ldifs_core.store import RunStore


def tuned_from_weights(base: FoundationModel, weights: dict[str, torch.Tensor],
                       ) -> tuple[nn.Module, nn.Linear | None, nn.Linear | None]:
    """A run's tuned CLIP, final head and initial head, rebuilt on `base` (a private copy) from its saved weights;
    no heads for a check without a task."""
    clip = copy.deepcopy(base.clip)
    state = clip.state_dict()
    device = next(clip.parameters()).device
    state.update({k[len("clip."):]: v.to(device) for k, v in weights.items() if k.startswith("clip.")})
    clip.load_state_dict(state)
    heads = []
    for prefix in ("head", "initial_head"):
        if f"{prefix}.weight" not in weights:
            heads.append(None)
            continue
        weight = weights[f"{prefix}.weight"]
        head = nn.Linear(weight.shape[1], weight.shape[0])
        head.load_state_dict({"weight": weight, "bias": weights[f"{prefix}.bias"]})
        heads.append(head.requires_grad_(False))
    return clip.eval(), heads[0], heads[1]


def run_weights(store: RunStore, run_id: str) -> tuple[RunConfig, dict[str, torch.Tensor]]:
    """A finished run's settings and saved weights, or a LabError that says why there are none."""
    record = store.get(run_id)
    if record.status != "done":
        reason = f" ({record.message})" if record.message else ""
        raise RunNotFound(f"Run {run_id} is {record.status}{reason}: only the weights of finished runs can be used "
                          f"(mixed by WiSE-FT, or as the start of a sequence's next stage).")
    path = store.weights_path(run_id)
    if path is None:
        raise RunNotFound(f"Run {run_id} kept no weights (save_weights was off), so there are none to use. "
                          f"Run it again with weights saved.")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise RunUnreadable(f"unreadable: the weights file of run {run_id} ({path}) cannot be read ({err}); it was "
                            f"replaced or damaged. Run the configuration again to get fresh weights.") from None
    heads = {"head.weight", "head.bias", "initial_head.weight", "initial_head.bias"}
    if record.config.dataset is not None and not heads <= set(weights):  # a check without a task has no heads
        raise RunUnreadable(f"unreadable: the weights file of run {run_id} ({path}) lacks the classifier heads; it "
                            f"was replaced by another file. Run the configuration again to get fresh weights.")
    return record.config, weights
