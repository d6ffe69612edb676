"""Realistic finished, failed and cancelled runs written straight into a RunStore, built through the typed record
of metrics.json (ldifs_core.metrics.RunMetrics, schema v2), so the app can be tested without training.
tests/app/test_contract.py checks the shape against a real tiny run.

Accuracies come from simulated per-image outcomes (correct before / after) summarised by ldifs_core.stats, so
every number, n and interval is consistent with the others, as in a real run.
"""
from __future__ import annotations

import numpy as np
import torch

from ldifs_core import stats
from ldifs_core.config import SCHEMA_VERSION, RunConfig
from ldifs_core.curve import curve_every, measured_at
from ldifs_core.curve_records import Curve, CurvePoint
from ldifs_core.datasets import load_bank
from ldifs_core.drift_records import displacement_key, features_key
from ldifs_core.image_records import image_records
from ldifs_core.metrics import ClassRow, DatasetReport, Evaluation, RunMetrics, TaskReport, Timings
from ldifs_core.store import RunStore

TASK = "mnist"
CHECKED = ("fashion_mnist", "animals")
LAYERS = 5
UMAP_POINTS = 40
Outcomes = tuple[np.ndarray, np.ndarray]  # per image: right before, right after


def class_names(dataset: str) -> list[str]:
    return load_bank(dataset, "test").class_names


def class_row(label: int, name: str, before: np.ndarray, after: np.ndarray) -> ClassRow:
    """A concept's row, with the engine's own statistics."""
    return ClassRow(label=label, class_name=name, **stats.summary(before, after))


def probe_numbers(prefix: str, before: np.ndarray, after: np.ndarray) -> dict:
    """{prefix}_before/_after/_delta and their intervals, as a checked dataset's report holds them."""
    numbers = stats.summary(before, after)
    return {f"{prefix}_before": numbers["before"], f"{prefix}_before_ci": numbers["before_ci"],
            f"{prefix}_after": numbers["after"], f"{prefix}_after_ci": numbers["after_ci"],
            f"{prefix}_delta": numbers["change"], f"{prefix}_delta_ci": numbers["change_ci"]}


def outcomes(rng: np.random.Generator, n: int, base: float, drop: float) -> Outcomes:
    """Per-image correctness before and after: correct images are lost with a chance set by `drop` (points)."""
    before = rng.random(n) < rng.uniform(base - 0.25, base + 0.15)
    lost = rng.random(n) < rng.uniform(0, 2 * drop / 100)
    gained = rng.random(n) < 0.03
    after = np.where(before, ~lost, gained)
    return before, after


def per_class(names: list[str], per_concept: list[Outcomes]) -> tuple[list[ClassRow], Outcomes]:
    """Concept rows plus every image's outcome, concept after concept (for the dataset-level numbers)."""
    rows = [class_row(label, name, *flags) for label, (name, flags) in enumerate(zip(names, per_concept))]
    return rows, (np.concatenate([b for b, _ in per_concept]), np.concatenate([a for _, a in per_concept]))


def dataset_report(dataset: str, names: list[str], zs: list[Outcomes], lp: list[Outcomes], probe_images: int,
                   drop: float, rng: np.random.Generator) -> tuple[DatasetReport, dict[str, Outcomes]]:
    """A checked dataset's report from its concepts' outcomes per probe, and its per-image outcomes by probe."""
    zs_rows, zs_flags = per_class(names, zs)
    lp_rows, lp_flags = per_class(names, lp)
    n = len(zs_flags[0])
    return DatasetReport(
        dataset=dataset, n=n, test_images=n, probe_images=probe_images, lp_l2_before=1e-3, lp_l2_after=1e-2,
        **probe_numbers("zs", *zs_flags), **probe_numbers("lp", *lp_flags), per_class=zs_rows, per_class_lp=lp_rows,
        layer_distance=sorted(rng.uniform(0.001, 0.001 + drop / 100, LAYERS).tolist()),
        ldifs_distance=drop / 200, centroid_shift=drop / 500, knn_overlap=1 - drop / 100,
    ), {"zs": zs_flags, "lp": lp_flags}


def forgetting_report(dataset: str, rng: np.random.Generator, drop: float) -> tuple[DatasetReport, dict]:
    """The report of one dataset, and its per-image outcomes by probe (for the mean's interval)."""
    names = class_names(dataset)
    sizes = rng.integers(2, 40, len(names))  # a few concepts rest on 2-3 images, as on quickdraw
    zs = [outcomes(rng, int(n), 0.65, drop) for n in sizes]
    lp = [outcomes(rng, int(n), 0.8, drop / 4) for n in sizes]
    return dataset_report(dataset, names, zs, lp, 10 * len(sizes), drop, rng)


