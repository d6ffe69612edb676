"""The run store keeps every run, finished or not, safely across threads, processes and restarts."""
from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from contextlib import closing

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ldifs_core import store as store_module
from ldifs_core.config import RunConfig
from ldifs_core.errors import RunNotFound
from ldifs_core.store import INTERRUPTED_MESSAGE, RunStore

METRICS = {
    "downstream": {"accuracy_after": 97.1, "zero_shot_before": 48.5, "per_class": [1, 2]},
    "mean_zs_delta": -3.2,
    "mean_lp_delta": -0.4,
    "timings": {"total_s": 12.5, "train_s": 10.0},
    "zero_shot": {"svhn": {"before": 30.0, "after": 25.0}},
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
    assert reader.metrics(run_id) == {**METRICS, "status": "done", "run_id": run_id}
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
    }


def test_summary_skips_missing_headline_numbers_and_accepts_numpy_scalars(store):
    run_id = store.create(RunConfig())
    store.finish(run_id, {"mean_zs_delta": np.float32(-1.5), "downstream": {}})
    assert store.get(run_id).summary == {"mean_zs_delta": -1.5}
    assert store.metrics(run_id)["mean_zs_delta"] == -1.5


def test_finish_leaves_only_the_final_files(store):
    run_id = store.create(RunConfig())
    store.finish(run_id, METRICS, arrays={"a": np.ones(3)}, history=[], weights={"w": torch.ones(2)})
    names = sorted(path.name for path in (store.root / run_id).iterdir())
    assert names == ["arrays.npz", "config.json", "history.json", "metrics.json", "weights.safetensors"]


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


def test_list_is_newest_first_and_filters_on_dataset_objective_model_and_status(store):
    first = _finish_quickly(store, RunConfig(dataset="mnist", objective="ce"))
    second = store.create(RunConfig(dataset="svhn", objective="ldifs", model="ViT-B-32"))
    third = store.create(RunConfig(dataset="mnist", objective="ldifs"))

    assert [r.run_id for r in store.list()] == [third, second, first]
    assert [r.run_id for r in store.list(dataset="mnist")] == [third, first]
    assert [r.run_id for r in store.list(objective="ldifs")] == [third, second]
    assert [r.run_id for r in store.list(model="embedded")] == [third, first]
    assert [r.run_id for r in store.list(model="ViT-B-32")] == [second]
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
        lambda: store.history(run_id), lambda: store.weights_path(run_id), lambda: store.delete(run_id),
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


def test_delete_removes_the_run_and_its_folder(store):
    kept = _finish_quickly(store, RunConfig())
    gone = _finish_quickly(store, RunConfig())
    store.delete(gone)
    assert not (store.root / gone).exists()
    assert [r.run_id for r in store.list()] == [kept]
    with pytest.raises(RunNotFound):
        store.get(gone)


def test_the_root_defaults_to_ldifs_store(tmp_path, monkeypatch):
    monkeypatch.setenv("LDIFS_STORE", str(tmp_path / "from-env"))
    store = RunStore()
    assert store.root == tmp_path / "from-env"
    assert (store.root / "index.sqlite").exists()


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
    monkeypatch.setattr(store_module.socket, "gethostname", lambda: "other-machine")
    run_id = RunStore(tmp_path).create(RunConfig(), status="running")
    monkeypatch.undo()
    assert RunStore(tmp_path).get(run_id).status == "interrupted"


def test_a_run_from_an_earlier_process_with_the_same_pid_is_interrupted(tmp_path, monkeypatch):
    """A restarted container can give the new app the old app's pid; the start time tells them apart."""
    if store_module._start_time(os.getpid()) is None:
        pytest.skip("needs /proc to tell process start times apart")
    monkeypatch.setattr(store_module, "_start_time", lambda pid: "1")
    run_id = RunStore(tmp_path).create(RunConfig(), status="running")
    monkeypatch.undo()
    assert RunStore(tmp_path).get(run_id).status == "interrupted"
