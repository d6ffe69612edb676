"""Checks made before a run is queued (ldifs_core.availability), checkpoints that are not checkpoints, and when a
stored run already answers a config (ldifs_core.reuse)."""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import numpy as np
import pytest
from PIL import Image

from ldifs_core import availability, reuse
from ldifs_core.config import RunConfig
from ldifs_core.datasets.torchvision_sets import TORCHVISION_SETS
from ldifs_core.errors import BadCheckpoint, DatasetUnavailable
from ldifs_core.models import EMBEDDED_CHECKPOINT, EMBEDDED_MODEL, load_model, not_a_checkpoint
from ldifs_core.store import RunStore
from tests.app.sample_runs import add_ended_run, add_finished_run, sample_metrics


def write_images(folder, count: int, size=(40, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


# -- image folders --------------------------------------------------------------------------------------


def test_a_flat_folder_of_images_is_refused_with_the_layout_it_needs(tmp_path):
    write_images(tmp_path / "flat", 5)
    with pytest.raises(DatasetUnavailable, match="5 images directly, not in class sub-folders.*one sub-folder per class"):
        availability.check_dataset(str(tmp_path / "flat"))


def test_a_folder_with_one_class_is_refused(tmp_path):
    write_images(tmp_path / "one" / "cat", 4)
    with pytest.raises(DatasetUnavailable, match="only one class \\(“cat”\\).*at least two"):
        availability.check_dataset(str(tmp_path / "one"))


def test_a_missing_folder_and_a_file_are_refused(tmp_path):
    with pytest.raises(DatasetUnavailable, match="is not a folder here"):
        availability.folder_summary(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetUnavailable, match="is a file, not a folder"):
        availability.folder_summary(tmp_path / "file.txt")


def test_a_good_folder_is_summarised_by_class_and_split(tmp_path):
    write_images(tmp_path / "good" / "cat", 5)
    write_images(tmp_path / "good" / "dog", 10)
    availability.check_dataset(str(tmp_path / "good"))
    summary = availability.folder_summary(tmp_path / "good")
    assert summary.class_names == ["cat", "dog"]
    assert [a + b for a, b in zip(summary.train_counts, summary.test_counts)] == [5, 10]
    assert summary.test_counts == [1, 2] and summary.images == 15  # the fixed 80/20 split a run uses


def test_folder_samples_are_decoded_at_the_models_resolution_from_every_class(tmp_path):
    write_images(tmp_path / "good" / "cat", 5, size=(64, 48))
    write_images(tmp_path / "good" / "dog", 5, size=(64, 48))
    samples = availability.folder_samples(tmp_path / "good", image_size=28, limit=6)
    assert tuple(samples.images.shape[1:]) == (3, 28, 28)
    assert sorted(set(samples.labels.tolist())) == [0, 1] and len(samples) == 6


# -- torchvision datasets -------------------------------------------------------------------------------


def test_a_torchvision_dataset_without_its_files_is_refused_unless_it_is_to_be_downloaded(tmp_path):
    assert not availability.files_here("cifar10", tmp_path)
    with pytest.raises(DatasetUnavailable, match=f"CIFAR-10 has no files in {tmp_path}"):
        availability.check_dataset("cifar10", root=tmp_path)
    availability.check_dataset("cifar10", root=tmp_path, download=True)


def test_a_torchvision_dataset_is_listed_as_here_once_its_folder_holds_files(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert not availability.files_here("cifar10", tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    assert availability.files_here("cifar10", tmp_path)


def test_every_torchvision_dataset_has_a_way_to_tell_whether_its_files_are_here(tmp_path):
    loose = [name for name, spec in TORCHVISION_SETS.items() if not spec.folder]
    assert sorted(loose) == sorted(availability.LOOSE_FILES)
    assert not any(availability.files_here(name, tmp_path) for name in TORCHVISION_SETS)


def test_the_concept_bank_is_available_in_a_clean_clone():
    availability.check_dataset("mnist")


# -- checkpoints ------------------------------------------------------------------------------------------


def test_a_png_given_as_a_checkpoint_is_called_what_it_is(tmp_path):
    write_images(tmp_path, 1)
    with pytest.raises(BadCheckpoint, match="is not a checkpoint: it is a PNG image"):
        load_model(EMBEDDED_MODEL, str(tmp_path / "0.png"))
    (tmp_path / "0.png").rename(tmp_path / "renamed.pt")  # recognised by its content, whatever it is called
    with pytest.raises(BadCheckpoint, match="it is a PNG image"):
        load_model(EMBEDDED_MODEL, str(tmp_path / "renamed.pt"))


def test_real_checkpoint_formats_are_not_refused_by_their_first_bytes(tmp_path):
    import torch

    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert [not_a_checkpoint(path) for path in (EMBEDDED_CHECKPOINT, tmp_path / "zip.pt", tmp_path / "legacy.pt")] \
        == [None, None, None]
    (tmp_path / "empty.pt").write_bytes(b"")
    assert not_a_checkpoint(tmp_path / "empty.pt") == "an empty file"


# -- the same run ---------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def test_an_option_only_another_objective_reads_does_not_make_another_run():
    """Changing LoRA's default scale must not orphan every stored CE or LDIFS run (a sequence resumes from them)."""
    assert reuse.run_identity(RunConfig(objective="ldifs", lora_alpha=16.0, lipsum_texts=5, ls_factor=0.2)) == \
        reuse.run_identity(RunConfig(objective="ldifs", lora_alpha=64.0))
    assert reuse.run_identity(RunConfig(objective="lora", lora_alpha=16.0)) != reuse.run_identity(
        RunConfig(objective="lora", lora_alpha=64.0))


def test_an_explicit_default_lambda_and_a_label_do_not_make_another_run():
    assert reuse.run_identity(RunConfig(objective="lipsum", lam=0.3, label="mine")) == reuse.run_identity(
        RunConfig(objective="lipsum"))
    assert reuse.run_identity(RunConfig(objective="lipsum", lam=1.0)) != reuse.run_identity(
        RunConfig(objective="lipsum"))


def test_no_list_of_datasets_to_check_is_the_concept_bank_it_stands_for():
    assert reuse.run_identity(RunConfig()) == reuse.run_identity(
        RunConfig(eval_datasets=["fashion_mnist", "quickdraw", "animals"]))
    assert reuse.run_identity(RunConfig()) != reuse.run_identity(RunConfig(eval_datasets=["animals"]))


def test_a_finished_identical_run_is_found_and_other_settings_are_not(store):
    run_id = add_finished_run(store, objective="ldifs", lam=10.0)
    assert reuse.finished_run(store, RunConfig(steps=20, eval_datasets=["fashion_mnist", "animals"],
                                               label="again")) == run_id
    assert reuse.finished_run(store, RunConfig(steps=21, eval_datasets=["fashion_mnist", "animals"])) is None
    assert reuse.finished_run(store, RunConfig(steps=20, lam=1.0, eval_datasets=["fashion_mnist", "animals"])) is None


def test_a_run_made_at_an_old_default_lambda_is_not_reused_once_the_default_changed(store, monkeypatch):
    """The store keeps the λ a run was made with, not 'the default': lipsum's default went 0.1 -> 0.3 and a 0.1 run
    was once taken for a 0.3 one."""
    from ldifs_core import config

    add_finished_run(store, objective="lipsum")
    monkeypatch.setitem(config.DEFAULT_LAMBDA, "lipsum", config.DEFAULT_LAMBDA["lipsum"] * 10)
    assert reuse.finished_run(store, RunConfig(objective="lipsum", steps=20,
                                               eval_datasets=["fashion_mnist", "animals"])) is None


def test_a_run_stored_without_its_lambda_reads_as_the_default_of_its_time(store):
    """Stores made before the λ was recorded hold None ('the default'): lipsum's was 0.1 then."""
    run_id = add_finished_run(store, objective="lipsum")
    for path in (store.root / run_id / "config.json",):
        path.write_text(json.dumps({**json.loads(path.read_text()), "lam": None}))
    with closing(sqlite3.connect(store.root / "index.sqlite")) as db, db:
        (text,) = db.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        db.execute("UPDATE runs SET config = ? WHERE run_id = ?", (json.dumps({**json.loads(text), "lam": None}),
                                                                    run_id))
    assert store.get(run_id).config.lam == 0.1


def test_a_failed_run_is_not_reused_but_a_queued_one_is_the_same_run(store):
    add_ended_run(store, "failed", "The loss became nan.", eval_datasets=["animals"])
    queued = store.create(RunConfig(steps=20, eval_datasets=["animals"]), status="queued")
    cfg = RunConfig(steps=20, eval_datasets=["animals"])
    assert reuse.finished_run(store, cfg) is None
    assert [record.run_id for record in reuse.same_runs(store, cfg)] == [queued]


def test_a_run_made_by_another_code_version_is_not_reused(store, monkeypatch):
    run_id = add_finished_run(store)
    cfg = RunConfig(steps=20, eval_datasets=["fashion_mnist", "animals"])
    assert store.metrics(run_id)["code_version"] == reuse.CODE_VERSION
    monkeypatch.setattr(reuse, "CODE_VERSION", reuse.CODE_VERSION + 1)
    assert reuse.finished_run(store, cfg) is None


def test_a_run_stored_before_runs_carried_a_code_version_counts_as_the_first(store, monkeypatch):
    run_id = add_finished_run(store)
    path = store.root / run_id / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["code_version"]
    path.write_text(json.dumps(metrics) + "\n")
    cfg = RunConfig(steps=20, eval_datasets=["fashion_mnist", "animals"])
    monkeypatch.setattr(reuse, "CODE_VERSION", reuse.FIRST_CODE_VERSION)
    assert reuse.finished_run(store, cfg) == run_id
    monkeypatch.setattr(reuse, "CODE_VERSION", reuse.FIRST_CODE_VERSION + 1)
    assert reuse.finished_run(store, cfg) is None


def test_a_run_on_an_image_folder_edited_since_is_not_reused(store, tmp_path):
    import os
    import time

    write_images(tmp_path / "pets" / "cat", 3)
    write_images(tmp_path / "pets" / "dog", 3)
    cfg = RunConfig(dataset=str(tmp_path / "pets"), steps=20, eval_datasets=["animals"])
    run_id = store.create(cfg, status="running")
    store.finish(run_id, sample_metrics(RunConfig(steps=20, eval_datasets=["animals"]), run_id))  # numbers of no interest
    assert reuse.finished_run(store, cfg) == run_id
    later = time.time() + 5  # as if edited after the run was made
    (tmp_path / "pets" / "dog" / "0.png").unlink()
    os.utime(tmp_path / "pets" / "dog", (later, later))
    assert reuse.finished_run(store, cfg) is None
