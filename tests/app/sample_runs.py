"""Realistic finished, failed and cancelled runs written straight into a RunStore, shaped exactly like
runner.execute's metrics.json (schema v2, see /tmp/ldifs/CONTRACT.md and the README), so the app can be tested
without training. tests/app/test_contract.py checks the shape against a real tiny run.

Accuracies come from simulated per-image outcomes (correct before / after), so every number, n and interval is
consistent with the others. The intervals here are simple stand-ins (Wilson for one accuracy, a normal
approximation for paired changes): the fixture needs their shape and plausible values, not ldifs_core.stats.
"""
from __future__ import annotations

import math

import numpy as np

from ldifs_core.config import RunConfig
from ldifs_core.datasets import load_bank
from ldifs_core.store import RunStore

TASK = "mnist"
CHECKED = ("fashion_mnist", "animals")
LAYERS = 5
UMAP_POINTS = 40
SCHEMA_VERSION = 2
Z95 = 1.959964


def class_names(dataset: str) -> list[str]:
    return load_bank(dataset, "test").class_names


def percent(outcomes: np.ndarray) -> float:
    return float(100.0 * outcomes.mean())


def wilson(outcomes: np.ndarray) -> list[float]:
    n, p = len(outcomes), float(outcomes.mean())
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return [100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)]


def paired_ci(before: np.ndarray, after: np.ndarray) -> list[float]:
    """Normal approximation of after − before on the same images, widened for small n so it never collapses."""
    diff = after.astype(float) - before.astype(float)
    half = Z95 * max(float(diff.std(ddof=1)) if len(diff) > 1 else 1.0, 0.5) / math.sqrt(len(diff))
    change = float(diff.mean())
    return [100.0 * max(-1.0, change - half), 100.0 * min(1.0, change + half)]


def class_row(label: int, name: str, before: np.ndarray, after: np.ndarray) -> dict:
    """The one class-row shape of schema v2."""
    return {"label": label, "class_name": name, "n": int(len(before)), "before": percent(before),
            "after": percent(after), "change": percent(after) - percent(before), "before_ci": wilson(before),
            "after_ci": wilson(after), "change_ci": paired_ci(before, after)}


