"""Per-image evaluation records: what each test image was predicted before and after fine-tuning, and small
thumbnails of the images worth looking at (those whose verdict flipped, and the UMAP sample).

They live in a run's arrays.npz beside the UMAP, under keys `<kind>/<dataset>`:

- `eval_labels/D`             int32 [N]   true label of every evaluated test image, in evaluation order
- `pred_<probe>_<when>/D`     int32 [N]   predicted label, `when` = before / after; probe `zs` / `lp` for
                                          checked datasets, `zs` / `tuned` (zero-shot before → the tuned
                                          classifier after) for the fine-tuning task
- `thumb_ids/D`               int32 [K]   sorted positions (into the N) that have a thumbnail
- `thumbs/D`                  uint8 [K, t, t, 3]  RGB thumbnails, t ≤ THUMB_SIDE
- `class_names/D`             str [C]     name of every label, so a prediction of a class without test images
                                          in the subset (common on quickdraw's 345) still has a name

A position is a place in the evaluation subset, the same index `umap_ids/D` uses, so the gallery, the drift
picture and the report all find an image's thumbnail the same way (`thumbnail_of`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads only where records are written: pages that read them (thumbnail_of) stay light
    import torch

THUMB_SIDE = 48  # big enough to recognise a photo's subject, small enough that a 224-px run stays a few MB
MAX_THUMBS = 3000  # per dataset: bounds arrays.npz when a run flips most of a large test set


def thumbnails(images: torch.Tensor) -> np.ndarray:
    """uint8 [N, C, H, W] (C = 1 or 3) → uint8 [N, t, t, 3], downscaled with antialiasing when larger than
    THUMB_SIDE."""
    import torch
    import torch.nn.functional as F

    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if max(images.shape[-2:]) > THUMB_SIDE:
        images = F.interpolate(images.float(), size=(THUMB_SIDE, THUMB_SIDE), mode="bilinear", antialias=True,
                               align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def image_records(dataset: str, images: torch.Tensor, labels: torch.Tensor,
                  predictions: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  also_thumbnail: torch.Tensor | np.ndarray | None = None, *,
                  class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of one evaluated dataset. `predictions` maps a probe to its (before, after) predicted labels;
    every image right on one side and wrong on the other, for any probe, gets a thumbnail, and so do the
    positions in `also_thumbnail` (the UMAP sample)."""
    import torch

    flipped = np.zeros(len(labels), dtype=bool)
    for before, after in predictions.values():
        flipped |= ((before == labels) != (after == labels)).numpy()
    chosen = np.flatnonzero(flipped)
    if len(chosen) > MAX_THUMBS:
        chosen = np.sort(np.random.default_rng(0).choice(chosen, MAX_THUMBS, replace=False))
    if also_thumbnail is not None:
        chosen = np.union1d(chosen, np.asarray(also_thumbnail, dtype=np.int64))
    records = {f"eval_labels/{dataset}": labels.numpy().astype(np.int32),
               f"thumb_ids/{dataset}": chosen.astype(np.int32),
               f"thumbs/{dataset}": thumbnails(images[torch.from_numpy(chosen).long()]),
               f"class_names/{dataset}": np.array([str(name) for name in class_names])}
    for probe, (before, after) in predictions.items():
        records[f"pred_{probe}_before/{dataset}"] = before.numpy().astype(np.int32)
        records[f"pred_{probe}_after/{dataset}"] = after.numpy().astype(np.int32)
    return records


def png_base64(thumbnail: np.ndarray) -> str:
    """A thumbnail as base64 PNG text (one grey channel when its three are equal: a third of the bytes), for an
    HTML page or a table's image column."""
    import base64
    import io

    from PIL import Image

    grey = bool((thumbnail == thumbnail[..., :1]).all())
    image = Image.fromarray(thumbnail[..., 0] if grey else thumbnail, mode="L" if grey else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_of(arrays: dict[str, np.ndarray], dataset: str, position: int) -> np.ndarray | None:
    """The stored thumbnail of test image `position` of `dataset`, or None when the run kept none for it (runs
    made before these records existed keep none at all)."""
    ids = arrays.get(f"thumb_ids/{dataset}")
    if ids is None:
        return None
    where = int(np.searchsorted(ids, position))
    return arrays[f"thumbs/{dataset}"][where] if where < len(ids) and ids[where] == position else None
