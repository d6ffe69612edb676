"""The run store keeps every run, finished or not, safely across threads, processes and restarts."""
from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import threading
from contextlib import closing
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ldifs_core import disk, ownership
from ldifs_core import store as store_module
from ldifs_core.config import CODE_VERSION, SCHEMA_VERSION, RunConfig
from ldifs_core.errors import RunNotFound, RunUnreadable, StoreUnavailable
from ldifs_core.store import INTERRUPTED_MESSAGE, RunStore
from ldifs_core.wise_records import save_wise, wise_results
from tests.app.sample_runs import small_metrics
from tests.cli_process import start_cli_like_run

SMALL = small_metrics()
METRICS = {  # a complete metrics.json (schema 2) with round headline numbers
    **SMALL, "downstream": {**SMALL["downstream"], "accuracy_after": 97.1, "zero_shot_before": 48.5},
    "mean_zs_delta": -3.2, "mean_lp_delta": -0.4, "timings": {**SMALL["timings"], "total_s": 12.5, "train_s": 10.0},
}


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def _finish_quickly(store: RunStore, config: RunConfig) -> str:
    run_id = store.create(config)
    store.set_status(run_id, "running")
    store.finish(run_id, METRICS)
    return run_id


def test_finished_run_round_trips_through_a_fresh_store(tmp_path):
    config = RunConfig(dataset="svhn", objective="l2sp", lam=0.5, eval_datasets=["mnist", "gtsrb"], label="x")
    arrays = {"umap_pre": np.random.rand(8, 2).astype(np.float32), "labels": np.arange(8)}
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    weights = {"proj": torch.randn(4, 3), "bias": torch.zeros(3)}
    writer = RunStore(tmp_path)
    run_id = writer.create(config)
    writer.set_status(run_id, "running")
    writer.finish(run_id, METRICS, arrays=arrays, history=history, weights=weights)

    reader = RunStore(tmp_path)  # as after an app restart
    record = reader.get(run_id)
    assert record.config == config
    assert record.status == "done" and record.message == ""
    assert reader.metrics(run_id) == {**METRICS, "schema_version": SCHEMA_VERSION, "status": "done", "run_id": run_id,
                                      "code_version": CODE_VERSION}
    loaded = reader.arrays(run_id)
    assert loaded.keys() == arrays.keys()
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype
    assert reader.history(run_id) == history
    saved = load_file(reader.weights_path(run_id))
    assert saved.keys() == weights.keys()
    assert all(torch.equal(saved[name], weights[name]) for name in weights)


def test_finish_puts_the_headline_numbers_in_the_summary(store):
    run_id = _finish_quickly(store, RunConfig())
    assert store.get(run_id).summary == {
        "accuracy_after": 97.1, "zero_shot_before": 48.5, "mean_zs_delta": -3.2, "mean_lp_delta": -0.4, "total_s": 12.5,
        "mean_zs_delta_ci": METRICS["mean_zs_delta_ci"], "mean_lp_delta_ci": METRICS["mean_lp_delta_ci"],
    }


def test_summary_skips_missing_headline_numbers_and_accepts_numpy_scalars(store):
    run_id = store.create(RunConfig())
    store.finish(run_id, {**METRICS, "mean_zs_delta": np.float32(-1.5), "downstream": {}, "timings": {},
                          "mean_zs_delta_ci": None, "mean_lp_delta_ci": None})
    assert store.get(run_id).summary == {"mean_zs_delta": -1.5, "mean_lp_delta": -0.4}
    numpy_scalar = store.create(RunConfig())
    store.finish(numpy_scalar, {**METRICS, "mean_zs_delta": np.float32(-1.5)})
    assert store.metrics(numpy_scalar)["mean_zs_delta"] == -1.5


def test_finish_leaves_only_the_final_files(store):
    run_id = store.create(RunConfig())
    store.finish(run_id, METRICS, arrays={"a": np.ones(3)}, history=[], weights={"w": torch.ones(2)})
    names = sorted(path.name for path in (store.root / run_id).iterdir())
    assert names == ["arrays.npz", "config.json", "history.json", "metrics.json", "status.json", "weights.safetensors"]


def test_new_run_starts_queued_with_empty_progress_and_summary(store):
    run_id = store.create(RunConfig())
    record = store.get(run_id)
    assert (record.status, record.message, record.progress, record.summary) == ("queued", "", {}, {})
    assert record.created_at == record.updated_at
    assert store.create(RunConfig(), status="running") != run_id


def test_progress_updates_are_visible_to_other_store_instances(tmp_path):
    writer, reader = RunStore(tmp_path), RunStore(tmp_path)
    run_id = writer.create(RunConfig())
    writer.set_status(run_id, "running")
    writer.update_progress(run_id, {"step": 10, "total_steps": 300, "loss": 1.2, "eta_s": 20})
    record = reader.get(run_id)
    assert record.status == "running"
    assert record.progress == {"step": 10, "total_steps": 300, "loss": 1.2, "eta_s": 20}
    assert record.updated_at >= record.created_at


