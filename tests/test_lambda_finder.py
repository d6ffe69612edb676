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
    accuracy = CE_ACCURACY - drop
    return TrialResult(cfg.lam, f"run-{cfg.lam:g}", accuracy, [accuracy - 1, accuracy + 1], forgetting,
                       [forgetting - 0.5, forgetting + 0.5])


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


def test_find_lambda_on_the_command_line_prints_and_keeps_the_search(tmp_path, monkeypatch, capsys):
    from ldifs_core import lambda_finder
    from ldifs_core.cli import main
    from ldifs_core.store import RunStore

    monkeypatch.setattr(lambda_finder, "StoreTrial", lambda root: fabricated_trial)
    code = main(["find-lambda", "--dataset", "mnist", "--tolerance", "3", "--store", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "Chosen λ" in out and "λ = 1000" in out
    (kept,) = lambda_finder.saved_searches(RunStore(tmp_path))
    assert kept["chosen"]["lam"] <= ANSWER <= kept["bracket"][1]


def test_the_search_figure_shows_each_lambda_the_floor_and_the_chosen_one():
    from app import plots

    search = find_lambda(BASE, fabricated_trial, TOLERANCE, budget=5).to_dict()
    fig = plots.lambda_search(search)
    accuracy, forgetting, *chosen = fig.data
    assert list(accuracy.x) == sorted(t["lam"] for t in search["tried"]) and len(chosen) == 2
    assert fig.layout.shapes[0].y0 == CE_ACCURACY - TOLERANCE


def test_a_lambda_is_hopeless_when_its_task_curve_falls_far_below_ces_late_in_training():
    from ldifs_core.curve_records import Curve, CurvePoint
    from ldifs_core.lambda_finder import HopelessRule, StopWhenHopeless

    ce = Curve("mnist", 5, {"mnist": 10}, [CurvePoint(s, {"mnist": 90.0}) for s in (0, 5, 10)])
    rule = HopelessRule(ce, steps=10)
    early = Curve("mnist", 5, {"mnist": 10}, [CurvePoint(0, {"mnist": 10.0})])
    late = Curve("mnist", 5, {"mnist": 10}, [CurvePoint(5, {"mnist": 60.0})])
    close = Curve("mnist", 5, {"mnist": 10}, [CurvePoint(5, {"mnist": 80.0})])
    assert (rule.hopeless(early), rule.hopeless(late), rule.hopeless(close)) == (False, True, False)
    hooks = StopWhenHopeless(rule)
    hooks.curve(late)
    assert hooks.should_stop()


@pytest.mark.slow
def test_a_store_trial_reuses_a_finished_run_with_the_same_settings(store_dir):
    from ldifs_core.lambda_finder import StoreTrial
    from ldifs_core.runner import execute
    from ldifs_core.store import RunStore

    cfg = RunConfig(objective="ldifs", lam=10.0, steps=2, batch_size=16, eval_limit=60, probe_limit=6, umap_points=0,
                    train_limit=100, eval_datasets=["animals"], curve_points=2, curve_images=20)
    run_id = execute(cfg, RunStore())
    result = StoreTrial()(cfg, None)
    assert result.reused and result.run_id == run_id and result.curve is not None
    assert result.forgetting == -RunStore().metrics(run_id)["mean_zs_delta"]
