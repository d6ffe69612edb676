"""Specification of the torchvision and ImageFolder loaders, on tiny datasets the tests write themselves.

Nothing here touches the network: the torchvision tests build fake roots in torchvision's real on-disk layout,
and a fixture makes any connection attempt fail loudly (and records it).
"""
from __future__ import annotations

import pickle
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldifs_core.datasets import ImageSet, load_split
from ldifs_core.datasets import folder
from ldifs_core.datasets.domains import DIGITS
from ldifs_core.datasets import readable_class_name, stratified_split
from ldifs_core.datasets.pixels import pil_to_uint8
from ldifs_core.datasets.torchvision_sets import EUROSAT_CLASSES, TORCHVISION_SETS
from ldifs_core.errors import DatasetUnavailable

S = 32
RNG = np.random.default_rng(0)


def noise(width: int, height: int, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def assert_image_set(data: ImageSet, n: int, num_classes: int, size: int = S) -> None:
    assert data.images.shape == (n, 3, size, size)
    assert data.images.dtype == torch.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == torch.int64
    assert 0 <= int(data.labels.min()) and int(data.labels.max()) < num_classes
    assert len(data.class_names) == num_classes
    assert all(t.count("{}") == 1 for t in data.templates)


def image_rows(data: ImageSet) -> set[bytes]:
    return {row.numpy().tobytes() for row in data.images}


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every DNS lookup or socket connect fails (as with no network) and is recorded."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


# ---------------------------------------------------------------------------------------------- image decoding

def test_pil_to_uint8_resizes_the_shorter_side_then_centre_crops_like_open_clip():
    wide = np.zeros((50, 100, 3), dtype=np.uint8)  # red | green | blue, the green band is the centre square
    wide[:, :25, 0], wide[:, 25:75, 1], wide[:, 75:, 2] = 255, 255, 255
    out = pil_to_uint8(Image.fromarray(wide), S).float()
    assert out.shape == (3, S, S)
    assert out[1].mean() > 240 and out[0].mean() < 15 and out[2].mean() < 15


@pytest.mark.parametrize("image, rgb", [
    (Image.new("L", (20, 30), 100), (100, 100, 100)),
    (Image.new("RGB", (64, 64), (10, 20, 30)), (10, 20, 30)),
    (Image.new("RGBA", (100, 50), (0, 0, 0, 0)), (255, 255, 255)),  # transparent -> composited on white
    (Image.new("RGBA", (100, 50), (10, 20, 30, 255)), (10, 20, 30)),
    (Image.new("RGB", (40, 40), (255, 0, 51)).convert("P"), (255, 0, 51)),  # colours of the web palette
    (Image.new("I;16", (30, 20), 65535), (255, 255, 255)),  # 16-bit scaled down, not clipped to 8 bits
], ids=["L", "RGB", "RGBA-transparent", "RGBA-opaque", "P", "I;16"])
def test_pil_to_uint8_turns_every_mode_into_rgb(image: Image.Image, rgb: tuple[int, int, int]):
    out = pil_to_uint8(image, S)
    assert out.shape == (3, S, S) and out.dtype == torch.uint8
    assert out.view(3, -1).float().mean(dim=1).round().tolist() == list(rgb)


@pytest.mark.parametrize("raw, readable", [
    ("red_circle", "red circle"), ("AnnualCrop", "annual crop"), ("aquarium_fish", "aquarium fish"),
    ("American Bulldog", "american bulldog"), ("AM General Hummer SUV 2000", "AM general hummer SUV 2000"),
    ("A300B4", "A300B4"), ("707-320", "707-320"),
])
def test_class_names_become_words_but_acronyms_and_model_numbers_stay(raw: str, readable: str):
    assert readable_class_name(raw) == readable


def test_stratified_split_is_seeded_disjoint_and_gives_every_class_a_test_image():
    labels = [0] * 10 + [1] * 2 + [2] * 1 + [3] * 7
    split = stratified_split(labels)
    assert split == stratified_split(labels)
    assert sorted(split["train"] + split["test"]) == list(range(len(labels)))
    test_counts = np.bincount([labels[i] for i in split["test"]], minlength=4).tolist()
    assert test_counts == [2, 1, 0, 1]  # 20% rounded, at least 1 for classes of >= 2, none from a class of 1
    assert stratified_split(labels, seed=1) != split


# ------------------------------------------------------------------------------------------------ ImageFolder

VARIANTS = [  # (PIL mode, (width, height), file name suffix): every decoding path, upper-case suffix included
    ("L", (20, 30), ".png"), ("RGB", (64, 64), ".jpg"), ("RGBA", (100, 50), ".png"), ("P", (33, 47), ".png"),
    ("L", (64, 48), ".JPEG"),
]
CLASSES = ("red_circle", "blue_square", "green_triangle")


def write_image(path: Path, mode: str, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(noise(*size))
    image = rgb.convert("P") if mode == "P" else rgb.convert(mode)
    image.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")


def write_class(folder_path: Path, count: int = len(VARIANTS)) -> None:
    for i in range(count):
        mode, size, suffix = VARIANTS[i % len(VARIANTS)]
        write_image(folder_path / f"img{i}{suffix}", mode, size)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 classes x 5 images, mixed modes, sizes and formats; a stray text file that must be ignored."""
    root = tmp_path / "shapes"
    for name in CLASSES:
        write_class(root / name)
    (root / "red_circle" / "notes.txt").write_text("not an image")
    return root


def test_folder_loads_mixed_images_as_uint8_squares_with_readable_names(image_folder: Path):
    train = load_split(str(image_folder), "train", image_size=S)
    assert_image_set(train, n=12, num_classes=3)
    assert train.class_names == ["blue square", "green triangle", "red circle"]  # sorted by folder name
    assert train.templates == list(folder.TEMPLATES)
    assert train.labels.bincount().tolist() == [4, 4, 4]


def test_folder_split_is_deterministic_disjoint_and_stratified(image_folder: Path):
    train, test = (load_split(str(image_folder), split, image_size=S) for split in ("train", "test"))
    assert test.labels.bincount().tolist() == [1, 1, 1]
    assert not image_rows(train) & image_rows(test)
    assert len(image_rows(train) | image_rows(test)) == 15
    again = load_split(str(image_folder), "test", image_size=S)
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)


def test_folder_honours_explicit_train_and_test_subfolders(tmp_path: Path):
    write_class(tmp_path / "train" / "cat", 3)
    write_class(tmp_path / "train" / "dog", 2)
    write_class(tmp_path / "train" / "bird", 1)  # a class the test split lacks keeps its label
    write_class(tmp_path / "test" / "cat", 2)
    write_class(tmp_path / "test" / "dog", 1)
    train, test = (load_split(str(tmp_path), split, image_size=S) for split in ("train", "test"))
    assert train.class_names == test.class_names == ["bird", "cat", "dog"]
    assert train.labels.tolist() == [0, 1, 1, 1, 2, 2]
    assert test.labels.tolist() == [1, 1, 2]


def test_folder_index_lists_classes_by_name_and_files_by_path_so_a_seed_keeps_its_images(tmp_path: Path):
    """The order of a folder's files decides which images a seeded subset picks: it must never change."""
    for relative in ("a b/2.png", "a b/10.PNG", "a/x/1.jpg", "a/0.jpeg", ".hidden/3.png", "c/notes.txt", "loose.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    files = {split: folder.index(tmp_path, split).source for split in ("train", "test")}
    everything = sorted(files["train"].paths + files["test"].paths)
    assert everything == sorted(str(tmp_path / f) for f in ("a/0.jpeg", "a/x/1.jpg", "a b/10.PNG", "a b/2.png"))
    index = folder.index(tmp_path, "train")
    assert index.class_names == ["a", "a b"]  # sorted by folder name; hidden folders and loose files left out
    # per class, files in path order, then the seeded split picks from that list
    order = [str(tmp_path / f) for f in ("a/0.jpeg", "a/x/1.jpg", "a b/10.PNG", "a b/2.png")]
    chosen = stratified_split([0, 0, 1, 1])
    assert list(files["train"].paths) == [order[i] for i in chosen["train"]]
    assert list(files["test"].paths) == [order[i] for i in chosen["test"]]


def test_folder_is_reachable_through_the_registry(image_folder: Path):
    via_registry = load_split(str(image_folder), "train", image_size=S)
    direct = load_split(str(image_folder), "train", image_size=S)
    assert torch.equal(via_registry.images, direct.images) and via_registry.class_names == direct.class_names


def test_folder_skips_a_corrupt_file_with_a_warning(image_folder: Path):
    (image_folder / "red_circle" / "broken.png").write_bytes(b"\x89PNG but not really")
    with pytest.warns(UserWarning, match="skipped 1 of"):
        loaded = [load_split(str(image_folder), split, image_size=S) for split in ("train", "test")]
    assert sum(map(len, loaded)) == 15


def test_folder_of_only_corrupt_images_is_unavailable(tmp_path: Path):
    for name in CLASSES:
        (tmp_path / name).mkdir()
        for i in range(3):
            (tmp_path / name / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning), pytest.raises(DatasetUnavailable, match="None of the .* could be read"):
        load_split(str(tmp_path), "train", image_size=S)


def missing(root: Path) -> Path:
    return root / "missing"


def a_file(root: Path) -> Path:
    (root / "file.png").write_bytes(b"")
    return root / "file.png"


def empty(root: Path) -> Path:
    return root


def no_images(root: Path) -> Path:
    (root / "docs").mkdir()
    (root / "docs" / "readme.txt").write_text("not an image")
    return root


def train_without_test(root: Path) -> Path:
    write_class(root / "train" / "cat", 2)
    return root


@pytest.mark.parametrize("make, message", [
    (missing, "does not exist"), (a_file, "not a folder"), (empty, "no class sub-folders"),
    (no_images, "no class sub-folders with images"), (train_without_test, "no test/ folder"),
])
def test_folder_problems_say_which_layout_is_expected(tmp_path: Path, make, message: str):
    with pytest.raises(DatasetUnavailable, match=message) as err:
        folder.index(make(tmp_path), "train")
    assert "<class name>" in str(err.value) or "test/" in str(err.value)


# ------------------------------------------------------------------------------------------ torchvision datasets

def test_registry_holds_the_paper_sets_and_extras_but_not_the_concept_bank_names():
    paper = {"cifar10", "cifar100", "svhn", "eurosat", "gtsrb", "dtd", "stanford_cars"}
    extras = {"stl10", "flowers102", "oxford_pets", "food101", "fgvc_aircraft", "kmnist", "emnist_letters"}
    assert set(TORCHVISION_SETS) == paper | extras
    assert not {"mnist", "fashion_mnist"} & set(TORCHVISION_SETS)
    for spec in TORCHVISION_SETS.values():
        assert 3 <= len(spec.templates) <= 6 and all(t.count("{}") == 1 for t in spec.templates)
    assert len(TORCHVISION_SETS["gtsrb"].class_names) == 43
    assert TORCHVISION_SETS["svhn"].class_names == DIGITS


@pytest.mark.parametrize("name", sorted(TORCHVISION_SETS))
def test_missing_dataset_says_how_to_download_and_never_touches_the_network(name: str, tmp_path: Path,
                                                                            network_attempts: list[str]):
    with pytest.raises(DatasetUnavailable) as err:
        load_split(name, "train", image_size=S, root=tmp_path, download=False)
    message = str(err.value)
    assert TORCHVISION_SETS[name].title in message and str(tmp_path) in message and "--download" in message
    assert network_attempts == []


def test_download_without_a_network_names_the_dataset_and_the_network(tmp_path: Path,
                                                                      network_attempts: list[str]):
    with pytest.raises(DatasetUnavailable, match="CIFAR-10.*network"):
        load_split("cifar10", "train", image_size=S, root=tmp_path, download=True)
    assert network_attempts  # it did try


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def colour_of(k: int) -> tuple[int, int, int]:
    return (10 * k, 255 - 10 * k, 7)


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cifar-10-batches-py with 5 x 4 train and 6 test images; image k of a batch has the solid colour_of(k).

    torchvision compares these files with the real ones' md5; the test swaps its check_integrity for a plain
    existence check, so everything else (file names, pickle layout, CHW byte order) is torchvision's own code.
    """
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda path, md5=None: Path(path).is_file())
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()

    def batch(n: int) -> dict:
        planes = np.array([np.broadcast_to(np.array(colour_of(k), np.uint8)[:, None], (3, 1024)) for k in range(n)])
        return {"data": planes.reshape(n, 3072), "labels": [k % 10 for k in range(n)]}

    for file_name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 6)]:
        (base / file_name).write_bytes(pickle.dumps(batch(n)))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_NAMES}))
    return tmp_path


def test_cifar10_loads_from_torchvision_layout(cifar_root: Path, network_attempts: list[str]):
    train = load_split("cifar10", "train", image_size=S, root=cifar_root)
    test = load_split("cifar10", "test", image_size=S, root=cifar_root)
    assert_image_set(train, n=20, num_classes=10)
    assert_image_set(test, n=6, num_classes=10)
    assert train.class_names == CIFAR_NAMES and train.templates == list(TORCHVISION_SETS["cifar10"].templates)
    assert test.labels.tolist() == [0, 1, 2, 3, 4, 5]
    for k in range(6):  # channel order survives: every pixel of image k has colour_of(k)
        assert test.images[k].view(3, -1).float().mean(dim=1).tolist() == list(colour_of(k))
    assert network_attempts == []


def test_data_root_defaults_to_ldifs_data(cifar_root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LDIFS_DATA", str(cifar_root))
    assert len(load_split("cifar10", "test", image_size=S)) == 6


def test_eurosat_gets_a_seeded_stratified_split_and_clip_class_names(tmp_path: Path):
    for name in EUROSAT_CLASSES:
        for i in range(5):
            write_image(tmp_path / "eurosat" / "2750" / name / f"{name}_{i}.jpg", "RGB", (64, 64))
    train, test = (load_split("eurosat", split, image_size=S, root=tmp_path) for split in ("train", "test"))
    assert_image_set(train, n=40, num_classes=10)
    assert_image_set(test, n=10, num_classes=10)
    assert train.class_names[0] == "annual crop land" and train.class_names == list(EUROSAT_CLASSES.values())
    assert test.labels.tolist() == list(range(10))
    assert not image_rows(train) & image_rows(test)
    assert torch.equal(load_split("eurosat", "test", image_size=S, root=tmp_path).images, test.images)


def test_svhn_labels_and_digit_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from scipy.io import savemat

    monkeypatch.setattr("torchvision.datasets.svhn.check_integrity", lambda path, md5=None: Path(path).is_file())
    savemat(tmp_path / "test_32x32.mat", {"X": RNG.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8),
                                         "y": np.array([[10], [1], [9], [10]], dtype=np.uint8)})
    data = load_split("svhn", "test", image_size=S, root=tmp_path)
    assert_image_set(data, n=4, num_classes=10)
    assert data.labels.tolist() == [0, 1, 9, 0]  # SVHN's label 10 is the digit zero
    assert data.class_names == list(DIGITS)


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of the MNIST family: magic (dtype 0x08 = uint8, ndim), big-endian sizes, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def test_emnist_letters_are_upright_and_numbered_from_zero(tmp_path: Path):
    upright = np.zeros((28, 28), dtype=np.uint8)
    upright[3, 4:24] = 255  # a horizontal bar near the top
    raw = tmp_path / "EMNIST" / "raw"
    write_idx(raw / "emnist-letters-test-images-idx3-ubyte", np.stack([upright.T, upright.T]))  # stored transposed
    write_idx(raw / "emnist-letters-test-labels-idx1-ubyte", np.array([1, 26], dtype=np.uint8))
    data = load_split("emnist_letters", "test", image_size=28, root=tmp_path)
    assert_image_set(data, n=2, num_classes=26, size=28)
    assert data.class_names[0] == "a" and data.class_names[-1] == "z"
    assert data.labels.tolist() == [0, 25]
    assert data.images[0, 0, 3, 14] > 200 and data.images[0, 0, 14, 3] < 50


# ------------------------------------------------------------------------------------------- dataset identity
def test_a_folder_is_the_same_dataset_however_its_path_is_spelt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from ldifs_core.datasets import dataset_identity, same_dataset

    (tmp_path / "F").mkdir()
    (tmp_path / "G").mkdir()
    (tmp_path / "mnist").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "F")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    spellings = ["F", "F/", "./F", "G/../F", str(tmp_path / "F"), f"{tmp_path}/F/", "~/F", "link"]
    assert {dataset_identity(name) for name in spellings} == {str(tmp_path / "F")}
    assert all(same_dataset("F", name) for name in spellings)
    assert not same_dataset("F", "G") and not same_dataset("F", "animals")
    assert same_dataset("mnist", "mnist") and not same_dataset("mnist", "./mnist")  # the registry's name wins


@pytest.mark.parametrize("spelling", ["F/", "./F", "absolute"])
def test_the_task_is_never_checked_for_forgetting_however_it_is_spelt(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch, spelling: str):
    from ldifs_core.config import RunConfig
    from ldifs_core.errors import BadConfig

    (tmp_path / "F").mkdir()
    monkeypatch.chdir(tmp_path)
    task = str(tmp_path / "F") if spelling == "absolute" else spelling
    assert RunConfig(dataset="F", eval_datasets=[task, "animals"]).forgetting_datasets([]) == ["animals"]
    assert RunConfig(dataset=task, eval_datasets=None).forgetting_datasets(["F", "animals"]) == ["animals"]
    with pytest.raises(BadConfig, match="no dataset is left to check for forgetting"):
        RunConfig(dataset="F", eval_datasets=[task]).validate()


def test_a_sequence_checks_no_task_for_forgetting_and_refuses_a_task_listed_twice_however_spelt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from ldifs_core.config import RunConfig
    from ldifs_core.errors import BadConfig
    from ldifs_core.sequence import SequenceConfig

    (tmp_path / "F").mkdir()
    (tmp_path / "G").mkdir()
    monkeypatch.chdir(tmp_path)
    sequence = SequenceConfig(tasks=("F", "G"), base=RunConfig(eval_datasets=["./F", "G/", "animals"]))
    assert sequence.checked() == ["animals"]
    with pytest.raises(BadConfig, match="listed twice"):
        SequenceConfig(tasks=("F", "G", "F/")).validate()