def test_list_is_newest_first_and_filters_on_dataset_objective_and_status(store):
    first = _finish_quickly(store, RunConfig(dataset="mnist", objective="ce"))
    second = store.create(RunConfig(dataset="svhn", objective="ldifs", model="ViT-B-32"))
    third = store.create(RunConfig(dataset="mnist", objective="ldifs"))

    assert [r.run_id for r in store.list()] == [third, second, first]
    assert [r.run_id for r in store.list(dataset="mnist")] == [third, first]
    assert [r.run_id for r in store.list(objective="ldifs")] == [third, second]
    assert [r.run_id for r in store.list(status="done")] == [first]
    assert [r.run_id for r in store.list(dataset="mnist", status="queued")] == [third]
    assert store.list(dataset="gtsrb") == []


def test_failed_and_cancelled_runs_keep_their_message_and_partial_history(store):
    history = [{"step": 1, "loss": 2.3}, {"step": 2, "loss": float("nan")}]
    failed = store.create(RunConfig())
    store.set_status(failed, "running")
    store.fail(failed, "failed", "The loss became NaN at step 2; lower the learning rate.", history=history)
    cancelled = store.create(RunConfig())
    store.fail(cancelled, "cancelled", "Cancelled by the user.", history=history[:1])

    assert (store.get(failed).status, store.get(failed).message) == (
        "failed", "The loss became NaN at step 2; lower the learning rate.")
    assert (store.get(cancelled).status, store.get(cancelled).message) == ("cancelled", "Cancelled by the user.")
    assert store.history(failed)[0] == history[0] and np.isnan(store.history(failed)[1]["loss"])
    assert store.history(cancelled) == history[:1]
    assert [r.run_id for r in store.list(status="failed")] == [failed]


def test_metrics_of_an_unfinished_run_says_its_status(store):
    queued = store.create(RunConfig())
    failed = store.create(RunConfig())
    store.fail(failed, "failed", "Out of memory.")
    with pytest.raises(RunNotFound, match="queued"):
        store.metrics(queued)
    with pytest.raises(RunNotFound, match="failed: Out of memory"):
        store.metrics(failed)


def test_missing_optional_results_read_as_empty(store):
    run_id = _finish_quickly(store, RunConfig())
    assert store.arrays(run_id) == {}
    assert store.history(run_id) == []
    assert store.weights_path(run_id) is None


@pytest.mark.parametrize("run_id", ["20990101-000000-abcdef", "../../etc", "nonsense"])
def test_an_unknown_run_id_raises_run_not_found_that_points_to_the_list_command(store, run_id):
    calls = [
        lambda: store.get(run_id), lambda: store.metrics(run_id), lambda: store.arrays(run_id),
        lambda: store.history(run_id), lambda: store.weights_path(run_id), lambda: wise_results(store, run_id),
        lambda: save_wise(store, run_id, 0.5, METRICS),
        lambda: store.set_status(run_id, "running"), lambda: store.update_progress(run_id, {"step": 1}),
        lambda: store.finish(run_id, METRICS), lambda: store.fail(run_id, "failed", "x"),
    ]
    for call in calls:
        with pytest.raises(RunNotFound, match=r"python -m ldifs_core list"):
            call()


def test_statuses_outside_the_known_set_are_programming_errors(store):
    run_id = store.create(RunConfig())
    with pytest.raises(ValueError):
        store.create(RunConfig(), status="finished")
    with pytest.raises(ValueError):
        store.set_status(run_id, "paused")
    with pytest.raises(ValueError):
        store.fail(run_id, "done", "not a failure")
    with pytest.raises(ValueError):
        store.list(status="Done")


def test_the_root_defaults_to_ldifs_store(tmp_path, monkeypatch):
    monkeypatch.setenv("LDIFS_STORE", str(tmp_path / "from-env"))
    store = RunStore()
    assert store.root == tmp_path / "from-env"
    assert (store.root / "index.sqlite").exists()


# -- runs that cannot be read ---------------------------------------------------------------------------


def _set_column(root: Path, run_id: str, column: str, value: str) -> None:
    """Edit the index behind the store's back, as another version of the lab or a damaged disk would."""
    with closing(sqlite3.connect(root / "index.sqlite")) as db, db:
        db.execute(f"UPDATE runs SET {column} = ? WHERE run_id = ?", (value, run_id))


def _garble_metrics(run_dir: Path) -> None:
    (run_dir / "metrics.json").write_bytes(b"\x00\x9f{ not json")


def _drop_metrics(run_dir: Path) -> None:
    (run_dir / "metrics.json").unlink()


def _drop_folder(run_dir: Path) -> None:
    shutil.rmtree(run_dir)


def _metrics_of_version_1(run_dir: Path) -> None:
    old = {key: value for key, value in json.loads((run_dir / "metrics.json").read_text()).items()
           if key != "schema_version"}
    (run_dir / "metrics.json").write_text(json.dumps(old))


