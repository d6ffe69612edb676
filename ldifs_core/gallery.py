"""The concept gallery: the test images of one concept whose verdict fine-tuning flipped, with what the model
predicted before and after, read from a run's per-image records (image_records.py). The Forgetting page and the
HTML report both show it.

A concept's numbers (its per_class row in metrics.json) and its gallery come from the same predictions: the images
that "became wrong" are exactly those counted as lost in the concept's change.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ldifs_core import metrics_tables
from ldifs_core.image_records import thumbnail_of

BECAME_WRONG = "became wrong"
BECAME_RIGHT = "became right"
DIRECTIONS = (BECAME_WRONG, BECAME_RIGHT)
TUNED = "tuned"  # the fine-tuning task's records: zero-shot before → its tuned classifier after
NO_RECORDS = ("This run was made before LDIFS Lab kept per-image records, so it has no images to show; a new run "
              "with the same settings will.")
DISPLAY_SIDE = 96  # thumbnails are shown at least about this large, scaled by a whole factor so pixels stay sharp


@dataclass(frozen=True)
class FlippedImage:
    """One test image whose verdict flipped; `position` is its place in the run's evaluation subset."""

    position: int
    true_class: str
    predicted_before: str
    predicted_after: str
    thumbnail: np.ndarray  # uint8 [t, t, 3], as stored


@dataclass(frozen=True)
class ConceptFlips:
    """The images of one concept that flipped one way: `total` of them in the evaluation subset, `examples` the
    first `limit` (by position) that have a stored thumbnail, `row` the concept's metrics.json numbers (n, before,
    after, change and their 95 % intervals)."""

    dataset: str
    concept: str
    probe: str
    direction: str
    row: dict
    total: int
    examples: tuple[FlippedImage, ...]


def has_image_records(arrays: dict[str, np.ndarray], dataset: str) -> bool:
    """Whether the run kept per-image records of `dataset` (runs made before they existed did not)."""
    return f"eval_labels/{dataset}" in arrays


def record_probe(metrics: dict, dataset: str, probe: str) -> str:
    """The records' probe behind the page's zero-shot / linear-probe choice: on the fine-tuning task the concept
    numbers compare zero-shot before with the tuned classifier after, so its zero-shot choice reads those."""
    if dataset != metrics_tables.task_dataset(metrics):
        return probe
    if probe != "zs":
        raise ValueError(f"the fine-tuning task {dataset} has no {metrics_tables.PROBES[probe]} records")
    return TUNED


def label_names(arrays: dict[str, np.ndarray], metrics: dict, dataset: str, probe: str = "zs") -> list[str]:
    """Label → class name: stored with the records; the concept rows name only classes that have test images."""
    stored = arrays.get(f"class_names/{dataset}")
    if stored is not None:
        return [str(name) for name in stored]
    by_label = {row["label"]: row["class_name"] for row in metrics_tables.class_rows(metrics, dataset, probe)}
    count = max(by_label, default=-1) + 1
    return [by_label.get(label, f"class {label}") for label in range(count)]


def flipped_examples(arrays: dict[str, np.ndarray], metrics: dict, dataset: str, concept: str, probe: str = "zs",
                     direction: str = BECAME_WRONG, limit: int = 24) -> ConceptFlips:
    """The test images of `concept` (a class name) on `dataset` that were right before and wrong after fine-tuning
    (BECAME_WRONG) or the reverse (BECAME_RIGHT), measured with `probe` ("zs" / "lp", as the pages choose it).

    Needs the run's image records (`has_image_records`); KeyError names the missing array otherwise, ValueError
    an unknown concept or direction.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    which = record_probe(metrics, dataset, probe)
    row = next((r for r in metrics_tables.class_rows(metrics, dataset, probe) if r["class_name"] == concept), None)
    if row is None:
        raise ValueError(f"{dataset} has no test images of a concept named {concept!r}")
    labels = arrays[f"eval_labels/{dataset}"]
    before = arrays[f"pred_{which}_before/{dataset}"]
    after = arrays[f"pred_{which}_after/{dataset}"]
    right_before, right_after = before == labels, after == labels
    lost = right_before & ~right_after if direction == BECAME_WRONG else ~right_before & right_after
    positions = np.flatnonzero(lost & (labels == row["label"]))
    names = label_names(arrays, metrics, dataset, probe)
    examples = []
    for position in positions:
        thumbnail = thumbnail_of(arrays, dataset, int(position))
        if thumbnail is None:  # beyond MAX_THUMBS the run kept a sample of the flipped images
            continue
        examples.append(FlippedImage(int(position), concept, names[before[position]], names[after[position]],
                                     thumbnail))
        if len(examples) == limit:
            break
    return ConceptFlips(dataset, concept, probe, direction, row, len(positions), tuple(examples))


def display_scale(side: int, at_least: int = DISPLAY_SIDE) -> int:
    """The whole factor that shows a `side`-pixel thumbnail at about `at_least` pixels (28 → 3, 48 → 2)."""
    return max(1, round(at_least / side))


def crisp(thumbnail: np.ndarray, at_least: int = DISPLAY_SIDE) -> np.ndarray:
    """A thumbnail scaled up by a whole factor with nearest-neighbour sampling: a 28-px digit stays sharp instead
    of the blur a browser's smooth scaling gives it."""
    scale = display_scale(thumbnail.shape[0], at_least)
    return np.repeat(np.repeat(thumbnail, scale, axis=0), scale, axis=1)
