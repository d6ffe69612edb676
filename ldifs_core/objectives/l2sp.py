"""`l2sp`: CE + λ·‖θ − θ₀‖² over the image tower's weights (Li et al., 2018)."""
from __future__ import annotations

from ldifs_core.objectives.base import Batch, F, Objective, TrainingSetup, torch


class L2SP(Objective):
    """CE + λ · ||θ − θ₀||² over the image tower's weights (Li et al., 2018)."""

    name = "l2sp"
    summary = "CE + λ·‖θ − θ₀‖² over the image tower's weights"
    label = "L2-SP — CE + λ·weight distance"
    order = 2
    default_lam = 1.0
    color, symbol = "#ff7f0e", "square"

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        self.anchors = [p.detach() for p in setup.base.clip.visual.parameters()]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(self.classifier(batch.images), batch.labels)
        drift = sum((p - p0).pow(2).sum() for p, p0 in zip(self.classifier.visual.parameters(), self.anchors))
        reg = self.lam * drift
        return ce + reg, {"ce": ce.detach(), "l2sp": reg.detach()}


OBJECTIVE = L2SP
