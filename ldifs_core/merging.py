"""Model Stock as a run: two finished runs of the same settings (other seeds) merged with θ₀ layer by layer
(ldifs_core/model_stock.py), evaluated exactly as a trained run is, and stored as a run whose objective is
`model_stock` and whose config names the two runs, so every page, `show`, export and the report show it.

θ₀ is the run's foundation model for the image tower (and the text tower of a run that tunes it); for the
classifier head it is the head the first run started from (the text tower's zero-shot head for ZS-init, the
same for both runs), so the head is merged like any other layer. The merged run keeps the first run's initial
head, so WiSE-FT can mix the merged run too.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

from ldifs_core import disk
from ldifs_core.config import RunConfig
from ldifs_core.errors import BadConfig, LabError, RunCancelled, RunNotFound
from ldifs_core.hooks import NO_HOOKS, EvaluationProgress, Progress, RunHooks
from ldifs_core.reuse import finished_run, run_identity
from ldifs_core.store import RunRecord, RunStore

if TYPE_CHECKING:  # torch loads only for the merge itself: the Runs page lists partners without it
    import torch

NAME = "model_stock"
RATIOS_FILE = "model_stock.json"  # beside the merged run's metrics: the two runs and each tensor's t
FREE = ("seed", "label")  # what the two merged runs may differ in


def source_configs(store: RunStore, run_a: str, run_b: str) -> tuple[RunConfig, RunConfig]:
    """The two runs' settings, once both are finished, kept their weights and differ in nothing but the seed;
    otherwise a LabError that says what to pick instead."""
    if run_a == run_b:
        raise BadConfig(f"Model Stock merges two different runs, and {run_a} was given twice: give a second run of "
                        f"the same settings with another seed.")
    configs = []
    for run_id in (run_a, run_b):
        record = store.get(run_id)
        if record.status != "done":
            reason = f" ({record.message})" if record.message else ""
            raise RunNotFound(f"Run {run_id} is {record.status}{reason}: Model Stock merges finished runs; pick them "
                              f"from `python -m ldifs_core list --status done`.")
        if record.config.objective == NAME:
            raise BadConfig(f"Run {run_id} is itself a Model Stock merge: merge two trained runs.")
        if record.config.start_from is not None:
            raise BadConfig(f"Run {run_id} is a stage of a sequence (it starts from run {record.config.start_from}); "
                            f"Model Stock merges runs that start from the foundation model.")
        store.metrics(run_id)  # an unreadable run says why here
        if store.weights_path(run_id) is None:
            raise RunNotFound(f"Run {run_id} kept no weights (save_weights was off), so Model Stock has nothing to "
                              f"merge. Run it again with weights saved.")
        configs.append(record.config)
    first, second = (comparable(cfg) for cfg in configs)
    differ = [f"{key} {first[key]} vs {second[key]}" for key in first if first[key] != second.get(key)]
    if differ:
        raise BadConfig(f"Runs {run_a} and {run_b} differ in more than the seed ({'; '.join(differ)}): Model Stock "
                        f"merges runs of the same settings with different seeds.")
    if configs[0].seed == configs[1].seed:
        warnings.warn(f"Runs {run_a} and {run_b} have the same seed {configs[0].seed}: if they are the same run "
                      f"twice, the merge is that run.", stacklevel=2)
    return configs[0], configs[1]


def comparable(cfg: RunConfig) -> dict:
    identity = run_identity(cfg)
    for key in FREE:
        identity.pop(key, None)
    return identity


def merged_config(first: RunConfig, second: RunConfig, run_a: str, run_b: str) -> RunConfig:
    """The merged run's settings: the first run's, with objective model_stock and the two runs named."""
    return replace(first, objective=NAME, lam=None, model_stock_runs=f"{run_a},{run_b}", sequence_id="", stage=None,
                   label=f"Model Stock of {first.objective} seeds {first.seed} and {second.seed}")


def merge_weights(base_clip: torch.nn.Module, first: dict[str, torch.Tensor],
                  second: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The merged weights file (tuned CLIP tensors and heads) and each merged tensor's t, from two saved runs."""
    from ldifs_core.model_stock import model_stock_merge, model_stock_ratios

    base_state = base_clip.state_dict()
    theta0 = {key: (base_state[key[len("clip."):]] if key.startswith("clip.") else first[f"initial_{key}"])
              .detach().cpu() for key in first if key.startswith(("clip.", "head."))}
    parts = [{key: weights[key] for key in theta0} for weights in (first, second)]
    merged = model_stock_merge(theta0, *parts)
    ratios = model_stock_ratios(theta0, *parts)
    merged.update({key: value for key, value in first.items() if key.startswith("initial_head.")})
    return merged, ratios


