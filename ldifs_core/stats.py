"""Honest numbers: accuracies with their n and a 95 % interval, and the ranking of forgotten concepts.

Every accuracy in a report rests on a finite set of test images, and a per-concept accuracy often on very few
(quickdraw has concepts with 1-2 test images). So each one carries a Wilson interval, each before/after change a
paired interval (the same images are scored before and after, which makes the change far more precise than two
independent accuracies would suggest), and the mean change over datasets a bootstrap interval.

Inputs are per-item correctness flags (torch tensors, numpy arrays or lists); fractions are in [0, 1], while the
report helpers (`summary`, `class_rows`) speak percent and percentage points like metrics.json.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def _numpy(values) -> np.ndarray:
    """A 1-D numpy view of a torch tensor, numpy array or sequence (torch stays an optional input type)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values).reshape(-1)


def _flags(values) -> np.ndarray:
    return _numpy(values).astype(bool)


def accuracy(predictions, labels) -> float:
    """Percent of `predictions` equal to `labels`; nan when there are no items (an empty set has no accuracy).

    The project's one accuracy helper: zero-shot, tuned head and linear probe all go through it.
    """
    predictions, labels = _numpy(predictions), _numpy(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    return 100.0 * float(np.mean(predictions == labels)) if len(labels) else float("nan")


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion, as fractions in [0, 1].

    Unlike the textbook p ± z·se it never leaves [0, 1] and does not collapse to a point at 0 of n or n of n,
    which is exactly where per-concept accuracies on a handful of images sit. n == 0 says nothing: (0, 1).
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _paired_counts(before_correct, after_correct) -> tuple[int, int, int, int]:
    """(both right, only after right, only before right, both wrong) over items scored before and after."""
    before, after = _flags(before_correct), _flags(after_correct)
    if before.shape != after.shape:
        raise ValueError(f"{before.shape[0]} items before but {after.shape[0]} after: a paired change needs the same items")
    both = int(np.sum(before & after))
    gained = int(np.sum(after & ~before))
    lost = int(np.sum(before & ~after))
    return both, gained, lost, len(before) - both - gained - lost


def _newcombe_paired(both: int, gained: int, lost: int, neither: int, z: float) -> tuple[float, float]:
    """Newcombe (1998) method 10 for p_after - p_before from the paired 2x2 counts."""
    n = both + gained + lost + neither
    if n == 0:
        return -1.0, 1.0
    after_hits, before_hits = both + gained, both + lost
    p_after, p_before = after_hits / n, before_hits / n
    lo_after, hi_after = wilson_interval(after_hits, n, z)
    lo_before, hi_before = wilson_interval(before_hits, n, z)
    # phi: correlation of "right before" with "right after", 0 when a margin is empty. As in Newcombe's paper (and
    # Fagerland, Lydersen & Laake 2017), a positive cross-product is reduced by n/2 before use: without it, a
    # concept whose images all kept their outcome gets a zero-width interval (e.g. 6 of 12 right before and after).
    denom = after_hits * (n - after_hits) * before_hits * (n - before_hits)
    cross = both * neither - gained * lost
    if cross > 0:
        cross = max(0.0, cross - n / 2)
    phi = min(1.0, max(-1.0, cross / math.sqrt(denom))) if denom > 0 else 0.0
    d_low = math.sqrt(max(0.0, (p_after - lo_after) ** 2 - 2 * phi * (p_after - lo_after) * (hi_before - p_before)
                          + (hi_before - p_before) ** 2))
    d_high = math.sqrt(max(0.0, (hi_after - p_after) ** 2 - 2 * phi * (hi_after - p_after) * (p_before - lo_before)
                           + (p_before - lo_before) ** 2))
    change = p_after - p_before
    return max(-1.0, change - d_low), min(1.0, change + d_high)


def paired_change_interval(before_correct, after_correct, z: float = Z95) -> tuple[float, float]:
    """95 % interval of p_after - p_before when the same items are scored twice, as fractions in [-1, 1].

    Newcombe (1998), method 10: the Wilson intervals of both marginals, combined through the phi correlation of
    the paired outcomes (phi = 0 when a margin is empty). Images a model gets right before it mostly still gets right after, so the change is known
    much more precisely than two independent accuracies would suggest, and this interval uses that.
    """
    return _newcombe_paired(*_paired_counts(before_correct, after_correct), z)


def bootstrap_mean_change(pairs: Sequence[tuple], seed: int = 0, reps: int = 2000) -> tuple[float, float]:
    """Percentile 95 % interval, in percentage points, of the mean over datasets of (accuracy after - before).

    `pairs` holds one (before_correct, after_correct) pair of per-item flags per dataset. Items are resampled with
    replacement within each dataset, independently across datasets (the datasets themselves are the fixed set
    the report is about). Resampling the n paired items of a dataset only matters through how many of each
    per-item change (-1, 0, +1) are drawn, so each dataset is one multinomial draw per repetition: exact, seeded,
    and independent of n in cost. nan bounds when there are no datasets or a dataset has no items.
    """
    if not pairs:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    total = np.zeros(reps)
    for before_correct, after_correct in pairs:
        before, after = _flags(before_correct), _flags(after_correct)
        if before.shape != after.shape:
            raise ValueError("a paired change needs the same items before and after")
        if len(before) == 0:
            return float("nan"), float("nan")
        values, counts = np.unique(after.astype(np.int8) - before.astype(np.int8), return_counts=True)
        draws = rng.multinomial(len(before), counts / len(before), size=reps)  # [reps, len(values)]
        total += draws @ values / len(before)
    means = 100.0 * total / len(pairs)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _percent_interval(interval: tuple[float, float]) -> list[float]:
    """Fractions -> percent, rounded outwards to 2 decimals so that rounding never narrows the interval."""
    low, high = interval
    return [math.floor(round(100.0 * low, 6) * 100) / 100, math.ceil(round(100.0 * high, 6) * 100) / 100]


def summary(before_correct, after_correct) -> dict:
    """n, accuracies before and after, their change (percent, full precision) and each one's 95 % interval."""
    both, gained, lost, neither = _paired_counts(before_correct, after_correct)
    n = both + gained + lost + neither
    before_hits, after_hits = both + lost, both + gained
    before = 100.0 * before_hits / n if n else float("nan")
    after = 100.0 * after_hits / n if n else float("nan")
    return {
        "n": n,
        "before": before,
        "after": after,
        "change": after - before,
        "before_ci": _percent_interval(wilson_interval(before_hits, n)),
        "after_ci": _percent_interval(wilson_interval(after_hits, n)),
        "change_ci": _percent_interval(_newcombe_paired(both, gained, lost, neither, Z95)),
    }


def class_rows(before_correct, after_correct, labels, class_names: Sequence[str]) -> list[dict]:
    """One class row per class with test items, in label order (the metrics.json "class row" shape).

    {label, class_name, n, before, after, change, before_ci, after_ci, change_ci}; classes with n == 0 are left
    out, so no field is ever None.
    """
    before, after, labels = _flags(before_correct), _flags(after_correct), _numpy(labels).astype(np.int64)
    if not before.shape == after.shape == labels.shape:
        raise ValueError("before, after and labels must describe the same items")
    rows = []
    for label, name in enumerate(class_names):
        members = labels == label
        if members.any():
            rows.append({"label": label, "class_name": str(name), **summary(before[members], after[members])})
    return rows


def rank_forgotten(rows: Sequence[dict]) -> list[dict]:
    """Class rows ordered from most surely forgotten: ascending upper end of the change's interval.

    Ranking by the upper bound (not the point change) accounts for n: a concept whose accuracy fell 40 points on
    200 images surely lost more than one that fell 100 points on a single image, whose interval reaches above 0.
    Ties by change, then by class name, so the order is total and stable.
    """
    return sorted(rows, key=lambda row: forgotten_order(row["change_ci"][1], row["change"], row["class_name"]))


def forgotten_order(change_high: float, change: float, class_name: str) -> tuple[float, float, str]:
    """The sort key of rank_forgotten, for concept rows of any shape."""
    return change_high, change, class_name
