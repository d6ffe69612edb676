"""The one evaluation path: what fine-tuning did, per dataset and per concept, used by CLI, app and tests.

Zero-shot heads always come from the ORIGINAL text tower, so the report measures the image tower. Every
accuracy carries its n and a 95 % interval (stats.py). `base` is always a run's private copy of θ₀, on the
device where the run evaluates.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ldifs_core import drift, stats
from ldifs_core.config import SCHEMA_VERSION, RunConfig
from ldifs_core.datasets import ImageSet
from ldifs_core.drift_records import displacement_key, features_key
from ldifs_core.encoding import encode_images, model_inputs, module_device, zero_shot_head, zero_shot_predictions
from ldifs_core.hooks import EvaluationProgress
from ldifs_core.image_records import image_records
from ldifs_core.memo import ByteBudgetCache
from ldifs_core.models import FoundationModel
from ldifs_core.probe import LinearProbe, fit_linear_probe

Correct = tuple[torch.Tensor, torch.Tensor]  # per-image correctness before and after, for the paired statistics


@dataclass(frozen=True)
class EvalData:
    """A dataset's probe-train subset (per class) and its test subset."""

    train: ImageSet
    test: ImageSet


def _entry_bytes(entry: torch.Tensor | LinearProbe) -> int:
    tensors = [entry] if isinstance(entry, torch.Tensor) else [entry.weight, entry.bias]
    return sum(t.numel() * t.element_size() for t in tensors)


# What depends on θ₀ alone (probe-train features, the fitted "before" probe), per (model, dataset subset and its
# version, device type, seed), shared by every run of the process: every run and every WiSE-FT mix has the same
# "before". Entries are never modified after they are computed (callers only read them).
BASE_CACHE = ByteBudgetCache(int(float(os.environ.get("LDIFS_FEATURE_CACHE_GB", 1)) * 2**30), _entry_bytes)


def probe_before(base: FoundationModel, data: ImageSet, seed: int,
                 on_batch: Callable[[int], None] | None = None) -> LinearProbe:
    """The linear probe fitted on θ₀'s features of `data` (the probe-train subset); `on_batch` hears the images
    encoded when they are not cached."""
    key = (base.name, base.pretrained, data.name, data.split, data.selection, data.version,
           module_device(base.clip).type)
    features = BASE_CACHE.get(key, lambda: encode_images(base.clip.visual, data.images, base, on_batch=on_batch))
    return BASE_CACHE.get((*key, "probe", seed),
                          lambda: fit_linear_probe(features, data.labels, data.num_classes, seed=seed))


def delta_fields(prefix: str, summary: dict) -> dict:
    """stats.summary of one probe as the metrics.json keys of a forgetting dataset (zs_before, zs_delta_ci, …)."""
    return {f"{prefix}_before": summary["before"], f"{prefix}_before_ci": summary["before_ci"],
            f"{prefix}_after": summary["after"], f"{prefix}_after_ci": summary["after_ci"],
            f"{prefix}_delta": summary["change"], f"{prefix}_delta_ci": summary["change_ci"]}


def planned_work(data: EvalData, towers: int = 1) -> tuple[int, int]:
    """(images encoded, probes fitted) by `dataset_reports` for `towers` tuned towers: the test set through θ₀'s
    tower and each tuned one, the probe-train set likewise (θ₀'s often cached), and a probe on each."""
    return (1 + towers) * (len(data.test) + len(data.train)), 1 + towers


def dataset_reports(cfg: RunConfig, base: FoundationModel, tuned_visuals: Sequence[nn.Module], data: EvalData,
                    with_umap: bool = True, progress: EvaluationProgress | None = None,
                    ) -> list[tuple[dict, dict[str, np.ndarray], dict[str, Correct]]]:
    """For each tuned tower: before/after zero-shot and linear probe (with intervals), per-concept rows, per-layer
    distance and drift for one dataset; also the per-image correctness the mean-over-datasets interval is
    bootstrapped from. θ₀'s features, zero-shot head and probe are computed once for all the towers, and each
    test batch goes through θ₀'s tower once, so a WiSE-FT path pays one forward pass of each mix."""
    progress = progress or EvaluationProgress()
    test = data.test
    device = module_device(base.clip)
    pre, posts, per_layers = drift.paired_features(base.clip.visual, tuned_visuals,
                                                   lambda a, b: model_inputs(base, test.images[a:b], device),
                                                   len(test), cfg.ldifs_taps, cfg.ldifs_variant,
                                                   on_batch=progress.add_encoded)
    head = zero_shot_head(base, test.class_names, test.templates)
    before = probe_before(base, data.train, cfg.seed, on_batch=progress.add_encoded)
    progress.add_probe()
    reports = []
    for tuned_visual, post, per_layer in zip(tuned_visuals, posts, per_layers):
        probe_after = fit_linear_probe(encode_images(tuned_visual, data.train.images, base,
                                                     on_batch=progress.add_encoded),
                                       data.train.labels, test.num_classes, seed=cfg.seed)
        progress.add_probe()
        reports.append(_measured(cfg, data, pre, post, per_layer, head, before, probe_after, with_umap))
    return reports


