"""FDA, feature distribution alignment (Huang et al., ICML 2025, arXiv 2505.24088): keep the *structure* of θ₀'s
features within a batch (who is whose nearest neighbour, and how alike they are) instead of their positions, which
is what LDIFS keeps. See docs/methods.md for the source, what it leaves open, and what is chosen here.

For anchor i of a batch of B images, with x̂ the frozen (θ₀) features and x the tuned ones:

    L_i = 1/(B − 1) · Σ_{j≠i} log(1 + exp(w_ij · (−cos(x_i, x_j)/τ + b)))
    w_ij = max(cos(x̂_i, x̂_j), 0)   if j is one of x̂_i's k nearest neighbours in the batch,
         = −max(cos(x̂_i, x̂_j), 0)  otherwise,

and the loss is the mean of L_i over the batch. Neighbours are pulled together and non-neighbours pushed apart
in proportion to how alike θ₀ found them. It is not minimal at θ = θ₀: a sigmoid loss always asks for more
margin, so at θ₀ it still pushes apart pairs θ₀ found alike but not neighbours (tests/test_fda.py shows it); it
only sees cosines, so any rotation or rescaling of all tuned features is free, unlike for LDIFS.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Kept after the measured sweep (docs/methods.md: K 4 or 32 and b·τ 0.3 or 0.7 keep less). The paper gives neither
# τ, b nor K (only K larger than the images per class, 4 per class in batches of 64). τ = 0.1 is SigLIP's starting
# temperature. b·τ is the cosine at which a pair's term changes side, so it must lie between θ₀'s neighbour and
# non-neighbour similarities: on the embedded model (batches of 64 from each bank domain) the 8th-neighbour cosine
# has median 0.62-0.80 and the rest 0.15-0.52, so b·τ = 0.5. With b = 0 a scrambled batch scores lower than θ₀'s own
# structure.
FDA_K = 8
FDA_TAU = 0.1
FDA_BIAS = 5.0


def cosine_matrix(features: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of a batch of feature vectors [B, D] -> [B, B], in float32."""
    unit = F.normalize(features.float().flatten(1), dim=1)
    return unit @ unit.T


def neighbour_weights(frozen_features: torch.Tensor, k: int = FDA_K) -> torch.Tensor:
    """w_ij from θ₀'s features: + similarity for i's k nearest neighbours, − similarity for the rest, 0 for j = i.

    Similarities below zero count as zero, so an unlike non-neighbour is never pulled closer by a flipped sign.
    """
    similarity = cosine_matrix(frozen_features.detach())
    batch = similarity.shape[0]
    if batch < 2:
        raise ValueError("FDA compares images within a batch: it needs a batch of at least 2 images.")
    others = ~torch.eye(batch, dtype=torch.bool, device=similarity.device)
    nearest = similarity.masked_fill(~others, float("-inf")).topk(min(k, batch - 1), dim=1).indices
    is_neighbour = torch.zeros_like(others).scatter_(1, nearest, True)
    weight = similarity.clamp(min=0)
    return torch.where(is_neighbour, weight, -weight) * others


def fda_loss(frozen_features: torch.Tensor, tuned_features: torch.Tensor, k: int = FDA_K, tau: float = FDA_TAU,
             bias: float = FDA_BIAS) -> torch.Tensor:
    """The batch's FDA loss (a scalar): θ₀'s k-NN graph and similarities, carried over to the tuned features.

    Args:
        frozen_features: θ₀'s features of the batch [B, ...]; no gradient flows into them.
        tuned_features: the tuned model's features of the same images [B, ...].
        k: neighbours per image (at most B − 1 are used).
        tau: temperature dividing the tuned cosine similarities.
        bias: b, added to the scaled similarity before the weight (a margin).
    """
    weights = neighbour_weights(frozen_features, k)
    logits = weights * (bias - cosine_matrix(tuned_features) / tau)
    others = weights.new_ones(weights.shape).fill_diagonal_(0)
    per_anchor = (F.softplus(logits) * others).sum(dim=1) / (weights.shape[0] - 1)
    return per_anchor.mean()
