"""FDA loss: the paper's per-anchor sum written out, and what it does and does not ask of the tuned features."""
import math

import pytest
import torch

from ldifs_core.fda import cosine_matrix, fda_loss, neighbour_weights


def clustered(clusters=4, per_cluster=4, dim=8, spread=0.1, seed=0):
    """Features in tight clusters around random centres, so every image's nearest neighbours are its cluster."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g)
    return centres.repeat_interleave(per_cluster, 0) + spread * torch.randn(clusters * per_cluster, dim, generator=g)


def cos(a, b):
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def test_fda_is_the_papers_per_anchor_sum_written_out():
    g = torch.Generator().manual_seed(1)
    frozen, tuned = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    k, tau, bias = 2, 0.5, 0.3
    total = 0.0
    for i in range(6):
        others = sorted((j for j in range(6) if j != i), key=lambda j: -cos(frozen[i], frozen[j]))
        anchor = 0.0
        for rank, j in enumerate(others):
            similarity = max(cos(frozen[i], frozen[j]), 0.0)
            w = similarity if rank < k else -similarity
            anchor += math.log(1 + math.exp(w * (-cos(tuned[i], tuned[j]) / tau + bias)))
        total += anchor / 5
    assert fda_loss(frozen, tuned, k=k, tau=tau, bias=bias).item() == pytest.approx(total / 6, rel=1e-5)


def test_fda_sees_structure_not_position():
    """A rotation and rescaling of every tuned feature leaves the loss as it is (LDIFS would count it as drift)."""
    frozen = clustered()
    tuned = frozen + 0.05 * torch.randn(frozen.shape, generator=torch.Generator().manual_seed(2))
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(3)))
    moved = 3.0 * tuned @ rotation
    assert fda_loss(frozen, moved).item() == pytest.approx(fda_loss(frozen, tuned).item(), rel=1e-5)


def test_fda_is_lower_when_the_tuned_features_keep_theta0s_neighbourhoods():
    frozen = clustered()
    scrambled = frozen[torch.randperm(16, generator=torch.Generator().manual_seed(4))]
    assert fda_loss(frozen, frozen, k=3) < fda_loss(frozen, scrambled, k=3)


def test_fda_at_theta0_is_not_stationary_it_pushes_theta0s_non_neighbours_apart():
    """Honest about the definition: at θ = θ₀ the loss is not at a minimum and its gradient is not zero. A small
    step down it lowers the loss mainly by pushing apart pairs that θ₀ found alike but are not neighbours
    (its effect on the neighbours' similarity is second order), and the frozen features get no gradient."""
    frozen = clustered(spread=0.5).requires_grad_(True)
    tuned = frozen.detach().clone().requires_grad_(True)
    at_theta0 = fda_loss(frozen, tuned, k=3)
    at_theta0.backward()
    assert frozen.grad is None and tuned.grad.norm() > 0
    stepped = tuned.detach() - 1e-2 * tuned.grad
    assert fda_loss(frozen, stepped, k=3) < at_theta0
    non_neighbours = neighbour_weights(frozen, k=3) < 0
    moved = cosine_matrix(stepped) - cosine_matrix(frozen)
    assert moved[non_neighbours].mean() < 0


def test_fda_uses_at_most_the_other_images_of_the_batch_as_neighbours():
    frozen, tuned = clustered(2, 2), clustered(2, 2, seed=5)
    assert fda_loss(frozen, tuned, k=99).item() == pytest.approx(fda_loss(frozen, tuned, k=3).item())
    with pytest.raises(ValueError, match="at least 2"):
        fda_loss(frozen[:1], tuned[:1])
