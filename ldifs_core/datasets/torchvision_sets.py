"""The torchvision datasets of the LDIFS paper (and a few cheap extras) as `SplitIndex`es.

Each dataset is one `TorchvisionSet` row: how to open it, what its classes are called in prompts, and CLIP's
prompt templates for it (from the CLIP paper's published prompts where it has them). Nothing is downloaded
unless the caller asks: a dataset that is not on disk raises `DatasetUnavailable` saying how to get it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldifs_core.datasets import SplitIndex, data_version, readable_class_name, remembered, stratified_split
from ldifs_core.datasets.domains import DIGITS
from ldifs_core.errors import DatasetUnavailable

Opener = Callable[[str, str, bool], Any]  # (root, 'train' | 'test', download) -> torchvision dataset


def _dataset_class(name: str) -> type:
    """torchvision.datasets.<name>, imported when a dataset is opened: the registry itself is read by every page
    that lists datasets, and importing torchvision (and torch) takes seconds."""
    from torchvision import datasets

    return getattr(datasets, name)


def _by_train_flag(cls: str, **kwargs: Any) -> Opener:
    """Datasets whose split is chosen by train=True/False (CIFAR, the MNIST family)."""
    return lambda root, split, download: _dataset_class(cls)(root, train=split == "train", download=download,
                                                             **kwargs)


def _by_split_name(cls: str, train: str = "train", **kwargs: Any) -> Opener:
    """Datasets whose split is chosen by split=...; `train` is the split we train on ('trainval' where the
    dataset keeps a validation split apart, as the paper's fine-tuning recipes do not)."""
    return lambda root, split, download: _dataset_class(cls)(root, split=train if split == "train" else "test",
                                                             download=download, **kwargs)


def _single_split(cls: str) -> Opener:
    """Datasets that ship without a split; `TorchvisionSet.seeded_split` then makes one."""
    return lambda root, split, download: _dataset_class(cls)(root, download=download)


@dataclass(frozen=True)
class TorchvisionSet:
    title: str
    open: Opener
    templates: tuple[str, ...]
    class_names: tuple[str, ...] = ()  # for datasets whose torchvision class has no `.classes`
    rename: Mapping[str, str] = field(default_factory=dict)  # torchvision class -> the wording CLIP's prompts use
    seeded_split: bool = False  # no test split: a fixed stratified 80/20 split (seed 0), as for ImageFolders
    first_label: int = 0  # EMNIST letters numbers a..z from 1 and calls label 0 'N/A'
    transposed: bool = False  # EMNIST stores every image transposed (torchvision issue #8783)
    folder: str = ""  # where torchvision keeps its files under the root ('': loose files in the root itself)


GTSRB_CLASSES = (
    "red and white circle 20 kph speed limit", "red and white circle 30 kph speed limit",
    "red and white circle 50 kph speed limit", "red and white circle 60 kph speed limit",
    "red and white circle 70 kph speed limit", "red and white circle 80 kph speed limit",
    "end / de-restriction of 80 kph speed limit", "red and white circle 100 kph speed limit",
    "red and white circle 120 kph speed limit", "red and white circle red car and black car no passing",
    "red and white circle red truck and black car no passing", "red and white triangle road intersection warning",
    "white and yellow diamond priority road", "red and white upside down triangle yield right-of-way", "stop",
    "empty red and white circle", "red and white circle no truck entry",
    "red circle with white horizonal stripe no entry", "red and white triangle with exclamation mark warning",
    "red and white triangle with black left curve approaching warning",
    "red and white triangle with black right curve approaching warning",
    "red and white triangle with black double curve approaching warning",
    "red and white triangle rough / bumpy road warning", "red and white triangle car skidding / slipping warning",
    "red and white triangle with merging / narrow lanes warning",
    "red and white triangle with person digging / construction / road work warning",
    "red and white triangle with traffic light approaching warning",
    "red and white triangle with person walking warning",
    "red and white triangle with child and person walking warning", "red and white triangle with bicyle warning",
    "red and white triangle with snowflake / ice warning", "red and white triangle with deer warning",
    "white circle with gray strike bar no speed limit", "blue circle with white right turn arrow mandatory",
    "blue circle with white left turn arrow mandatory", "blue circle with white forward arrow mandatory",
    "blue circle with white forward or right turn arrow mandatory",
    "blue circle with white forward or left turn arrow mandatory",
    "blue circle with white keep right arrow mandatory", "blue circle with white keep left arrow mandatory",
    "blue circle with white arrows indicating a traffic circle",
    "white circle with gray strike bar indicating no passing for cars has ended",
    "white circle with gray strike bar indicating no passing for trucks has ended",
)

EUROSAT_CLASSES = {
    "AnnualCrop": "annual crop land", "Forest": "forest", "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road", "Industrial": "industrial buildings or commercial buildings",
    "Pasture": "pasture land", "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings or homes or apartments", "River": "river", "SeaLake": "lake or sea",
}

PHOTO = ("a photo of a {}.", "a blurry photo of a {}.", "a low contrast photo of a {}.", "a photo of a small {}.",
         "a photo of the {}.")

TORCHVISION_SETS: dict[str, TorchvisionSet] = {
    "cifar10": TorchvisionSet("CIFAR-10", _by_train_flag("CIFAR10"), PHOTO, folder="cifar-10-batches-py"),
    "cifar100": TorchvisionSet("CIFAR-100", _by_train_flag("CIFAR100"), PHOTO, folder="cifar-100-python"),
    "svhn": TorchvisionSet("SVHN", _by_split_name("SVHN"),
                           ('a photo of the number: "{}".', 'a photo of the house number "{}".',
                            "a street photo of the digit {}."), class_names=DIGITS),
    "eurosat": TorchvisionSet("EuroSAT", _single_split("EuroSAT"),
                              ("a centered satellite photo of {}.", "a centered satellite photo of a {}.",
                               "a centered satellite photo of the {}."),
                              rename=EUROSAT_CLASSES, seeded_split=True, folder="eurosat"),
    "gtsrb": TorchvisionSet("GTSRB", _by_split_name("GTSRB"),
                            ('a zoomed in photo of a "{}" traffic sign.', 'a centered photo of a "{}" traffic sign.',
                             'a close up photo of a "{}" traffic sign.'), class_names=GTSRB_CLASSES, folder="gtsrb"),
    "dtd": TorchvisionSet("DTD", _by_split_name("DTD"),
                          ("a photo of a {} texture.", "a photo of a {} pattern.", "a photo of a {} thing.",
                           "a photo of a {} object.", "a photo of the {} texture."), folder="dtd"),
    "stanford_cars": TorchvisionSet("Stanford Cars", _by_split_name("StanfordCars"),
                                    ("a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!",
                                     "a photo of my new {}."), folder="stanford_cars"),
    "stl10": TorchvisionSet("STL-10", _by_split_name("STL10"),
                            ("a photo of a {}.", "a photo of the {}.", "a blurry photo of a {}."),
                            folder="stl10_binary"),
    "flowers102": TorchvisionSet("Flowers-102", _by_split_name("Flowers102"),
                                 ("a photo of a {}, a type of flower.", "a close-up photo of a {}, a type of flower.",
                                  "a photo of the {}, a flower."), folder="flowers-102"),
    "oxford_pets": TorchvisionSet("Oxford-IIIT Pets", _by_split_name("OxfordIIITPet", train="trainval"),
                                  ("a photo of a {}, a type of pet.", "a photo of the {}, a type of pet.",
                                   "a close-up photo of a {}, a type of pet."), folder="oxford-iiit-pet"),
    "food101": TorchvisionSet("Food-101", _by_split_name("Food101"),
                              ("a photo of {}, a type of food.", "a close-up photo of {}, a type of food.",
                               "a photo of a plate of {}."), folder="food-101"),
    "fgvc_aircraft": TorchvisionSet("FGVC Aircraft", _by_split_name("FGVCAircraft", train="trainval"),
                                    ("a photo of a {}, a type of aircraft.", "a photo of the {}, a type of aircraft.",
                                     "a photo of a {} airplane."), folder="fgvc-aircraft-2013b"),
    "kmnist": TorchvisionSet("KMNIST", _by_train_flag("KMNIST"),
                             ('a handwritten hiragana character "{}".', 'the Japanese character "{}", written by hand.',
                              'a white hiragana "{}" on a black background.'), folder="KMNIST"),
    "emnist_letters": TorchvisionSet("EMNIST letters", _by_train_flag("EMNIST", split="letters"),
                                     ("a handwritten letter {}.", 'the letter "{}", written by hand.',
                                      "a white letter {} on a black background."),
                                     first_label=1, transposed=True, folder="EMNIST"),
}


def default_root() -> Path:
    """$LDIFS_DATA, else ~/.cache/ldifs_lab/data: these datasets are gigabytes, so they live outside the project."""
    return Path(os.environ.get("LDIFS_DATA") or Path.home() / ".cache" / "ldifs_lab" / "data").expanduser()


def _open(spec: TorchvisionSet, root: Path, split: str, download: bool) -> Any:
    """The torchvision dataset, with torchvision's errors turned into ones that say what to do."""
    if not download:
        try:
            return spec.open(str(root), split, False)
        except RuntimeError as err:  # torchvision's "Dataset not found ..." (and "... metadata file not found")
            if not str(err).startswith("Dataset"):
                raise
            raise DatasetUnavailable(
                f"{spec.title} is not in {root} (or its files there are incomplete). Download it once with "
                f"--download (CLI) / the Download switch (app), or put the files there in torchvision's layout."
            ) from err
    try:
        return spec.open(str(root), split, True)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError; ValueError: Stanford Cars' dead URL
        raise DatasetUnavailable(
            f"Could not download {spec.title} into {root} ({err}). Downloading needs a network connection; "
            f"without one, put the files in {root} in torchvision's layout and load without --download."
        ) from err


def _labels_of(dataset: Any) -> list[int]:
    """Every item's label from the dataset's metadata, without opening an image (each torchvision class keeps
    them under its own name)."""
    for attribute in ("targets", "labels", "_labels"):
        labels = getattr(dataset, attribute, None)
        if labels is not None:
            return [int(label) for label in labels]
    samples = getattr(dataset, "_samples", None)  # GTSRB, Stanford Cars: (path, label) pairs
    if samples is not None:
        return [int(label) for _, label in samples]
    raise DatasetUnavailable(f"Cannot read the labels of {type(dataset).__name__} without decoding it; this lab "
                             f"version does not support it.")


@dataclass(frozen=True)
class TorchvisionSource:
    """Items of a torchvision dataset on disk; each process opens the dataset itself (nothing big is pickled)."""

    name: str
    root: str
    split: str
    positions: tuple[int, ...]  # split position -> index into the torchvision dataset
    transposed: bool = False

    def open(self) -> Callable[[int], Any]:
        dataset = TORCHVISION_SETS[self.name].open(self.root, self.split, False)
        return lambda position: dataset[self.positions[position]][0]


def index(name: str, split: str, *, root: str | Path | None = None, download: bool = False) -> SplitIndex:
    """`split` ('train' or 'test') of the torchvision dataset `name`, from its metadata alone (nothing decoded)."""
    import torch

    spec = TORCHVISION_SETS[name]
    root = Path(root).expanduser() if root else default_root()
    # a set without splits of its own is opened (its file list read) once for both of ours
    dataset = remembered(("torchvision", name, str(root), "all" if spec.seeded_split else split, download),
                         lambda: _open(spec, root, split, download))
    all_labels = _labels_of(dataset)
    positions = stratified_split(all_labels)[split] if spec.seeded_split else range(len(all_labels))
    labels = torch.tensor([all_labels[p] - spec.first_label for p in positions], dtype=torch.int64)
    names = list(spec.class_names) or [spec.rename.get(c, readable_class_name(c))
                                       for c in dataset.classes[spec.first_label:]]
    source = TorchvisionSource(name, str(root), split, tuple(positions), spec.transposed)
    identity = {"torchvision": name, "root": str(root.resolve()), "split": split,
                "version": data_version(name, root)}
    return SplitIndex(name, split, spec.title, labels, names, list(spec.templates), source, identity)
