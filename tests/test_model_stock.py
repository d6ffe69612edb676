"""Model Stock: the per-layer ratio t = 2·cos φ / (1 + cos φ) and the merge w = t·(w₁ + w₂)/2 + (1 − t)·θ₀."""
import pytest
import torch

from ldifs_core.model_stock import interpolation_ratio, model_stock_merge, model_stock_ratios


def state(seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return {"weight": scale * torch.randn(3, 4, generator=g), "bias": scale * torch.randn(3, generator=g),
            "half": (scale * torch.randn(5, generator=g)).half(),
            "num_batches_tracked": torch.tensor(seed, dtype=torch.long)}


def test_model_stock_of_two_identical_runs_is_that_run():
    theta0, run = state(0), state(1)
    merged = model_stock_merge(theta0, run, {k: v.clone() for k, v in run.items()})
    assert all(torch.equal(merged[k], run[k]) for k in run)


def test_parallel_deltas_give_t_one_so_the_runs_average():
    theta0 = state(0)
    direction = state(2)
    w1 = {k: theta0[k] + direction[k] if k != "num_batches_tracked" else theta0[k] for k in theta0}
    w2 = {k: theta0[k] + 3 * direction[k] if k != "num_batches_tracked" else theta0[k] for k in theta0}
    assert all(t == pytest.approx(1.0) for t in model_stock_ratios(theta0, w1, w2).values())
    merged = model_stock_merge(theta0, w1, w2)
    assert torch.allclose(merged["weight"], (w1["weight"] + w2["weight"]) / 2, atol=1e-6)


def test_orthogonal_deltas_give_t_zero_so_theta0():
    theta0 = {"weight": torch.randn(2, 2)}
    w1 = {"weight": theta0["weight"] + torch.tensor([[1.0, 0.0], [0.0, 0.0]])}
    w2 = {"weight": theta0["weight"] + torch.tensor([[0.0, 2.0], [0.0, 0.0]])}
    assert model_stock_ratios(theta0, w1, w2) == {"weight": 0.0}
    assert torch.equal(model_stock_merge(theta0, w1, w2)["weight"], theta0["weight"])


def test_t_follows_the_papers_formula_and_stays_at_theta0_for_zero_or_opposite_deltas():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 3 ** 0.5 / 2])  # 60°: cos φ = 1/2
    assert interpolation_ratio(a, b) == pytest.approx(2 * 0.5 / 1.5)
    assert interpolation_ratio(a, torch.zeros(2)) == 0.0
    assert interpolation_ratio(a, -a) == 0.0


def test_model_stock_keeps_shapes_dtypes_and_the_first_runs_integer_buffers():
    theta0, w1, w2 = state(0), state(1), state(2)
    merged = model_stock_merge(theta0, w1, w2)
    assert {k: (v.shape, v.dtype) for k, v in merged.items()} == {k: (v.shape, v.dtype) for k, v in w1.items()}
    assert merged["num_batches_tracked"] == w1["num_batches_tracked"]
    with pytest.raises(ValueError, match="same keys and shapes"):
        model_stock_merge(theta0, w1, {**w2, "weight": torch.zeros(4, 3)})
