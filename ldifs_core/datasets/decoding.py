"""Decode the chosen images of a split once: in worker processes, into a memory-mapped file of the on-disk cache,
which later runs (and other processes) open in a moment instead of decoding again.

A cache entry is a folder `<cache>/<key>/` holding images.npy (uint8 [K, 3, S, S]), labels.npy and meta.json
(shape and a CRC of both arrays). It is written under a temporary name and renamed into place only when complete,
so a writer killed halfway leaves nothing that is ever read; an entry whose files disagree with its meta.json is
deleted and decoded again. A file is mapped for writing only once the disk has reserved all of it, so a full disk
is an error (the images are then decoded in memory, with a warning), never a killed process. The key covers what
the pixels depend on: the dataset's identity and version (a folder's file list, sizes and modification times), the
split, the chosen positions, the image size and `DECODER_VERSION`.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import time
import uuid
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

DECODER_VERSION = 1  # bump when pil_to_uint8's output changes: entries written before are then never read
PARALLEL_FROM = 512  # fewer images decode faster in-process than worker processes start
CHUNK = 64  # images per task handed to a worker (and per progress update)
MAX_WORKERS = 8
TEMP_PREFIX = ".tmp-"
# Zero-shot heads (encoding.py) and the unpacked concept bank share the cache root; pruning leaves them alone.
HEADS_FOLDER = "text_heads"
BANK_FOLDER = "bank"
STALE_TEMP_S = 3600  # a temporary folder this old belongs to a writer that died: removed when seen
Progress = Callable[[int, int], None]  # (images decoded so far, images to decode)


class ImageSource(Protocol):
    """Where a split's images come from. Picklable: worker processes get a copy and `open` it themselves."""

    transposed: bool  # stored transposed (EMNIST): rows and columns are swapped back after decoding

    def open(self) -> Callable[[int], Image.Image]:
        """A reader: position in the split -> PIL image (may raise one of pixels.UNREADABLE)."""


@dataclass(frozen=True)
class FileSource:
    """Image files, one per position (ImageFolder directories)."""

    paths: tuple[str, ...]
    transposed: bool = False

    def open(self) -> Callable[[int], Image.Image]:
        return lambda position: Image.open(self.paths[position])


def cache_dir() -> Path:
    """$LDIFS_CACHE_DIR, else ~/.cache/ldifs_lab/decoded."""
    return Path(os.environ.get("LDIFS_CACHE_DIR") or Path.home() / ".cache" / "ldifs_lab" / "decoded").expanduser()


