"""One run, end to end: load, fine-tune, report, store. The CLI, the app's worker and the tests call this."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file

from ldifs_core.config import RunConfig, TrainEvent
from ldifs_core.datasets import ImageSet, available_bank, load_split
from ldifs_core.errors import BadConfig, DatasetUnavailable, LabError, RunCancelled, RunNotFound
from ldifs_core.evaluate import EvalData, forgetting_report, mix_heads, wise_ft
from ldifs_core.models import FoundationModel, describe_device, load_model, pick_device
from ldifs_core.store import RunStore
from ldifs_core.train import FinetuneResult, finetune


SUBSET_SEED = 0  # capped pools and test sets are the same for every run, so runs and seeds compare like for like


@lru_cache(maxsize=4)
def cached_model(name: str | None, pretrained: str | None) -> FoundationModel:
    """Models are read-only once loaded (training tunes a copy), so one load serves every run."""
    return load_model(name, pretrained)


@lru_cache(maxsize=32)
def cached_split(name: str, split: str, image_size: int, root: str | None, download: bool) -> ImageSet:
    return load_split(name, split, image_size=image_size, root=root, download=download)


def eval_dataset_names(cfg: RunConfig) -> list[str]:
    names = cfg.eval_datasets if cfg.eval_datasets is not None else [n for n in available_bank() if n != cfg.dataset]
    return [n for n in names if n != cfg.dataset]


@dataclass
class PreparedRun:
    model: FoundationModel
    train: ImageSet
    test: ImageSet
    others: dict[str, EvalData]
    device: torch.device


def prepare(cfg: RunConfig) -> PreparedRun:
    """Everything a run reads, loaded (and validated) before any training starts."""
    cfg.validate()
    device = pick_device(cfg.device)
    model = cached_model(cfg.model, cfg.pretrained)
    model.clip.to(device)  # the base model is evaluated where the run trains
    load = lambda name, split: cached_split(name, split, model.image_size, cfg.data_root, cfg.download)
    train, test = load(cfg.dataset, "train"), load(cfg.dataset, "test")
    if len(train) < cfg.batch_size:
        raise DatasetUnavailable(f"'{cfg.dataset}' has only {len(train)} training images, fewer than the batch size "
                                 f"{cfg.batch_size}. Lower the batch size or add images.")
    others = {name: EvalData(load(name, "train").subset(cfg.probe_limit, SUBSET_SEED),
                             load(name, "test").subset(cfg.eval_limit, SUBSET_SEED))
              for name in eval_dataset_names(cfg)}
    return PreparedRun(model, train.subset(cfg.train_limit, SUBSET_SEED), test.subset(cfg.eval_limit, SUBSET_SEED),
                       others, device)


def weights_to_save(result: FinetuneResult, objective: str) -> dict[str, torch.Tensor]:
    keep = lambda k: k.startswith("visual.") or objective == "flyp"
    weights = {f"clip.{k}": v.contiguous() for k, v in result.clip.state_dict().items() if keep(k)}
    for prefix, head in (("head", result.head), ("initial_head", result.initial_head)):
        weights.update({f"{prefix}.{k}": v.detach().contiguous() for k, v in head.state_dict().items()})
    return weights


def execute(cfg: RunConfig, store: RunStore, run_id: str | None = None,
            on_event: Callable[[TrainEvent], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> str:
    """Run `cfg` and record it in `store` whatever happens; returns the run id.

    Errors a user caused are recorded as failed with their message and re-raised as LabError;
    cancellation is recorded as cancelled and returns normally.
    """
    run_id = run_id or store.create(cfg)
    store.set_status(run_id, "running")
    history: list[dict] = []
    started = time.perf_counter()

    def record(event: TrainEvent) -> None:
        history.append({"step": event.step, "loss": event.loss, **event.parts, "lr": event.lr,
                        "images_per_s": event.images_per_s})
        if event.step == event.total_steps or event.step % 5 == 0:
            store.update_progress(run_id, {"phase": "training", "step": event.step, "total_steps": event.total_steps,
                                           "loss": event.loss, "parts": event.parts, "eta_s": event.eta_s,
                                           "images_per_s": event.images_per_s})
        if on_event is not None:
            on_event(event)

    try:
        store.update_progress(run_id, {"phase": "loading"})
        run = prepare(cfg)
        if should_stop is not None and should_stop():
            raise RunCancelled("Cancelled before training started.")
        result = finetune(cfg, run.model, run.train, run.device, record, should_stop)
        store.update_progress(run_id, {"phase": "evaluating", "step": cfg.steps, "total_steps": cfg.steps})
        eval_started = time.perf_counter()
        report, arrays = forgetting_report(cfg, run.model, result.clip.visual, result.head, run.test, run.others,
                                           should_stop=should_stop)
        eval_s = time.perf_counter() - eval_started
    except RunCancelled as cancel:
        store.fail(run_id, "cancelled", str(cancel), history)
        return run_id
    except KeyboardInterrupt:
        store.fail(run_id, "cancelled", "Interrupted from the keyboard.", history)
        raise
    except LabError as err:
        store.fail(run_id, "failed", str(err), history)
        raise
    except Exception as err:  # a bug: still recorded, never left "running"
        store.fail(run_id, "failed", f"Internal error ({type(err).__name__}: {err}). Please report it.", history)
        raise
    metrics = {
        "run_id": run_id,
        "config": cfg.to_dict(),
        "status": "done",
        "model": run.model.label,
        "device": describe_device(run.device),
        **report,
        "timings": {"train_s": round(result.train_s, 3), "eval_s": round(eval_s, 3),
                    "total_s": round(time.perf_counter() - started, 3), "step_ms": round(result.step_ms, 3)},
    }
    arrays["history_loss"] = np.array([h["loss"] for h in history], dtype=np.float32)
    store.finish(run_id, metrics, arrays, history, weights_to_save(result, cfg.objective) if cfg.save_weights else None)
    return run_id


def wise_ft_metrics(store: RunStore, run_id: str, alpha: float, with_umap: bool = False) -> dict:
    """Evaluate WiSE-FT (1 − α)·θ₀ + α·θ of a finished run without retraining."""
    record = store.get(run_id)
    path = store.weights_path(run_id)
    if path is None:
        raise RunNotFound(f"Run {run_id} kept no weights (save_weights was off), so WiSE-FT cannot mix them. "
                          f"Run it again with weights saved.")
    if not 0.0 <= alpha <= 1.0:
        raise BadConfig(f"WiSE-FT α must be between 0 and 1, got {alpha}.")
    cfg = record.config
    run = prepare(cfg)
    weights = load_file(str(path))
    tuned = wise_ft_inputs(run.model, weights)
    mixed_clip = wise_ft(run.model.clip, tuned.clip, alpha)
    head = mix_heads(tuned.initial_head, tuned.head, alpha)
    report, _ = forgetting_report(cfg, run.model, mixed_clip.visual, head, run.test, run.others, with_umap)
    return {"run_id": run_id, "alpha": alpha, **report}


def wise_ft_inputs(model: FoundationModel, weights: dict[str, torch.Tensor]) -> FinetuneResult:
    """Rebuild a run's tuned CLIP and heads from its saved weights."""
    clip = copy.deepcopy(model.clip)
    state = clip.state_dict()
    state.update({k[len("clip."):]: v for k, v in weights.items() if k.startswith("clip.")})
    clip.load_state_dict(state)
    heads = {}
    for prefix in ("head", "initial_head"):
        weight = weights[f"{prefix}.weight"]
        head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        head.load_state_dict({"weight": weight, "bias": weights[f"{prefix}.bias"]})
        heads[prefix] = head.requires_grad_(False)
    return FinetuneResult(clip.eval(), heads["head"], heads["initial_head"])

