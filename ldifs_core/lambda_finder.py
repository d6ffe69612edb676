"""The λ finder: the λ with the least mean zero-shot forgetting whose task accuracy stays within `tolerance` points
of CE's under the same settings.

Search: bisection of log λ on the tolerance boundary (docs/find-lambda.md). Task accuracy falls and forgetting
shrinks as λ grows, so the answer sits where the task accuracy crosses CE's minus the tolerance: the largest λ
that still meets it. The finder tries the top of the range (if it meets the tolerance, so does every λ searched),
then the bottom (if it fails, none does), then halves the bracket in log λ with each remaining trial; the answer is
the tried λ that meets the tolerance with the least forgetting, and the bracket left is its resolution.

A trial is a plain function of a RunConfig (and of the rule that stops a hopeless one early), so the same search
runs with ordinary runs in the store (`store_trial`: finished runs reused, a hopeless run stopped from its
forgetting curve and recorded as cancelled) or with a fabricated trial in the tests; lambda_tune.py runs it on
Ray Tune.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ldifs_core.config import REGULARISED, RunConfig
from ldifs_core.curve_records import Curve
from ldifs_core.errors import BadConfig
from ldifs_core.hooks import RunHooks

LOW, HIGH = 0.01, 1000.0  # the λ range searched by default (the README's λ sweeps span it)
DEFAULT_BUDGET = 8  # runs, the CE reference included
HOPELESS_GAP = 15.0  # points of zero-shot task accuracy below CE's curve at the same step ...
HOPELESS_FROM = 0.5  # ... once this fraction of the steps is done: the λ cannot catch up, the run stops


@dataclass(frozen=True)
class TrialResult:
    """One trial: its run and what the finder reads of it."""

    lam: float | None  # None: the CE reference
    run_id: str
    task_accuracy: float  # the tuned classifier's, in %
    task_ci: list[float]
    forgetting: float  # mean zero-shot points lost on the checked datasets (−mean_zs_delta)
    forgetting_ci: list[float]
    stopped: bool = False  # stopped early as hopeless (task accuracy and forgetting then as of the stop: unknown)
    reused: bool = False  # a finished run of the store answered it
    curve: Curve | None = None  # its forgetting-over-training curve (the CE reference's stops hopeless λ early)

    def meets(self, floor: float) -> bool:
        return not self.stopped and self.task_accuracy >= floor


@dataclass(frozen=True)
class HopelessRule:
    """Stop a trial whose zero-shot task accuracy on its curve is far below CE's at the same step, late enough in
    training that it cannot catch up."""

    ce: Curve
    steps: int
    gap: float = HOPELESS_GAP

    def hopeless(self, curve: Curve) -> bool:
        point = curve.points[-1]
        reference = {p.step: p.accuracy[self.ce.task] for p in self.ce.points}
        if point.step < HOPELESS_FROM * self.steps or point.step not in reference:
            return False
        return point.accuracy[curve.task] < reference[point.step] - self.gap


Trial = Callable[[RunConfig, HopelessRule | None], TrialResult]


@dataclass
class Bisection:
    """The search state on log λ: which λ to try next, and the bracket [low, high] around the boundary."""

    low: float = LOW
    high: float = HIGH
    met_low: bool | None = None  # whether the range's ends met the tolerance (None: not tried yet)
    met_high: bool | None = None

    def next(self) -> float | None:
        """The next λ to try; None when the search is settled (every λ meets it, or none does)."""
        if self.met_high is None:
            return self.high
        if self.met_high:
            return None
        if self.met_low is None:
            return self.low
        return math.sqrt(self.low * self.high) if self.met_low else None

    def tell(self, lam: float, met: bool) -> None:
        if self.met_high is None and lam == self.high:
            self.met_high = met
        elif self.met_low is None and lam == self.low:
            self.met_low = met
        elif met:
            self.low = lam
        else:
            self.high = lam


@dataclass
class SearchResult:
    """What the finder found: the CE reference, every λ tried in order, the one chosen (None: no λ meets the
    tolerance) and the bracket in log λ its resolution leaves."""

    dataset: str
    objective: str
    tolerance: float
    ce: TrialResult
    tried: list[TrialResult] = field(default_factory=list)
    chosen: TrialResult | None = None
    bracket: tuple[float, float] = (LOW, HIGH)
    done: bool = False  # False while the search still runs (its kept file then grows trial by trial)

    @property
    def floor(self) -> float:
        return self.ce.task_accuracy - self.tolerance

    def runs(self) -> int:
        """Runs trained for this search (reused ones cost nothing)."""
        return sum(not trial.reused for trial in (self.ce, *self.tried))

    def to_dict(self) -> dict:
        """The search as JSON (curves left out: they live in the runs)."""
        data = asdict(self)
        for trial in (data["ce"], *data["tried"], *([data["chosen"]] if data["chosen"] else [])):
            trial.pop("curve")
        return data

    def summary(self) -> str:
        """The search in a few lines: each λ tried, and the answer or why there is none."""
        lines = [f"CE: task {self.ce.task_accuracy:.1f}% → floor {self.floor:.1f}% (tolerance {self.tolerance:g} "
                 f"points); run {self.ce.run_id}{' (reused)' if self.ce.reused else ''}"]
        for trial in self.tried:
            verdict = ("stopped early (hopeless)" if trial.stopped else
                       f"task {trial.task_accuracy:.1f}% [{trial.task_ci[0]:.1f}, {trial.task_ci[1]:.1f}], forgetting "
                       f"{trial.forgetting:.2f} [{trial.forgetting_ci[0]:.2f}, {trial.forgetting_ci[1]:.2f}] points"
                       f" {'meets' if trial.meets(self.floor) else 'misses'}")
            lines.append(f"  λ = {trial.lam:<9.4g} {verdict}; run {trial.run_id}{' (reused)' if trial.reused else ''}")
        if self.chosen is None:
            lines.append(f"No λ in [{LOW:g}, {HIGH:g}] keeps the task accuracy within {self.tolerance:g} points of "
                         f"CE's: raise the tolerance, or use CE.")
        else:
            chosen = self.chosen
            low, high = self.bracket
            lines.append(f"Chosen λ = {chosen.lam:.4g} (the boundary lies in [{low:.4g}, {high:.4g}]): task "
                         f"{chosen.task_accuracy:.1f}% (95 % CI {chosen.task_ci[0]:.1f} to {chosen.task_ci[1]:.1f}), "
                         f"forgetting {chosen.forgetting:.2f} points (95 % CI {chosen.forgetting_ci[0]:.2f} to "
                         f"{chosen.forgetting_ci[1]:.2f}); {self.runs()} runs trained.")
        return "\n".join(lines)


def check_search(base: RunConfig, tolerance: float, budget: int) -> None:
    if base.objective not in REGULARISED:
        raise BadConfig(f"find-lambda needs an objective with a λ ({', '.join(REGULARISED)}), not {base.objective}.")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise BadConfig("--tolerance must be a number of points >= 0, e.g. 1.0.")
    if budget < 3:
        raise BadConfig("--budget must be at least 3 runs (CE and both ends of the λ range).")


def find_lambda(base: RunConfig, trial: Trial, tolerance: float = 1.0, budget: int = DEFAULT_BUDGET,
                on_trial: Callable[[SearchResult], None] = lambda result: None) -> SearchResult:
    """Search λ for `base` (its objective and settings; its λ is ignored) with `trial`, here, one trial at a time;
    `on_trial` hears the search so far after each trial (CE's first)."""
    check_search(base, tolerance, budget)
    ce = trial(replace(base, objective="ce", lam=None), None)
    result = SearchResult(base.dataset, base.objective, tolerance, ce)
    on_trial(result)
    rule = HopelessRule(ce.curve, base.steps) if ce.curve is not None else None
    search = Bisection()
    while len(result.tried) + 1 < budget and (lam := search.next()) is not None:
        tried = trial(replace(base, lam=lam), rule)
        result.tried.append(tried)
        on_trial(result)
        search.tell(lam, tried.meets(result.floor))
    return settle(result, search)


def settle(result: SearchResult, search: Bisection) -> SearchResult:
    """The tried λ that meets the tolerance with the least forgetting, and the bracket left."""
    meeting = [trial for trial in result.tried if trial.meets(result.floor)]
    result.chosen = min(meeting, key=lambda trial: trial.forgetting) if meeting else None
    result.bracket = (search.low, search.high)
    result.done = True
    return result


# -- trials as ordinary runs in a store --------------------------------------------------------------------

class StopWhenHopeless(RunHooks):
    """Stops the run once its forgetting curve says the λ is hopeless."""

    def __init__(self, rule: HopelessRule | None):
        self.rule, self.hopeless = rule, False

    def curve(self, curve: Curve) -> None:
        self.hopeless = self.hopeless or (self.rule is not None and self.rule.hopeless(curve))

    def should_stop(self) -> bool:
        return self.hopeless


@dataclass(frozen=True)
class StoreTrial:
    """Trials as ordinary runs of the store at `root`: a finished run with the same settings is reused; a hopeless
    one is stopped from its curve (recorded as cancelled). A plain value, so Ray can send it to a worker."""

    root: str | None = None  # None: the default store

    def __call__(self, cfg: RunConfig, rule: HopelessRule | None) -> TrialResult:
        from ldifs_core.metrics import RunMetrics
        from ldifs_core.reuse import finished_run
        from ldifs_core.runner import execute
        from ldifs_core.store import RunStore

        store = RunStore(self.root)
        cfg = cfg.with_lambda_resolved()
        run_id = finished_run(store, cfg)
        reused = run_id is not None
        if run_id is None:
            hooks = StopWhenHopeless(rule)
            run_id = execute(cfg, store, hooks=hooks)
            if store.get(run_id).status != "done":
                return TrialResult(cfg.lam, run_id, math.nan, [math.nan, math.nan], math.nan, [math.nan, math.nan],
                                   stopped=True)
        metrics = RunMetrics.from_json(store.metrics(run_id))
        low, high = metrics.mean_zs_delta_ci
        task = metrics.downstream
        return TrialResult(cfg.lam, run_id, task.accuracy_after, list(task.accuracy_after_ci), -metrics.mean_zs_delta,
                           [-high, -low], reused=reused, curve=metrics.curve)


# -- searches kept in the store, for the app ----------------------------------------------------------------

SEARCHES = "lambda_searches"  # a folder of the store: one JSON per search, rewritten after each of its trials


def save_search(store, result: SearchResult, path: Path | None = None) -> Path:
    """Keep a search beside the runs it made (the app's Runs & sweeps page lists them and follows one that runs):
    at `path` when given (the same search, further on), else in a new file. A search not done names its process,
    so a reader can tell one still going from one whose process died."""
    from ldifs_core import disk, ownership

    if path is None:
        folder = store.root / SEARCHES
        folder.mkdir(exist_ok=True)
        path = folder / f"{result.dataset.replace('/', '_')}-{result.objective}-{int(time.time() * 1000)}.json"
    disk.write_json(path, {**result.to_dict(), **({} if result.done else ownership.current_owner())})
    return path


def search_state(search: dict) -> str:
    """"done", "searching", or "stopped" (its process ended before the search did: killed, or it crashed)."""
    from ldifs_core import ownership

    if search.get("done", True):  # searches kept before live files existed were kept only once done
        return "done"
    owner = (search.get("owner_host"), search.get("owner_pid"), search.get("owner_started"))
    return "stopped" if ownership.owner_gone(*owner) else "searching"


def saved_searches(store) -> list[dict]:
    """The searches kept in the store, newest first (unreadable files skipped)."""
    folder = store.root / SEARCHES
    found = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []:
        try:
            found.append(json.loads(path.read_bytes()))
        except (OSError, ValueError):
            continue
    return found
