"""WiSE-FT (Wortsman et al., 2022): evaluate the weight mix (1 − α)·θ₀ + α·θ of a finished run without
retraining. Each (run, α) is evaluated once and kept in the run store, so a path of α values is cheap to redraw.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ldifs_core.errors import BadConfig, RunUnreadable
from ldifs_core.evaluate import forgetting_reports
from ldifs_core.hooks import NO_HOOKS, EvaluationProgress, RunHooks
from ldifs_core.objectives import OBJECTIVE_TYPES, Objective
from ldifs_core.runner import prepare
from ldifs_core.store import RunStore
from ldifs_core.weights import run_weights, tuned_from_weights
from ldifs_core.wise_records import save_wise, wise_results


def mix_weights(base_clip: nn.Module, tuned_clip: nn.Module, alpha: float) -> nn.Module:
    """A new CLIP with weights (1 − α)·θ₀ + α·θ (α = 0 gives θ₀, α = 1 gives θ); both inputs stay as they are."""
    mixed = copy.deepcopy(tuned_clip)
    base_state = base_clip.state_dict()
    mixed.load_state_dict({k: torch.lerp(base_state[k].to(v.device).float(), v.float(), alpha).to(v.dtype)
                           if v.is_floating_point() else v for k, v in tuned_clip.state_dict().items()})
    return mixed


def evaluate_mixes(store: RunStore, run_id: str, alphas: Iterable[float], with_umap: bool = False,
                   hooks: RunHooks = NO_HOOKS, on_alpha: Callable[[float, dict], None] | None = None) -> list[dict]:
    """Evaluate each α afresh (no cache), all together: the run's data and weights are loaded once, θ₀'s features,
    zero-shot heads and probes computed once, and each mix's tower sees every evaluation image once (the mixes are
    held in memory together). `hooks` hear the evaluation's progress and are asked before each dataset whether to
    stop; `on_alpha` hears each α's report once all are measured."""
    alphas = list(alphas)
    bad = [a for a in alphas if not 0.0 <= a <= 1.0]
    if bad:
        raise BadConfig(f"WiSE-FT α must be between 0 and 1, got {', '.join(f'{a:g}' for a in bad)}.")
    cfg, weights = run_weights(store, run_id)
    run = prepare(cfg)
    try:
        tuned_clip, final, initial = tuned_from_weights(run.base, weights)
    except (KeyError, RuntimeError) as err:
        raise RunUnreadable(f"unreadable: the weights file of run {run_id} does not fit its model ({str(err).splitlines()[0][:160]}); "
                       f"it was replaced by another file. Run the configuration again.") from None
    kind = OBJECTIVE_TYPES.get(cfg.objective, Objective)  # a checked run's heads mix like the weights
    mixes = []
    for alpha in alphas:
        hooks.check(f"before WiSE-FT α = {alpha:g}")
        mixed = mix_weights(run.base.clip, tuned_clip, alpha)
        mixes.append((mixed.visual, kind.mixed_head(run.base, mixed, initial, final, alpha, run.test)))
    reports = forgetting_reports(cfg, run.base, mixes, run.test, run.others, with_umap, EvaluationProgress(hooks))
    results = []
    for alpha, (report, _) in zip(alphas, reports):
        results.append({"run_id": run_id, "alpha": alpha, **report})
        if on_alpha is not None:
            on_alpha(alpha, results[-1])
    return results


def wise_ft_metrics(store: RunStore, run_id: str, alpha: float) -> dict:
    """The report of one WiSE-FT mix, evaluated afresh."""
    return evaluate_mixes(store, run_id, [alpha])[0]


def wise_ft_path(store: RunStore, run_id: str, alphas: Iterable[float], hooks: RunHooks = NO_HOOKS,
                 on_alpha: Callable[[float, dict], None] | None = None) -> list[dict]:
    """Reports for every α (sorted), each computed once per run and kept in the store; cancellable before each
    dataset of the evaluation (the α missing are measured together, so a cancel keeps none of them)."""
    alphas = sorted(set(alphas))
    cached = wise_results(store, run_id)
    missing = [a for a in alphas if a not in cached]

    def keep(alpha: float, metrics: dict) -> None:
        save_wise(store, run_id, alpha, metrics)
        cached[alpha] = metrics
        if on_alpha is not None:
            on_alpha(alpha, metrics)

    if missing:
        evaluate_mixes(store, run_id, missing, hooks=hooks, on_alpha=keep)
    return [cached[a] for a in alphas]
