"""Statistics of the report: reference values computed here from the published formulas, and simulations that check
the intervals cover what they claim to cover."""
import math
import time

import numpy as np
import pytest
import torch

from ldifs_core import stats

Z = 1.959963984540054


def wilson_by_hand(k, n, z=Z):
    """Wilson (1927): (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def flags(both, gained, lost, neither):
    """Per-item (before_correct, after_correct) flags with the given paired 2x2 counts."""
    before = np.repeat([True, False, True, False], [both, gained, lost, neither])
    after = np.repeat([True, True, False, False], [both, gained, lost, neither])
    return before, after


def test_accuracy_takes_tensors_and_arrays_and_is_nan_when_empty():
    assert stats.accuracy(torch.tensor([1, 2, 3, 0]), torch.tensor([1, 2, 0, 0])) == 75.0
    assert stats.accuracy(np.array([1, 1]), np.array([1, 0])) == 50.0
    assert math.isnan(stats.accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)))
    with pytest.raises(ValueError):
        stats.accuracy(np.array([1, 2]), np.array([1]))


@pytest.mark.parametrize("k, n, expected", [(0, 10, (0.0, 0.2775)), (5, 10, (0.2366, 0.7634)),
                                            (10, 10, (0.7225, 1.0)), (1, 1, (0.2065, 1.0))])
def test_wilson_matches_the_formula_and_tabulated_values(k, n, expected):
    low, high = stats.wilson_interval(k, n)
    ref_low, ref_high = wilson_by_hand(k, n)
    assert low == pytest.approx(max(0.0, ref_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, ref_high), abs=1e-12)
    assert (low, high) == pytest.approx(expected, abs=5e-5)


def test_wilson_without_items_says_nothing():
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


def test_paired_interval_matches_newcombe_method_10_written_out():
    # Newcombe (1998), notation of the paper: a both positive, b first only, c second only, d neither;
    # theta = (b - c) / n; phi from ad - bc, reduced by n/2 when positive.
    def by_hand(a, b, c, d):
        n = a + b + c + d
        p1, p2 = (a + b) / n, (a + c) / n
        l2, u2 = wilson_by_hand(a + b, n)
        l3, u3 = wilson_by_hand(a + c, n)
        l2, l3, u2, u3 = max(l2, 0), max(l3, 0), min(u2, 1), min(u3, 1)
        ad_bc = a * d - b * c
        ad_bc = max(ad_bc - n / 2, 0) if ad_bc > 0 else ad_bc
        phi = ad_bc / math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
        delta = math.sqrt((p1 - l2) ** 2 - 2 * phi * (p1 - l2) * (u3 - p2) + (u3 - p2) ** 2)
        eps = math.sqrt((u2 - p1) ** 2 - 2 * phi * (u2 - p1) * (p2 - l3) + (p2 - l3) ** 2)
        return (b - c) / n - delta, (b - c) / n + eps

    # "first" = after, "second" = before: b = right only after (gained), c = right only before (lost).
    for a, b, c, d in [(36, 12, 2, 0), (2, 1, 1, 8), (59, 16, 6, 80), (1, 7, 1, 12), (40, 3, 9, 8)]:
        got = stats.paired_change_interval(*flags(a, b, c, d))
        assert got == pytest.approx(by_hand(a, b, c, d), abs=1e-12)
    assert stats.paired_change_interval(*flags(36, 12, 2, 0)) == pytest.approx((0.0569, 0.3404), abs=5e-5)


def test_paired_interval_when_a_margin_is_empty_or_nothing_changed():
    low, high = stats.paired_change_interval(*flags(10, 0, 0, 0))  # all right before and after: phi = 0
    assert low < 0 < high and high == pytest.approx(1 - wilson_by_hand(10, 10)[0])
    low, high = stats.paired_change_interval(*flags(6, 0, 0, 6))  # no image changed: still an interval, not a point
    assert low < -0.05 and high > 0.05
    assert stats.paired_change_interval(*flags(0, 0, 1, 0))[0] == -1.0


@pytest.mark.parametrize("probs", [(0.5, 0.05, 0.2, 0.25), (0.8, 0.05, 0.1, 0.05), (0.3, 0.1, 0.1, 0.5)])
@pytest.mark.parametrize("n", [30, 200])
def test_paired_interval_covers_the_true_change_about_95_percent_of_the_time(probs, n):
    """Probabilities of (both right, right only after, right only before, both wrong): correlated outcomes."""
    true_change = probs[1] - probs[2]
    rng = np.random.default_rng(1234)
    trials = 1500
    covered = 0
    for counts in rng.multinomial(n, probs, size=trials):
        low, high = stats.paired_change_interval(*flags(*counts))
        covered += low <= true_change <= high
    assert 0.92 <= covered / trials <= 0.99


def test_paired_interval_contains_the_estimate_and_narrows_with_n():
    widths = []
    for scale in (1, 4, 16):
        before, after = flags(20 * scale, 5 * scale, 10 * scale, 15 * scale)
        low, high = stats.paired_change_interval(before, after)
        change = after.mean() - before.mean()
        assert low < change < high
        widths.append(high - low)
    assert widths[0] > 1.8 * widths[1] > 1.8 * 1.8 * widths[2]


def test_paired_interval_is_narrower_than_for_independent_samples():
    """Paired outcomes that mostly agree pin the change down better than two unrelated accuracies would."""
    low, high = stats.paired_change_interval(*flags(140, 10, 30, 20))
    l_before, h_before = stats.wilson_interval(170, 200)
    l_after, h_after = stats.wilson_interval(150, 200)
    independent = math.hypot(h_after - 0.75, 0.85 - l_before) + math.hypot(0.75 - l_after, h_before - 0.85)
    assert high - low < 0.8 * independent


def simulate(rng, n, probs):
    return flags(*rng.multinomial(n, probs))


def test_bootstrap_covers_the_true_mean_change_and_shrinks_with_more_items():
    probs = [(0.5, 0.05, 0.2, 0.25), (0.6, 0.1, 0.1, 0.2), (0.3, 0.02, 0.08, 0.6)]
    true_mean = 100 * np.mean([p[1] - p[2] for p in probs])
    rng = np.random.default_rng(7)
    covered, widths = 0, {}
    for trial in range(60):
        pairs = [simulate(rng, 300, p) for p in probs]
        low, high = stats.bootstrap_mean_change(pairs, seed=trial, reps=1000)
        covered += low <= true_mean <= high
        widths.setdefault(300, []).append(high - low)
    assert covered >= 52  # ~95 % of 60, with room for chance
    for trial in range(10):
        low, high = stats.bootstrap_mean_change([simulate(rng, 4800, p) for p in probs], seed=trial)
        widths.setdefault(4800, []).append(high - low)
    assert np.mean(widths[4800]) < 0.35 * np.mean(widths[300])  # 1 / sqrt(16) = 0.25 in theory


def test_bootstrap_agrees_with_resampling_items_by_index():
    """The per-dataset multinomial shortcut must give the distribution of plain item resampling."""
    rng = np.random.default_rng(3)
    pairs = [simulate(rng, 150, (0.5, 0.1, 0.2, 0.2)), simulate(rng, 60, (0.2, 0.3, 0.05, 0.45))]
    reps = 20000
    means = np.zeros(reps)
    for before, after in pairs:
        idx = rng.integers(0, len(before), size=(reps, len(before)))
        means += 100 * (after[idx].mean(1) - before[idx].mean(1)) / len(pairs)
    ref_low, ref_high = np.percentile(means, [2.5, 97.5])
    low, high = stats.bootstrap_mean_change(pairs, seed=0, reps=reps)
    assert low == pytest.approx(ref_low, abs=0.4) and high == pytest.approx(ref_high, abs=0.4)


def test_bootstrap_is_seeded_fast_and_handles_empty_input():
    rng = np.random.default_rng(0)
    pairs = [simulate(rng, 1000, (0.5, 0.05, 0.2, 0.25)) for _ in range(3)]
    start = time.perf_counter()
    first = stats.bootstrap_mean_change(pairs, seed=5)
    assert time.perf_counter() - start < 0.5
    assert stats.bootstrap_mean_change(pairs, seed=5) == first
    assert stats.bootstrap_mean_change([pairs[0]], seed=5) != first
    assert all(math.isnan(v) for v in stats.bootstrap_mean_change([]))
    torch_pairs = [(torch.from_numpy(b), torch.from_numpy(a)) for b, a in pairs]
    assert stats.bootstrap_mean_change(torch_pairs, seed=5) == first


def test_summary_in_percent():
    before, after = flags(6, 1, 2, 1)
    row = stats.summary(torch.from_numpy(before), torch.from_numpy(after))
    assert row["n"] == 10 and row["before"] == pytest.approx(80.0) and row["after"] == pytest.approx(70.0)
    assert row["change"] == pytest.approx(-10.0)
    for key, interval in (("before_ci", wilson_by_hand(8, 10)), ("after_ci", wilson_by_hand(7, 10)),
                          ("change_ci", stats.paired_change_interval(before, after))):
        low, high = row[key]
        assert isinstance(low, float) and isinstance(high, float)
        assert low <= 100 * interval[0] < low + 0.011 and high - 0.011 < 100 * interval[1] <= high


def test_class_rows_have_the_contract_shape_and_skip_empty_classes():
    labels = np.array([0, 0, 0, 2, 2])
    before = np.array([1, 1, 0, 1, 0], dtype=bool)
    after = np.array([1, 0, 0, 1, 1], dtype=bool)
    rows = stats.class_rows(before, after, labels, ["cat", "dog", "owl"])
    assert [r["class_name"] for r in rows] == ["cat", "owl"]
    assert set(rows[0]) == {"label", "class_name", "n", "before", "after", "change",
                            "before_ci", "after_ci", "change_ci"}
    cat, owl = rows
    assert (cat["label"], cat["n"], owl["label"], owl["n"]) == (0, 3, 2, 2)
    assert cat["before"] == pytest.approx(200 / 3) and cat["after"] == pytest.approx(100 / 3)
    assert owl["change"] == pytest.approx(50.0)
    assert all(v is not None for row in rows for v in row.values())


def test_a_large_sure_drop_ranks_before_a_single_image():
    rows = [{"label": 0, "class_name": "one image", **stats.summary(*flags(0, 0, 1, 0))},
            {"label": 1, "class_name": "many images", **stats.summary(*flags(110, 0, 80, 10))},
            {"label": 2, "class_name": "unchanged", **stats.summary(*flags(50, 5, 5, 40))}]
    assert rows[0]["change"] == -100.0 and rows[1]["change"] == -40.0
    ranked = stats.rank_forgotten(rows)
    assert [r["class_name"] for r in ranked] == ["many images", "unchanged", "one image"]


def test_ranking_ties_break_by_change_then_name():
    rows = [{"class_name": name, "change": change, "change_ci": [lo, hi]}
            for name, change, lo, hi in [("b", -5.0, -9.0, -1.0), ("a", -5.0, -9.0, -1.0), ("c", -7.0, -9.0, -1.0)]]
    assert [r["class_name"] for r in stats.rank_forgotten(rows)] == ["c", "a", "b"]
