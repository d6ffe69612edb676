"""Low-rank adapters (LoRA, Hu et al., 2022) on an open_clip image tower, and their merge back into its weights.

Each adapted weight W (out × in; a conv kernel read as out × in·k·k) becomes W + (α/r)·B·A, with A (r × in)
random and B (out × r) zero, so training starts exactly at θ₀ and only A and B learn.

Why a weight parametrization of our own rather than `peft` (which this environment does not have either): open_clip's
ViT attention is `nn.MultiheadAttention`, whose query/key/value projection is a raw parameter (`in_proj_weight`)
and whose output projection is read as `out_proj.weight` by `F.multi_head_attention_forward`: neither is called
as a module, so adapters that wrap `nn.Linear.forward` never see the attention. A parametrization
(torch.nn.utils.parametrize) changes the weight itself, so one mechanism covers the attention projections, the
MLP's linear maps and ModifiedResNet's convolutions alike; merging removes it and leaves plain weights under the
original names, so evaluation, storage, WiSE-FT and sequences see an ordinary tower. The price: LoRA's usual
dropout on the adapter's input cannot be applied to a weight; `dropout` here drops whole rank components
(as peft's LoHa/LoKr `rank_dropout` does).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ldifs_core.errors import BadConfig


class LowRankUpdate(nn.Module):
    """The parametrization W ↦ W + (α/r)·B·A of one weight tensor."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float, dropout: float, generator: torch.Generator):
        super().__init__()
        fan_in = weight[0].numel()
        down = torch.empty(rank, fan_in)
        bound = 1 / math.sqrt(fan_in)  # the scale nn.Linear gives its own weights
        down.uniform_(-bound, bound, generator=generator)
        self.down = nn.Parameter(down.to(weight.device))  # A
        self.up = nn.Parameter(torch.zeros(weight.shape[0], rank, device=weight.device))  # B
        self.scale = alpha / rank
        self.dropout = dropout

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        up = self.up
        if self.training and self.dropout > 0:
            keep = (torch.rand(up.shape[1], device=up.device) >= self.dropout).to(up.dtype) / (1 - self.dropout)
            up = up * keep
        return weight + (self.scale * up @ self.down).view_as(weight).to(weight.dtype)


def adapted_weights(visual: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, weight name) pairs LoRA adapts. ViT: every block's attention in/out projections and MLP maps.
    ModifiedResNet: every bottleneck's three convolutions and the attention pool's q/k/v/output projections."""
    if hasattr(visual, "transformer") and hasattr(visual, "ln_pre"):
        return [pair for block in visual.transformer.resblocks
                for pair in ((block.attn, "in_proj_weight"), (block.attn.out_proj, "weight"),
                             (block.mlp.c_fc, "weight"), (block.mlp.c_proj, "weight"))]
    if hasattr(visual, "layer4") and hasattr(visual, "attnpool"):
        convs = [(bottleneck, name) for stage in (visual.layer1, visual.layer2, visual.layer3, visual.layer4)
                 for bottleneck in stage for name in ("conv1", "conv2", "conv3")]
        pool = visual.attnpool
        return ([(getattr(bottleneck, name), "weight") for bottleneck, name in convs]
                + [(getattr(pool, name), "weight") for name in ("q_proj", "k_proj", "v_proj", "c_proj")])
    raise BadConfig(f"LoRA knows open_clip's VisionTransformer and ModifiedResNet towers, not "
                    f"{type(visual).__name__}: pick another objective for this model.")


def add_adapters(visual: nn.Module, rank: int, alpha: float, dropout: float = 0.0,
                 seed: int = 0) -> list[LowRankUpdate]:
    """Attach a LowRankUpdate to every adapted weight of `visual` (a run's own tower); returns them in order."""
    generator = torch.Generator().manual_seed(seed)
    adapters = []
    for module, name in adapted_weights(visual):
        adapter = LowRankUpdate(getattr(module, name), rank, alpha, dropout, generator)
        parametrize.register_parametrization(module, name, adapter)
        adapters.append(adapter)
    return adapters


def merge_adapters(visual: nn.Module) -> None:
    """Fold every adapter into its weight and remove it: `visual` is an ordinary tower again (same state_dict keys)."""
    for module in list(visual.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
