"""One run, end to end: load, fine-tune, report, store. The CLI, the app's worker and the tests call this.

Several threads may execute runs at once (the app's worker beside a page's WiSE-FT job, tests): the cached
base model and datasets are shared read-only, and every run works on its own private copy of the model.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
from torch import nn

from ldifs_core.config import RunConfig
from ldifs_core.curve import CurveMeter
from ldifs_core.curve_records import Curve
from ldifs_core.datasets import ImageSet, Selection, available_bank, data_version, listing_snapshot, load_subset
from ldifs_core.datasets import decoding
from ldifs_core.errors import BadConfig, DatasetUnavailable, LabError, RunCancelled
from ldifs_core.evaluate import EvalData, dataset_report, forgetting_report, planned_work
from ldifs_core.hooks import NO_HOOKS, EvaluationProgress, Progress, RunHooks, TrainEvent
from ldifs_core.memo import ByteBudgetCache
from ldifs_core.models import FoundationModel, describe_device, load_model, pick_device
from ldifs_core.check import checked_result
from ldifs_core.objectives import OBJECTIVE_TYPES, Objective
from ldifs_core.store import RunStore
from ldifs_core.train import FinetuneResult, finetune
from ldifs_core.weights import run_weights, tuned_from_weights

SUBSET_SEED = 0  # capped pools and test sets are the same for every run, so runs and seeds compare like for like
# What to set to decode fewer images, named as the CLI and the app's Launch page name it.
TRAIN_LIMIT_HINT = "--train-limit ('Fine-tuning pool' in the app)"
EVAL_LIMIT_HINT = "--eval-limit ('Test images per dataset' in the app)"
PROBE_LIMIT_HINT = "--probe-limit / --probe-cap (the linear-probe image limits in the app)"


def _budget_bytes(variable: str, default_gb: float) -> int:
    return int(float(os.environ.get(variable, default_gb)) * 2**30)


def _model_bytes(model: FoundationModel) -> int:
    return sum(t.numel() * t.element_size() for t in model.clip.state_dict().values())


def _set_bytes(data: ImageSet) -> int:
    return data.images.numel() * data.images.element_size() + data.labels.numel() * 8


MODELS = ByteBudgetCache(_budget_bytes("LDIFS_MODEL_CACHE_GB", 3), _model_bytes)
DATA = ByteBudgetCache(_budget_bytes("LDIFS_DATA_CACHE_GB", 4), _set_bytes)


def cached_model(name: str | None, pretrained: str | None) -> FoundationModel:
    """One load serves every thread of the process; the model is read-only (runs take private copies)."""
    return MODELS.get((name, pretrained), lambda: load_model(name, pretrained))


def cached_subset(name: str, split: str, selection: Selection, image_size: int, root: str | None, download: bool,
                  limit_hint: str, progress: decoding.Progress | None = None) -> ImageSet:
    """Shared by every thread: an ImageSet is never written in place. The key holds the dataset's version
    (datasets.data_version), so a folder edited since is loaded afresh; the disk cache makes that quick."""
    key = (name, split, selection, image_size, root, data_version(name, root))
    return DATA.get(key, lambda: load_subset(name, split, selection, image_size=image_size, root=root,
                                             download=download, limit_hint=limit_hint, progress=progress))


@dataclass(frozen=True)
class PreparedRun:
    base: FoundationModel  # this run's private θ₀ on `device`
    train: ImageSet | None  # None for a checked run: nothing trains
    test: ImageSet | None  # None for a check without a task
    others: dict[str, EvalData]
    device: torch.device


def require_classes(data: ImageSet, role: str) -> None:
    present = int((torch.bincount(data.labels, minlength=data.num_classes) > 0).sum())
    if present < 2:
        raise DatasetUnavailable(f"'{data.name}' ({role}) has images of only {present} class here; fine-tuning and "
                                 f"measuring forgetting need at least two. Add a sub-folder (class) with images.")


def prepare(cfg: RunConfig, progress: decoding.Progress | None = None) -> PreparedRun:
    """Everything a run reads, loaded and checked before any training starts. Only the images the limits pick
    are decoded; `progress` hears (images decoded, images to decode) for each split that must be decoded."""
    with listing_snapshot():  # each folder is listed once while this run's data is gathered
        return _prepare(cfg, progress)


def _prepare(cfg: RunConfig, progress: decoding.Progress | None) -> PreparedRun:
    device = pick_device(cfg.device)
    shared = cached_model(cfg.model, cfg.pretrained)
    names = cfg.forgetting_datasets(available_bank())
    if not names:
        raise BadConfig("No dataset is left to check for forgetting: name at least one other dataset.")

    def load(name: str, split: str, selection: Selection, hint: str) -> ImageSet:
        return cached_subset(name, split, selection, shared.image_size, cfg.data_root, cfg.download, hint, progress)

    train = None if cfg.checked else load(cfg.dataset, "train", Selection(cfg.train_limit, SUBSET_SEED),
                                          TRAIN_LIMIT_HINT)
    if train is not None:
        require_classes(train, "fine-tuning task")
    if train is not None and len(train) < cfg.batch_size:
        raise DatasetUnavailable(f"'{cfg.dataset}' has only {len(train)} training images, fewer than the batch size "
                                 f"{cfg.batch_size}. Lower the batch size or add images.")
    others = {name: evaluation_data(cfg, name, shared.image_size, progress) for name in names}
    for name, data in others.items():
        require_classes(data.test, "checked for forgetting")
    test = load(cfg.dataset, "test", Selection(cfg.eval_limit, SUBSET_SEED), EVAL_LIMIT_HINT) if cfg.dataset else None
    return PreparedRun(shared.private_copy(device), train, test, others, device)


def evaluation_data(cfg: RunConfig, name: str, image_size: int, progress: decoding.Progress | None = None) -> EvalData:
    """The fixed probe-train and test subsets on which every run checks `name`."""
    load = lambda split, selection, hint: cached_subset(name, split, selection, image_size, cfg.data_root,
                                                        cfg.download, hint, progress)
    return EvalData(load("train", Selection(cfg.probe_limit, SUBSET_SEED, by_class=True, cap=cfg.probe_cap),
                         PROBE_LIMIT_HINT),
                    load("test", Selection(cfg.eval_limit, SUBSET_SEED), EVAL_LIMIT_HINT))


def forgetting_curve(cfg: RunConfig, run: PreparedRun, hooks: RunHooks) -> CurveMeter | None:
    """The hooks measuring the run's forgetting curve on its test subsets (None when cfg.curve_points is 0)."""
    if not cfg.curve_points:
        return None
    return CurveMeter(cfg, run.base, run.test, {name: data.test for name, data in run.others.items()}, hooks)