def task_report(dataset: str, names: list[str], tuned: list[Outcomes], zero_shot_after: np.ndarray) -> TaskReport:
    """The task's report: per concept, zero-shot before vs the tuned classifier after."""
    rows, (before, after) = per_class(names, tuned)
    gain, zero_shot = stats.summary(before, after), stats.summary(before, zero_shot_after)
    return TaskReport(dataset=dataset, n=gain["n"], zero_shot_before=gain["before"],
                      zero_shot_before_ci=gain["before_ci"], accuracy_after=gain["after"],
                      accuracy_after_ci=gain["after_ci"], change=gain["change"], change_ci=gain["change_ci"],
                      zero_shot_after=zero_shot["after"], zero_shot_after_ci=zero_shot["after_ci"], per_class=rows)


def downstream_report(dataset: str, rng: np.random.Generator, drop: float) -> tuple[TaskReport, Outcomes]:
    """The task's report, and its per-image outcomes (zero-shot before, tuned classifier after)."""
    names = class_names(dataset)
    sizes = rng.integers(20, 40, len(names))
    tuned = [(rng.random(int(n)) < 0.5, rng.random(int(n)) < 0.97 - drop / 1000) for n in sizes]
    report = task_report(dataset, names, tuned, rng.random(int(sizes.sum())) < 0.6)
    return report, (np.concatenate([b for b, _ in tuned]), np.concatenate([a for _, a in tuned]))


def mean_delta(reports: list[DatasetReport], outcomes_by_probe: list[dict], probe: str) -> dict:
    """Mean change over the datasets and its bootstrap interval, as the engine computes them."""
    return {f"mean_{probe}_delta": float(np.mean([r.probe(probe)[4] for r in reports])),
            f"mean_{probe}_delta_ci": list(stats.bootstrap_mean_change([o[probe] for o in outcomes_by_probe]))}


def run_metrics(cfg: RunConfig, run_id: str, task: TaskReport, forgetting: list[DatasetReport],
                outcomes_by_probe: list[dict], **extra) -> RunMetrics:
    """The record of a finished run of `cfg` around its reports (the model and timings of a test run)."""
    return RunMetrics(run_id=run_id, config=cfg.to_dict(), status="done", model="LabCLIP-ViT-28-p7 (test)",
                      device="CPU (test)", schema_version=SCHEMA_VERSION, downstream=task, forgetting=forgetting,
                      **mean_delta(forgetting, outcomes_by_probe, "zs"),
                      **mean_delta(forgetting, outcomes_by_probe, "lp"),
                      timings=Timings(train_s=1.0, eval_s=0.5, total_s=1.6, step_ms=50.0), **extra)


def sample_metrics(cfg: RunConfig, run_id: str) -> dict:
    """CE forgets more than LDIFS, and more with smaller λ, as in the paper."""
    return sample_results(cfg, run_id)[0]


def sample_results(cfg: RunConfig, run_id: str) -> tuple[dict, dict[str, dict[str, Outcomes]]]:
    """sample_metrics, and the per-image outcomes behind it: dataset → probe → (right before, right after), the
    images in the order of the dataset's concept rows (the task's probe is "tuned")."""
    rng = np.random.default_rng(cfg.seed)
    drop = 30.0 if cfg.objective == "ce" else 30.0 / (1 + cfg.effective_lam)
    reports = [forgetting_report(d, rng, drop) for d in cfg.eval_datasets or CHECKED]
    forgetting, outcomes_by_probe = [r for r, _ in reports], [o for _, o in reports]
    task, task_outcomes = downstream_report(cfg.dataset, rng, drop)
    # a sequence's stage also reports its own task like a checked dataset (the forgetting matrix's diagonal)
    stage = {"stage_task": forgetting_report(cfg.dataset, rng, 0.0)[0]} if cfg.sequence_id else {}
    curve = {"curve": sample_curve(cfg, task, forgetting)} if cfg.curve_points else {}
    record = run_metrics(cfg, run_id, task, forgetting, outcomes_by_probe, **stage, **curve)
    per_image = {cfg.dataset: {"tuned": task_outcomes},
                 **{report.dataset: flags for report, flags in zip(forgetting, outcomes_by_probe)}}
    return record.to_json(), per_image


