"""Linear probes: multinomial logistic regression on frozen, L2-normalised features.

Full-batch L-BFGS in torch, in float64: the search's fits stop after a few iterations, and in float32 the order
of the sums (set by torch's thread count) moved them enough to change the chosen strength and an LP Δ by points
between machines; float64 keeps that order's effect far below anything a prediction can see.

The L2 strength is chosen on a held-out fifth of the train features (stratified by class), searching a decade
grid that grows while its best value sits at an edge, so the choice always has a tried neighbour on each side (or
sits at a hard bound). The probe is then refit on all train features, warm-started. Every fit warm-starts from the
nearest strength already fitted, which keeps a 10k x 128 fit around a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ldifs_core.stats import accuracy

L2_START = (1e-4, 1e-3, 1e-2)  # centred on what the old fixed grid always picked (its edge, 1e-3)
L2_BOUNDS = (1e-8, 1e2)  # the search never leaves these, whatever the data


@dataclass
class LinearProbe:
    weight: torch.Tensor  # [K, D], float64
    bias: torch.Tensor  # [K], float64
    l2: float  # the chosen strength
    tried: dict[float, float] = field(default_factory=dict)  # strength -> held-out accuracy (%), ascending strength

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features.to(self.weight.dtype) @ self.weight.T + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features).argmax(dim=1)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return accuracy(self.predict(features), labels)


def _fit(features, labels, num_classes, l2, init=None, max_iter=60) -> LinearProbe:
    weight = torch.zeros(num_classes, features.shape[1], dtype=features.dtype) if init is None else init.weight.clone()
    bias = torch.zeros(num_classes, dtype=features.dtype) if init is None else init.bias.clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=10,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-6)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return LinearProbe(weight.detach(), bias.detach(), l2)


def stratified_holdout(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, held-out indices): about `fraction` of each class held out, at least one image kept to fit.

    A class of n images holds out floor(n·fraction) images, plus one more with probability equal to the remainder
    (seeded), so classes of 2-4 images still take part in the choice on average without any class losing all its
    training images.
    """
    labels = labels.cpu()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    shuffled = labels[order]
    by_class = torch.sort(shuffled, stable=True)
    counts = torch.bincount(shuffled)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(labels)) - starts[by_class.values]  # position of each image within its class
    wanted = counts * fraction
    wanted = wanted.floor() + (torch.rand(len(counts), generator=generator) < wanted - wanted.floor())
    wanted = torch.minimum(wanted, (counts - 1).clamp(min=0))
    held = torch.zeros(len(labels), dtype=torch.bool)
    held[by_class.indices] = rank < wanted[by_class.values]
    return order[~held].sort().values, order[held].sort().values


def _decade(value: float, steps: int) -> float:
    return float(f"{value * 10.0 ** steps:.6g}")  # 1e-3 * 10 -> 0.01 exactly, so strengths stay readable keys


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     l2_grid: tuple[float, ...] = L2_START, holdout_fraction: float = 0.2, seed: int = 0,
                     l2_bounds: tuple[float, float] = L2_BOUNDS, search_iter: int = 30) -> LinearProbe:
    """Fit on train features; choose the L2 strength on a held-out part of them.

    `l2_grid` is where the search starts; while the best held-out accuracy (ties: lower held-out cross-entropy)
    sits at the grid's weakest or strongest value, the grid grows by a factor 10 that way, within `l2_bounds`.
    A single value in `l2_grid` fixes the strength (no search). Search fits stop after `search_iter` L-BFGS
    iterations, warm-started from the neighbouring strength (not always converged: an early stop that float64 makes
    the same on every machine); the final fit runs to convergence or 60. Deterministic for a given seed, whatever
    the thread count.
    """
    features = features.double()
    scale = features.shape[1] ** 0.5  # unit-norm features -> unit-variance coordinates: better conditioned
    features = features * scale
    low_bound, high_bound = l2_bounds
    grid = sorted({min(max(float(v), low_bound), high_bound) for v in l2_grid}, reverse=True)  # strong to weak
    fit_idx, holdout_idx = stratified_holdout(labels, holdout_fraction, seed) if len(grid) > 1 else (None, [])
    if len(holdout_idx) == 0:  # a fixed strength, or too few images to hold any out
        best = grid[len(grid) // 2]
        probe = _fit(features, labels, num_classes, best)
        return LinearProbe(probe.weight * scale, probe.bias, best)

    fit_x, fit_y = features[fit_idx], labels[fit_idx]
    held_x, held_y = features[holdout_idx], labels[holdout_idx]
    fits: dict[float, LinearProbe] = {}
    scores: dict[float, tuple[float, float]] = {}  # strength -> (held-out accuracy, -held-out cross-entropy)

    def try_strength(l2: float, warm_from: float | None):
        fits[l2] = _fit(fit_x, fit_y, num_classes, l2, fits.get(warm_from), max_iter=search_iter)
        logits = fits[l2].logits(held_x)
        scores[l2] = (accuracy(logits.argmax(1), held_y), -F.cross_entropy(logits, held_y).item())

    previous = None
    for l2 in grid:  # each fit warm-starts the next, weaker one
        try_strength(l2, previous)
        previous = l2
    while True:
        best = max(scores, key=lambda l2: (scores[l2], l2))
        if best == max(scores) and best < high_bound:
            try_strength(min(_decade(best, 1), high_bound), best)
        elif best == min(scores) and best > low_bound:
            try_strength(max(_decade(best, -1), low_bound), best)
        else:
            break
    probe = _fit(features, labels, num_classes, best, fits[best])
    tried = {l2: scores[l2][0] for l2 in sorted(scores)}
    return LinearProbe(probe.weight * scale, probe.bias, best, tried)