def outcomes(rng: np.random.Generator, n: int, base: float, drop: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness before and after: correct images are lost with a chance set by `drop` (points)."""
    before = rng.random(n) < rng.uniform(base - 0.25, base + 0.15)
    lost = rng.random(n) < rng.uniform(0, 2 * drop / 100)
    gained = rng.random(n) < 0.03
    after = np.where(before, ~lost, gained)
    return before, after


def per_class(dataset: str, rng: np.random.Generator, base: float, drop: float, sizes: np.ndarray) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Class rows plus every image's outcome (for the dataset-level numbers); classes get different n."""
    rows, all_before, all_after = [], [], []
    for label, (name, n) in enumerate(zip(class_names(dataset), sizes)):
        before, after = outcomes(rng, int(n), base, drop)
        rows.append(class_row(label, name, before, after))
        all_before.append(before)
        all_after.append(after)
    return rows, np.concatenate(all_before), np.concatenate(all_after)


def forgetting_report(dataset: str, rng: np.random.Generator, drop: float) -> dict:
    sizes = rng.integers(2, 40, len(class_names(dataset)))  # a few concepts rest on 2-3 images, as on quickdraw
    zs_rows, zs_before, zs_after = per_class(dataset, rng, 0.65, drop, sizes)
    lp_rows, lp_before, lp_after = per_class(dataset, rng, 0.8, drop / 4, sizes)
    n = int(sizes.sum())
    return {
        "dataset": dataset, "n": n, "test_images": n, "probe_images": 10 * len(sizes),
        "lp_l2_before": 1e-3, "lp_l2_after": 1e-2,
        "zs_before": percent(zs_before), "zs_before_ci": wilson(zs_before),
        "zs_after": percent(zs_after), "zs_after_ci": wilson(zs_after),
        "zs_delta": percent(zs_after) - percent(zs_before), "zs_delta_ci": paired_ci(zs_before, zs_after),
        "lp_before": percent(lp_before), "lp_before_ci": wilson(lp_before),
        "lp_after": percent(lp_after), "lp_after_ci": wilson(lp_after),
        "lp_delta": percent(lp_after) - percent(lp_before), "lp_delta_ci": paired_ci(lp_before, lp_after),
        "per_class": zs_rows, "per_class_lp": lp_rows,
        "layer_distance": sorted(rng.uniform(0.001, 0.001 + drop / 100, LAYERS).tolist()),
        "ldifs_distance": drop / 200, "centroid_shift": drop / 500, "knn_overlap": 1 - drop / 100,
    }


def downstream_report(dataset: str, rng: np.random.Generator, drop: float) -> dict:
    sizes = rng.integers(20, 40, len(class_names(dataset)))
    rows, before, after = [], [], []
    for label, (name, n) in enumerate(zip(class_names(dataset), sizes)):
        zero_shot = rng.random(int(n)) < 0.5
        tuned = rng.random(int(n)) < 0.97 - drop / 1000
        rows.append(class_row(label, name, zero_shot, tuned))
        before.append(zero_shot)
        after.append(tuned)
    before, after = np.concatenate(before), np.concatenate(after)
    zero_shot_after = rng.random(len(before)) < 0.6
    return {"dataset": dataset, "n": int(len(before)), "zero_shot_before": percent(before),
            "zero_shot_before_ci": wilson(before), "accuracy_after": percent(after), "accuracy_after_ci": wilson(after),
            "change": percent(after) - percent(before), "change_ci": paired_ci(before, after),
            "zero_shot_after": percent(zero_shot_after), "zero_shot_after_ci": wilson(zero_shot_after),
            "per_class": rows}


def mean_delta(reports: list[dict], probe: str) -> tuple[float, list[float]]:
    """Mean over datasets; its interval here is the mean of the per-dataset intervals (a stand-in)."""
    mean = float(np.mean([r[f"{probe}_delta"] for r in reports]))
    low, high = np.mean([r[f"{probe}_delta_ci"] for r in reports], axis=0)
    return mean, [float(low), float(high)]


def sample_metrics(cfg: RunConfig, run_id: str) -> dict:
    """CE forgets more than LDIFS, and more with smaller λ, as in the paper."""
    rng = np.random.default_rng(cfg.seed)
    drop = 30.0 if cfg.objective == "ce" else 30.0 / (1 + cfg.effective_lam)
    forgetting = [forgetting_report(d, rng, drop) for d in cfg.eval_datasets or CHECKED]
    mean_zs, mean_zs_ci = mean_delta(forgetting, "zs")
    mean_lp, mean_lp_ci = mean_delta(forgetting, "lp")
    return {
        "run_id": run_id, "status": "done", "config": cfg.to_dict(), "model": "LabCLIP-ViT-28-p7 (test)",
        "device": "CPU (test)", "schema_version": SCHEMA_VERSION,
        "downstream": downstream_report(cfg.dataset, rng, drop), "forgetting": forgetting,
        "mean_zs_delta": mean_zs, "mean_zs_delta_ci": mean_zs_ci,
        "mean_lp_delta": mean_lp, "mean_lp_delta_ci": mean_lp_ci,
        "timings": {"train_s": 1.0, "eval_s": 0.5, "total_s": 1.6, "step_ms": 50.0},
    }


def sample_arrays(cfg: RunConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    arrays = {}
    for dataset in cfg.eval_datasets or CHECKED:
        pre = rng.normal(size=(UMAP_POINTS, 2)).astype(np.float32)
        arrays[f"umap_pre/{dataset}"] = pre
        arrays[f"umap_post/{dataset}"] = pre + rng.normal(scale=0.5, size=pre.shape).astype(np.float32)
        arrays[f"umap_labels/{dataset}"] = rng.integers(0, len(class_names(dataset)), UMAP_POINTS)
        arrays[f"umap_ids/{dataset}"] = np.sort(rng.choice(200, UMAP_POINTS, replace=False))
    return arrays


def sample_history(cfg: RunConfig) -> list[dict]:
    history = []
    for step in range(1, cfg.steps + 1):
        ce = 2.0 / step
        parts = {"ce": ce, "ldifs": 0.01 * step * cfg.effective_lam} if cfg.objective == "ldifs" else {"ce": ce}
        history.append({"step": step, "loss": sum(parts.values()), **parts, "lr": 1e-4, "images_per_s": 500.0})
    return history


def finish_run(store: RunStore, run_id: str, cfg: RunConfig) -> None:
    cfg.eval_datasets = cfg.eval_datasets or list(CHECKED)
    store.finish(run_id, sample_metrics(cfg, run_id), sample_arrays(cfg), sample_history(cfg))


def add_finished_run(store: RunStore, **settings) -> str:
    cfg = RunConfig(**{"steps": 20, "eval_datasets": list(CHECKED), **settings})
    run_id = store.create(cfg, status="running")
    finish_run(store, run_id, cfg)
    return run_id


def add_ended_run(store: RunStore, status: str, message: str, **settings) -> str:
    cfg = RunConfig(**{"steps": 20, **settings})
    run_id = store.create(cfg, status="running")
    store.fail(run_id, status, message, history=sample_history(cfg)[:5])
    return run_id
