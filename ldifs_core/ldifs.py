"""The LDIFS distance (Mukhoti et al., 2024): how far a fine-tuned image tower's features moved.

LDIFS(x) = mean over L tapped layers of [ mean over positions of ||phî_l(theta, x) - phî_l(theta0, x)||^2 ],
with each position's feature vector normalised to unit L2 norm along channels (LPIPS-style).

Variant "released" reproduces the authors' released code, which differs in two details: it normalises
each channel along the position (token) axis instead of each position along channels, and it averages
the squared differences over channels instead of summing them.
"""
from __future__ import annotations

import torch
from torch import nn

from ldifs_core.features import forward_with_taps

EPS = 1e-10


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
                   taps: int = 4, variant: str = "paper") -> tuple[torch.Tensor, torch.Tensor]:
    """LDIFS per sample [B] and per layer [L, B] for any open_clip image tower pair.

    Gradients flow into `finetuned_encoder` only: the pre-trained features are computed without grad.
    """
    with torch.no_grad():
        _, frozen = forward_with_taps(pretrained_encoder, images, taps)
    _, tuned = forward_with_taps(finetuned_encoder, images, taps)
    per_layer = distance_from_taps(frozen, tuned, variant)
    return per_layer.mean(dim=0), per_layer
