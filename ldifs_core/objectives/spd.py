"""`spd`: cross-entropy trained with AdamSPD, selective projection decay (Tian, Huang & Kira, NeurIPS 2024): after
each AdamW step, a tensor that the step carried further from θ₀ while its gradient points back is pulled towards
θ₀ by λ times the share of distance the step added (ldifs_core/spd.py, docs/methods.md). λ = 0 is `ce`."""
from __future__ import annotations

from ldifs_core.objectives.base import Objective, deferred, nn, torch

projection = deferred("ldifs_core.spd")


class SPD(Objective):
    """Cross-entropy; the optimiser is AdamSPD anchored at θ₀ (the image tower) and the head's starting value."""

    name = "spd"
    summary = "CE with AdamSPD: a step that moves a layer away from θ₀ against its gradient is pulled back by λ"
    label = "SPD — CE + selective projection decay (λ: pull-back)"
    order = 11
    default_lam = 2.0  # the defaults sweep (docs/methods.md): λ 1 keeps 2/3 of ce's forgetting, 3 costs 2.3 task points
    color, symbol = "#637939", "bowtie"

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        cfg = self.setup.cfg
        frozen = dict(self.setup.base.clip.visual.named_parameters())
        anchor_of = {id(p): frozen[name] for name, p in self.setup.tuned.visual.named_parameters()}
        anchors = [anchor_of.get(id(p), p).detach().clone() for p in params]  # the head: where it starts
        return projection.AdamSPD(params, anchors, self.lam, lr=cfg.lr, weight_decay=cfg.weight_decay)


OBJECTIVE = SPD
