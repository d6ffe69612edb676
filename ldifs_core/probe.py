"""Linear probes: multinomial logistic regression on frozen, L2-normalised features.

Full-batch L-BFGS in torch; the L2 strength is picked on a held-out fifth of the train features, then
the probe is refit on all of them (warm-started), which keeps a 10k x 128 fit around a second.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

L2_GRID = (1e-5, 1e-4, 1e-3)


@dataclass
class LinearProbe:
    weight: torch.Tensor  # [K, D]
    bias: torch.Tensor  # [K]
    l2: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight.T + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features).argmax(dim=1)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return 100.0 * (self.predict(features) == labels).float().mean().item()


def _fit(features, labels, num_classes, l2, init=None, max_iter=60) -> LinearProbe:
    weight = torch.zeros(num_classes, features.shape[1]) if init is None else init.weight.clone()
    bias = torch.zeros(num_classes) if init is None else init.bias.clone()
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


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     l2_grid: tuple[float, ...] = L2_GRID, holdout_fraction: float = 0.2, seed: int = 0) -> LinearProbe:
    """Fit on train features; choose the L2 strength on a held-out part of them."""
    features = features.float()
    scale = features.shape[1] ** 0.5  # unit-norm features -> unit-variance coordinates: better conditioned
    features = features * scale
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_holdout = max(1, int(len(labels) * holdout_fraction)) if len(l2_grid) > 1 else 0
    fit_idx, holdout_idx = order[n_holdout:], order[:n_holdout]
    best, best_acc, previous = l2_grid[0], -1.0, None
    if n_holdout:
        for l2 in sorted(l2_grid, reverse=True):  # strong to weak: each fit warm-starts the next
            previous = _fit(features[fit_idx], labels[fit_idx], num_classes, l2, previous)
            acc = previous.accuracy(features[holdout_idx], labels[holdout_idx])
            if acc > best_acc:
                best, best_acc = l2, acc
    probe = _fit(features, labels, num_classes, best, previous)
    return LinearProbe(probe.weight * scale, probe.bias, best)