def _metrics_without_results(run_dir: Path) -> None:
    (run_dir / "metrics.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "run_id": run_dir.name}))


def _metrics_not_an_object(run_dir: Path) -> None:
    (run_dir / "metrics.json").write_text("[1, 2, 3]")


def _metrics_of_the_wrong_shape(**wrong) -> Callable[[Path], None]:
    """Valid JSON that is not the documented record (issue 20 item 20)."""
    def damage(run_dir: Path) -> None:
        path = run_dir / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **wrong}))
    return damage


@pytest.mark.parametrize("damage, reason", [
    (_garble_metrics, "metrics.json is corrupt"),
    (_drop_metrics, "metrics.json is missing"),
    (_drop_folder, "folder"),
    (_metrics_of_version_1, "another version"),
    (_metrics_without_results, "metrics.json lacks config, status, model, device, forgetting"),
    (_metrics_not_an_object, "metrics.json is corrupt"),
    (_metrics_of_the_wrong_shape(downstream={}), "metrics.json: downstream lacks dataset, n,"),
    (_metrics_of_the_wrong_shape(forgetting=[1, "x"]), "metrics.json: forgetting[0] is 1, not an object"),
    (_metrics_of_the_wrong_shape(config="str"), "metrics.json: config is 'str', not an object"),
    (_metrics_of_the_wrong_shape(mean_zs_delta_ci=[0.5]), "mean_zs_delta_ci is [0.5], not an interval"),
])
def test_a_finished_run_whose_results_cannot_be_read_is_listed_as_unreadable_beside_the_others(store, damage, reason):
    before = _finish_quickly(store, RunConfig(dataset="mnist"))
    damaged = _finish_quickly(store, RunConfig(dataset="svhn"))
    after = _finish_quickly(store, RunConfig(dataset="gtsrb"))
    damage(store.root / damaged)

    listed = {r.run_id: r for r in store.list()}
    assert list(listed) == [after, damaged, before]
    assert listed[before].status == listed[after].status == "done"
    record = listed[damaged]
    assert record.status == "unreadable"
    assert record.message.startswith("unreadable: ") and reason in record.message
    assert record.config.dataset == "svhn"  # still says which run it was
    assert store.get(damaged).status == "unreadable"
    assert [r.run_id for r in store.list(status="done")] == [after, before]
    assert [r.run_id for r in store.list(status="unreadable")] == [damaged]
    assert store.metrics(before)["downstream"]["accuracy_after"] == 97.1


@pytest.mark.parametrize("damage", [_garble_metrics, _drop_metrics, _drop_folder, _metrics_of_version_1])
def test_reading_the_results_of_an_unreadable_run_raises_run_unreadable_saying_what_to_do(store, damage):
    run_id = store.create(RunConfig())
    store.finish(run_id, METRICS, arrays={"a": np.ones(2)}, history=[{"step": 1}], weights={"w": torch.ones(2)})
    damage(store.root / run_id)
    for read in (store.metrics, store.arrays, store.history, store.weights_path):
        with pytest.raises(RunUnreadable, match=r"^unreadable: .*(run it again|Run it again)"):
            read(run_id)


def test_results_repaired_in_place_are_readable_again(store):
    """The unreadable verdict is cached per file version, never per run id."""
    run_id = _finish_quickly(store, RunConfig())
    good = (store.root / run_id / "metrics.json").read_bytes()
    _garble_metrics(store.root / run_id)
    assert store.get(run_id).status == "unreadable"
    (store.root / run_id / "metrics.json").write_bytes(good)
    assert store.get(run_id).status == "done"
    assert store.metrics(run_id)["mean_zs_delta"] == -3.2


@pytest.mark.parametrize("name, content, reason", [
    ("arrays.npz", b"PK\x03\x04 not a zip archive", "arrays.npz is corrupt"),
    ("history.json", b'[{"step": 1', "history.json is corrupt"),
    ("weights.safetensors", b"replaced by something else", "weights.safetensors is corrupt"),
    ("weights.safetensors", b"", "weights.safetensors is corrupt"),
])
def test_a_corrupt_result_file_raises_run_unreadable_not_a_parser_error(store, name, content, reason):
    run_id = store.create(RunConfig())
    store.finish(run_id, METRICS, arrays={"a": np.ones(2)}, history=[{"step": 1}], weights={"w": torch.ones(2)})
    (store.root / run_id / name).write_bytes(content)
    read = {"arrays.npz": store.arrays, "history.json": store.history, "weights.safetensors": store.weights_path}[name]
    with pytest.raises(RunUnreadable, match=f"^unreadable: {reason}"):
        read(run_id)
    assert store.metrics(run_id)["mean_lp_delta"] == -0.4  # the rest of the run stays readable


def test_a_row_whose_settings_do_not_parse_is_listed_as_unreadable(store):
    good = _finish_quickly(store, RunConfig(dataset="mnist"))
    bad = _finish_quickly(store, RunConfig(dataset="svhn", objective="ce"))
    _set_column(store.root, bad, "config", '{"dataset": "svhn", ')

    records = {r.run_id: r for r in store.list()}
    assert records[good].status == "done"
    assert records[bad].status == "unreadable"
    assert records[bad].message.startswith("unreadable: its settings do not parse")
    assert (records[bad].config.dataset, records[bad].config.objective) == ("svhn", "ce")  # from the index columns
    with pytest.raises(RunUnreadable, match="^unreadable: its settings do not parse"):
        store.metrics(bad)


