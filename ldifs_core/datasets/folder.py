"""ImageFolder directories (one sub-folder per class) as `SplitIndex`es: the file list only; decoding.py turns the
chosen files into pixels."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ldifs_core.datasets import (SplitIndex, data_version, files_under, readable_class_name, remembered,
                                 stratified_split)
from ldifs_core.datasets.decoding import FileSource
from ldifs_core.errors import DatasetUnavailable

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a close-up photo of a {}.")
LAYOUT = ("Expected an ImageFolder layout: <folder>/<class name>/<image>.jpg (one sub-folder per class), "
          "or <folder>/train/<class name>/... and <folder>/test/<class name>/...")

def _classes(path: Path, layout: str) -> dict[str, dict[str, list[str]]]:
    """Per split root ('all', or 'train' and 'test'): class folder name -> its image files (full paths, sorted),
    for the class sub-folders that hold any (hidden folders ignored). One walk of the whole folder, shared with its
    version (files_under), and plain strings: a Path per file was most of the time of indexing 40,000 images."""
    return remembered(("classes", str(path), layout), lambda: _list_classes(path, layout))


def _list_classes(path: Path, layout: str) -> dict[str, dict[str, list[str]]]:
    prefix = "" if str(path) == "." else f"{path}{os.sep}"
    found: dict[str, dict[str, list[str]]] = {}
    for relative, _ in files_under(path):
        parts = relative.split(os.sep)
        if layout != "all":
            if parts[0] not in ("train", "test"):
                continue
            split, parts = parts[0], parts[1:]
        else:
            split = "all"
        if len(parts) < 2 or parts[0].startswith(".") or not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
            continue
        found.setdefault(split, {}).setdefault(parts[0], []).append(prefix + relative)
    return {split: dict(sorted(classes.items())) for split, classes in found.items()}


def _samples(path: Path, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Folder class names and the (file, label) pairs of `split`, from train/ and test/ or a seeded split."""
    has = {name: (path / name).is_dir() for name in ("train", "test")}
    if any(has.values()) and not all(has.values()):
        present, missing = ("train", "test") if has["train"] else ("test", "train")
        raise DatasetUnavailable(f"{path} has a {present}/ folder but no {missing}/ folder. Add {missing}/ with "
                                 f"the same class sub-folders, or remove {present}/ to get a fixed 80/20 split.")
    classes = _classes(path, "train/test" if all(has.values()) else "all")
    names = sorted(set().union(*classes.values()))
    if not names:
        raise DatasetUnavailable(f"{path} has no class sub-folders with images ({', '.join(IMAGE_EXTENSIONS)}). "
                                 f"{LAYOUT}")
    label_of = {name: label for label, name in enumerate(names)}
    if "all" not in classes:
        return names, [(f, label_of[c]) for c, files in classes.get(split, {}).items() for f in files]
    everything = [(f, label_of[c]) for c, files in classes["all"].items() for f in files]
    chosen = stratified_split([label for _, label in everything])[split]
    return names, [everything[i] for i in chosen]


def index(path: Path, split: str) -> SplitIndex:
    """`split` of an ImageFolder directory from its file list alone (nothing decoded)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetUnavailable(f"The folder {path} does not exist. {LAYOUT}")
    if not path.is_dir():
        raise DatasetUnavailable(f"{path} is a file, not a folder. {LAYOUT}")
    names, samples = _samples(path, split)
    if not samples:
        raise DatasetUnavailable(f"The {split} split of {path} has no images. {LAYOUT}")
    identity = {"folder": str(path.resolve()), "split": split, "version": data_version(str(path))}
    labels = torch.from_numpy(np.fromiter((label for _, label in samples), dtype=np.int64, count=len(samples)))
    return SplitIndex(str(path), split, path.name, labels, [readable_class_name(n) for n in names], list(TEMPLATES),
                      FileSource(tuple(file for file, _ in samples)), identity)
