"""The one dataset registry: concept-bank domains, torchvision datasets and ImageFolder directories.

Every loader returns an `ImageSet`: uint8 images in memory plus class names and prompt templates, so
training, evaluation and the app all read data the same way.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from ldifs_core.datasets.domains import DOMAINS
from ldifs_core.errors import DatasetUnavailable
from ldifs_core.paths import BANK_DIR

if TYPE_CHECKING:  # torch is imported where images are touched: listing datasets stays light for the app's pages
    import torch

BANK_NAMES = tuple(DOMAINS)


@dataclass(frozen=True)
class ImageSet:
    """One split of one dataset: images uint8 [N, C, H, W], labels int64 [N]. Shared between runs: never
    written in place (subsets are new sets)."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}."])
    selection: str = "all"  # which images of the split these are: part of every cache key

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, limit: int | None, seed: int = 0) -> "ImageSet":
        """A fixed random subset of at most `limit` images (same seed, same subset)."""
        import torch

        if limit is None or limit >= len(self):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        return self._take(order, f"{limit} at seed {seed}")

    def per_class_subset(self, per_class: int | None, cap: int | None = None, seed: int = 0) -> "ImageSet":
        """Up to `per_class` images of every class, fewer per class when `cap` (a total) binds, at least one each:
        a total limit alone left a 345-class dataset with about 3 images per class. Seeded and fixed."""
        import torch

        present = int((torch.bincount(self.labels, minlength=self.num_classes) > 0).sum())
        per = per_class if per_class is not None else len(self)
        if cap is not None and present:
            per = min(per, max(1, cap // present))
        shuffled = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        by_label = shuffled[torch.sort(self.labels[shuffled], stable=True).indices]  # grouped by class, still shuffled
        sorted_labels = self.labels[by_label]
        group_start = torch.searchsorted(sorted_labels, sorted_labels, side="left")
        rank = torch.arange(len(self)) - group_start
        chosen = by_label[rank < per].sort().values
        if len(chosen) == len(self):
            return self
        return self._take(chosen, f"{per} per class at seed {seed}")

    def _take(self, positions: torch.Tensor, how: str) -> "ImageSet":
        return ImageSet(self.name, self.split, self.images[positions], self.labels[positions], self.class_names,
                        self.templates, f"{self.selection} > {how}")


def split_by_class(labels: Sequence[int], test_fraction: float,
                   rng_for_class: Callable[[int], np.random.Generator]) -> dict[str, list[int]]:
    """Fixed 'train'/'test' positions for data without a split of its own: per class (in label order), a shuffle
    from `rng_for_class(label)` sends round(test_fraction * n) items to test (at least 1 when n >= 2, never all)."""
    labels = np.asarray(labels)
    split: dict[str, list[int]] = {"train": [], "test": []}
    for label in np.unique(labels):
        positions = np.flatnonzero(labels == label)
        n = len(positions)
        n_test = min(max(round(test_fraction * n), 1), n - 1)
        order = rng_for_class(int(label)).permutation(n)
        split["test"] += positions[order[:n_test]].tolist()
        split["train"] += positions[order[n_test:]].tolist()
    return {name: sorted(positions) for name, positions in split.items()}


@lru_cache(maxsize=None)
def _bank_arrays(name: str) -> dict[str, np.ndarray]:
    path = BANK_DIR / f"{name}.npz"
    if not path.is_file():
        raise DatasetUnavailable(f"The concept-bank file {path} is missing. Rebuild it with "
                                 f"`python -m ldifs_core.datasets.build_bank` (needs the package registries).")
    with np.load(path, allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def load_bank(name: str, split: str) -> ImageSet:
    import torch

    arrays = _bank_arrays(name)
    images = torch.from_numpy(arrays[f"x_{split}"]).unsqueeze(1)
    labels = torch.from_numpy(arrays[f"y_{split}"].astype(np.int64))
    return ImageSet(name, split, images, labels, [str(c) for c in arrays["class_names"]], list(DOMAINS[name].templates))


def load_split(name: str, split: str, *, image_size: int = 224, root: str | Path | None = None,
               download: bool = False) -> ImageSet:
    """Load `split` ('train' or 'test') of a registered dataset or an ImageFolder path."""
    if split not in ("train", "test"):
        raise DatasetUnavailable(f"Unknown split '{split}': use 'train' or 'test'.")
    if name in DOMAINS:
        return load_bank(name, split)
    from ldifs_core.datasets import folder, torchvision_sets

    if name in torchvision_sets.TORCHVISION_SETS:
        return torchvision_sets.load(name, split, image_size=image_size, root=root, download=download)
    check_known(name)
    return folder.load(Path(name).expanduser(), split, image_size=image_size)


def data_version(name: str) -> str:
    """What changes when a folder's files change (paths, sizes, modification times); '' for fixed datasets.
    Part of every in-memory cache key, so an edited folder is read again instead of served stale."""
    path = Path(name).expanduser()
    if name in DOMAINS or not path.is_dir():
        return ""
    digest = hashlib.sha1()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def check_known(name: str) -> None:
    """Refuse, without loading anything, a name that is neither a registered dataset nor an existing folder."""
    from ldifs_core.datasets import torchvision_sets

    if name in DOMAINS or name in torchvision_sets.TORCHVISION_SETS or Path(name).expanduser().is_dir():
        return
    if Path(name).expanduser().exists():
        raise DatasetUnavailable(f"'{name}' is a file, not a folder. Give an ImageFolder directory (one sub-folder "
                                 f"per class) or one of {', '.join(known_datasets())}.")
    raise DatasetUnavailable(f"Unknown dataset '{name}'. Use one of {', '.join(known_datasets())}, "
                             f"or the path of an ImageFolder directory (one sub-folder per class).")


def known_datasets() -> list[str]:
    from ldifs_core.datasets import torchvision_sets

    return list(BANK_NAMES) + list(torchvision_sets.TORCHVISION_SETS)


def available_bank() -> list[str]:
    """Concept-bank domains whose files are present (all of them in a clean clone)."""
    return [name for name in BANK_NAMES if (BANK_DIR / f"{name}.npz").is_file()]
