"""The λ finder on a fabricated objective whose task accuracy and forgetting are known functions of λ: no training.

Task accuracy drops by log10(λ) + 2 points below CE's 90 % (0 at λ = 0.01, 5 at λ = 1000) and forgetting is
10 / (1 + λ) points, so with a tolerance of 3 points the answer is λ* = 10: the largest λ within the tolerance.
"""
import math

import pytest

from ldifs_core.config import RunConfig
from ldifs_core.errors import BadConfig
from ldifs_core.lambda_finder import LOW, HIGH, Bisection, TrialResult, find_lambda

CE_ACCURACY, TOLERANCE, ANSWER = 90.0, 3.0, 10.0
BASE = RunConfig(dataset="mnist", objective="ldifs", steps=10)


def fabricated_trial(cfg, rule):
    if cfg.objective == "ce":
        return TrialResult(None, "ce-run", CE_ACCURACY, [88.0, 92.0], 10.0, [9.0, 11.0])
    drop, forgetting = math.log10(cfg.lam) + 2, 10 / (1 + cfg.lam)
    return TrialResult(cfg.lam, f"run-{cfg.lam:g}", CE_ACCURACY - drop, [CE_ACCURACY - drop - 1, CE_ACCURACY - drop + 1],
                       forgetting, [forgetting - 0.5, forgetting + 0.5])


def resolution(budget: int) -> float:
    """The bracket's width in decades after the CE run, both ends and the bisections the budget leaves."""
    return math.log10(HIGH / LOW) / 2 ** (budget - 3)


def test_the_finder_returns_the_largest_lambda_within_the_tolerance_to_its_resolution():
    heard = []
    result = find_lambda(BASE, fabricated_trial, TOLERANCE, budget=8, on_trial=heard.append)
    assert len(heard) == 8 and result.runs() == 8 and [t.lam for t in result.tried[:2]] == [HIGH, LOW]
    low, high = result.bracket
    assert low <= ANSWER <= high and math.log10(high / low) == pytest.approx(resolution(8))
    assert result.chosen.lam == low and ANSWER / 10 ** resolution(8) <= result.chosen.lam <= ANSWER
    assert "Chosen λ" in result.summary()


def test_the_finder_says_when_no_lambda_meets_the_tolerance():
    result = find_lambda(BASE, lambda cfg, rule: fabricated_trial(cfg, rule) if cfg.objective == "ce" else
                         TrialResult(cfg.lam, "r", 50.0, [49, 51], 1.0, [0.5, 1.5]), TOLERANCE)
    assert result.chosen is None and len(result.tried) == 2  # the top, then the bottom of the range: settled
    assert "No λ" in result.summary()


def test_every_lambda_meeting_the_tolerance_settles_at_the_top_of_the_range():
    result = find_lambda(BASE, fabricated_trial, tolerance=20.0)
    assert [t.lam for t in result.tried] == [HIGH] and result.chosen.lam == HIGH


def test_a_hopeless_lambda_counts_as_missing_the_tolerance():
    search = Bisection()
    search.tell(search.next(), False)
    search.tell(search.next(), True)
    assert search.next() == pytest.approx(math.sqrt(LOW * HIGH))


def test_the_finder_refuses_an_objective_without_lambda_and_a_budget_below_three():
    with pytest.raises(BadConfig, match="objective with a λ"):
        find_lambda(RunConfig(objective="ce"), fabricated_trial)
    with pytest.raises(BadConfig, match="at least 3"):
        find_lambda(BASE, fabricated_trial, budget=2)


@pytest.mark.ray
def test_the_finder_on_ray_tune_returns_the_same_lambda():
    import sys

    from ray import cloudpickle

    from ldifs_core import ray_sweep
    from ldifs_core.lambda_tune import find_lambda_on_tune

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fabricated trial travels to the workers
    local = find_lambda(BASE, fabricated_trial, TOLERANCE, budget=6)
    with ray_sweep.ray_session(ray_sweep.LOCAL, num_cpus=2, object_store_bytes=256 * 1024**2):
        on_ray = find_lambda_on_tune(BASE, fabricated_trial, TOLERANCE, budget=6)
    assert [t.lam for t in on_ray.tried] == [t.lam for t in local.tried]
    assert on_ray.chosen == local.chosen and on_ray.bracket == local.bracket
    assert on_ray.bracket[0] <= ANSWER <= on_ray.bracket[1]
