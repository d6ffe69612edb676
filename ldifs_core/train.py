"""The one fine-tuning loop: AdamW, warmup + cosine, gradient clipping, bf16 autocast on CUDA,
events after every step, cancellation within one step, and a guard against non-finite losses."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ldifs_core.config import RunConfig, TrainEvent
from ldifs_core.datasets import ImageSet
from ldifs_core.encoding import autocast_for, encode_images, zero_shot_head
from ldifs_core.errors import RunCancelled, TrainingDiverged
from ldifs_core.features import forward_with_taps
from ldifs_core.images import random_shift, to_model_input
from ldifs_core.models import FoundationModel
from ldifs_core.objectives import FLYP, L2SP, LDIFS, Batch, LinearProbeOnly, Objective, TunedClassifier
from ldifs_core.probe import fit_linear_probe


@dataclass
class FinetuneResult:
    clip: nn.Module  # a tuned copy of the whole CLIP (only FLYP changes its text tower)
    head: nn.Linear
    initial_head: nn.Linear
    train_s: float = 0.0
    step_ms: float = 0.0


def initial_head(cfg: RunConfig, model: FoundationModel, train: ImageSet) -> nn.Linear:
    """ZS-init: the text tower's class embeddings times CLIP's logit scale. LP-init: a fitted linear probe.

    The `lp` objective always starts from the fitted probe: it is the linear-probe baseline.
    """
    head = nn.Linear(model.clip.visual.output_dim, train.num_classes)
    if cfg.init == "zs" and cfg.objective != "lp":
        weight = zero_shot_head(model, train.class_names, train.templates) * model.clip.logit_scale.exp().item()
        bias = torch.zeros(train.num_classes)
    else:
        probe_pool = train.subset(cfg.probe_limit, cfg.seed)
        features = encode_images(model.clip.visual, probe_pool.images, model)
        probe = fit_linear_probe(features, probe_pool.labels, train.num_classes, seed=cfg.seed)
        weight, bias = probe.weight, probe.bias
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head


def build_objective(cfg: RunConfig, model: FoundationModel, classifier: TunedClassifier, tuned_clip: nn.Module,
                    frozen_visual: nn.Module, train: ImageSet, device: torch.device) -> Objective:
    if cfg.objective == "ldifs":
        cache = precompute_frozen_taps(cfg, model, frozen_visual, train, device) if cfg.precompute_frozen else None
        return LDIFS(classifier, cfg.effective_lam, frozen_visual, cfg.ldifs_taps, cfg.ldifs_variant, cache)
    if cfg.objective == "l2sp":
        return L2SP(classifier, cfg.effective_lam, frozen_visual)
    if cfg.objective == "flyp":
        prompts = [t.format(c) for c in train.class_names for t in train.templates]
        tokens = model.tokenizer(prompts).view(train.num_classes, len(train.templates), -1)
        return FLYP(classifier, tuned_clip, tokens, cfg.seed)
    if cfg.objective == "lp":
        return LinearProbeOnly(classifier)
    return Objective(classifier)


@torch.no_grad()
def precompute_frozen_taps(cfg: RunConfig, model: FoundationModel, frozen_visual: nn.Module, train: ImageSet,
                           device: torch.device, batch_size: int = 512) -> list[torch.Tensor]:
    """θ₀'s tapped features for the whole pool (fp16), so each step skips the frozen forward pass."""
    layers: list[list[torch.Tensor]] = []
    for start in range(0, len(train), batch_size):
        x = to_model_input(train.images[start:start + batch_size].to(device), model.image_size, model.mean, model.std)
        with autocast_for(device):
            taps = forward_with_taps(frozen_visual, x, cfg.ldifs_taps)[1]
        if not layers:
            layers = [[] for _ in taps]
        for chunks, tap in zip(layers, taps):
            chunks.append(tap.to(torch.float16))
    return [torch.cat(chunks).to(device) for chunks in layers]


def lr_factor(step: int, cfg: RunConfig) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    progress = max(0, step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_order(n: int, steps: int, batch_size: int, generator: torch.Generator):
    """Epoch-wise shuffles, sliced into batches (the last short batch of an epoch is dropped)."""
    per_epoch = max(1, n // batch_size)
    perm = torch.randperm(n, generator=generator)
    for step in range(steps):
        k = step % per_epoch
        if k == 0 and step:
            perm = torch.randperm(n, generator=generator)
        yield perm[k * batch_size:(k + 1) * batch_size]


def flyp_head(model: FoundationModel, tuned_clip: nn.Module, train: ImageSet) -> nn.Linear:
    """FLYP classifies with its own tuned text tower's class embeddings."""
    tuned = copy.copy(model)
    tuned.clip = tuned_clip
    head = nn.Linear(tuned_clip.visual.output_dim, train.num_classes)
    with torch.no_grad():
        head.weight.copy_(zero_shot_head(tuned, train.class_names, train.templates) * tuned_clip.logit_scale.exp())
        head.bias.zero_()
    return head.requires_grad_(False)


def finetune(cfg: RunConfig, model: FoundationModel, train: ImageSet, device: torch.device,
             on_event: Callable[[TrainEvent], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> FinetuneResult:
    """Fine-tune a copy of `model` on `train`; `model` itself is never modified."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    tuned_clip = copy.deepcopy(model.clip).to(device)
    frozen_visual = copy.deepcopy(model.clip.visual).to(device).eval().requires_grad_(False)
    head = initial_head(cfg, model, train).to(device)
    start_head = copy.deepcopy(head).cpu()
    classifier = TunedClassifier(tuned_clip.visual, head)
    objective = build_objective(cfg, model, classifier, tuned_clip, frozen_visual, train, device)

    tuned_clip.requires_grad_(False)
    trainable = list(head.parameters())
    if not objective.freezes_encoder:
        tuned_clip.visual.requires_grad_(True)
        trainable += list(tuned_clip.visual.parameters())
    if objective.trains_text:
        text_params = [p for n, p in tuned_clip.named_parameters() if not n.startswith("visual.") and n != "logit_scale"]
        for p in text_params:
            p.requires_grad_(True)
        trainable += text_params
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    tuned_clip.train()

    started = time.perf_counter()
    for step, idx in enumerate(batch_order(len(train), cfg.steps, cfg.batch_size, generator)):
        if should_stop is not None and should_stop():
            raise RunCancelled(f"Cancelled at step {step} of {cfg.steps}.")
        raw = train.images[idx]
        if cfg.augment:
            raw = random_shift(raw, generator)
        batch = Batch(to_model_input(raw.to(device), model.image_size, model.mean, model.std),
                      train.labels[idx].to(device), idx)
        with autocast_for(device):
            loss, parts = objective.loss(batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"The loss became {loss.item()} at step {step + 1}: training stopped. Lower the "
                                   f"learning rate (now {cfg.lr:g}) or λ (now {cfg.effective_lam:g}) and start again.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        elapsed = time.perf_counter() - started
        event = TrainEvent(step + 1, cfg.steps, loss.item(), parts, optimizer.param_groups[0]["lr"],
                           (step + 1) * cfg.batch_size / elapsed, elapsed / (step + 1) * (cfg.steps - step - 1))
        if on_event is not None:
            on_event(event)
    train_s = time.perf_counter() - started
    tuned_clip.eval().requires_grad_(False).cpu()
    head = flyp_head(model, tuned_clip, train) if objective.trains_text else head.cpu().eval().requires_grad_(False)
    return FinetuneResult(tuned_clip, head, start_head, train_s, 1000 * train_s / cfg.steps)
