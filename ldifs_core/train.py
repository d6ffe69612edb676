"""The one fine-tuning loop: the objective's optimiser (AdamW unless it says otherwise), warmup + cosine, gradient
clipping, bf16 autocast on CUDA, an event for every step, cancellation within one step, and a guard against
non-finite losses. What is optimised, and which
head comes out, is the objective's business (objectives.py)."""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ldifs_core.config import RunConfig
from ldifs_core.datasets import ImageSet
from ldifs_core.encoding import autocast_for, model_inputs, random_shift
from ldifs_core.errors import TrainingDiverged
from ldifs_core.hooks import NO_HOOKS, Progress, RunHooks, TrainEvent
from ldifs_core.models import FoundationModel
from ldifs_core.objectives import OBJECTIVE_TYPES, Batch, Objective, TrainingSetup

ACCELERATOR_READ_EVERY = 10


def host_read_interval(device: torch.device) -> int:
    """Steps between the host's reads of the losses. Each read waits for the device; on an accelerator the loop
    reads every ACCELERATOR_READ_EVERY steps, so the events of those steps arrive together and a non-finite loss
    is caught at the next read. On the CPU there is nothing to wait for: every step."""
    return 1 if device.type == "cpu" else ACCELERATOR_READ_EVERY


@dataclass
class FinetuneResult:
    clip: nn.Module  # the tuned copy of the whole CLIP (only flyp and flyp_ce change its text tower), on the run's device
    head: nn.Linear | None  # None: a checked checkpoint without a task
    initial_head: nn.Linear | None
    train_s: float = 0.0
    step_ms: float = 0.0


def lr_factor(step: int, steps: int, warmup_steps: int) -> float:
    """Linear warmup, then a cosine from the end of warmup down to 0 at `steps` (fine-tuning and pretraining)."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    progress = max(0, step - warmup_steps) / max(1, steps - warmup_steps)
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_order(n: int, steps: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Epoch-wise shuffles, sliced into batches (the last short batch of an epoch is dropped)."""
    per_epoch = max(1, n // batch_size)
    perm = torch.randperm(n, generator=generator)
    for step in range(steps):
        k = step % per_epoch
        if k == 0 and step:
            perm = torch.randperm(n, generator=generator)
        yield perm[k * batch_size:(k + 1) * batch_size]


def set_training_mode(clip: nn.Module, cfg: RunConfig, objective: Objective) -> None:
    """Train mode where weights train. BatchNorm statistics stay θ₀'s when the encoder is frozen (`lp`) or
    cfg.bn is "frozen"; a text tower that does not train stays in eval mode."""
    clip.eval()
    if objective.freezes_encoder:
        return
    clip.visual.train()
    if objective.trains_text:
        clip.train()
    if cfg.bn == "frozen":
        for module in clip.visual.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def finetune(cfg: RunConfig, base: FoundationModel, train: ImageSet, device: torch.device,
             hooks: RunHooks = NO_HOOKS, start: nn.Module | None = None) -> FinetuneResult:
    """Fine-tune a copy of `start` (default: `base`, a run's private θ₀ on `device`) on `train`; neither changes.
    `hooks` hear every step (its event, its progress record and the weights after it) and are asked before each
    step whether to stop.

    A stage of a sequence passes the previous stage's CLIP as `start`: the new head is initialised on it (its
    text tower, which only FLYP tunes, or a probe on its image tower), and with cfg.anchor "previous" LDIFS and
    L2-SP compare to it instead of θ₀.
    """
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    kind = OBJECTIVE_TYPES[cfg.objective]
    begin = base if start is None else base.with_clip(start)
    head = kind.initial_head(cfg, begin, train)
    start_head = copy.deepcopy(head).cpu().requires_grad_(False)
    tuned = copy.deepcopy(begin.clip)
    anchor = begin if cfg.anchor == "previous" else base
    objective = kind(TrainingSetup(cfg, anchor, tuned, head, train, device))
    trainable = objective.trainable_parameters()
    for p in trainable:
        p.requires_grad_(True)
    optimizer = objective.make_optimizer(trainable)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup_steps))
    set_training_mode(tuned, cfg, objective)

    started = time.perf_counter()
    pending: list[tuple[int, torch.Tensor, float]] = []  # steps whose loss parts the host has not read yet
    read_every = host_read_interval(device)

    def read_pending() -> None:
        """One host synchronisation for the pending steps: check their losses, then report each step."""
        values = torch.stack([losses for _, losses, _ in pending]).tolist()
        elapsed = time.perf_counter() - started
        for (step, _, lr), (loss, *parts) in zip(pending, values):
            if not math.isfinite(loss):
                raise TrainingDiverged(f"The loss became {loss} at step {step}: training stopped. Lower the "
                                       f"learning rate (now {cfg.lr:g})"
                                       + (f" or λ (now {cfg.effective_lam:g})" if cfg.regularised else "")
                                       + " and start again.")
            event = TrainEvent(step, cfg.steps, loss, dict(zip(part_names, parts)), lr,
                               step * cfg.batch_size / elapsed, elapsed / step * (cfg.steps - step))
            hooks.step(event)
            hooks.progress(Progress.training(event))
        pending.clear()

    part_names: list[str] = []
    hooks.weights(0, tuned)
    for step, idx in enumerate(batch_order(len(train), cfg.steps, cfg.batch_size, generator), start=1):
        hooks.check(f"at step {step - 1} of {cfg.steps}")
        raw, labels = train.images[idx], train.labels[idx]
        if cfg.augment:
            raw = random_shift(raw, generator)
        if device.type == "cuda":  # page-locked, so the copies below overlap with the previous step's kernels
            raw, labels = raw.pin_memory(), labels.pin_memory()
        batch = Batch(model_inputs(base, raw, device), labels.to(device, non_blocking=True), idx)
        with autocast_for(device):
            loss, parts = objective.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        optimizer.step()
        pending.append((step, torch.stack([loss.detach().float(), *(v.float() for v in parts.values())]),
                        optimizer.param_groups[0]["lr"]))
        part_names = list(parts)
        scheduler.step()
        hooks.weights(step, tuned)
        if step % read_every == 0 or step == cfg.steps:
            read_pending()
    train_s = time.perf_counter() - started
    objective.finalise()
    tuned.eval().requires_grad_(False)
    final_head = objective.final_head()
    return FinetuneResult(tuned, final_head, start_head, train_s, 1000 * train_s / cfg.steps)
