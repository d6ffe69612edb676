"""Specification of the data path for real-scale datasets: a run decodes only the images its limits choose,
in worker processes, once (an on-disk cache that a changed folder, a killed writer or a damaged file can never
fool), and in-process caches hold a memory budget, not a count."""
from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldifs_core.config import RunConfig
from ldifs_core.datasets import Selection, decoding, load_split, load_subset, split_index
from ldifs_core.datasets import pixels as pixels_module
from ldifs_core.memo import ByteBudgetCache
from ldifs_core.runner import prepare
from tests.recording_hooks import RecordingHooks

S = 24
PROJECT = Path(__file__).resolve().parent.parent


def write_folder(root: Path, classes: int = 3, per_class: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (20 + c, 18, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i:03d}.png")
    return root


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "decoded"
    monkeypatch.setenv("LDIFS_CACHE_DIR", str(path))
    monkeypatch.setenv("LDIFS_DECODE_WORKERS", "0")
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "photos")


def counting_decoder(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every image decoded in this process."""
    calls: list[int] = []
    real = pixels_module.pil_to_uint8

    def counted(img, image_size):
        calls.append(1)
        return real(img, image_size)

    monkeypatch.setattr(pixels_module, "pil_to_uint8", counted)
    return calls


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith(decoding.TEMP_PREFIX)) if cache.is_dir() else []


@pytest.mark.parametrize("selection", [Selection(17, seed=0), Selection(17, seed=3),
                                       Selection(5, seed=0, by_class=True), Selection(50, seed=1, by_class=True, cap=30)],
                         ids=["random", "random-seed-3", "per-class", "per-class-capped"])
def test_choosing_before_decoding_gives_the_images_eager_decoding_gives(photos: Path, cache: Path,
                                                                        selection: Selection):
    eager = load_split(str(photos), "train", image_size=S).select(selection)
    lazy = load_subset(str(photos), "train", selection, image_size=S)
    assert torch.equal(lazy.images, eager.images) and torch.equal(lazy.labels, eager.labels)
    assert lazy.selection == eager.selection


def test_a_torchvision_split_is_indexed_without_decoding_and_subsets_match_eager(tmp_path: Path, cache: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    from ldifs_core.datasets.torchvision_sets import EUROSAT_CLASSES

    rng = np.random.default_rng(1)
    for name in EUROSAT_CLASSES:
        (tmp_path / "eurosat" / "2750" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                tmp_path / "eurosat" / "2750" / name / f"{name}_{i}.jpg")
    decoded = counting_decoder(monkeypatch)
    index = split_index("eurosat", "train", root=tmp_path)
    assert len(index) == 50 and decoded == []  # labels from the file list alone
    eager = load_split("eurosat", "train", image_size=S, root=tmp_path)
    lazy = load_subset("eurosat", "train", Selection(2, by_class=True), image_size=S, root=tmp_path)
    assert torch.equal(lazy.images, eager.per_class_subset(2).images)
    assert lazy.labels.tolist() == eager.per_class_subset(2).labels.tolist()


def test_only_the_images_the_limits_choose_are_decoded(photos: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
    decoded = counting_decoder(monkeypatch)
    reported: list[tuple[int, int]] = []
    data = load_subset(str(photos), "train", Selection(10), image_size=S, progress=lambda d, t: reported.append((d, t)))
    assert len(data) == 10 and len(decoded) == 10
    assert reported[-1] == (10, 10)


def test_a_run_decodes_its_limits_not_the_dataset(photos: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
    decoded = counting_decoder(monkeypatch)
    cfg = RunConfig(dataset=str(photos), train_limit=12, eval_limit=11, batch_size=4, eval_datasets=["mnist"])
    run = prepare(cfg)
    assert len(run.train) == 12 and len(run.test) == 11
    assert len(decoded) == 12 + 11  # of 96 train and 24 test images; mnist is the in-memory concept bank


def test_preparing_a_run_lists_each_folder_once(photos: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
    import ldifs_core.datasets as datasets

    walked: list[Path] = []
    walk = datasets._walk
    monkeypatch.setattr(datasets, "_walk", lambda path, recursive: walked.append(path) or walk(path, recursive))
    prepare(RunConfig(dataset=str(photos), train_limit=12, eval_limit=11, batch_size=4, eval_datasets=["mnist"]))
    # its version and both splits' indexes read one listing of the whole folder
    assert walked == [photos]
    walked.clear()
    load_subset(str(photos), "test", image_size=S)
    load_subset(str(photos), "test", image_size=S)
    assert walked.count(photos) == 2  # outside a preparation every call looks again (an edit is never missed)


def test_the_second_load_reads_the_cache_instead_of_decoding(photos: Path, cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    first = load_subset(str(photos), "test", image_size=S)
    decoded = counting_decoder(monkeypatch)
    again = load_subset(str(photos), "test", image_size=S)
    assert decoded == [] and torch.equal(again.images, first.images)
    assert len(entries(cache)) == 1


def test_worker_processes_decode_exactly_what_this_process_decodes(photos: Path, cache: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    here = load_split(str(photos), "train", image_size=S)
    monkeypatch.setenv("LDIFS_CACHE_DIR", str(cache.parent / "parallel"))
    monkeypatch.setenv("LDIFS_DECODE_WORKERS", "2")
    reported: list[tuple[int, int]] = []
    parallel = load_subset(str(photos), "train", image_size=S, progress=lambda d, t: reported.append((d, t)))
    assert reported[-1] == (96, 96) and len(reported) == 2  # two chunks of at most 64
    assert torch.equal(parallel.images, here.images) and torch.equal(parallel.labels, here.labels)


@pytest.mark.parametrize("change", ["modified", "added", "removed"])
def test_a_changed_folder_is_decoded_again(photos: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, change: str):
    before = load_split(str(photos), "train", image_size=S)
    target = sorted((photos / "class_0").iterdir())[0]
    if change == "modified":
        Image.fromarray(np.full((20, 18, 3), 7, dtype=np.uint8)).save(target)
    elif change == "added":
        Image.fromarray(np.full((20, 18, 3), 7, dtype=np.uint8)).save(photos / "class_0" / "new.png")
    else:
        target.unlink()
    decoded = counting_decoder(monkeypatch)
    after = load_split(str(photos), "train", image_size=S)
    assert decoded, "served from a stale cache entry"
    assert len(after) == {"modified": 96, "added": 97, "removed": 95}[change]
    if change == "modified":
        assert not torch.equal(after.images, before.images)


KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, {project!r})
from ldifs_core.datasets import Selection, load_subset
def die(done, total):
    os.kill(os.getpid(), signal.SIGKILL)  # like a power cut or an OOM kill, halfway through
load_subset({folder!r}, "train", Selection(), image_size={size}, progress=die)
"""


def test_a_writer_killed_halfway_leaves_nothing_that_is_later_trusted(photos: Path, cache: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    script = KILLED_WRITER.format(project=str(PROJECT), folder=str(photos), size=S)
    env = {**os.environ, "LDIFS_CACHE_DIR": str(cache), "LDIFS_DECODE_WORKERS": "0"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert result.returncode == -9
    assert entries(cache) == [] and any(p.name.startswith(decoding.TEMP_PREFIX) for p in cache.iterdir())
    decoded = counting_decoder(monkeypatch)
    data = load_split(str(photos), "train", image_size=S)
    assert len(decoded) == len(data) == 96  # decoded afresh, not read from the half-written folder
    monkeypatch.setenv("LDIFS_CACHE_DIR", str(cache.parent / "fresh"))
    assert torch.equal(load_split(str(photos), "train", image_size=S).images, data.images)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "bad meta"])
def test_a_damaged_cache_entry_is_discarded_and_rebuilt(photos: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                        damage: str):
    good = load_split(str(photos), "test", image_size=S).images.clone()  # its map would show the damage
    [entry] = entries(cache)
    images = entry / "images.npy"
    if damage == "flipped byte":
        raw = bytearray(images.read_bytes())
        raw[-100] ^= 0xFF
        images.write_bytes(bytes(raw))
    elif damage == "truncated":
        images.write_bytes(images.read_bytes()[:-500])
    else:
        (entry / "meta.json").write_text("{not json")
    decoded = counting_decoder(monkeypatch)
    with pytest.warns(UserWarning, match="damaged.*decoding it again"):
        again = load_split(str(photos), "test", image_size=S)
    assert len(decoded) == len(good) and torch.equal(again.images, good)
    assert load_split(str(photos), "test", image_size=S).images.equal(good)  # the rebuilt entry is sound


def test_an_unusable_cache_folder_falls_back_to_decoding_with_one_warning(photos: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LDIFS_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setenv("LDIFS_DECODE_WORKERS", "0")
    with pytest.warns(UserWarning, match=r"cache .* cannot be used .* LDIFS_CACHE_DIR") as caught:
        data = load_split(str(photos), "test", image_size=S)
    assert len(caught) == 1 and len(data) == 24
    with pytest.warns(UserWarning, match="cannot be used"):  # every load says so, and decodes correctly
        assert torch.equal(data.images, load_split(str(photos), "test", image_size=S).images)


FULL_DISK_LOAD = """
import sys, warnings
sys.path.insert(0, {project!r})
import numpy as np
from ldifs_core.datasets import load_split
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    data = load_split({folder!r}, "train", image_size={size})
print(len(data), len(caught), *(str(w.message) for w in caught), sep="\\n")
np.save({out!r}, data.images.numpy())
"""


@pytest.fixture
def nearly_full_filesystem(tmp_path: Path):
    """A real 1 MB filesystem with about 64 KB left: the train split (96 images, 166 KB) does not fit."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        (mount / "ballast").write_bytes(b"x" * (1024 - 64) * 1024)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_cache_disk_degrades_to_decoding_without_the_cache_with_one_warning(
        photos: Path, cache: Path, tmp_path: Path, nearly_full_filesystem: Path):
    expected = load_split(str(photos), "train", image_size=S).images.numpy()  # decoded with room to spare
    full_cache = nearly_full_filesystem / "cache"
    out = tmp_path / "images.npy"
    script = FULL_DISK_LOAD.format(project=str(PROJECT), folder=str(photos), size=S, out=str(out))
    for workers in ("0", "2"):  # decoded here, and in worker processes
        env = {**os.environ, "LDIFS_CACHE_DIR": str(full_cache), "LDIFS_DECODE_WORKERS": workers}
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]  # not killed by SIGBUS (exit 135)
        count, warned, message = result.stdout.splitlines()[:3]
        assert count == "96" and warned == "1"
        assert re.search(r"cache .* cannot be used \(No space left on device\).* LDIFS_CACHE_DIR", message)
        assert not any(p.name.startswith(decoding.TEMP_PREFIX) for p in full_cache.iterdir())  # no partial entry
        assert np.array_equal(np.load(out), expected)


@pytest.mark.parametrize("failing", ["reserving the images", "saving the labels"])
def test_a_cache_write_that_runs_out_of_space_decodes_without_the_cache(photos: Path, cache: Path,
                                                                        monkeypatch: pytest.MonkeyPatch, failing: str):
    expected = load_split(str(photos), "test", image_size=S).images.clone()
    for entry in entries(cache):
        shutil.rmtree(entry)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "reserving the images":
        monkeypatch.setattr(os, "posix_fallocate", no_space)
    else:
        monkeypatch.setattr(np, "save", no_space)
    with pytest.warns(UserWarning, match=r"cannot be used \(No space left on device\)") as caught:
        data = load_split(str(photos), "test", image_size=S)
    assert len(caught) == 1 and torch.equal(data.images, expected)
    assert not any(cache.iterdir())  # neither an entry nor a partial temporary one


def test_a_huge_selection_is_warned_about_before_decoding_with_time_and_the_limit_to_set(
        photos: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
    from ldifs_core import datasets

    monkeypatch.setattr(datasets, "LARGE_DECODE", 50)
    events: list[str] = []
    with pytest.warns(UserWarning, match=r"96 images to decode at 24 px: about \d+ min .* Set --train-limit"):
        load_subset(str(photos), "train", image_size=S, limit_hint="--train-limit",
                    progress=lambda d, t: events.append("decoding"))
    assert events  # the warning came first: pytest.warns saw it although decoding followed
    with warnings_as_errors():  # cached now: nothing left to warn about
        load_subset(str(photos), "train", image_size=S, limit_hint="--train-limit")


class warnings_as_errors:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def test_the_memory_cache_drops_least_recently_used_entries_by_bytes():
    cache = ByteBudgetCache(budget_bytes=100, size_of=len)
    cache.get("a", lambda: b"x" * 40)
    cache.get("b", lambda: b"x" * 40)
    cache.get("a", lambda: b"rebuilt")  # a is used again: b is now the oldest
    cache.get("c", lambda: b"x" * 40)
    assert cache.get("a", lambda: b"rebuilt") == b"x" * 40
    assert cache.get("b", lambda: b"rebuilt") == b"rebuilt"
    assert cache.size_bytes() <= 100
    assert cache.get("huge", lambda: b"x" * 500) == b"x" * 500 and "huge" not in cache._entries


def test_the_memory_cache_builds_a_value_once_for_concurrent_callers():
    cache = ByteBudgetCache(budget_bytes=10**6, size_of=lambda v: 1)
    builds: list[int] = []

    def slow():
        builds.append(1)
        time.sleep(0.2)
        return object()

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and all(r is results[0] for r in results)


@pytest.mark.slow
def test_a_run_shows_its_decoding_progress_in_the_store_and_the_app(photos: Path, cache: Path, store_dir: Path):
    from app.widgets import progress_bar
    from ldifs_core.runner import execute
    from ldifs_core.store import RunStore

    store = RunStore()
    seen: list[dict] = []
    real_update = store.update_progress
    store.update_progress = lambda run_id, progress: (seen.append(dict(progress)), real_update(run_id, progress))
    cfg = RunConfig(dataset=str(photos), steps=1, batch_size=4, train_limit=20, eval_limit=10, probe_limit=2,
                    umap_points=0, eval_datasets=["animals"], save_weights=False)
    run_id = execute(cfg, store)
    loading = [p for p in seen if p.get("images_total")]
    assert {(p["images_done"], p["images_total"]) for p in loading} >= {(20, 20), (10, 10)}
    record = store.get(run_id)
    shown = progress_bar(replace(record, status="running", progress=loading[0]))
    assert shown[1].startswith(f"Loading data ({loading[0]['images_done']} / {loading[0]['images_total']} images")


def test_an_edited_folder_checked_for_forgetting_gets_fresh_pretrained_probe_features(photos: Path, cache: Path):
    from ldifs_core.evaluate import probe_before
    from ldifs_core.models import load_model

    model = load_model().private_copy()
    load = lambda: load_subset(str(photos), "train", Selection(3, by_class=True), image_size=model.image_size)
    before = probe_before(model, load(), seed=0)
    assert probe_before(model, load(), seed=0) is before  # unchanged files: θ₀'s probe is shared, not refitted
    for file in (photos / "class_0").iterdir():
        Image.fromarray(np.zeros((20, 18, 3), dtype=np.uint8)).save(file)
    assert probe_before(model, load(), seed=0) is not before


def test_a_torchvision_dataset_is_versioned_by_its_own_folder_not_the_whole_root(tmp_path: Path):
    from ldifs_core.datasets import data_version

    (tmp_path / "eurosat" / "2750" / "Forest").mkdir(parents=True)
    (tmp_path / "eurosat" / "2750" / "Forest" / "Forest_1.jpg").write_bytes(b"a")
    version = data_version("eurosat", tmp_path)
    (tmp_path / "gtsrb").mkdir()
    (tmp_path / "gtsrb" / "other.ppm").write_bytes(b"b")  # another dataset under the same root
    assert data_version("eurosat", tmp_path) == version
    (tmp_path / "eurosat" / "2750" / "Forest" / "Forest_2.jpg").write_bytes(b"c")
    assert data_version("eurosat", tmp_path) != version
    (tmp_path / "test_32x32.mat").write_bytes(b"d")  # SVHN keeps its files loose in the root
    assert data_version("svhn", tmp_path) != data_version("svhn", tmp_path / "gtsrb")


@pytest.mark.slow
def test_the_cli_takes_all_as_no_limit_and_decodes_exactly_the_whole_split(photos: Path, cache: Path, store_dir: Path,
                                                                          tmp_path: Path, capsys):
    import json

    from ldifs_core.cli import main

    out = tmp_path / "run.json"
    assert main(["run", "--dataset", str(photos), "--train-limit", "all", "--eval-limit", "all", "--steps", "1",
                 "--batch-size", "8", "--eval-datasets", "animals", "--probe-limit", "2", "--no-umap",
                 "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["config"]["train_limit"] is None and metrics["config"]["eval_limit"] is None
    assert metrics["downstream"]["n"] == 24  # every test image of the folder


def test_cancelling_while_images_decode_stops_the_decoding_and_records_the_run_cancelled(
        photos: Path, cache: Path, store_dir: Path, monkeypatch: pytest.MonkeyPatch):
    from ldifs_core.runner import execute
    from ldifs_core.store import RunStore

    monkeypatch.setenv("LDIFS_DECODE_WORKERS", "2")
    decoded_chunks: list[int] = []
    store = RunStore()
    cfg = RunConfig(dataset=str(photos), steps=1, batch_size=4, train_limit=None, eval_datasets=["animals"])
    real_update = store.update_progress
    store.update_progress = lambda run_id, p: (decoded_chunks.append(p.get("images_done", 0)), real_update(run_id, p))
    after_loading = RecordingHooks(stop_when=lambda hooks: len(decoded_chunks) >= 1)  # after the "loading" phase
    run_id = execute(cfg, store, hooks=after_loading)
    record = store.get(run_id)
    assert record.status == "cancelled"
    assert re.search(r"while decoding images \((32|64) of 96 done\)", record.message)  # the first of 2 chunks
    assert entries(cache) == [] and not any(cache.iterdir())  # nothing half-written is left behind
