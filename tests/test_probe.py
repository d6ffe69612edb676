"""Linear probe: the L2 search brackets its choice on data made to need strong or weak regularisation."""
import time

import pytest
import torch
import torch.nn.functional as F

from ldifs_core.probe import L2_BOUNDS, L2_START, fit_linear_probe, stratified_holdout

OLD_GRID_TOP = 1e-3  # the old fixed grid (1e-5, 1e-4, 1e-3) chose this edge on every domain


@pytest.fixture(autouse=True)
def one_torch_thread():
    """On a shared, busy CPU two intra-op threads make these small fits 10-20x slower (each op waits at an OpenMP
    barrier for a descheduled thread); one thread keeps the tests quick. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def noisy_labels(seed, per_class=20, k=10, d=64, noise=3.0, flip=0.4):
    """Few images, many dimensions, 40 % of train labels replaced at random; a clean test set from the same means.

    Weak regularisation fits the wrong labels; strong regularisation keeps to the class means.
    """
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g)
    y = torch.arange(k).repeat(per_class)
    x = F.normalize(means[y] + noise * torch.randn(len(y), d, generator=g), dim=1)
    flipped = torch.rand(len(y), generator=g) < flip
    y_noisy = torch.where(flipped, torch.randint(0, k, (len(y),), generator=g), y)
    y_test = torch.arange(k).repeat(200)
    x_test = F.normalize(means[y_test] + noise * torch.randn(len(y_test), d, generator=g), dim=1)
    return x, y_noisy, x_test, y_test


def small_signal(seed, n=3000, k=10, d=32):
    """Many clean images whose class lives in four low-amplitude coordinates: only large weights can read it."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    x = torch.randn(n, d, generator=g)
    x[:, :4] = 0.02 * torch.randn(k, 4, generator=g)[y]
    return F.normalize(x, dim=1), y


def assert_bracketed(probe):
    """The choice has a tried neighbour a decade weaker and a decade stronger, unless it sits at a hard bound."""
    tried = list(probe.tried)
    assert probe.l2 in tried
    assert probe.l2 == L2_BOUNDS[0] or pytest.approx(probe.l2 / 10) in tried, f"{probe.l2}: nothing weaker in {tried}"
    assert probe.l2 == L2_BOUNDS[1] or pytest.approx(probe.l2 * 10) in tried, f"{probe.l2}: nothing stronger in {tried}"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_noisy_few_images_choose_strong_regularisation_bracketed(seed):
    x, y, x_test, y_test = noisy_labels(seed)
    probe = fit_linear_probe(x, y, 10, seed=seed)
    assert probe.l2 > OLD_GRID_TOP
    assert max(probe.tried) > max(L2_START)  # it had to grow the grid upwards to bracket the choice
    assert_bracketed(probe)
    old = fit_linear_probe(x, y, 10, seed=seed, l2_grid=(OLD_GRID_TOP,))
    assert probe.accuracy(x_test, y_test) > old.accuracy(x_test, y_test) + 5  # and it is right to


def test_clean_images_choose_weak_regularisation_bracketed_from_below():
    x, y = small_signal(0)
    probe = fit_linear_probe(x, y, 10, seed=0)
    assert probe.l2 < min(L2_START)
    assert min(probe.tried) < min(L2_START)
    assert_bracketed(probe)
    assert probe.tried[probe.l2] > 95 > probe.tried[1e-3]  # the old choice could not read the signal


def test_fit_is_deterministic_for_a_seed():
    x, y, _, _ = noisy_labels(5)
    first, second = fit_linear_probe(x, y, 10, seed=3), fit_linear_probe(x, y, 10, seed=3)
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
    assert first.l2 == second.l2 and first.tried == second.tried


def test_separable_data_is_fitted_well():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(5, 48, generator=g)
    y = torch.randint(0, 5, (1000,), generator=g)
    x = F.normalize(means[y] + 0.3 * torch.randn(1000, 48, generator=g), dim=1)
    probe = fit_linear_probe(x[:800], y[:800], 5, seed=0)
    assert probe.accuracy(x[800:], y[800:]) > 98
    assert probe.predict(x[800:]).shape == (200,)


def test_a_single_strength_is_used_as_given():
    x, y, _, _ = noisy_labels(0)
    probe = fit_linear_probe(x, y, 10, l2_grid=(0.5,))
    assert probe.l2 == 0.5 and probe.tried == {}


def test_search_stays_within_bounds():
    x, y = small_signal(0)
    probe = fit_linear_probe(x, y, 10, seed=0, l2_bounds=(1e-4, 1e-2))
    assert sorted(probe.tried) == [1e-4, 1e-3, 1e-2]
    assert probe.l2 == 1e-4  # it wants weaker, the bound stops it


def test_holdout_is_stratified_keeps_every_class_and_is_seeded():
    labels = torch.tensor([0] * 100 + [1] * 10 + [2] * 3 + [3] * 1)
    fit, held = stratified_holdout(labels, 0.2, seed=0)
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(len(labels)))
    assert torch.bincount(labels[held], minlength=4)[:2].tolist() == [20, 2]
    assert set(labels[fit].tolist()) == {0, 1, 2, 3}
    again = stratified_holdout(labels, 0.2, seed=0)
    assert torch.equal(again[0], fit) and torch.equal(again[1], held)


def test_a_ten_thousand_image_fit_stays_fast():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(10, 128, generator=g)
    y = torch.randint(0, 10, (10000,), generator=g)
    x = F.normalize(means[y] + 3.0 * torch.randn(10000, 128, generator=g), dim=1)
    start = time.process_time()
    probe = fit_linear_probe(x, y, 10, seed=0)
    assert_bracketed(probe)
    assert time.process_time() - start < 15  # CPU seconds, generous: the machine is shared (about 1-2 s alone)


def test_the_fit_does_not_depend_on_torchs_thread_count():
    """A user's 8-core laptop and this 2-core machine must report the same probe accuracy for the same features.

    The L2 search stops its fits after a few L-BFGS iterations; in float32 the order of the sums (which the thread
    count sets) changed the fits enough to pick another strength on these data (1e-6 with one thread, 1e-5 with
    two) and to move an LP Δ by up to 3 points on real runs.
    """
    g = torch.Generator().manual_seed(0)
    means = torch.randn(10, 128, generator=g)
    y = torch.randint(0, 10, (1000,), generator=g)
    x = F.normalize(means[y] + 2.0 * torch.randn(1000, 128, generator=g), dim=1)
    probes = []
    for threads in (1, 2):
        torch.set_num_threads(threads)  # the fixture restores the caller's count
        probes.append(fit_linear_probe(x, y, 10, seed=0))
    one, two = probes
    assert (one.l2, one.tried) == (two.l2, two.tried)
    assert torch.allclose(one.weight, two.weight, rtol=0, atol=1e-6 * one.weight.abs().max().item())
    assert torch.equal(one.predict(x), two.predict(x))
