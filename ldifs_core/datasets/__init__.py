"""The one dataset registry: concept-bank domains, torchvision datasets and ImageFolder directories.

Every loader returns an `ImageSet`: uint8 images in memory plus class names and prompt templates, so
training, evaluation and the app all read data the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ldifs_core.datasets.domains import DOMAINS
from ldifs_core.errors import DatasetUnavailable
from ldifs_core.paths import BANK_DIR

BANK_NAMES = tuple(DOMAINS)


@dataclass
class ImageSet:
    """One split of one dataset: images uint8 [N, C, H, W], labels int64 [N]."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}."])

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, limit: int | None, seed: int = 0) -> "ImageSet":
        """A fixed random subset of at most `limit` images (same seed, same subset)."""
        if limit is None or limit >= len(self):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        return ImageSet(self.name, self.split, self.images[order], self.labels[order], self.class_names, self.templates)


@lru_cache(maxsize=None)
def _bank_arrays(name: str) -> dict[str, np.ndarray]:
    path = BANK_DIR / f"{name}.npz"
    if not path.is_file():
        raise DatasetUnavailable(f"The concept-bank file {path} is missing. Rebuild it with "
                                 f"`python -m ldifs_core.datasets.build_bank` (needs the package registries).")
    with np.load(path, allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def load_bank(name: str, split: str) -> ImageSet:
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
    if Path(name).expanduser().is_dir():
        return folder.load(Path(name).expanduser(), split, image_size=image_size)
    raise DatasetUnavailable(f"Unknown dataset '{name}'. Use one of {', '.join(known_datasets())}, "
                             f"or the path of an ImageFolder directory (one sub-folder per class).")


def known_datasets() -> list[str]:
    from ldifs_core.datasets import torchvision_sets

    return list(BANK_NAMES) + list(torchvision_sets.TORCHVISION_SETS)


def available_bank() -> list[str]:
    """Concept-bank domains whose files are present (all of them in a clean clone)."""
    return [name for name in BANK_NAMES if (BANK_DIR / f"{name}.npz").is_file()]