def weights_to_save(result: FinetuneResult, objective: str) -> dict[str, torch.Tensor]:
    keep = lambda k: k.startswith("visual.") or OBJECTIVE_TYPES.get(objective, Objective).trains_text  # checked: no
    weights = {f"clip.{k}": v.detach().cpu().contiguous() for k, v in result.clip.state_dict().items() if keep(k)}
    for prefix, head in (("head", result.head), ("initial_head", result.initial_head)):
        if head is None:  # a check without a task has no heads
            continue
        weights.update({f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
    return weights


class StoreRecorder(RunHooks):
    """The caller's hooks, with the run's curves kept for its history.json and its progress written to the store
    on the way (training steps every RECORD_EVERY)."""

    def __init__(self, store: RunStore, run_id: str, caller: RunHooks):
        self.store, self.run_id, self.caller = store, run_id, caller
        self.history: list[dict] = []

    def step(self, event: TrainEvent) -> None:
        self.history.append(event.history_row())
        self.caller.step(event)

    def progress(self, progress: Progress) -> None:
        if progress.worth_recording():
            self.store.update_progress(self.run_id, progress.to_dict())
        self.caller.progress(progress)

    def curve(self, curve: Curve) -> None:
        self.caller.curve(curve)

    def should_stop(self) -> bool:
        return self.caller.should_stop()


def execute(cfg: RunConfig, store: RunStore, run_id: str | None = None, hooks: RunHooks = NO_HOOKS) -> str:
    """Run `cfg` and record it in `store` whatever happens; returns the run id. `hooks` hear its steps and
    progress (loading, training, evaluation) and are asked whether to stop.

    Settings that cannot work raise BadConfig before a new run is recorded; errors found later are recorded as
    failed with their message and re-raised as LabError; cancellation is recorded as cancelled and returns normally.
    """
    kind = OBJECTIVE_TYPES.get(cfg.objective)
    if kind is not None and not kind.trained:  # made from finished runs (model_stock): the plugin says how
        return kind.made(cfg, store, run_id, hooks)
    if run_id is None:
        run_id = store.create(cfg.validate())
    store.set_status(run_id, "running")
    recorder = StoreRecorder(store, run_id, hooks)
    started = time.perf_counter()

    def loading(done: int, total: int) -> None:
        recorder.check(f"while decoding images ({done:,} of {total:,} done)")
        recorder.progress(Progress("loading", images_done=done, images_total=total))

    try:
        recorder.progress(Progress("loading"))
        run = prepare(cfg, loading)
        recorder.check("before training started")
        sequence_started = time.perf_counter()  # a sequence's own work is timed apart (benchmarks/sequence_bench.py)
        start = starting_clip(store, cfg, run.base)
        sequence_s = time.perf_counter() - sequence_started
        meter = None
        if cfg.checked:  # a checkpoint fine-tuned elsewhere takes the fine-tuning's place
            result, checked = checked_result(cfg, run.base, run.test)
        else:
            meter = forgetting_curve(cfg, run, recorder)
            result = finetune(cfg, run.base, run.train, run.device, meter or recorder, start)
        steps = 0 if cfg.checked else cfg.steps
        evaluation = EvaluationProgress(recorder, Progress("evaluating", step=steps, total_steps=steps))
        eval_started = time.perf_counter()
        own_task = (evaluation_data(cfg, cfg.dataset, run.base.image_size)
                    if cfg.dataset and (cfg.sequence_id or cfg.checked) else None)
        if own_task is not None:
            evaluation.plan(cfg.dataset, *planned_work(own_task), last=True)
        report, arrays = forgetting_report(cfg, run.base, result.clip.visual, result.head, run.test, run.others,
                                           progress=evaluation)
        if own_task is not None:
            sequence_started = time.perf_counter()
            report["stage_task"] = stage_task_report(cfg, run, result.clip.visual, own_task, evaluation)
            sequence_s += time.perf_counter() - sequence_started
        eval_s = time.perf_counter() - eval_started
    except RunCancelled as cancel:
        store.fail(run_id, "cancelled", str(cancel), recorder.history)
        return run_id
    except KeyboardInterrupt:
        store.fail(run_id, "cancelled", "Interrupted from the keyboard.", recorder.history)
        raise
    except LabError as err:
        store.fail(run_id, "failed", str(err), recorder.history)
        raise
    except Exception as err:  # a bug: still recorded, never left "running"
        store.fail(run_id, "failed", f"Internal error ({type(err).__name__}: {err}). Please report it.",
                   recorder.history)
        raise
    metrics = {
        "run_id": run_id,
        "config": cfg.to_dict(),
        "status": "done",
        "model": run.base.label,
        "device": describe_device(run.device),
        **report,
        **({"checked": checked} if cfg.checked else {}),
        **({"curve": meter.measured.to_json()} if meter else {}),
        "timings": {"train_s": round(result.train_s, 3), "eval_s": round(eval_s, 3),
                    "total_s": round(time.perf_counter() - started, 3), "step_ms": round(result.step_ms, 3),
                    **({"sequence_s": round(sequence_s, 3)} if cfg.sequence_id else {})},
    }
    weights = weights_to_save(result, cfg.objective) if cfg.save_weights else None
    store.finish(run_id, metrics, arrays, recorder.history, weights)
    return run_id


# -- continual fine-tuning: where a stage starts, and its own task seen like a checked dataset ----------------


def starting_clip(store: RunStore, cfg: RunConfig, base: FoundationModel) -> nn.Module | None:
    """The tuned CLIP of the run `cfg.start_from` (the previous stage), rebuilt on this run's private θ₀; None for
    a run that starts from θ₀."""
    if cfg.start_from is None:
        return None
    _, weights = run_weights(store, cfg.start_from)
    return tuned_from_weights(base, weights)[0]


def stage_task_report(cfg: RunConfig, run: PreparedRun, tuned_visual: nn.Module, task: EvalData,
                      progress: EvaluationProgress | None = None) -> dict:
    """A stage's own task (`task`: its evaluation_data) checked exactly as the other datasets are (zero-shot and
    linear probe, θ₀ vs now), so the forgetting matrix has its diagonal on the same footing as every other cell;
    the last dataset `progress` hears of (planned there beforehand, with `last`)."""
    progress = progress or EvaluationProgress()
    progress.begin(cfg.dataset)
    report = dataset_report(cfg, run.base, tuned_visual, task, with_umap=False, progress=progress)[0]
    progress.end()
    return report