def test_a_row_with_an_objective_this_version_does_not_know_is_unreadable_but_listable(store):
    run_id = store.create(RunConfig())
    _set_column(store.root, run_id, "config", json.dumps({**RunConfig().to_dict(), "objective": "dpo"}))
    (record,) = store.list()
    assert record.status == "unreadable"
    assert "objective 'dpo'" in record.message
    assert record.config.describe()  # front ends can still print it
    assert record.config.effective_lam == 0.0


def test_a_row_with_a_status_this_version_does_not_know_is_unreadable(store):
    run_id = store.create(RunConfig())
    _set_column(store.root, run_id, "status", "paused")
    assert store.get(run_id).message == "unreadable: its status 'paused' is unknown to this version"


def test_a_listing_parses_each_results_file_once_until_it_changes(store, monkeypatch):
    runs = [_finish_quickly(store, RunConfig()) for _ in range(3)]
    parsed = []
    real = store_module._parse_results
    monkeypatch.setattr(store_module, "_parse_results", lambda path: parsed.append(path.parent.name) or real(path))
    for _ in range(3):
        assert [r.status for r in store.list()] == ["done"] * 3
    assert sorted(parsed) == sorted(runs)
    parsed.clear()
    _garble_metrics(store.root / runs[1])
    assert [r.status for r in store.list()] == ["done", "unreadable", "done"]
    assert [r.status for r in store.list()] == ["done", "unreadable", "done"]
    assert parsed == [runs[1]]


def test_a_row_with_broken_progress_or_summary_is_listed_with_them_empty(store):
    run_id = _finish_quickly(store, RunConfig())
    _set_column(store.root, run_id, "progress", "{")
    _set_column(store.root, run_id, "summary", "[]")
    (record,) = store.list()
    assert (record.status, record.progress, record.summary) == ("done", {}, {})


def test_settings_from_another_version_are_kept_in_the_index_but_ignored_with_a_warning(store):
    config = RunConfig(dataset="svhn", objective="l2sp", lam=0.5)
    run_id = _finish_quickly(store, config)
    _set_column(store.root, run_id, "config", json.dumps({**config.to_dict(), "future_knob": 3, "mixup": True}))

    with pytest.warns(UserWarning, match=f"{run_id}.*future_knob, mixup"):
        (record,) = store.list()
    assert record.status == "done"
    assert record.config == config
    with closing(sqlite3.connect(store.root / "index.sqlite")) as db:
        (stored,) = db.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    assert json.loads(stored)["future_knob"] == 3  # kept for the version that knows it


# -- stores that cannot be opened or written ------------------------------------------------------------


