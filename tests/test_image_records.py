"""Per-image records: a finished run keeps, for every test image, what it was predicted before and after, and a
thumbnail of every image whose verdict flipped, so galleries, drift hovers and reports can show them."""
import numpy as np
import pytest
import torch

from ldifs_core.config import RunConfig
from ldifs_core.image_records import THUMB_SIDE, image_records, thumbnail_of, thumbnails
from ldifs_core.runner import execute
from ldifs_core.store import RunStore

TINY = dict(steps=6, batch_size=16, lr=2e-3, eval_limit=120, probe_limit=12, umap_points=30, train_limit=200,
            eval_datasets=["fashion_mnist"])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("store"))
    run_id = execute(RunConfig(objective="ce", **TINY), store)
    return store.metrics(run_id), store.arrays(run_id)


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return 100 * float((predicted == labels).mean())


@pytest.mark.slow
def test_stored_predictions_reproduce_the_reported_accuracies(finished):
    metrics, arrays = finished
    report = metrics["forgetting"][0]
    labels = arrays["eval_labels/fashion_mnist"]
    assert len(labels) == report["n"]
    for probe in ("zs", "lp"):
        assert accuracy(arrays[f"pred_{probe}_before/fashion_mnist"], labels) == pytest.approx(report[f"{probe}_before"])
        assert accuracy(arrays[f"pred_{probe}_after/fashion_mnist"], labels) == pytest.approx(report[f"{probe}_after"])
    task = metrics["downstream"]
    task_labels = arrays["eval_labels/mnist"]
    assert accuracy(arrays["pred_tuned_before/mnist"], task_labels) == pytest.approx(task["zero_shot_before"])
    assert accuracy(arrays["pred_tuned_after/mnist"], task_labels) == pytest.approx(task["accuracy_after"])


@pytest.mark.slow
def test_every_flipped_image_and_every_umap_point_has_a_thumbnail(finished):
    _, arrays = finished
    labels = arrays["eval_labels/fashion_mnist"]
    flipped = set()
    for probe in ("zs", "lp"):
        before = arrays[f"pred_{probe}_before/fashion_mnist"] == labels
        after = arrays[f"pred_{probe}_after/fashion_mnist"] == labels
        flipped |= set(np.flatnonzero(before != after).tolist())
    assert flipped, "the tiny run should flip some verdicts (lr is high on purpose)"
    kept = set(arrays["thumb_ids/fashion_mnist"].tolist())
    assert flipped | set(arrays["umap_ids/fashion_mnist"].tolist()) == kept
    position = min(flipped)
    image = thumbnail_of(arrays, "fashion_mnist", position)
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8
    unkept = next(p for p in range(len(labels)) if p not in kept)
    assert thumbnail_of(arrays, "fashion_mnist", unkept) is None
    assert thumbnail_of({}, "fashion_mnist", position) is None  # a run from before these records


def test_thumbnails_are_rgb_and_at_most_thumb_side():
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert thumbnails(gray).shape == (2, 28, 28, 3)
    photo = torch.full((1, 3, 224, 224), 200, dtype=torch.uint8)
    small = thumbnails(photo)
    assert small.shape == (1, THUMB_SIDE, THUMB_SIDE, 3) and int(small.min()) == 200 == int(small.max())


def test_a_flip_in_either_direction_keeps_a_thumbnail():
    labels = torch.tensor([0, 1, 2, 3])
    before, after = torch.tensor([0, 1, 0, 0]), torch.tensor([1, 1, 2, 0])  # lost 0, kept 1, gained 2, wrong 3
    records = image_records("d", torch.zeros(4, 1, 8, 8, dtype=torch.uint8), labels, {"zs": (before, after)},
                            class_names=["a", "b", "c", "d"])
    assert records["thumb_ids/d"].tolist() == [0, 2]
    assert records["pred_zs_after/d"].tolist() == [1, 1, 2, 0]
    assert records["class_names/d"].tolist() == ["a", "b", "c", "d"]
