"""LDIFS in your own training loop: `from ldifs_core import LDIFSLoss` (docs/own-loop.md).

    ldifs = LDIFSLoss(model.visual)                 # before training: a frozen copy of the pre-trained tower
    features, reg = ldifs(model.visual, images)     # one forward of the tuned tower, and its LDIFS distance
    loss = F.cross_entropy(head(features), labels) + lam * reg

The distance is the lab's own (ldifs.forward_with_taps and distance_from_taps), so a loop written this way
regularises exactly like a run of the lab's `ldifs` objective with the same taps, variant and λ.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ldifs_core.config import LDIFS_VARIANTS
from ldifs_core.ldifs import Taps, distance_from_taps, forward_with_taps, tap_modules
from ldifs_core.models import READ_ONLY


class LDIFSLoss(nn.Module):
    """The LDIFS distance between a frozen copy of an encoder (as it was when this was built) and its tuned self.

    Args:
        encoder: the encoder about to be fine-tuned; a deep copy of it is kept frozen (eval mode, no grad).
        taps: for open_clip image towers (VisionTransformer, ModifiedResNet), a count of evenly spaced layers or
            named groups as in the lab ("stem+last", see ldifs_core.ldifs); for any other nn.Module, the names of
            the submodules whose outputs to compare (as `encoder.named_modules()` gives them), each output
            [B, C, H, W], [B, P, C] or [B, D].
        variant: "paper" (Mukhoti et al., 2024) or "released" (the authors' code).
        reduction: "mean" gives the batch mean (a scalar to add to the loss times λ); "none" one value per input.

    Move it with the tuned encoder (`ldifs.to(device)`). Hooks go on the frozen copy and, for the length of one
    forward, on the tuned encoder you pass; nothing else is touched.
    """

    def __init__(self, encoder: nn.Module, taps: Taps = 4, variant: str = "paper", reduction: str = "mean"):
        super().__init__()
        if variant not in LDIFS_VARIANTS:
            raise ValueError(f"unknown LDIFS variant '{variant}' (use {' or '.join(LDIFS_VARIANTS)})")
        if reduction not in ("mean", "none"):
            raise ValueError(f"unknown reduction '{reduction}' (use mean or none)")
        self.taps = tuple(taps) if isinstance(taps, (list, tuple)) else taps
        self.variant = variant
        self.reduction = reduction
        self.frozen = copy.deepcopy(encoder).eval().requires_grad_(False)
        for module in self.frozen.modules():  # a copy of a lab-loaded (shared, read-only) tower is this one's own
            module.__dict__.pop(READ_ONLY, None)
        tap_modules(self.frozen, self.taps)  # bad taps, unknown towers and module names fail here, not in the loop

    def train(self, mode: bool = True) -> "LDIFSLoss":
        """The frozen copy stays in eval mode (its dropout and batch-norm statistics never change)."""
        super().train(mode)
        self.frozen.eval()
        return self

    def forward(self, tuned: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the tuned encoder's output for `inputs`, the LDIFS distance): one forward of each encoder."""
        with torch.no_grad():
            _, frozen = forward_with_taps(self.frozen, inputs, self.taps)
        output, features = forward_with_taps(tuned, inputs, self.taps)
        per_sample = distance_from_taps(frozen, features, self.variant).mean(dim=0)
        return output, per_sample.mean() if self.reduction == "mean" else per_sample
