"""find-lambda on Ray Tune: Tune's Searcher interface asks the finder's bisection (lambda_finder.Bisection) for
each λ and tells it each result, one trial at a time (a bisection needs the previous answer); Tune's default FIFO
scheduler places the trials on the cluster; each trial is the same trial function as a local search (with
lambda_finder.StoreTrial an ordinary run in the store, stopped early from its forgetting curve when hopeless).

A StoreTrial writes into the store at its path from the worker: a local Ray, or a cluster whose nodes share that
folder. Tune's own trial folders go to a temporary folder; the run store stays the one source of truth.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, fields, replace

from ray import tune
from ray.tune.search import Searcher

from ldifs_core.config import RunConfig
from ldifs_core.lambda_finder import (DEFAULT_BUDGET, Bisection, HopelessRule, SearchResult, Trial, TrialResult,
                                      check_search, settle)


def _trainable(config: dict, trial: Trial, base: RunConfig, rule: HopelessRule | None, floor: float) -> None:
    cfg = replace(base, objective="ce", lam=None) if config["lam"] is None else replace(base, lam=config["lam"])
    result = trial(cfg, rule)
    tune.report({"meets": result.meets(floor), "finished_at": time.time(), **asdict(result)})


class BisectionSearcher(Searcher):
    """The finder's bisection as a Tune searcher: one λ at a time, FINISHED when settled or out of budget."""

    def __init__(self, floor: float, trials: int):
        super().__init__(metric="task_accuracy", mode="max")
        self.search, self.floor, self.left = Bisection(), floor, trials
        self.running: dict[str, float] = {}

    def suggest(self, trial_id: str) -> dict | None:
        if self.running:
            return None  # wait for the λ in flight: the next one depends on it
        lam = self.search.next()
        if lam is None or self.left <= 0:
            return Searcher.FINISHED
        self.left -= 1
        self.running[trial_id] = lam
        return {"lam": lam}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        lam = self.running.pop(trial_id)
        self.search.tell(lam, bool(result and not error and result["meets"]))


def _fit(trainable, *, param_space: dict | None = None, searcher: Searcher | None = None,
         samples: int = 1) -> list[dict]:
    """The trials' final reports, in the order they finished."""
    with tempfile.TemporaryDirectory(prefix="ldifs-tune-") as folder:
        tuner = tune.Tuner(trainable, param_space=param_space or {},
                           tune_config=tune.TuneConfig(search_alg=searcher, num_samples=samples,
                                                       max_concurrent_trials=1),
                           run_config=tune.RunConfig(storage_path=folder, verbose=0))
        grid = tuner.fit()
        reports = [result.metrics for result in grid if result.error is None]
    return sorted(reports, key=lambda report: report["finished_at"])


def _trial_result(report: dict) -> TrialResult:
    return TrialResult(**{f.name: report[f.name] for f in fields(TrialResult)})


def find_lambda_on_tune(base: RunConfig, trial: Trial, tolerance: float = 1.0,
                        budget: int = DEFAULT_BUDGET) -> SearchResult:
    """As lambda_finder.find_lambda, each trial a Tune trial of the connected Ray cluster (ray_sweep.ray_session)."""
    check_search(base, tolerance, budget)
    place = lambda rule, floor: tune.with_parameters(_trainable, trial=trial, base=base, rule=rule, floor=floor)
    (ce_report,) = _fit(place(None, 0.0), param_space={"lam": None})
    ce = _trial_result(ce_report)
    result = SearchResult(base.dataset, base.objective, tolerance, ce)
    rule = HopelessRule(ce.curve, base.steps) if ce.curve is not None else None
    reports = _fit(place(rule, result.floor), searcher=BisectionSearcher(result.floor, budget - 1), samples=budget - 1)
    search = Bisection()  # the searcher's steps replayed here: Tune keeps its own copy of the searcher
    for report in reports:
        tried = _trial_result(report)
        result.tried.append(tried)
        search.tell(tried.lam, tried.meets(result.floor))
    return settle(result, search)
