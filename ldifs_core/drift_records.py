"""Reading a run's drift records: which concepts moved most in feature space, what is known about one test
image of the drift picture, its nearest neighbours before and after fine-tuning, and the picture's projection.

Besides the per-image records of image_records.py, a run stores for every checked dataset

- `displacement/D`  float32 [N]  each evaluated test image's relative displacement (drift.relative_displacement:
                                 how far its feature moved, divided by the mean distance to its 10 nearest
                                 neighbours before fine-tuning), addressed by the same positions as `eval_labels/D`.
- `features_pre/D`, `features_post/D`  float16 [K, E]  the unit-normalised image features of the drawn test images
                                 (those of `umap_ids/D`, row for row) by θ₀'s and by the tuned tower: neighbours and
                                 a PCA of the picture come from them (K × E × 4 bytes: 0.25 MB for 500 points of a
                                 128-wide embedding, 1 MB at ViT-B/32's 512).

Runs made before these records existed have none of them; every reader here then answers None.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ldifs_core.image_records import thumbnail_of
from ldifs_core.stats import Z95

PROBES = ("zs", "lp", "tuned")
UMAP, PCA = "UMAP", "PCA"  # the drift picture's reductions


def displacement_key(dataset: str) -> str:
    return f"displacement/{dataset}"


def features_key(when: str, dataset: str) -> str:
    """Where the drawn points' features are kept: `when` is "pre" (θ₀'s tower) or "post" (the tuned one)."""
    return f"features_{when}/{dataset}"


@dataclass(frozen=True)
class MovedConcept:
    """One concept's mean relative displacement over its n test images, with a 95 % interval of that mean
    (Student t, its low end clipped at 0; NaN bounds when n = 1)."""

    label: int
    class_name: str
    n: int
    displacement: float
    low: float
    high: float


# two-sided 95 % quantiles of Student's t for 1 … 30 degrees of freedom
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """Two-sided 95 % quantile of Student's t: the table up to 30, then z + (z³ + z) / 4df (within 0.005)."""
    return T975[df - 1] if df <= len(T975) else Z95 + (Z95 ** 3 + Z95) / (4 * df)


def mean_interval(mean: float, std: float, n: int) -> tuple[float, float]:
    """95 % t-interval of a mean of a non-negative quantity (low end clipped at 0) from its sample standard
    deviation (ddof 1); NaN for a single value."""
    if n < 2:
        return math.nan, math.nan
    half = t975(n - 1) * std / math.sqrt(n)
    return max(0.0, mean - half), mean + half


def most_moved(arrays: dict[str, np.ndarray], dataset: str, class_names: Sequence[str]) -> list[MovedConcept] | None:
    """Every concept of `dataset` with test images, most surely moved first, or None when the run stored no
    displacements. Ranked by the low end of the mean's interval (then the mean, then the name), so a concept
    resting on one or two images does not top the list; concepts with a single image come last."""
    displacement, labels = arrays.get(displacement_key(dataset)), arrays.get(f"eval_labels/{dataset}")
    if displacement is None or labels is None:
        return None
    values = displacement.astype(np.float64)
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    means = np.bincount(labels, values)[present] / counts[present]
    squares = np.bincount(labels, (values - means[np.searchsorted(present, labels)]) ** 2)[present]
    stds = np.sqrt(squares / np.maximum(counts[present] - 1, 1))
    concepts = []
    for label, mean, std in zip(present, means, stds):
        name = str(class_names[label]) if label < len(class_names) else f"class {label}"
        n = int(counts[label])
        concepts.append(MovedConcept(int(label), name, n, float(mean), *mean_interval(float(mean), float(std), n)))
    return sorted(concepts, key=lambda c: (math.isnan(c.low), -(0.0 if math.isnan(c.low) else c.low),
                                           -c.displacement, c.class_name))


