"""AdamSPD: AdamW when λ = 0; otherwise SPD's selective projection, checked by hand on one Adam step."""
import copy

import pytest
import torch

from ldifs_core.spd import AdamSPD

LR, EPS = 0.1, 1e-8


def train(model, optimizer, steps=5):
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        optimizer.step()
    return model


def test_spd_with_lambda_zero_is_adamw_bit_for_bit():
    """Same seeds and settings as the project's AdamW (decoupled weight decay, clipped gradients); the same run
    with λ = 1 does differ, so the projection path really ran."""
    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.GELU(), torch.nn.Linear(6, 3))
    theta0 = [p.detach().clone() for p in start.parameters()]
    plain, spd, projected = copy.deepcopy(start), copy.deepcopy(start), copy.deepcopy(start)
    train(plain, torch.optim.AdamW(plain.parameters(), lr=5e-3, weight_decay=0.1))
    train(spd, AdamSPD(spd.parameters(), theta0, lam=0.0, lr=5e-3, weight_decay=0.1))
    train(projected, AdamSPD(projected.parameters(), theta0, lam=1.0, lr=5e-3, weight_decay=0.1))
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), spd.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(plain.parameters(), projected.parameters()))


def one_step(offset, grad, lam=1.0):
    """θ = θ₀ + offset with gradient `grad`: SPD's and plain AdamW's first step (no weight decay), and θ₀."""
    anchor = torch.tensor([2.0, -1.0])
    results = []
    for optimizer_type in (AdamSPD, torch.optim.AdamW):
        p = torch.nn.Parameter(anchor + torch.tensor(offset))
        extra = {"anchors": [anchor], "lam": lam} if optimizer_type is AdamSPD else {}
        optimizer = optimizer_type([p], lr=LR, eps=EPS, weight_decay=0.0, **extra)
        p.grad = torch.tensor(grad)
        optimizer.step()
        results.append(p.detach())
    return (*results, anchor)


def test_spd_pulls_back_a_tensor_whose_gradient_points_to_theta0_but_whose_step_moves_away():
    """g·(θ−θ₀) = 10 − 2 > 0, so c < 0; Adam's first step is −lr·g/|g| = −lr·(1, 1), which moves away."""
    lam = 0.5
    spd, adamw, anchor = one_step(offset=[1.0, -2.0], grad=[10.0, 1.0], lam=lam)
    by_hand = torch.tensor([1.0, -2.0]) - LR * torch.tensor([10.0, 1.0]) / (torch.tensor([10.0, 1.0]) + EPS)
    assert torch.allclose(adamw - anchor, by_hand)
    previous, now = torch.tensor([1.0, -2.0]).norm(), by_hand.norm()
    ratio = (now - previous) / now
    assert 0 < ratio < 1
    assert torch.allclose(spd - anchor, by_hand - lam * ratio * by_hand)
    assert (spd - anchor).norm() < (adamw - anchor).norm()


def test_spd_leaves_a_step_towards_theta0_as_adamw():
    """c < 0 here too, but the step shortens the distance to θ₀, so the ratio clips to 0."""
    spd, adamw, _ = one_step(offset=[1.0, 1.0], grad=[1.0, 1.0])
    assert torch.equal(spd, adamw)


def test_spd_leaves_a_step_away_from_theta0_along_a_consistent_gradient_as_adamw():
    """The selectivity of the paper: the step moves away, but the gradient agrees with the way θ has moved
    (c > 0), so the tensor may keep going."""
    spd, adamw, anchor = one_step(offset=[-1.0, -1.0], grad=[1.0, 1.0])
    assert (adamw - anchor).norm() > torch.tensor([-1.0, -1.0]).norm()
    assert torch.equal(spd, adamw)


def test_spd_needs_one_anchor_per_parameter():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="one θ₀ tensor"):
        AdamSPD([p], [torch.zeros(3)], lam=1.0)
