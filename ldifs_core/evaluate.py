"""The one evaluation path: what fine-tuning did, per dataset and per concept, used by CLI, app and tests.

Zero-shot heads always come from the ORIGINAL text tower, so the report measures the image tower.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ldifs_core import drift
from ldifs_core.config import RunConfig
from ldifs_core.datasets import ImageSet
from ldifs_core.encoding import encode_images, module_device, zero_shot_head, zero_shot_predictions
from ldifs_core.errors import RunCancelled
from ldifs_core.images import to_model_input
from ldifs_core.models import FoundationModel
from ldifs_core.probe import fit_linear_probe


@dataclass
class EvalData:
    """A dataset's capped train part (for probes) and test part (for accuracies)."""

    train: ImageSet
    test: ImageSet


class FeatureCache:
    """Features of unchanging weights (the base model) per (weights, dataset, split): probes reuse them."""

    def __init__(self):
        self._store: dict[tuple, torch.Tensor] = {}

    def get(self, key: tuple, compute) -> torch.Tensor:
        if key not in self._store:
            self._store[key] = compute()
        return self._store[key]


BASE_FEATURES = FeatureCache()


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (predictions == labels).float().mean().item() if len(labels) else float("nan")


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    out = []
    for c in range(num_classes):
        members = labels == c
        out.append(accuracy(predictions[members], labels[members]) if members.any() else None)
    return out


def base_train_features(model: FoundationModel, data: EvalData) -> torch.Tensor:
    key = (model.name, model.pretrained, data.train.name, "train", len(data.train), int(data.train.labels.sum()))
    return BASE_FEATURES.get(key, lambda: encode_images(model.clip.visual, data.train.images, model))


def dataset_report(cfg: RunConfig, base: FoundationModel, tuned_visual: nn.Module, data: EvalData,
                   with_umap: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """Before/after zero-shot, linear probe, per-class accuracy, per-layer distance and drift for one dataset."""
    test = data.test
    device = module_device(base.clip)
    inputs = lambda a, b: to_model_input(test.images[a:b].to(device), base.image_size, base.mean, base.std)
    pre, post, per_layer = drift.paired_features(base.clip.visual, tuned_visual, inputs, len(test), cfg.ldifs_taps,
                                                 cfg.ldifs_variant)
    head = zero_shot_head(base, test.class_names, test.templates)
    zs_pre, zs_post = zero_shot_predictions(pre, head), zero_shot_predictions(post, head)

    probe_before = fit_linear_probe(base_train_features(base, data), data.train.labels, test.num_classes,
                                    seed=cfg.seed)
    probe_after = fit_linear_probe(encode_images(tuned_visual, data.train.images, base), data.train.labels,
                                   test.num_classes, seed=cfg.seed)
    before_c = per_class_accuracy(zs_pre, test.labels, test.num_classes)
    after_c = per_class_accuracy(zs_post, test.labels, test.num_classes)
    report = {
        "dataset": test.name,
        "zs_before": accuracy(zs_pre, test.labels),
        "zs_after": accuracy(zs_post, test.labels),
        "lp_before": probe_before.accuracy(pre, test.labels),
        "lp_after": probe_after.accuracy(post, test.labels),
        "per_class": [{"label": c, "class_name": name, "before": b, "after": a, "n": int((test.labels == c).sum())}
                      for c, (name, b, a) in enumerate(zip(test.class_names, before_c, after_c)) if b is not None],
        "layer_distance": [float(d) for d in per_layer],
        "ldifs_distance": float(per_layer.mean()),
        "centroid_shift": drift.centroid_shift(pre, post, test.labels),
        "knn_overlap": drift.knn_overlap(pre, post),
        "test_images": len(test),
    }
    arrays = {}
    if with_umap and cfg.umap_points > 0:
        ids = torch.randperm(len(test), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.umap_points].sort().values
        umap_pre, umap_post = drift.joint_umap(pre[ids].numpy(), post[ids].numpy(), cfg.seed)
        arrays = {f"umap_pre/{test.name}": umap_pre, f"umap_post/{test.name}": umap_post,
                  f"umap_labels/{test.name}": test.labels[ids].numpy(), f"umap_ids/{test.name}": ids.numpy()}
    return report, arrays


def downstream_report(base: FoundationModel, tuned_visual: nn.Module, head: nn.Linear, test: ImageSet) -> dict:
    """Fine-tuning task: zero-shot of the pre-trained model vs the tuned model with its trained head."""
    zs_head = zero_shot_head(base, test.class_names, test.templates)
    pre = encode_images(base.clip.visual, test.images, base)
    post = encode_images(tuned_visual, test.images, base)
    with torch.no_grad():
        tuned_predictions = head(F.normalize(post, dim=-1)).argmax(1)
    zs_pre = zero_shot_predictions(pre, zs_head)
    before_c = per_class_accuracy(zs_pre, test.labels, test.num_classes)
    after_c = per_class_accuracy(tuned_predictions, test.labels, test.num_classes)
    return {
        "dataset": test.name,
        "zero_shot_before": accuracy(zs_pre, test.labels),
        "accuracy_after": accuracy(tuned_predictions, test.labels),
        "zero_shot_after": accuracy(zero_shot_predictions(post, zs_head), test.labels),
        "per_class": [{"label": c, "class_name": name, "before": b, "after": a}
                      for c, (name, b, a) in enumerate(zip(test.class_names, before_c, after_c)) if b is not None],
    }


def forgetting_report(cfg: RunConfig, base: FoundationModel, tuned_visual: nn.Module, head: nn.Linear,
                      downstream_test: ImageSet, others: dict[str, EvalData], with_umap: bool = True,
                      should_stop: Callable[[], bool] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Downstream gain and, for every other dataset, what the image tower lost.

    `tuned_visual` is moved to where the base model lives; `head` stays on the CPU with the features.
    `should_stop` is checked between datasets, so a cancel during evaluation takes effect in seconds.
    """
    tuned_visual = tuned_visual.to(module_device(base.clip))
    downstream = downstream_report(base, tuned_visual, head, downstream_test)
    forgetting, arrays = [], {}
    for data in others.values():
        if should_stop is not None and should_stop():
            raise RunCancelled(f"Cancelled while evaluating (before {data.test.name}).")
        report, extra = dataset_report(cfg, base, tuned_visual, data, with_umap)
        forgetting.append(report)
        arrays.update(extra)
    mean = lambda key: float(np.mean([r[f"{key}_after"] - r[f"{key}_before"] for r in forgetting])) if forgetting else 0.0
    return {"downstream": downstream, "forgetting": forgetting,
            "mean_zs_delta": mean("zs"), "mean_lp_delta": mean("lp")}, arrays


def wise_ft(base_clip: nn.Module, tuned_clip: nn.Module, alpha: float) -> nn.Module:
    """WiSE-FT: weights (1 - α)·θ₀ + α·θ, as a new model (α = 0 gives θ₀, α = 1 gives θ)."""
    mixed = copy.deepcopy(tuned_clip)
    base_state = base_clip.state_dict()
    mixed.load_state_dict({k: torch.lerp(base_state[k].to(v.device).float(), v.float(), alpha).to(v.dtype)
                           if v.is_floating_point()
                           else v for k, v in tuned_clip.state_dict().items()})
    return mixed


def mix_heads(initial: nn.Linear, final: nn.Linear, alpha: float) -> nn.Linear:
    head = copy.deepcopy(final)
    with torch.no_grad():
        head.weight.copy_(torch.lerp(initial.weight, final.weight, alpha))
        head.bias.copy_(torch.lerp(initial.bias, final.bias, alpha))
    return head