def find_model_stock(store: RunStore, run_a: str, run_b: str) -> str | None:
    """A finished merge of these two runs already in the store (either order), or None."""
    for pair in ((run_a, run_b), (run_b, run_a)):
        first = store.get(pair[0]).config
        found = finished_run(store, merged_config(first, first, *pair))
        if found:
            return found
    return None


def partners(first: RunRecord, finished: list[RunRecord]) -> list[RunRecord]:
    """The finished runs that can be merged with `first`: same settings, another run, weights kept."""
    if first.config.objective == NAME or first.config.start_from is not None:
        return []
    wanted = comparable(first.config)
    return [record for record in finished if record.run_id != first.run_id and record.config.save_weights
            and record.config.objective != NAME and comparable(record.config) == wanted]


def model_stock_config(store: RunStore, run_a: str, run_b: str) -> RunConfig:
    """The settings of the merge of two runs, once they are checked mergeable (a LabError says why not)."""
    return merged_config(*source_configs(store, run_a, run_b), run_a, run_b)


def model_stock_run(store: RunStore, run_a: str, run_b: str, hooks: RunHooks = NO_HOOKS) -> str:
    """Merge two finished runs, evaluate the merge like a trained run and store it; returns its run id. A merge of
    the same two runs already stored is returned instead of being made again."""
    cfg = model_stock_config(store, run_a, run_b)
    return find_model_stock(store, run_a, run_b) or execute_merge(cfg, store, hooks=hooks)


def execute_merge(cfg: RunConfig, store: RunStore, run_id: str | None = None, hooks: RunHooks = NO_HOOKS) -> str:
    """runner.execute for a model_stock config (its model_stock_runs names the two runs): merge, evaluate, store.
    Errors are recorded like a run's: a failed merge says why, a cancelled one is cancelled."""
    from ldifs_core.evaluate import forgetting_report
    from ldifs_core.models import describe_device
    from ldifs_core.runner import StoreRecorder, prepare
    from ldifs_core.weights import run_weights, tuned_from_weights

    run_a, run_b = cfg.model_stock_runs.split(",")
    if run_id is None:
        source_configs(store, run_a, run_b)
        run_id = store.create(cfg.validate())
    store.set_status(run_id, "running")
    recorder = StoreRecorder(store, run_id, hooks)
    started = time.perf_counter()
    try:
        source_configs(store, run_a, run_b)
        recorder.progress(Progress("loading"))
        run = prepare(cfg)
        recorder.check("before merging")
        first, second = run_weights(store, run_a)[1], run_weights(store, run_b)[1]
        weights, ratios = merge_weights(run.base.clip, first, second)
        tuned, head, _ = tuned_from_weights(run.base, weights)
        merge_s = time.perf_counter() - started
        report, arrays = forgetting_report(cfg, run.base, tuned.visual, head, run.test, run.others,
                                           progress=EvaluationProgress(recorder))
    except RunCancelled as cancel:
        store.fail(run_id, "cancelled", str(cancel), [])
        return run_id
    except LabError as err:
        store.fail(run_id, "failed", str(err), [])
        raise
    except Exception as err:  # a bug: still recorded, never left "running"
        store.fail(run_id, "failed", f"Internal error ({type(err).__name__}: {err}). Please report it.", [])
        raise
    total_s = time.perf_counter() - started
    metrics = {"run_id": run_id, "config": cfg.to_dict(), "status": "done", "model": run.base.label,
               "device": describe_device(run.device), **report,
               "timings": {"train_s": 0.0, "eval_s": round(total_s - merge_s, 3), "total_s": round(total_s, 3),
                           "step_ms": 0.0}}
    store.finish(run_id, metrics, arrays, [], weights if cfg.save_weights else None)
    try:  # for the record only: the merged run is complete without it
        disk.write_json(store.run_folder(run_id) / RATIOS_FILE, {"runs": [run_a, run_b], "t": ratios})
    except OSError as err:
        warnings.warn(f"Model Stock's per-tensor t of run {run_id} could not be kept ({disk.os_reason(err)}).",
                      stacklevel=2)
    return run_id