def worker_count(count: int) -> int:
    """Worker processes for `count` images: $LDIFS_DECODE_WORKERS if set (0 = decode in this process), else one
    per available core, none for small jobs."""
    configured = os.environ.get("LDIFS_DECODE_WORKERS")
    if configured is not None and configured.strip():
        return max(0, int(configured))
    if count < PARALLEL_FROM:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, MAX_WORKERS, -(-count // CHUNK))


def entry_key(identity: dict, positions: np.ndarray, image_size: int) -> str:
    described = {**identity, "image_size": image_size, "decoder": DECODER_VERSION,
                 "positions": hashlib.sha1(np.ascontiguousarray(positions, dtype=np.int64).tobytes()).hexdigest()}
    return hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------- decoding

_worker_source: tuple[Callable[[int], Image.Image], bool] | None = None  # a worker process's opened source


def _start_worker(source: ImageSource) -> None:
    global _worker_source
    _worker_source = (source.open(), source.transposed)


def _decode_rows_in_worker(positions: Sequence[int], image_size: int) -> tuple[np.ndarray, list[bool]]:
    return _decode_rows(positions, image_size, *_worker_source)


def _decode_rows(positions: Sequence[int], image_size: int, reader: Callable[[int], Image.Image],
                 transposed: bool) -> tuple[np.ndarray, list[bool]]:
    """The pixels of `positions` (zeros where unreadable) and which of them could be read."""
    from ldifs_core.datasets.pixels import UNREADABLE, pil_to_uint8

    pixels = np.zeros((len(positions), 3, image_size, image_size), dtype=np.uint8)
    ok = []
    for row, position in enumerate(positions):
        try:
            with reader(int(position)) as image:
                decoded_image = pil_to_uint8(image, image_size).numpy()
        except UNREADABLE:
            ok.append(False)
            continue
        pixels[row] = decoded_image.swapaxes(-1, -2) if transposed else decoded_image
        ok.append(True)
    return pixels, ok


def _decode_into(images: np.ndarray, source: ImageSource, positions: np.ndarray, image_size: int, desc: str,
                 progress: Progress | None) -> np.ndarray:
    """Fill `images` (in memory, or a cache file's map) with the decoded `positions`; a mask of the ones that
    could be read. `progress` may raise (a cancelled run) to stop: workers then finish their current chunk and
    stop."""
    from tqdm import tqdm

    chunks = [range(start, min(start + CHUNK, len(positions))) for start in range(0, len(positions), CHUNK)]
    workers = worker_count(len(positions))
    ok = np.zeros(len(positions), dtype=bool)
    bar = tqdm(total=len(positions), desc=desc, unit="img", disable=len(positions) < PARALLEL_FROM)
    done = 0

    def finished(rows: range, decoded_rows: tuple[np.ndarray, list[bool]]) -> None:
        nonlocal done
        images[rows.start:rows.stop], ok[rows.start:rows.stop] = decoded_rows
        done += len(rows)
        bar.update(len(rows))
        if progress is not None:
            progress(done, len(positions))

    try:
        if workers == 0:
            reader = source.open()
            for rows in chunks:
                finished(rows, _decode_rows(positions[rows.start:rows.stop], image_size, reader, source.transposed))
            return ok
        # forkserver: workers fork from a clean server process, never from this one (which may hold the app's
        # threads and their locks); the preloaded module makes each worker's start cheap.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["ldifs_core.datasets.folder"])
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(source,))
        try:
            futures = {pool.submit(_decode_rows_in_worker, positions[rows.start:rows.stop], image_size): rows
                       for rows in chunks}
            for future in as_completed(futures):
                finished(futures[future], future.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return ok
    finally:
        bar.close()


def _warn_skipped(desc: str, ok: np.ndarray) -> None:
    if not ok.all():
        warnings.warn(f"{desc}: skipped {int((~ok).sum())} of {len(ok)} images that could not be read.",
                      stacklevel=4)


def _decoded_in_memory(source: ImageSource, positions: np.ndarray, labels: np.ndarray, image_size: int, desc: str,
                       progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Decode without the cache: nothing is written to disk."""
    images = np.zeros((len(positions), 3, image_size, image_size), dtype=np.uint8)
    ok = _decode_into(images, source, positions, image_size, desc, progress)
    _warn_skipped(desc, ok)
    return images[ok], np.ascontiguousarray(labels[ok], dtype=np.int64)


# ---------------------------------------------------------------------------------------------- cache entries

def _crc(*paths: Path) -> int:
    crc = 0
    for path in paths:
        with open(path, "rb") as file:
            while block := file.read(1 << 24):
                crc = zlib.crc32(block, crc)
    return crc


def _read_entry(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The arrays of a complete entry, images memory-mapped copy-on-write; ValueError/OSError if damaged."""
    meta = json.loads((folder / "meta.json").read_text())
    images_path, labels_path = folder / "images.npy", folder / "labels.npy"
    if _crc(images_path, labels_path) != meta["crc32"]:
        raise ValueError("its checksum does not match")
    images = np.load(images_path, mmap_mode="c")
    labels = np.load(labels_path)
    if list(images.shape) != meta["shape"] or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError("its arrays do not have the recorded shape")
    os.utime(folder / "meta.json")  # most recently used: pruning removes the oldest first
    return images, labels


def _reserved_npy(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new uint8 .npy of `shape`, mapped for writing only once the disk has reserved all of its blocks: a write
    through a map into a file the disk has no room for kills the process (SIGBUS); reserving raises ENOSPC."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "|u1", "fortran_order": False, "shape": shape})
        header, size = file.tell(), file.tell() + math.prod(shape)
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(file.fileno(), 0, size)
        else:  # no fallocate (macOS): zeros written the ordinary way fail with ENOSPC too
            block = bytes(1 << 20)
            for start in range(header, size, len(block)):
                file.write(block[:size - start])
            file.flush()
            os.fsync(file.fileno())
    return np.load(path, mmap_mode="r+")


def _write_entry(folder: Path, source: ImageSource, positions: np.ndarray, labels: np.ndarray, image_size: int,
                 desc: str, progress: Progress | None) -> None:
    """Decode into `folder` (a new temporary folder), keeping only the images that could be read."""
    folder.mkdir(parents=True)
    images_path = folder / "images.npy"
    images = _reserved_npy(images_path, (len(positions), 3, image_size, image_size))
    ok = _decode_into(images, source, positions, image_size, desc, progress)
    images.flush()
    _warn_skipped(desc, ok)
    if not ok.all():
        kept_path = folder / "kept.npy"
        kept = _reserved_npy(kept_path, (int(ok.sum()), *images.shape[1:]))
        readable = np.flatnonzero(ok)
        for start in range(0, len(kept), CHUNK):
            kept[start:start + CHUNK] = images[readable[start:start + CHUNK]]
        kept.flush()
        del kept
        os.replace(kept_path, images_path)
    del images
    np.save(folder / "labels.npy", np.ascontiguousarray(labels[ok], dtype=np.int64))
    shape = [int(ok.sum()), 3, image_size, image_size]
    meta = {"shape": shape, "crc32": _crc(images_path, folder / "labels.npy"), "describes": desc}
    (folder / "meta.json").write_text(json.dumps(meta))
    for path in folder.iterdir():
        with open(path, "rb") as file:
            os.fsync(file.fileno())


def prune(root: Path, budget_bytes: int, keep: Path) -> None:
    """Remove the least recently used entries (never `keep`) beyond `budget_bytes`, and temporary folders of
    dead writers."""
    entries = []
    for folder in root.iterdir():
        if folder.name in (HEADS_FOLDER, BANK_FOLDER):
            continue
        try:
            if folder.name.startswith(TEMP_PREFIX):
                if time.time() - folder.stat().st_mtime > STALE_TEMP_S:
                    shutil.rmtree(folder, ignore_errors=True)
                continue
            size = sum(f.stat().st_size for f in folder.iterdir())
            if folder == keep:
                budget_bytes -= size
                continue
            entries.append(((folder / "meta.json").stat().st_mtime, size, folder))
        except OSError:
            continue
    total = sum(size for _, size, _ in entries)
    for _, size, folder in sorted(entries):
        if total <= budget_bytes:
            break
        shutil.rmtree(folder, ignore_errors=True)
        total -= size


def cache_budget_bytes() -> int:
    """$LDIFS_CACHE_GB (default 20) of decoded images kept on disk."""
    return int(float(os.environ.get("LDIFS_CACHE_GB", "20")) * 2**30)


def _writable_root() -> tuple[Path | None, str]:
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f"{TEMP_PREFIX}probe-{uuid.uuid4().hex}"
        probe.mkdir()
        probe.rmdir()
        return root, ""
    except OSError as err:
        return None, err.strerror or str(err)


def is_cached(identity: dict, positions: np.ndarray, image_size: int) -> bool:
    return (cache_dir() / entry_key(identity, positions, image_size) / "meta.json").is_file()


def estimate_seconds(source: ImageSource, positions: np.ndarray, image_size: int, sample: int = 16) -> float:
    """How long decoding `positions` will take, from timing a few of them here, shared among the workers."""
    from ldifs_core.datasets.pixels import UNREADABLE, pil_to_uint8

    reader = source.open()
    started = time.perf_counter()
    for position in positions[:sample]:
        try:
            with reader(int(position)) as image:
                pil_to_uint8(image, image_size)
        except UNREADABLE:
            pass
    per_image = (time.perf_counter() - started) / max(1, min(sample, len(positions)))
    return per_image * len(positions) / max(1, worker_count(len(positions)))


def decoded(source: ImageSource, identity: dict, positions: np.ndarray, labels: np.ndarray, image_size: int,
            desc: str, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [K, 3, S, S] and int64 labels [K] of `positions` (K < len(positions) when files are
    unreadable), from the cache when it holds them, else decoded now (and cached). A cache that cannot be
    written (unwritable, or its disk full) costs one warning: the images are then decoded in memory."""
    root, reason = _writable_root()
    if root is not None:
        final = root / entry_key(identity, positions, image_size)
        if final.is_dir():
            try:
                return _read_entry(final)
            except (OSError, ValueError, KeyError) as err:
                warnings.warn(f"A cached copy of {desc} was damaged ({err}); decoding it again.", stacklevel=2)
                shutil.rmtree(final, ignore_errors=True)
        temporary = root / f"{TEMP_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            _write_entry(temporary, source, positions, labels, image_size, desc, progress)
            try:
                os.rename(temporary, final)
            except OSError:  # another process finished the same entry first: theirs is as good
                shutil.rmtree(temporary, ignore_errors=True)
        except OSError as err:
            shutil.rmtree(temporary, ignore_errors=True)
            reason = err.strerror or str(err)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        else:
            prune(root, cache_budget_bytes(), keep=final)
            return _read_entry(final)
    warnings.warn(f"The decoded-image cache {cache_dir()} cannot be used ({reason}); decoding without it. Free some "
                  f"space there, or set LDIFS_CACHE_DIR to a writable folder with room, to decode each dataset only "
                  f"once.", stacklevel=2)
    return _decoded_in_memory(source, positions, labels, image_size, desc, progress)
