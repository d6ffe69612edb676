"""Is a dataset usable here? The checks a front end makes before it queues a run, and what an image folder holds.

A run that would fail on its data should be refused when it is asked for, not minutes later in the worker, with a
message that says what to do. These checks read file lists and metadata only (through the registry's own
`split_index`); nothing is decoded except the few sample images of `folder_samples`. Messages name no command-line
flag or widget: the CLI and the app add their own wording of how to download.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ldifs_core.datasets import BANK_NAMES, ImageSet, Selection, available_bank, load_subset, split_index
from ldifs_core.errors import DatasetUnavailable

# Datasets whose files lie loose in the data folder (TorchvisionSet.folder == ''): the files that show they are there.
LOOSE_FILES = {"svhn": ("train_32x32.mat", "test_32x32.mat")}
FOLDER_LAYOUT = ("The lab needs one sub-folder per class, named after the class: <folder>/<class name>/<image>.png "
                 "(or <folder>/train/<class name>/… and <folder>/test/<class name>/…).")
SAMPLE_IMAGES = 24  # at most this many images in a folder preview
READ_TRIES = 3  # images per class a check decodes before it calls a folder unreadable


def is_torchvision(name: str) -> bool:
    from ldifs_core.datasets.torchvision_sets import TORCHVISION_SETS

    return name in TORCHVISION_SETS


def is_folder(name: str) -> bool:
    """Whether `name` means an image folder (not a concept-bank domain nor a torchvision dataset)."""
    return name not in BANK_NAMES and not is_torchvision(name)


def data_root(root: str | Path | None) -> Path:
    from ldifs_core.datasets.torchvision_sets import default_root

    return Path(root).expanduser() if root else default_root()


def files_here(name: str, root: str | Path | None = None) -> bool:
    """Whether a torchvision dataset's files seem to be in the data folder (its folder there holds something);
    a quick look for labelling lists; `check_dataset` reads the metadata to be sure."""
    from ldifs_core.datasets.torchvision_sets import TORCHVISION_SETS

    folder, base = TORCHVISION_SETS[name].folder, data_root(root)
    if not folder:
        return all((base / file).is_file() for file in LOOSE_FILES[name])
    path = base / folder
    return path.is_dir() and any(path.iterdir())


@dataclass(frozen=True)
class FolderSummary:
    """What the lab finds in an image folder: its classes (as prompts name them) and images per class and split."""

    path: str
    class_names: list[str]
    train_counts: list[int]
    test_counts: list[int]

    @property
    def images(self) -> int:
        return sum(self.train_counts) + sum(self.test_counts)


def folder_summary(path: str | Path) -> FolderSummary:
    """Index an image folder (file lists only) and refuse one the lab cannot use: missing, a file, images without
    class sub-folders, or fewer than two classes with images. Raises DatasetUnavailable saying what is needed."""
    import torch

    from ldifs_core.datasets.folder import IMAGE_EXTENSIONS

    folder = Path(path).expanduser()
    if not folder.exists():
        raise DatasetUnavailable(f"“{path}” is not a folder here (nothing exists at that path). {FOLDER_LAYOUT}")
    if not folder.is_dir():
        raise DatasetUnavailable(f"“{path}” is a file, not a folder. {FOLDER_LAYOUT}")
    try:
        train, test = (split_index(str(folder), split) for split in ("train", "test"))
    except DatasetUnavailable:
        loose = [f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
        if loose:
            raise DatasetUnavailable(f"“{path}” holds {len(loose)} images directly, not in class sub-folders, so "
                                     f"the lab cannot tell their classes. {FOLDER_LAYOUT}") from None
        raise
    counts = [torch.bincount(index.labels, minlength=len(index.class_names)).tolist() for index in (train, test)]
    with_images = [name for name, n, m in zip(train.class_names, *counts) if n + m]
    if len(with_images) < 2:
        only = f"only one class (“{with_images[0]}”)" if with_images else "no class"
        raise DatasetUnavailable(f"“{path}” has images of {only}; fine-tuning and measuring forgetting need at least "
                                 f"two. Add a sub-folder with images for each further class.")
    return FolderSummary(str(path), list(train.class_names), *counts)


def check_readable(path: str | Path) -> None:
    """Refuse a folder whose images cannot be decoded (corrupt, or not really images): the first few of each class
    are tried, not all, so a check stays quick; a run still skips the odd unreadable file."""
    from ldifs_core.datasets.decoding import readable

    index = split_index(str(Path(path).expanduser()), "train")
    tried, per_class = [], Counter()
    for position, label in enumerate(index.labels.tolist()):
        if per_class[label] < READ_TRIES:
            tried.append(position)
            per_class[label] += 1
    if not any(readable(index.source, tried)):
        raise DatasetUnavailable(f"None of the {len(tried)} images tried in “{path}” could be read as an image "
                                 f"(corrupt, or not really images). Replace them with readable pictures.")


def folder_samples(path: str | Path, image_size: int, limit: int = SAMPLE_IMAGES) -> ImageSet:
    """A few training images of a folder exactly as a run decodes them for a model taking `image_size` pixels:
    one or more per class when the classes fit in `limit`, else `limit` at random (seed 0)."""
    summary = folder_summary(path)
    classes = len(summary.class_names)
    selection = (Selection(max(1, limit // classes), 0, by_class=True, cap=limit) if classes <= limit
                 else Selection(limit, 0))
    return load_subset(str(Path(path).expanduser()), "train", selection, image_size=image_size)


def check_dataset(name: str, *, root: str | Path | None = None, download: bool = False) -> None:
    """Refuse, before a run is queued, a dataset it could not read: a concept-bank file that is missing, a
    torchvision dataset without its files (unless it is to be downloaded), or an unusable image folder."""
    if name in BANK_NAMES:
        if name not in available_bank():
            raise DatasetUnavailable(f"The concept-bank file of {name} is missing from this copy of the lab. Restore "
                                     f"assets/ (for example from a fresh clone) or rebuild the concept bank.")
        return
    if is_torchvision(name):
        if download:
            return  # fetched when the run starts; whether the network allows it is known only then
        from ldifs_core.datasets.torchvision_sets import TORCHVISION_SETS

        try:
            for split in ("train", "test"):
                split_index(name, split, root=root)
        except DatasetUnavailable:
            raise DatasetUnavailable(f"{TORCHVISION_SETS[name].title} has no files in {data_root(root)} (or they are incomplete). Download "
                                     f"it once, or put its files there in torchvision's layout.") from None
        return
    folder_summary(name)
    check_readable(name)
