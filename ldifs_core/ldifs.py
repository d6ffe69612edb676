"""The LDIFS distance (Mukhoti et al., 2024): how far a fine-tuned image tower's features moved.

LDIFS(x) = mean over L tapped layers of [ mean over positions of ||phî_l(theta, x) - phî_l(theta0, x)||^2 ],
with each position's feature vector normalised to unit L2 norm along channels (LPIPS-style).

Taps: ViT, the output of ln_pre and the residual stream after evenly spaced blocks (ViT-B-32 with 4 taps:
after blocks 3, 6, 9, 12); ModifiedResNet, the stem (after its pooling) and the four stages (a count below 4
picks evenly spaced stages). Named groups
(config.LDIFS_TAP_GROUPS, joined by "+") pick them for ablations: "stem", "blocks" (every block / stage),
"last" (the last block / stage) and "embedding" (the tower's pooled output, one position).

Variant "released" reproduces the authors' released code, which differs in two details: it normalises
each channel along the position (token) axis instead of each position along channels, and it averages
the squared differences over channels instead of summing them.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ldifs_core.config import parse_ldifs_taps
from ldifs_core.models import is_read_only

EPS = 1e-10
Taps = int | str | Sequence[str]  # a count, named groups ("stem+last"), or submodule names


def tap_modules(visual: nn.Module, taps: Taps = 4) -> list[nn.Module]:
    """The modules whose outputs LDIFS compares, in forward order (`taps`: a count or named groups, or for any
    module the names of its submodules to tap, as `named_modules()` gives them)."""
    if isinstance(taps, (list, tuple)):
        return [named_submodule(visual, name) for name in taps]
    if hasattr(visual, "transformer") and hasattr(visual, "ln_pre"):
        stem, blocks = visual.ln_pre, list(visual.transformer.resblocks)
    elif hasattr(visual, "layer4") and hasattr(visual, "avgpool"):
        stem, blocks = visual.avgpool, [visual.layer1, visual.layer2, visual.layer3, visual.layer4]
    else:
        raise TypeError(f"No LDIFS taps known for {type(visual).__name__}: use an open_clip VisionTransformer or "
                        f"ModifiedResNet image tower, or give the names of the submodules to tap.")
    spec = parse_ldifs_taps(taps)
    if isinstance(spec, int):  # the stem and `spec` evenly spaced blocks (stages), as the paper taps them
        if spec > len(blocks):  # never fewer taps than the run says it used
            raise ValueError(taps_beyond_tower(spec, len(blocks), type(visual).__name__))
        return [stem] + [blocks[i] for i in sorted({round(len(blocks) * (i + 1) / spec) - 1 for i in range(spec)})]
    groups = {"stem": [stem], "blocks": blocks, "last": blocks[-1:], "embedding": [visual]}
    picked = {id(module): module for group in spec for module in groups[group]}
    order = [stem, *blocks, visual]  # forward order
    return [module for module in order if id(module) in picked]


def taps_beyond_tower(count: int, blocks: int, tower: str) -> str:
    return (f"ldifs_taps {count} is more than the {blocks} blocks of the {tower} image tower: give a count from 1 to "
            f"{blocks}, or named groups such as last or stem+blocks")


def named_submodule(module: nn.Module, name: str) -> nn.Module:
    try:
        return module.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in module.named_modules() if n]
        raise ValueError(f"{type(module).__name__} has no submodule '{name}' to tap; it has {', '.join(names[:12])}"
                         f"{' …' if len(names) > 12 else ''}") from None


def as_positions(output: torch.Tensor, batch_first: bool) -> torch.Tensor:
    """Any tapped output -> [B, P, C]. Of a tuple (attention layers, Hugging Face blocks), its first element."""
    if isinstance(output, tuple):
        output = output[0]
    if output.dim() == 4:  # conv maps [B, C, H, W]
        return output.flatten(2).transpose(1, 2)
    if output.dim() == 2:  # the pooled embedding [B, D]: one position
        return output.unsqueeze(1)
    return output if batch_first else output.transpose(0, 1)


@contextmanager
def tapped(visual: nn.Module, taps: Taps = 4):
    """Within the block, every forward of `visual` appends its tapped features to the yielded list.

    Hooks are installed on `visual` itself, so it must be a run's own module: a shared, read-only model
    (see models.FoundationModel) is refused, since another thread's forward would land in this list.
    """
    if is_read_only(visual):
        raise RuntimeError("This image tower belongs to a shared, read-only base model: tap a run's private copy "
                           "(FoundationModel.private_copy) instead.")
    captured: list[torch.Tensor] = []
    modules = tap_modules(visual, taps)
    # ln_pre always sees batch-first input; transformer blocks follow the transformer's own layout.
    transformer = getattr(visual, "transformer", None)
    in_blocks = {id(block) for block in getattr(transformer, "resblocks", [])}
    batch_first = getattr(transformer, "batch_first", True)
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, is_batch_first=(id(module) not in in_blocks or batch_first):
            captured.append(as_positions(out, is_batch_first)))
        for module in modules
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def forward_with_taps(visual: nn.Module, images: torch.Tensor, taps: Taps = 4) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The tower's pooled output and its tapped features, from one forward pass."""
    with tapped(visual, taps) as captured:
        pooled = visual(images)
    return pooled, list(captured)


def layer_distance(frozen: torch.Tensor, tuned: torch.Tensor, variant: str = "paper") -> torch.Tensor:
    """Per-sample distance [B] between two [B, P, C] feature maps of one layer."""
    if variant == "paper":
        f0 = frozen / (frozen.norm(dim=2, keepdim=True) + EPS)
        f1 = tuned / (tuned.norm(dim=2, keepdim=True) + EPS)
        return (f1 - f0).pow(2).sum(dim=2).mean(dim=1)
    if variant == "released":
        f0 = frozen / (frozen.norm(dim=1, keepdim=True) + EPS)
        f1 = tuned / (tuned.norm(dim=1, keepdim=True) + EPS)
        return (f1 - f0).pow(2).mean(dim=2).mean(dim=1)
    raise ValueError(f"unknown LDIFS variant '{variant}' (use 'paper' or 'released')")


def distance_from_taps(frozen_taps: list[torch.Tensor], tuned_taps: list[torch.Tensor],
                       variant: str = "paper") -> torch.Tensor:
    """Per-layer distances [L, B]; their mean over layers is LDIFS."""
    return torch.stack([layer_distance(f0.float(), f1.float(), variant) for f0, f1 in zip(frozen_taps, tuned_taps)])


def ldifs_distance(pretrained_encoder: nn.Module, finetuned_encoder: nn.Module, images: torch.Tensor,
                   taps: Taps = 4, variant: str = "paper") -> tuple[torch.Tensor, torch.Tensor]:
    """LDIFS per sample [B] and per layer [L, B] for any open_clip image tower pair (both a run's own modules).

    Gradients flow into `finetuned_encoder` only: the pre-trained features are computed without grad.
    """
    with torch.no_grad():
        _, frozen = forward_with_taps(pretrained_encoder, images, taps)
    _, tuned = forward_with_taps(finetuned_encoder, images, taps)
    per_layer = distance_from_taps(frozen, tuned, variant)
    return per_layer.mean(dim=0), per_layer
