"""Forgetting over training: every few steps, the zero-shot accuracy of the image tower being tuned on a small
fixed subset of the task and of each checked dataset, with the ORIGINAL text tower's heads (as the final report
measures forgetting), and no checkpoint kept.

`CurveMeter` is a layer of run hooks: the training loop hands every hook the weights after each step
(`RunHooks.weights`), the meter measures the steps its schedule names and tells the hooks behind it each point
(`RunHooks.curve`). The subsets and heads are prepared once, before training. A measurement never changes the
run: the tower is measured in eval mode (BatchNorm statistics untouched, no dropout) and given back in the modes it
had, and nothing in it draws from a random generator, so the same seed gives the same final metrics with the curve
on or off (tests/test_curve.py).
"""
from __future__ import annotations

import math
from dataclasses import replace

from torch import nn

from ldifs_core.config import RunConfig
from ldifs_core.curve_records import Curve, CurvePoint
from ldifs_core.datasets import ImageSet
from ldifs_core.encoding import encode_images, zero_shot_head, zero_shot_predictions
from ldifs_core.hooks import Progress, RunHooks, TrainEvent
from ldifs_core.models import FoundationModel
from ldifs_core.stats import accuracy

CURVE_SEED = 0  # the curve subsets are the same for every run and every seed, so curves compare like for like


def curve_every(steps: int, points: int) -> int:
    """Training steps between two points of a curve of about `points` points over `steps` steps."""
    return max(1, math.ceil(steps / points))


def measured_at(step: int, steps: int, every: int) -> bool:
    """Whether the curve has a point after `step` steps: the start, every `every` steps, and the last."""
    return step % every == 0 or step == steps


class CurveMeter(RunHooks):
    """The hooks behind it, with the forgetting-over-training curve measured on the way."""

    def __init__(self, cfg: RunConfig, base: FoundationModel, task: ImageSet, checked: dict[str, ImageSet],
                 caller: RunHooks):
        self.base, self.caller, self.steps = base, caller, cfg.steps
        self.every = curve_every(cfg.steps, cfg.curve_points)
        sets = {cfg.dataset: task, **checked}
        self.subsets = {name: data.subset(cfg.curve_images, CURVE_SEED) for name, data in sets.items()}
        self.heads = {name: zero_shot_head(base, data.class_names, data.templates)
                      for name, data in self.subsets.items()}
        self.measured = Curve(cfg.dataset, self.every, {name: len(data) for name, data in self.subsets.items()})

    def weights(self, step: int, clip: nn.Module) -> None:
        if measured_at(step, self.steps, self.every):
            self.measured.points.append(CurvePoint(step, self.measure(clip.visual)))
            self.caller.curve(replace(self.measured, points=list(self.measured.points)))
        self.caller.weights(step, clip)

    def measure(self, visual: nn.Module) -> dict[str, float]:
        """Zero-shot accuracy (%) per dataset of `visual` as it is now; its modes are restored afterwards."""
        modes = [(module, module.training) for module in visual.modules()]
        visual.eval()
        try:
            accuracies = {}
            for name, data in self.subsets.items():
                self.check(f"while measuring the forgetting curve on {name}")
                features = encode_images(visual, data.images, self.base)
                accuracies[name] = round(accuracy(zero_shot_predictions(features, self.heads[name]), data.labels), 3)
            return accuracies
        finally:
            for module, training in modes:
                module.training = training

    # -- the rest passes through ------------------------------------------------------------------------------

    def step(self, event: TrainEvent) -> None:
        self.caller.step(event)

    def progress(self, progress: Progress) -> None:
        self.caller.progress(progress)

    def curve(self, curve: Curve) -> None:
        self.caller.curve(curve)

    def should_stop(self) -> bool:
        return self.caller.should_stop()
