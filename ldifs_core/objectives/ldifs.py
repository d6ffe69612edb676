"""`ldifs`: CE + λ·LDIFS, which keeps the image tower's intermediate features close to θ₀'s on the same batch
(Mukhoti et al., TMLR 2024); the taps and the variant are RunConfig's (feature drift is measured with them too)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ldifs_core.objectives.base import Batch, F, Objective, TrainingSetup, deferred, encoding, torch
from ldifs_core.settings import option

if TYPE_CHECKING:
    from ldifs_core.config import RunConfig

distance = deferred("ldifs_core.ldifs")


class LDIFS(Objective):
    """CE + λ · LDIFS between the frozen pre-trained tower and the tuned one, on the same batch."""

    name = "ldifs"
    summary = "CE + λ·LDIFS: keeps the image tower's intermediate features close to θ₀'s"
    label = "LDIFS — CE + λ·feature distance"
    order = 1
    default_lam = 10.0
    options = (option("precompute_frozen", bool, False, help="compute the frozen encoder's features once (not with "
                      "--augment)", label="Precompute the frozen encoder's features"),)
    grid = ("ldifs_taps", "ldifs_variant")
    color, symbol = "#1f77b4", "diamond"

    @classmethod
    def problems(cls, cfg: RunConfig) -> list[str]:
        if cfg.precompute_frozen and cfg.augment:
            return ["precomputed frozen features cannot follow random augmentation (LDIFS would penalise the "
                    "augmentation itself): drop one of the two"]
        return []

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        self.frozen_visual = setup.base.clip.visual
        self.taps = setup.cfg.ldifs_taps
        self.variant = setup.cfg.ldifs_variant
        # Per-layer [N, P, C] features of the whole pool; config validation keeps this away from augmentation.
        self.frozen_cache = self.precompute_frozen_taps() if setup.cfg.precompute_frozen else None

    def precompute_frozen_taps(self, batch_size: int = 512) -> list[torch.Tensor]:
        """θ₀'s tapped features for the whole pool (fp16), so each step skips the frozen forward pass."""
        base, train, device = self.setup.base, self.setup.train, self.setup.device
        layers: list[list[torch.Tensor]] = []
        with torch.no_grad():
            for start in range(0, len(train), batch_size):
                with encoding.autocast_for(device):
                    images = encoding.model_inputs(base, train.images[start:start + batch_size], device)
                    taps = distance.forward_with_taps(self.frozen_visual, images, self.taps)[1]
                if not layers:
                    layers = [[] for _ in taps]
                for chunks, tap in zip(layers, taps):
                    chunks.append(tap.to(torch.float16))
        return [torch.cat(chunks) for chunks in layers]

    def frozen_taps(self, batch: Batch) -> list[torch.Tensor]:
        if self.frozen_cache is not None:
            return [layer[batch.indices.to(layer.device)] for layer in self.frozen_cache]
        with torch.inference_mode():
            taps = distance.forward_with_taps(self.frozen_visual, batch.images, self.taps)[1]
        return [tap.clone() for tap in taps]  # plain tensors again, so autograd may use them

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pooled, tuned = distance.forward_with_taps(self.classifier.visual, batch.images, self.taps)
        ce = F.cross_entropy(self.classifier.head(F.normalize(pooled, dim=-1)), batch.labels)
        reg = self.lam * distance.distance_from_taps(self.frozen_taps(batch), tuned, self.variant).mean()
        return ce + reg, {"ce": ce.detach(), "ldifs": reg.detach()}


OBJECTIVE = LDIFS