@pytest.mark.parametrize("make, words", [
    (lambda root: root.write_text("not a folder"), "is a file, not a folder"),
    (lambda root: (root.mkdir(), (root / "index.sqlite").mkdir()), "store rebuild-index"),
])
def test_a_store_that_cannot_be_opened_gives_a_clear_error_saying_what_to_do(tmp_path, make, words):
    root = tmp_path / "runs"
    make(root)
    with pytest.raises(StoreUnavailable, match=words) as err:
        RunStore(root)
    assert "--store" in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def shared_dir():
    """A folder that another user can enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="ldifs-store-"))
    path.chmod(0o755)
    yield path
    for folder in (path, *path.rglob("*")):
        if folder.is_dir():
            folder.chmod(0o755)
    shutil.rmtree(path)


def _as_user_without_write_access(root: Path, read):
    """Run read(root) with `root` and its index read-only: as nobody when the tests run as root (root may write
    anything), otherwise in this process after removing the write permissions."""
    for path in (root, *root.iterdir()):
        path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() != 0:
        return read(root)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_as_nobody, args=(read, root, queue))
    child.start()
    outcome, value = queue.get(timeout=60)
    child.join(timeout=60)
    if outcome == "error":
        raise AssertionError(value)
    return value


def _read_as_nobody(read, root, queue) -> None:
    try:
        os.setgid(65534)
        os.setuid(65534)
        queue.put(("ok", read(root)))
    except BaseException as err:  # report anything, assertion or bug, to the parent
        queue.put(("error", f"{type(err).__name__}: {err}"))


def _read_everything(root: Path) -> dict:
    store = RunStore(root)
    records = store.list()
    done = next(r.run_id for r in records if r.status == "done")
    try:
        store.create(RunConfig())
        refused = ""
    except StoreUnavailable as err:
        refused = str(err)
    return {
        "read_only": store.read_only,
        "statuses": sorted(r.status for r in records),
        "accuracy": store.metrics(done)["downstream"]["accuracy_after"],
        "history": store.history(done),
        "wise": wise_results(store, done),
        "refused": refused,
    }


def test_a_read_only_store_can_be_listed_and_read_and_opening_it_writes_nothing(shared_dir, monkeypatch):
    root = shared_dir / "runs"
    store = RunStore(root)
    done = store.create(RunConfig())
    store.finish(done, METRICS, history=[{"step": 1, "loss": 2.0}])
    monkeypatch.setattr(ownership.socket, "gethostname", lambda: "other-machine")
    orphan = store.create(RunConfig(), status="running")  # its owner is gone: a writable store would mark it
    monkeypatch.undo()
    with closing(sqlite3.connect(root / "index.sqlite")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files_before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}

    seen = _as_user_without_write_access(root, _read_everything)

    assert seen["read_only"] is True
    assert seen["statuses"] == ["done", "running"]
    assert seen["accuracy"] == 97.1 and seen["history"] == [{"step": 1, "loss": 2.0}] and seen["wise"] == {}
    assert "read-only" in seen["refused"] and "--store" in seen["refused"]
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == files_before
    assert orphan in {p.name for p in root.iterdir()}


def test_a_read_only_folder_without_an_index_lists_no_runs(shared_dir):
    root = shared_dir / "empty"
    root.mkdir()
    (root / "placeholder").write_text("")
    assert _as_user_without_write_access(root, lambda path: [r.run_id for r in RunStore(path).list()]) == []


# -- a disk that fills up --------------------------------------------------------------------------------


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/.tmp")


def _no_space_in_safetensors(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28) at path "x"')


@pytest.mark.parametrize("writer", [
    "disk.write_json", "numpy.savez_compressed", "safetensors.torch.save_file", "safetensors (rust error)",
])
def test_a_full_disk_while_saving_results_records_the_run_as_failed_and_leaves_no_half_files(store, monkeypatch,
                                                                                             writer):
    run_id = store.create(RunConfig())
    store.set_status(run_id, "running")
    if writer == "disk.write_json":
        real = disk.write_json
        monkeypatch.setattr(disk, "write_json",
                            lambda path, value: _no_space() if path.name.endswith("metrics.json") else real(path, value))
    elif writer == "numpy.savez_compressed":
        monkeypatch.setattr(np, "savez_compressed", _no_space)
    elif writer == "safetensors.torch.save_file":
        monkeypatch.setattr("safetensors.torch.save_file", _no_space)
    else:
        monkeypatch.setattr("safetensors.torch.save_file", _no_space_in_safetensors)

    with pytest.raises(StoreUnavailable, match="No space left on device"):
        store.finish(run_id, METRICS, arrays={"a": np.ones(3)}, history=[{"step": 1}], weights={"w": torch.ones(2)})

    record = store.get(run_id)
    assert record.status == "failed"
    assert record.message.startswith("Could not save the results: No space left on device")
    assert "Free some space and run it again." in record.message
    assert record.summary == {}
    assert sorted(p.name for p in (store.root / run_id).iterdir()) == ["config.json", "history.json", "status.json"]
    assert store.history(run_id) == [{"step": 1}]  # the curves of the failed run stay
    monkeypatch.undo()
    assert RunStore(store.root).get(run_id).status == "failed"  # not "interrupted" after a restart


def test_a_full_disk_while_recording_a_failure_still_records_it(store, monkeypatch):
    run_id = store.create(RunConfig(), status="running")
    monkeypatch.setattr(disk, "write_json", _no_space)
    with pytest.warns(UserWarning, match="history .* could not be saved: No space left on device"):
        store.fail(run_id, "failed", "The loss became NaN at step 2.", history=[{"step": 1}])
    assert (store.get(run_id).status, store.get(run_id).message) == ("failed", "The loss became NaN at step 2.")


def test_a_full_disk_while_creating_a_run_leaves_neither_row_nor_folder(store, monkeypatch):
    monkeypatch.setattr(disk, "write_json", _no_space)
    with pytest.raises(StoreUnavailable, match="No space left on device"):
        store.create(RunConfig())
    assert store.list() == []
    assert [p.name for p in store.root.iterdir() if p.is_dir()] == []


# -- WiSE-FT results cached per (run, α) -----------------------------------------------------------------


def test_wise_results_are_cached_per_alpha_and_survive_a_restart(store):
    run_id = _finish_quickly(store, RunConfig())
    assert wise_results(store, run_id) == {}
    half = {**METRICS, "alpha": 0.5}
    assert save_wise(store, run_id, 0.5, half) is True
    save_wise(store, run_id, 0.0, {**METRICS, "alpha": 0.0})
    save_wise(store, run_id, 0.5, {**half, "mean_zs_delta": -1.0})  # recomputed: the newer one wins

    cached = wise_results(RunStore(store.root), run_id)
    assert sorted(cached) == [0.0, 0.5]
    assert cached[0.5] == {**half, "mean_zs_delta": -1.0}
    assert [p.name for p in (store.root / run_id / "wise").iterdir() if p.name.startswith(".")] == []


def test_a_corrupt_wise_cache_file_is_ignored_so_that_alpha_is_computed_again(store):
    run_id = _finish_quickly(store, RunConfig())
    save_wise(store, run_id, 0.25, {**METRICS, "alpha": 0.25})
    save_wise(store, run_id, 0.75, {**METRICS, "alpha": 0.75})
    files = sorted((store.root / run_id / "wise").iterdir())
    files[0].write_text('{"alpha": 0.25, "metr')
    (store.root / run_id / "wise" / "alpha-0.9.json").write_text(json.dumps({"alpha": "high"}))
    assert sorted(wise_results(store, run_id)) == [0.75]


def test_wise_results_written_by_another_version_are_ignored(store):
    run_id = _finish_quickly(store, RunConfig())
    save_wise(store, run_id, 0.5, {**METRICS, "alpha": 0.5})
    (path,) = (store.root / run_id / "wise").iterdir()
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": SCHEMA_VERSION - 1}))
    assert wise_results(store, run_id) == {}


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_wise_alpha_outside_0_to_1_is_a_programming_error(store, alpha):
    run_id = _finish_quickly(store, RunConfig())
    with pytest.raises(ValueError):
        save_wise(store, run_id, alpha, METRICS)


def test_wise_results_of_an_unfinished_run_cannot_be_saved(store):
    run_id = store.create(RunConfig())
    with pytest.raises(RunNotFound, match="queued"):
        save_wise(store, run_id, 0.5, METRICS)


def test_a_wise_result_that_cannot_be_cached_is_reported_not_raised(store, monkeypatch):
    run_id = _finish_quickly(store, RunConfig())
    monkeypatch.setattr(disk, "write_json", _no_space)
    with pytest.warns(UserWarning, match="No space left on device"):
        assert save_wise(store, run_id, 0.5, METRICS) is False
    assert wise_results(store, run_id) == {}


# -- concurrency ---------------------------------------------------------------------------------------

RUNS_PER_WRITER = 20
PROGRESS_UPDATES = 5


def _write_runs(root: str, dataset: str) -> None:
    store = RunStore(root)
    for _ in range(RUNS_PER_WRITER):
        run_id = store.create(RunConfig(dataset=dataset))
        store.set_status(run_id, "running")
        for step in range(1, PROGRESS_UPDATES + 1):
            store.update_progress(run_id, {"step": step, "total_steps": PROGRESS_UPDATES})
        store.finish(run_id, {**METRICS, "dataset": dataset}, history=[{"step": PROGRESS_UPDATES}])


def test_two_processes_and_two_threads_writing_at_once_lose_and_corrupt_nothing(tmp_path):
    RunStore(tmp_path)  # create the index up front, as the app does
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_runs, args=(str(tmp_path), f"proc{i}")) for i in range(2)]
    writers += [threading.Thread(target=_write_runs, args=(str(tmp_path), f"thread{i}")) for i in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [w.exitcode for w in writers[:2]] == [0, 0]

    store = RunStore(tmp_path)
    records = store.list()
    assert len(records) == 4 * RUNS_PER_WRITER
    assert len({r.run_id for r in records}) == len(records)
    for name in ("proc0", "proc1", "thread0", "thread1"):
        assert len(store.list(dataset=name, status="done")) == RUNS_PER_WRITER
    for record in records:
        assert record.progress == {"step": PROGRESS_UPDATES, "total_steps": PROGRESS_UPDATES}
        assert store.metrics(record.run_id)["dataset"] == record.config.dataset
        assert store.history(record.run_id) == [{"step": PROGRESS_UPDATES}]
    with closing(sqlite3.connect(tmp_path / "index.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- runs whose process stopped ------------------------------------------------------------------------


def _start_run_and_exit(root: str, queue) -> None:
    store = RunStore(root)
    running = store.create(RunConfig())
    store.set_status(running, "running")
    store.update_progress(running, {"step": 3})
    queue.put((running, store.create(RunConfig())))


def test_runs_left_running_or_queued_by_a_dead_process_show_as_interrupted_on_reopen(tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_start_run_and_exit, args=(str(tmp_path), queue))
    child.start()
    running, queued = queue.get(timeout=60)
    child.join(timeout=60)

    store = RunStore(tmp_path)
    for run_id in (running, queued):
        record = store.get(run_id)
        assert (record.status, record.message) == ("interrupted", INTERRUPTED_MESSAGE)
    assert store.get(running).progress == {"step": 3}  # how far it got stays visible
    assert store.mark_interrupted() == 0


def test_a_run_whose_process_exited_but_was_not_yet_reaped_is_interrupted(tmp_path):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: start a run, report its id, exit without being waited for
        run_id = RunStore(tmp_path).create(RunConfig(), status="running")
        os.write(write_end, run_id.encode())
        os._exit(0)
    try:
        os.close(write_end)
        run_id = os.read(read_end, 100).decode()
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # wait for the exit but leave the zombie
        assert RunStore(tmp_path).get(run_id).status == "interrupted"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


def test_runs_of_a_process_killed_with_sigkill_show_as_interrupted_without_reopening_the_store(tmp_path):
    """The app opens its store once: a CLI run killed with kill -9 must not stay "queued"/"running" there forever."""
    app_store = RunStore(tmp_path)
    process, running, queued = start_cli_like_run(tmp_path)
    try:
        assert [app_store.get(r).status for r in (running, queued)] == ["running", "queued"]  # alive: left alone
    finally:
        process.kill()
        process.wait()
    for record in (app_store.get(running), *[r for r in app_store.list() if r.run_id == queued]):
        assert (record.status, record.message) == ("interrupted", INTERRUPTED_MESSAGE)
    assert json.loads((tmp_path / running / "status.json").read_text())["status"] == "interrupted"


def test_runs_owned_by_this_process_stay_active_when_another_store_opens(tmp_path):
    first = RunStore(tmp_path)
    running = first.create(RunConfig())
    first.set_status(running, "running")
    queued = first.create(RunConfig())

    second = RunStore(tmp_path)
    assert second.get(running).status == "running"
    assert second.get(queued).status == "queued"
    assert second.mark_interrupted() == 0


def test_a_run_owned_by_another_machine_is_interrupted(tmp_path, monkeypatch):
    monkeypatch.setattr(ownership.socket, "gethostname", lambda: "other-machine")
    run_id = RunStore(tmp_path).create(RunConfig(), status="running")
    monkeypatch.undo()
    assert RunStore(tmp_path).get(run_id).status == "interrupted"


def test_a_run_from_an_earlier_process_with_the_same_pid_is_interrupted(tmp_path, monkeypatch):
    """A restarted container can give the new app the old app's pid; the start time tells them apart."""
    if ownership.start_time(os.getpid()) is None:
        pytest.skip("needs /proc to tell process start times apart")
    monkeypatch.setattr(ownership, "start_time", lambda pid: "1")
    run_id = RunStore(tmp_path).create(RunConfig(), status="running")
    monkeypatch.undo()
    assert RunStore(tmp_path).get(run_id).status == "interrupted"