def recorded_labels(arrays: dict[str, np.ndarray], dataset: str) -> np.ndarray:
    """Every label the run's arrays mention for `dataset` (UMAP points, true labels, predictions), so names
    can be looked up for all of them, predicted concepts absent from the picture included."""
    predicted = (f"pred_{probe}_{when}" for probe in PROBES for when in ("before", "after"))
    kinds = ("umap_labels", "eval_labels", *predicted)
    present = [arrays[f"{kind}/{dataset}"] for kind in kinds if f"{kind}/{dataset}" in arrays]
    return np.concatenate(present).astype(np.int64) if present else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class ImageFacts:
    """What a run recorded about one test image: its true label, each probe's (before, after) prediction, its
    thumbnail (uint8 [t, t, 3]) and relative displacement, each None when the run kept none."""

    position: int
    label: int | None
    predictions: dict[str, tuple[int, int]]
    thumbnail: np.ndarray | None
    displacement: float | None


def image_facts(arrays: dict[str, np.ndarray], dataset: str, position: int) -> ImageFacts:
    """The records of test image `position` of `dataset` (the index `umap_ids/D` and `thumb_ids/D` use)."""
    labels = arrays.get(f"eval_labels/{dataset}")
    known = labels is not None and 0 <= position < len(labels)
    predictions = {}
    for probe in PROBES:
        before, after = arrays.get(f"pred_{probe}_before/{dataset}"), arrays.get(f"pred_{probe}_after/{dataset}")
        if known and before is not None and after is not None:
            predictions[probe] = (int(before[position]), int(after[position]))
    displacement = arrays.get(displacement_key(dataset))
    return ImageFacts(position, int(labels[position]) if known else None, predictions,
                      thumbnail_of(arrays, dataset, position),
                      float(displacement[position]) if known and displacement is not None else None)


@dataclass(frozen=True)
class Neighbour:
    """A test image of the drawn sample near another: its position, true label and cosine similarity."""

    position: int
    label: int
    similarity: float


def nearest_rows(features: np.ndarray, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the k features most cosine-similar to row `row` (itself excluded), most similar first, ties
    to the lower row; and their similarities."""
    unit = features.astype(np.float32)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit[row]
    similarity[row] = -np.inf
    order = np.lexsort((np.arange(len(similarity)), -similarity))[:min(k, len(similarity) - 1)]
    return order, similarity[order]


def neighbours(arrays: dict[str, np.ndarray], dataset: str, position: int,
               k: int = 5) -> dict[str, list[Neighbour]] | None:
    """The k drawn test images nearest to test image `position` in θ₀'s feature space ("before") and in the tuned
    model's ("after"): which concepts the image sat among and sits among now. None when the run kept no features
    (made before this version) or the image is not among the drawn ones."""
    ids, labels = arrays.get(f"umap_ids/{dataset}"), arrays.get(f"umap_labels/{dataset}")
    pre, post = arrays.get(features_key("pre", dataset)), arrays.get(features_key("post", dataset))
    if ids is None or labels is None or pre is None or post is None:
        return None
    row = int(np.searchsorted(ids, position))
    if row >= len(ids) or ids[row] != position:
        return None
    found = {}
    for when, features in (("before", pre), ("after", post)):
        rows, similarities = nearest_rows(features, row, k)
        found[when] = [Neighbour(int(ids[r]), int(labels[r]), float(s)) for r, s in zip(rows, similarities)]
    return found


def joint_pca(pre: np.ndarray, post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets [K, E] projected together onto their two principal directions (about the joint mean), so
    pre and post positions compare, as in the joint UMAP; instant, with no fit to wait for. Each direction's sign
    is fixed (its largest loading positive), so the same features always give the same picture."""
    points = np.concatenate([pre, post]).astype(np.float64)
    centred = points - points.mean(axis=0)
    directions = np.linalg.svd(centred, full_matrices=False)[2][:2]
    directions *= np.sign(directions[np.arange(len(directions)), np.abs(directions).argmax(axis=1)])[:, None]
    coords = np.zeros((len(points), 2), dtype=np.float32)
    coords[:, :len(directions)] = centred @ directions.T
    return coords[:len(pre)], coords[len(pre):]


def projection(arrays: dict[str, np.ndarray], dataset: str, reduction: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The drift picture's 2-D (pre, post) positions of the drawn points by `reduction`: the UMAP the run fitted,
    or a PCA of the features it kept (None when it kept none: runs made before this version)."""
    if reduction == UMAP:
        return arrays[f"umap_pre/{dataset}"], arrays[f"umap_post/{dataset}"]
    pre, post = arrays.get(features_key("pre", dataset)), arrays.get(features_key("post", dataset))
    return None if pre is None or post is None else joint_pca(pre, post)