def sample_curve(cfg: RunConfig, task: TaskReport, forgetting: list[DatasetReport]) -> Curve:
    """The forgetting curve a run of `cfg` measures: every line moves evenly from its zero-shot accuracy before to
    its accuracy after (no random draws, so the other sample numbers stay as they are)."""
    ends = {task.dataset: (task.zero_shot_before, task.zero_shot_after),
            **{r.dataset: (r.zs_before, r.zs_after) for r in forgetting}}
    every = curve_every(cfg.steps, cfg.curve_points)
    steps = [step for step in range(cfg.steps + 1) if measured_at(step, cfg.steps, every)]
    points = [CurvePoint(step, {name: before + (after - before) * step / cfg.steps
                                for name, (before, after) in ends.items()}) for step in steps]
    return Curve(cfg.dataset, every, {name: cfg.curve_images for name in ends}, points)


def small_metrics(cfg: RunConfig | None = None, run_id: str = "20260101-000000-aaaaaa", seed: int = 0) -> dict:
    """A complete but small metrics.json: two concepts of 20 test images on the task and on one checked dataset."""
    cfg = cfg or RunConfig(objective="ce", eval_datasets=["animals"])
    rng = np.random.default_rng(seed)
    flags = lambda: [(rng.random(20) < 0.6, rng.random(20) < 0.5) for _ in range(2)]
    checked, by_probe = dataset_report(cfg.eval_datasets[0], ["cat", "dog"], flags(), flags(), 20, 10.0, rng)
    task = task_report(cfg.dataset, ["zero", "one"], flags(), rng.random(40) < 0.5)
    return run_metrics(cfg, run_id, task, [checked], [by_probe]).to_json()


def sample_arrays(cfg: RunConfig, per_image: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    arrays = {}
    for dataset in cfg.eval_datasets or CHECKED:
        pre = rng.normal(size=(UMAP_POINTS, 2)).astype(np.float32)
        arrays[f"umap_pre/{dataset}"] = pre
        arrays[f"umap_post/{dataset}"] = pre + rng.normal(scale=0.5, size=pre.shape).astype(np.float32)
        arrays[f"umap_labels/{dataset}"] = rng.integers(0, len(class_names(dataset)), UMAP_POINTS)
        arrays[f"umap_ids/{dataset}"] = np.sort(rng.choice(200, UMAP_POINTS, replace=False))
        if per_image:
            arrays.update(sample_drift_records(dataset, arrays[f"umap_labels/{dataset}"],
                                               arrays[f"umap_ids/{dataset}"], rng))
    return arrays


def sample_drift_records(dataset: str, umap_labels: np.ndarray, umap_ids: np.ndarray,
                         rng: np.random.Generator, n: int = 200) -> dict[str, np.ndarray]:
    """The per-image records (made by the engine's own image_records) and relative displacements of `n` test
    images, the UMAP points among them with their labels; the last concept moves ~3x as far as the others."""
    classes = len(class_names(dataset))
    labels = rng.integers(0, classes, n)
    labels[umap_ids] = umap_labels
    labels = torch.from_numpy(labels)
    images = torch.from_numpy(rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8))
    predictions = {probe: (torch.where(torch.from_numpy(rng.random(n) < 0.7), labels, (labels + 1) % classes),
                           torch.where(torch.from_numpy(rng.random(n) < 0.5), labels, (labels + 2) % classes))
                   for probe in ("zs", "lp")}
    displacement = rng.uniform(0.5, 1.5, n).astype(np.float32)
    displacement[labels.numpy() == classes - 1] *= 3
    return {**image_records(dataset, images, labels, predictions, also_thumbnail=umap_ids,
                          class_names=class_names(dataset)),
            displacement_key(dataset): displacement, **drawn_features(dataset, umap_labels)}