NOBODY = 65534


def _read_weights_as_nobody(root: str, run_id: str) -> str:
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return _read_weights(root, run_id)


def _read_weights(root: str, run_id: str) -> str:
    try:
        return str(load_file(str(RunStore(Path(root)).weights_path(run_id))).keys())
    except RunUnreadable as err:
        return str(err)


def read_weights_as_another_user(root: Path, run_id: str) -> str:
    """The weights as another user of the store sees them: as root, a forked process that became user nobody; else
    this user (the file is then made unreadable to its owner too)."""
    if os.geteuid() != 0:
        return _read_weights(str(root), run_id)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(_read_weights_as_nobody, (str(root), run_id))


@pytest.fixture
def shared_store():
    """A store in a folder every user may enter (pytest's own temporary folders are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="ldifs-shared-"))
    folder.chmod(0o755)
    try:
        yield RunStore(folder / "runs")
    finally:
        shutil.rmtree(folder)


def _finish_with_umask(store: RunStore, umask: int) -> str:
    previous = os.umask(umask)
    try:
        run_id = store.create(RunConfig())
        store.finish(run_id, METRICS, arrays={"a": np.ones(2)}, history=[{"step": 1}], weights={"w": torch.ones(2)})
    finally:
        os.umask(previous)
    return run_id


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_weights_and_every_result_file_get_the_mode_the_umask_asks_for(store, umask, mode):
    run_id = _finish_with_umask(store, umask)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in (store.root / run_id).iterdir()}
    assert modes == dict.fromkeys(modes, oct(mode)) and "weights.safetensors" in modes


def test_weights_in_a_shared_store_are_readable_by_another_user_and_unreadable_ones_say_permission_denied(
        shared_store):
    run_id = _finish_with_umask(shared_store, 0o022)
    assert read_weights_as_another_user(shared_store.root, run_id) == "dict_keys(['w'])"
    weights = shared_store.root / run_id / "weights.safetensors"
    weights.chmod(0o600 if os.geteuid() == 0 else 0o000)
    message = read_weights_as_another_user(shared_store.root, run_id)
    assert message.startswith("unreadable: weights.safetensors cannot be read here (permission denied)")
    assert "corrupt" not in message and f"chmod a+r {weights}" in message


# -- a lost, emptied, corrupt or full index (issue 20 item 15) -------------------------------------------------


def _store_with_every_kind_of_run(root: Path) -> tuple[RunStore, str]:
    """Finished (with WiSE-FT results), failed, cancelled and a sequence's stages: what an index must give back."""
    from ldifs_core.sequence import SequenceConfig, plan_sequence

    store = RunStore(root)
    done = _finish_quickly(store, RunConfig(dataset="svhn", objective="l2sp", lam=0.5, label="kept"))
    save_wise(store, done, 0.5, {"mean_zs_delta": -1.0})
    failed = store.create(RunConfig(objective="ldifs"))
    store.fail(failed, "failed", "The loss became nan at step 3; lower the learning rate.", history=[{"step": 1}])
    store.fail(store.create(RunConfig(dataset="gtsrb")), "cancelled", "Cancelled before it started.")
    sequence_id = plan_sequence(SequenceConfig(("mnist", "fashion_mnist"), "previous", RunConfig(objective="ce")), store)
    first, second = (r.run_id for r in sorted(store.list(), key=lambda r: r.config.stage or 0) if r.config.stage)
    store.set_status(first, "running")
    store.finish(first, METRICS)
    store.fail(second, "failed", "Stage 2 failed.")
    return store, sequence_id


