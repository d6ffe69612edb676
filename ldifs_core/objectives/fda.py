"""`fda`: CE + λ·FDA, which keeps the *structure* of θ₀'s final image features within each batch (who is whose
nearest neighbour, and how alike) instead of their positions (Huang et al., ICML 2025; ldifs_core/fda.py and
docs/methods.md say what the paper leaves open). Proxy-FDA's proxy generator is not built."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ldifs_core.objectives.base import Batch, ToFrozenModel, TrainingSetup, deferred, torch
from ldifs_core.settings import option

if TYPE_CHECKING:
    from ldifs_core.config import RunConfig

alignment = deferred("ldifs_core.fda")


class FDA(ToFrozenModel):
    """CE + λ · L_FDA between θ₀'s k-nearest-neighbour graph of the batch's final image features and the tuned
    tower's cosine similarities of the same images (a SigLIP-style pairwise sigmoid loss)."""

    name = "fda"
    summary = "CE + λ·FDA: keeps θ₀'s neighbourhoods among the batch's final image features (Proxy-FDA without proxies)"
    label = "FDA — CE + λ·feature-structure alignment"
    order = 10
    default_lam = 3.0  # the defaults sweep (docs/methods.md): λ 1 forgets 2/3 of ce's, 10 costs 3.6 task points
    options = (
        option("fda_k", int, 8, help="K: each image's nearest neighbours in θ₀'s features of the batch", least=1,
               most=4096, what="fda_k (K)", hint="try 8", label="FDA neighbours per image (K)"),
        option("fda_tau", float, 0.1, help="τ: the temperature dividing the tuned cosine similarities", least=0.0,
               most=10.0, above=True, what="fda_tau (τ)", hint="try 0.1", label="FDA temperature τ"),
        option("fda_bias", float, 5.0, help="b: the margin; b·τ is the cosine at which a pair's term changes side",
               least=-100.0, most=100.0, what="fda_bias (b)", hint="try 5", label="FDA bias b"),
    )
    color, symbol = "#393b79", "star-diamond"

    @classmethod
    def problems(cls, cfg: RunConfig) -> list[str]:
        if cfg.fda_k >= cfg.batch_size - 1:
            return [f"fda_k {cfg.fda_k} makes every other image of a batch of {cfg.batch_size} a neighbour, so FDA "
                    f"has no non-neighbours to push apart: use fewer than {cfg.batch_size - 1} neighbours"]
        return []

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        cfg = setup.cfg
        self.k, self.tau, self.bias = cfg.fda_k, cfg.fda_tau, cfg.fda_bias

    def regulariser(self, batch: Batch, tuned_features: torch.Tensor) -> torch.Tensor:
        return alignment.fda_loss(self.frozen_features(batch.images), tuned_features, self.k, self.tau, self.bias)


OBJECTIVE = FDA
