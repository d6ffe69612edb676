"""Model Stock (Jang, Yun & Han, ECCV 2024, arXiv 2403.19522): merge two fine-tuned runs with θ₀, layer by layer,
after training, like WiSE-FT. See docs/methods.md.

For each floating-point tensor of the state dict (a "layer" as in the authors' code: weights and biases apart),
with δ₁ = w₁ − θ₀, δ₂ = w₂ − θ₀ flattened and cos φ = ⟨δ₁, δ₂⟩ / (‖δ₁‖·‖δ₂‖):

    t = 2·cos φ / (1 + cos φ),    w = t·(w₁ + w₂)/2 + (1 − t)·θ₀.

Two choices the authors' code leaves implicit: cos φ is taken as 0 when a delta is zero (so t = 0), and
negative cosines count as 0 too (the code would extrapolate beyond θ₀, to t → −∞ as cos φ → −1); so t ∈ [0, 1]
and a tensor that the two runs moved in opposite directions stays at θ₀. Tensors that are not floating point
(such as BatchNorm's num_batches_tracked) are w₁'s; BatchNorm's running statistics are float buffers and are merged
like weights.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch


def interpolation_ratio(delta1: torch.Tensor, delta2: torch.Tensor) -> float:
    """t for one tensor from the angle between the two runs' deltas (float64, so equal deltas give t = 1)."""
    a, b = delta1.double().flatten(), delta2.double().flatten()
    norms = torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
    cos = float(torch.dot(a, b) / norms) if norms > 0 else 0.0
    cos = min(max(cos, 0.0), 1.0)
    return 2 * cos / (1 + cos)


def model_stock_ratios(theta0: Mapping[str, torch.Tensor], w1: Mapping[str, torch.Tensor],
                       w2: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """t per floating-point tensor: how far each layer goes from θ₀ towards the runs' average (for the record)."""
    return {k: interpolation_ratio(w1[k] - v, w2[k] - v) for k, v in theta0.items() if v.is_floating_point()}


def model_stock_merge(theta0: Mapping[str, torch.Tensor], w1: Mapping[str, torch.Tensor],
                      w2: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The merged state dict: same keys, shapes and dtypes as w₁ (the three must share keys and shapes)."""
    if not (theta0.keys() == w1.keys() == w2.keys()) or any(
            theta0[k].shape != w1[k].shape or w1[k].shape != w2[k].shape for k in theta0):
        raise ValueError("Model Stock merges runs of one model: θ₀ and both runs need the same keys and shapes.")
    ratios = model_stock_ratios(theta0, w1, w2)
    merged = {}
    for key, first in w1.items():
        if key not in ratios:
            merged[key] = first.clone()
            continue
        base = theta0[key].double()
        average = (first.double() + w2[key].double()) / 2
        merged[key] = (base + ratios[key] * (average - base)).to(first.dtype)
    return merged