def _seen(store: RunStore) -> list[tuple]:
    return [(r.run_id, r.status, r.message, r.config, r.summary) for r in store.list()]


@pytest.mark.parametrize("lose", ["deleted", "emptied to 0 bytes", "rows deleted", "corrupt"])
def test_a_lost_emptied_or_corrupt_index_is_rebuilt_from_the_run_folders_on_open(tmp_path, lose):
    from ldifs_core.sequence import sequence_state

    store, sequence_id = _store_with_every_kind_of_run(tmp_path)
    before = _seen(store)
    index = tmp_path / "index.sqlite"
    if lose == "deleted":
        for path in tmp_path.glob("index.sqlite*"):
            path.unlink()
    elif lose == "emptied to 0 bytes":
        for path in tmp_path.glob("index.sqlite-*"):
            path.unlink()
        index.write_bytes(b"")
    elif lose == "rows deleted":
        with closing(sqlite3.connect(index)) as db, db:
            db.execute("DELETE FROM runs")
    else:
        for path in tmp_path.glob("index.sqlite-*"):
            path.unlink()
        index.write_bytes(b"garbage " * 512)

    if lose == "corrupt":
        with pytest.warns(UserWarning, match="corrupt.*kept as index.sqlite.corrupt-"):
            reopened = RunStore(tmp_path)
        assert next(tmp_path.glob("index.sqlite.corrupt-*")).read_bytes() == b"garbage " * 512  # kept, not deleted
    else:
        reopened = RunStore(tmp_path)
    assert _seen(reopened) == before  # every run, with its status, message, settings and headline numbers
    done = next(r.run_id for r in reopened.list() if r.config.label == "kept")
    assert wise_results(reopened, done) == {0.5: {"mean_zs_delta": -1.0}}
    assert [s.status for s in sequence_state(reopened, sequence_id).stages] == ["done", "failed"]