def drawn_features(dataset: str, umap_labels: np.ndarray, width: int = 16) -> dict[str, np.ndarray]:
    """Unit features of the drawn points before and after (float16, as a run keeps them), clustered by concept
    and moved a little; from a generator of their own, so the other sample records stay as they were."""
    rng = np.random.default_rng(len(umap_labels))
    centres = rng.normal(size=(int(umap_labels.max()) + 1, width))
    pre = centres[umap_labels] + rng.normal(scale=0.3, size=(len(umap_labels), width))
    post = pre + rng.normal(scale=0.5, size=pre.shape)
    return {features_key(when, dataset): (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
            for when, x in (("pre", pre), ("post", post))}


def sample_history(cfg: RunConfig) -> list[dict]:
    history = []
    for step in range(1, cfg.steps + 1):
        ce = 2.0 / step
        parts = {"ce": ce, "ldifs": 0.01 * step * cfg.effective_lam} if cfg.objective == "ldifs" else {"ce": ce}
        history.append({"step": step, "loss": sum(parts.values()), **parts, "lr": 1e-4, "images_per_s": 500.0})
    return history


def finish_run(store: RunStore, run_id: str, cfg: RunConfig, records: str = "loose") -> None:
    """Finish with sample results and per-image records as every real run of this version keeps: "loose" ones
    (random outcomes, enough for pictures), ones "matching" the metrics (for the gallery's counts), or "none" (a
    run made before they existed)."""
    cfg.eval_datasets = cfg.eval_datasets or list(CHECKED)
    metrics, per_image = sample_results(cfg, run_id)
    arrays = sample_arrays(cfg, per_image=records != "none")
    if records == "matching":
        arrays.update(sample_records(metrics, per_image))
    store.finish(run_id, metrics, arrays, sample_history(cfg))


def add_finished_run(store: RunStore, records: str = "loose", **settings) -> str:
    cfg = RunConfig(**{"steps": 20, "eval_datasets": list(CHECKED), **settings})
    run_id = store.create(cfg, status="running")
    finish_run(store, run_id, cfg, records)
    return run_id


def sample_records(metrics: dict, per_image: dict[str, dict[str, tuple]]) -> dict[str, np.ndarray]:
    """Per-image records (image_records.py) behind the sample metrics (`sample_results`): each concept's images are
    real test images of that class, predicted right exactly where its simulated outcomes say, a wrong one as some
    other class. Checked datasets get probes zs and lp, the task its tuned classifier ("tuned")."""
    rng = np.random.default_rng(0)
    records = {}
    for dataset, outcomes_by_probe in per_image.items():
        bank = load_bank(dataset, "test")
        rows = (metrics["downstream"]["per_class"] if "tuned" in outcomes_by_probe else
                next(r for r in metrics["forgetting"] if r["dataset"] == dataset)["per_class"])
        labels = np.concatenate([np.full(row["n"], row["label"]) for row in rows])
        bank_labels = bank.labels.numpy()
        members = [np.flatnonzero(bank_labels == row["label"]) for row in rows]
        picked = np.concatenate([images[np.arange(row["n"]) % len(images)] for images, row in zip(members, rows)])
        predictions = {}
        for probe, sides in outcomes_by_probe.items():
            wrong = (labels + rng.integers(1, bank.num_classes, size=(2, len(labels)))) % bank.num_classes
            predictions[probe] = tuple(torch.from_numpy(np.where(right, labels, other))
                                       for right, other in zip(sides, wrong))
        records.update(image_records(dataset, torch.from_numpy(bank.images.numpy()[picked]), torch.from_numpy(labels),
                                     predictions, class_names=bank.class_names))
    return records


def add_ended_run(store: RunStore, status: str, message: str, **settings) -> str:
    cfg = RunConfig(**{"steps": 20, **settings})
    run_id = store.create(cfg, status="running")
    store.fail(run_id, status, message, history=sample_history(cfg)[:5])
    return run_id


def sample_wise(metrics: dict, alpha: float) -> dict:
    """A WiSE-FT mix's report as wise.wise_ft_path returns it (run_id, "alpha" and the evaluation's keys, no
    settings or timings): the task accuracy and the forgetting both move from the pre-trained model's (α = 0) to
    the run's (α = 1)."""
    task = metrics["downstream"]
    after = task["zero_shot_before"] + alpha * (task["accuracy_after"] - task["zero_shot_before"])
    return {**Evaluation.from_json(metrics).to_json(), "alpha": alpha, "schema_version": SCHEMA_VERSION,
            "downstream": {**task, "accuracy_after": after},
            "mean_zs_delta": alpha * metrics["mean_zs_delta"],
            "mean_zs_delta_ci": [alpha * bound for bound in metrics["mean_zs_delta_ci"]],
            "mean_lp_delta": alpha * metrics["mean_lp_delta"],
            "mean_lp_delta_ci": [alpha * bound for bound in metrics["mean_lp_delta_ci"]]}
