"""Taps on intermediate layers of an open_clip image tower, as [batch, positions, channels] tensors.

ViT: the output of ln_pre and the residual stream after evenly spaced blocks (ViT-B-32 with 4 taps:
after blocks 3, 6, 9, 12). ModifiedResNet: the stem (after its pooling) and the four stages.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def tap_modules(visual: nn.Module, taps: int = 4) -> list[nn.Module]:
    """The modules whose outputs LDIFS compares, in forward order."""
    if hasattr(visual, "transformer") and hasattr(visual, "ln_pre"):
        blocks = list(visual.transformer.resblocks)
        n = min(taps, len(blocks))
        picked = sorted({round(len(blocks) * (i + 1) / n) - 1 for i in range(n)})
        return [visual.ln_pre] + [blocks[i] for i in picked]
    if hasattr(visual, "layer4") and hasattr(visual, "avgpool"):
        return [visual.avgpool, visual.layer1, visual.layer2, visual.layer3, visual.layer4]
    raise TypeError(f"No LDIFS taps known for {type(visual).__name__}: use an open_clip VisionTransformer or "
                    f"ModifiedResNet image tower.")


def as_positions(output: torch.Tensor, batch_first: bool) -> torch.Tensor:
    """Any tapped output -> [B, P, C]."""
    if output.dim() == 4:  # conv maps [B, C, H, W]
        return output.flatten(2).transpose(1, 2)
    return output if batch_first else output.transpose(0, 1)


@contextmanager
def tapped(visual: nn.Module, taps: int = 4):
    """Within the block, every forward of `visual` appends its tapped features to the yielded list."""
    captured: list[torch.Tensor] = []
    modules = tap_modules(visual, taps)
    # ln_pre always sees batch-first input; transformer blocks follow the transformer's own layout.
    batch_first = getattr(getattr(visual, "transformer", None), "batch_first", True)
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, first=(i == 0): captured.append(as_positions(out, True if first else batch_first)))
        for i, module in enumerate(modules)
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def forward_with_taps(visual: nn.Module, images: torch.Tensor, taps: int = 4) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The tower's pooled output and its tapped features, from one forward pass."""
    with tapped(visual, taps) as captured:
        pooled = visual(images)
    return pooled, list(captured)
