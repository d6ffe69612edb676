"""Reading a run's drift records: which concepts moved most in feature space, and what is known about one test
image of the drift picture.

Besides the per-image records of image_records.py, a run stores for every checked dataset

- `displacement/D`  float32 [N]  each evaluated test image's relative displacement (drift.relative_displacement:
                                 how far its feature moved, divided by the mean distance to its 10 nearest
                                 neighbours before fine-tuning), addressed by the same positions as `eval_labels/D`.

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


def displacement_key(dataset: str) -> str:
    return f"displacement/{dataset}"


@dataclass(frozen=True)
class MovedConcept:
    """One concept's mean relative displacement over its n test images, with a 95 % interval of that mean
    (normal approximation; NaN bounds when n = 1)."""

    label: int
    class_name: str
    n: int
    displacement: float
    low: float
    high: float


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """95 % interval of a mean (normal approximation), NaN for a single value."""
    if len(values) < 2:
        return math.nan, math.nan
    half = Z95 * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    mean = float(np.mean(values))
    return mean - half, mean + half


def most_moved(arrays: dict[str, np.ndarray], dataset: str, class_names: Sequence[str]) -> list[MovedConcept] | None:
    """Every concept of `dataset` with test images, most moved first (by mean relative displacement, ties by
    name), or None when the run stored no displacements."""
    displacement, labels = arrays.get(displacement_key(dataset)), arrays.get(f"eval_labels/{dataset}")
    if displacement is None or labels is None:
        return None
    concepts = []
    for label in np.unique(labels):
        values = displacement[labels == label].astype(np.float64)
        name = class_names[label] if label < len(class_names) else f"class {label}"
        concepts.append(MovedConcept(int(label), str(name), len(values), float(values.mean()), *mean_interval(values)))
    return sorted(concepts, key=lambda concept: (-concept.displacement, concept.class_name))


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