def test_a_run_stored_before_folders_kept_their_status_comes_back_done_or_interrupted(store):
    done = _finish_quickly(store, RunConfig())
    failed = store.create(RunConfig(objective="ldifs"))
    store.fail(failed, "failed", "boom")
    for run_id in (done, failed):
        (store.root / run_id / "status.json").unlink()
    (store.root / "index.sqlite").unlink()
    statuses = {r.run_id: (r.status, r.message) for r in RunStore(store.root).list()}
    assert statuses[done] == ("done", "")
    assert statuses[failed] == ("interrupted", store_module.REBUILT_MESSAGE)


def test_a_live_run_survives_a_rebuilt_index_and_a_dead_one_comes_back_interrupted(store, monkeypatch):
    live = store.create(RunConfig())
    store.set_status(live, "running")
    (store.root / "index.sqlite").unlink()
    assert RunStore(store.root).get(live).status == "running"  # its owner (this process) still runs it
    monkeypatch.setattr(ownership, "owner_alive", lambda *owner: False)
    (store.root / "index.sqlite").unlink()
    assert RunStore(store.root).get(live).status == "interrupted"


def test_the_rebuild_index_command_brings_back_runs_the_index_lacks_and_sets_an_unreadable_index_aside(tmp_path,
                                                                                                      capsys):
    from ldifs_core.cli import main

    store, _ = _store_with_every_kind_of_run(tmp_path)
    before = _seen(store)
    for path in tmp_path.glob("index.sqlite*"):
        path.unlink()
    (tmp_path / "index.sqlite").mkdir()  # not corrupt data: left alone on open, set aside by the command
    with pytest.raises(StoreUnavailable, match="store rebuild-index"):
        RunStore(tmp_path)
    assert main(["store", "rebuild-index", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(before)} run(s) added" in out and "kept as" in out
    assert _seen(RunStore(tmp_path)) == before
    assert main(["store", "rebuild-index", "--store", str(tmp_path)]) == 0
    assert "0 run(s) added" in capsys.readouterr().out


@pytest.mark.parametrize("failure", ["database or disk is full", "disk I/O error"])
def test_a_full_disk_says_so_and_never_advises_moving_the_index(store, monkeypatch, failure):
    _finish_quickly(store, RunConfig())
    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 0))

    def full(self):
        raise sqlite3.OperationalError(failure)

    monkeypatch.setattr(RunStore, "_open_index", full)
    for action in (lambda: RunStore(store.root), store.list):
        with pytest.raises(StoreUnavailable) as err:
            action()
        message = str(err.value)
        assert "is full" in message and "Free some space" in message
        assert "aside" not in message and "new index" not in message
    monkeypatch.undo()
    assert len(RunStore(store.root).list()) == 1  # nothing was set aside or rebuilt meanwhile
    assert list(store.root.glob("index.sqlite.*")) == []


def test_an_index_this_user_may_not_read_says_permission_denied(store, monkeypatch):
    _finish_quickly(store, RunConfig())
    monkeypatch.setattr(store_module.os, "access", lambda path, mode: Path(path).name != "index.sqlite")

    def refused(self):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(RunStore, "_open_index", refused)
    with pytest.raises(StoreUnavailable, match="permission denied") as err:
        store.list()
    assert "aside" not in str(err.value)
