"""SPD, selective projection decay (Tian, Huang & Kira, NeurIPS 2024, arXiv 2411.01713; reference optimiser
AdamSPD in GT-RIPL/Selective-Projection-Decay): after the optimiser's step, pull a parameter tensor back towards θ₀
only where its gradient disagrees with the way it has moved so far. See docs/methods.md.

Per parameter tensor (the paper's "layer"; the reference code treats weight and bias apart), with g the gradient
at θ_{t−1} and θ̃ the AdamW result:

    c = −⟨g, θ_{t−1} − θ₀⟩          (c < 0: the descent direction points back towards θ₀)
    r = clip((‖θ̃ − θ₀‖ − ‖θ_{t−1} − θ₀‖) / ‖θ̃ − θ₀‖, 0, 1)   (the share of the distance this step added)
    θ_t = θ̃ − λ·r·(θ̃ − θ₀)   if c < 0,   θ̃ otherwise.

The condition uses the raw gradient, the ratio the optimiser's actual step, so a tensor is projected only when the
gradient points back to θ₀ yet momentum still carried it further away. With λ = 1 the step's added distance is
undone exactly (θ_t lands on the sphere of radius ‖θ_{t−1} − θ₀‖ about θ₀).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class AdamSPD(torch.optim.AdamW):
    """AdamW with SPD on top: with λ = 0 it is AdamW step for step, so `spd` differs from `ce` in one thing only.

    The reference AdamSPD replaces weight decay with the projection; here AdamW's decoupled decay stays whatever
    `weight_decay` says (pass 0 for the paper's form), and the projection acts on AdamW's result.
    """

    def __init__(self, params: Iterable[torch.Tensor], anchors: Iterable[torch.Tensor], lam: float,
                 **adamw: Any) -> None:
        params, anchors = list(params), [a.detach() for a in anchors]
        if len(params) != len(anchors) or any(p.shape != a.shape for p, a in zip(params, anchors)):
            raise ValueError("AdamSPD needs one θ₀ tensor of the same shape per parameter, in the same order.")
        if lam < 0:
            raise ValueError(f"SPD's λ must be 0 or more (got {lam:g}).")
        super().__init__(params, **adamw)
        self.lam = lam
        self.anchored = [(p, a.to(p.device, p.dtype)) for p, a in zip(params, anchors)]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One AdamW step, then the selective projection; no host synchronisation (all on-device tensor ops)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        before = [(p, anchor, torch.sum(p.grad * (p - anchor)) > 0, torch.linalg.vector_norm(p - anchor))
                  for p, anchor in self.anchored if p.grad is not None]  # ⟨g, θ−θ₀⟩ > 0 is c < 0
        super().step()
        for p, anchor, points_back, previous in before:
            offset = p - anchor
            now = torch.linalg.vector_norm(offset)
            ratio = torch.where(now > 0, (now - previous) / now, 0.0).clamp(0, 1)
            p.sub_(offset * (self.lam * ratio * points_back))
        return loss
