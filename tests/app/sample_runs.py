"""Realistic finished, failed and cancelled runs written straight into a RunStore, shaped like runner.execute's
output (the metrics.json keys documented in the README), so the app can be tested without training."""
from __future__ import annotations

import numpy as np

from ldifs_core.config import RunConfig
from ldifs_core.datasets import load_bank
from ldifs_core.store import RunStore

TASK = "mnist"
CHECKED = ("fashion_mnist", "animals")
LAYERS = 5
UMAP_POINTS = 40


def class_names(dataset: str) -> list[str]:
    return load_bank(dataset, "test").class_names


def per_class(dataset: str, rng: np.random.Generator, drop: float) -> list[dict]:
    rows = []
    for label, name in enumerate(class_names(dataset)):
        before = float(rng.uniform(40, 90))
        rows.append({"label": label, "class_name": name, "before": before, "after": float(np.clip(before - rng.uniform(0, drop), 0, 100)),
                     "n": 20})
    return rows


def forgetting_report(dataset: str, rng: np.random.Generator, drop: float) -> dict:
    classes = per_class(dataset, rng, drop)
    zs_before = float(np.mean([c["before"] for c in classes]))
    zs_after = float(np.mean([c["after"] for c in classes]))
    return {"dataset": dataset, "zs_before": zs_before, "zs_after": zs_after, "lp_before": zs_before + 10,
            "lp_after": zs_before + 10 - drop / 4, "per_class": classes,
            "layer_distance": sorted(rng.uniform(0.01, drop / 100, LAYERS).tolist()),
            "ldifs_distance": drop / 200, "centroid_shift": drop / 500, "knn_overlap": 1 - drop / 100,
            "test_images": 20 * len(classes)}


def sample_metrics(cfg: RunConfig, run_id: str) -> dict:
    """CE forgets more than LDIFS, and more with smaller λ, as in the paper."""
    rng = np.random.default_rng(cfg.seed)
    drop = 30.0 if cfg.objective == "ce" else 30.0 / (1 + cfg.effective_lam)
    forgetting = [forgetting_report(d, rng, drop) for d in cfg.eval_datasets or CHECKED]
    task_classes = [{"class_name": c["class_name"], "before": c["before"], "after": 95.0}
                    for c in per_class(cfg.dataset, rng, 0)]
    mean = lambda key: float(np.mean([r[f"{key}_after"] - r[f"{key}_before"] for r in forgetting]))
    return {
        "run_id": run_id, "config": cfg.to_dict(), "status": "done", "model": "LabCLIP-ViT-28-p7 (test)",
        "device": "CPU (test)",
        "downstream": {"dataset": cfg.dataset, "zero_shot_before": 48.0, "accuracy_after": 97.0 - drop / 10,
                       "zero_shot_after": 60.0, "per_class": task_classes},
        "forgetting": forgetting, "mean_zs_delta": mean("zs"), "mean_lp_delta": mean("lp"),
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