def dataset_report(cfg: RunConfig, base: FoundationModel, tuned_visual: nn.Module, data: EvalData,
                   with_umap: bool = True, progress: EvaluationProgress | None = None,
                   ) -> tuple[dict, dict[str, np.ndarray], dict[str, Correct]]:
    """`dataset_reports` of one tuned tower."""
    return dataset_reports(cfg, base, [tuned_visual], data, with_umap, progress)[0]


def _measured(cfg: RunConfig, data: EvalData, pre: torch.Tensor, post: torch.Tensor, per_layer: torch.Tensor,
              head: torch.Tensor, before: LinearProbe, probe_after: LinearProbe, with_umap: bool,
              ) -> tuple[dict, dict[str, np.ndarray], dict[str, Correct]]:
    """One tuned tower's report, arrays and per-image correctness on `data`, from the features both towers gave."""
    test = data.test
    predictions = {"zs": (zero_shot_predictions(pre, head), zero_shot_predictions(post, head)),
                   "lp": (before.predict(pre), probe_after.predict(post))}
    correct = {probe: (first == test.labels, then == test.labels) for probe, (first, then) in predictions.items()}
    report = {
        "dataset": test.name,
        "n": len(test),
        "test_images": len(test),
        "probe_images": len(data.train),
        "lp_l2_before": before.l2,
        "lp_l2_after": probe_after.l2,
        **delta_fields("zs", stats.summary(*correct["zs"])),
        **delta_fields("lp", stats.summary(*correct["lp"])),
        "per_class": stats.class_rows(*correct["zs"], test.labels, test.class_names),
        "per_class_lp": stats.class_rows(*correct["lp"], test.labels, test.class_names),
        "layer_distance": [float(d) for d in per_layer],
        "ldifs_distance": float(per_layer.mean()),
        "centroid_shift": drift.centroid_shift(pre, post, test.labels),
        "knn_overlap": drift.knn_overlap(pre, post),
    }
    arrays, ids = {}, None
    if with_umap and cfg.umap_points > 0:
        ids = torch.randperm(len(test), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.umap_points].sort().values
        umap_pre, umap_post = drift.joint_umap(pre[ids].numpy(), post[ids].numpy(), cfg.seed)
        arrays = {f"umap_pre/{test.name}": umap_pre, f"umap_post/{test.name}": umap_post,
                  f"umap_labels/{test.name}": test.labels[ids].numpy(), f"umap_ids/{test.name}": ids.numpy(),
                  features_key("pre", test.name): pre[ids].numpy().astype(np.float16),
                  features_key("post", test.name): post[ids].numpy().astype(np.float16)}
    arrays.update(image_records(test.name, test.images, test.labels, predictions, also_thumbnail=ids,
                                class_names=test.class_names))
    arrays[displacement_key(test.name)] = drift.relative_displacement(pre, post).numpy()
    return report, arrays, correct


Tuned = tuple[nn.Module, nn.Linear]  # a tuned image tower and the head it classifies its task with


def downstream_reports(base: FoundationModel, tuned: Sequence[Tuned], test: ImageSet,
                       progress: EvaluationProgress | None = None) -> list[tuple[dict, dict[str, np.ndarray]]]:
    """Fine-tuning task, for each tuned (tower, head): zero-shot of the pre-trained model vs the tuned model with
    its trained head; also the per-image records (image_records.py). The test set goes through θ₀'s tower once
    and through each tuned one."""
    on_batch = (progress or EvaluationProgress()).add_encoded
    zs_head = zero_shot_head(base, test.class_names, test.templates)
    pre = encode_images(base.clip.visual, test.images, base, on_batch=on_batch)
    reports = []
    for tuned_visual, head in tuned:
        post = encode_images(tuned_visual, test.images, base, on_batch=on_batch)
        with torch.no_grad():
            predicted = head(F.normalize(post, dim=-1)).argmax(1)  # heads live on the CPU
        predictions = {"zs": (zero_shot_predictions(pre, zs_head), zero_shot_predictions(post, zs_head)),
                       "tuned": (zero_shot_predictions(pre, zs_head), predicted)}
        zs_before, zs_after = (guess == test.labels for guess in predictions["zs"])
        tuned_correct = predicted == test.labels
        gain, after_zs = stats.summary(zs_before, tuned_correct), stats.summary(zs_before, zs_after)
        reports.append(({
            "dataset": test.name,
            "n": len(test),
            "zero_shot_before": gain["before"], "zero_shot_before_ci": gain["before_ci"],
            "accuracy_after": gain["after"], "accuracy_after_ci": gain["after_ci"],
            "change": gain["change"], "change_ci": gain["change_ci"],
            "zero_shot_after": after_zs["after"], "zero_shot_after_ci": after_zs["after_ci"],
            "per_class": stats.class_rows(zs_before, tuned_correct, test.labels, test.class_names),
        }, image_records(test.name, test.images, test.labels, predictions, class_names=test.class_names)))
    return reports


def forgetting_reports(cfg: RunConfig, base: FoundationModel, tuned: Sequence[Tuned], downstream_test: ImageSet | None,
                       others: dict[str, EvalData], with_umap: bool = True,
                       progress: EvaluationProgress | None = None) -> list[tuple[dict, dict[str, np.ndarray]]]:
    """For each tuned (tower, head): downstream gain and, for every other dataset, what the image tower lost.

    The towers must live where `base` does; θ₀'s features, heads and probes are computed once for all of them
    (a WiSE-FT path evaluates its mixes together). `progress` hears each dataset, encoding batch and probe, and
    its hooks are asked before each dataset (the task's included) whether to stop, so a cancel during evaluation
    takes effect within one dataset's reports. Without a task (`downstream_test` None: a check that names none)
    the reports have no "downstream".
    """
    progress = progress or EvaluationProgress()
    if downstream_test is not None:
        progress.plan(downstream_test.name, (1 + len(tuned)) * len(downstream_test), 0)
    for data in others.values():
        progress.plan(data.test.name, *planned_work(data, len(tuned)))
    if downstream_test is None:
        results = [(None, {}, [], []) for _ in tuned]
    else:
        progress.begin(downstream_test.name)
        results = [(downstream, arrays, [], [])
                   for downstream, arrays in downstream_reports(base, tuned, downstream_test, progress)]
        progress.end()
    for data in others.values():
        progress.begin(data.test.name)
        measured = dataset_reports(cfg, base, [visual for visual, _ in tuned], data, with_umap, progress)
        progress.end()
        for (_, arrays, forgetting, correct), (report, extra, flags) in zip(results, measured):
            forgetting.append(report)
            arrays.update(extra)
            correct.append(flags)
    return [({"schema_version": SCHEMA_VERSION, **({"downstream": downstream} if downstream else {}),
              "forgetting": forgetting, **_means(cfg, forgetting, correct)}, arrays)
            for downstream, arrays, forgetting, correct in results]


def forgetting_report(cfg: RunConfig, base: FoundationModel, tuned_visual: nn.Module, head: nn.Linear,
                      downstream_test: ImageSet | None, others: dict[str, EvalData], with_umap: bool = True,
                      progress: EvaluationProgress | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """`forgetting_reports` of one tuned tower and its head: a run's report."""
    return forgetting_reports(cfg, base, [(tuned_visual, head)], downstream_test, others, with_umap, progress)[0]


def _means(cfg: RunConfig, forgetting: list[dict], correct: list[dict[str, Correct]]) -> dict:
    """Mean change over the checked datasets, per probe, with its bootstrapped interval (points)."""
    means = {}
    for probe in ("zs", "lp"):
        deltas = [report[f"{probe}_delta"] for report in forgetting]
        low, high = stats.bootstrap_mean_change([flags[probe] for flags in correct], seed=cfg.seed)  # points
        means[f"mean_{probe}_delta"] = float(np.mean(deltas))
        means[f"mean_{probe}_delta_ci"] = [round(low, 2), round(high, 2)]
    return means
