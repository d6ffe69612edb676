"""Sweeps on Ray: a real local Ray instance (2 CPUs, started once for this module), the embedded model, tiny runs.

A trial is an ordinary run on a Ray worker whose record the driver writes into its own store, so a sweep on Ray
and the sequential sweep give the same metrics; a failing trial is recorded and the others go on; cancelling
(from a front end, or Ctrl-C in the driver) stops every unfinished trial and frees the cluster.
"""
import json
import time
from dataclasses import replace

import pytest
import ray
from safetensors.torch import load_file

from ldifs_core import ray_sweep
from ldifs_core.cli import main
from ldifs_core.config import RunConfig
from ldifs_core.errors import ClusterUnavailable, DatasetUnavailable
from ldifs_core.hooks import Progress, RunHooks
from ldifs_core.ray_sweep import TrialResources, record_trials, run_trials
from ldifs_core.store import RunStore

TINY = ["--steps", "3", "--batch-size", "16", "--eval-datasets", "animals", "--no-umap", "--train-limit", "200",
        "--eval-limit", "100", "--probe-limit", "10"]
TINY_CONFIG = RunConfig(objective="ce", steps=3, batch_size=16, eval_datasets=["animals"], umap_points=0,
                        train_limit=200, eval_limit=100, probe_limit=10)
# Per run, what may differ between two executions of the same config: its id and how long it took.
VARYING = ("run_id", "timings")


@pytest.fixture(scope="module")
def cluster():
    with ray_sweep.ray_session(ray_sweep.LOCAL, num_cpus=2, object_store_bytes=256 * 1024**2):
        yield


def comparable(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in VARYING}


def wait_for_free_cpus(timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= ray.cluster_resources()["CPU"]:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.ray
def test_a_sweep_on_ray_gives_the_sequential_sweeps_metrics_and_files(cluster, tmp_path, capsys):
    """--cpus-per-trial 2: each trial's torch uses 2 threads, as the sequential runs in this process do."""
    grid = ["sweep", "--objectives", "ce,ldifs", "--lams", "5", *TINY]
    assert main([*grid, "--store", str(tmp_path / "seq"), "--json", str(tmp_path / "seq.json")]) == 0
    assert main([*grid, "--store", str(tmp_path / "ray"), "--json", str(tmp_path / "ray.json"),
                 "--ray", "--cpus-per-trial", "2"]) == 0

    sequential, on_ray = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("seq", "ray"))
    assert [comparable(m) for m in on_ray] == [comparable(m) for m in sequential]
    assert "Sweep: 2 of 2 runs, 2 done, 0 not done" in capsys.readouterr().out
    seq_store, ray_store = RunStore(tmp_path / "seq"), RunStore(tmp_path / "ray")
    for before, after in zip(sequential, on_ray):
        assert ray_store.get(after["run_id"]).status == "done"
        assert ray_store.metrics(after["run_id"]) == after
        assert ray_store.history(after["run_id"])[-1]["loss"] == seq_store.history(before["run_id"])[-1]["loss"]
        tuned, reference = (load_file(str(store.weights_path(m["run_id"])))
                            for store, m in ((ray_store, after), (seq_store, before)))
        assert tuned.keys() == reference.keys() and all((tuned[k] == reference[k]).all() for k in tuned)


@pytest.mark.ray
def test_a_trial_on_a_bad_dataset_is_recorded_failed_while_the_other_finishes(cluster, tmp_path, capsys):
    bad = tmp_path / "scans"
    for name in ("cat", "dog"):
        (bad / name).mkdir(parents=True)
        for i in range(6):
            (bad / name / f"{i}.png").write_bytes(b"not an image")
    store = RunStore(tmp_path / "store")
    configs = [replace(TINY_CONFIG, dataset=str(bad)), TINY_CONFIG]
    resources = ray_sweep.check_cluster(configs, TrialResources(cpus=1))  # the folder is there, so it may start
    failed, finished = record_trials(store, configs)
    progress: dict[str, list[str]] = {}
    listed: list[str] = []

    class Watch(RunHooks):
        def __init__(self, run_id: str):
            self.run_id = run_id

        def progress(self, report: Progress) -> None:
            progress.setdefault(self.run_id, []).append(report.phase)
            if report.step is not None and not listed:  # what `list` shows meanwhile
                main(["list", "--store", str(tmp_path / "store")])
                listed.append(capsys.readouterr().out)

    run_trials(store, [failed, finished], resources, hooks_for=Watch)

    assert store.get(finished.run_id).status == "done"
    assert progress[finished.run_id][0] == "loading" and "evaluating" in progress[finished.run_id]
    assert f"{finished.run_id}  running" in listed[0] and "step 3/3 on " in listed[0]
    record = store.get(failed.run_id)
    assert record.status == "failed"
    assert "could be read" in record.message and str(bad) in record.message


@pytest.mark.ray
def test_cancelling_stops_the_running_trial_and_the_queued_ones(cluster, tmp_path):
    """A front end cancels runs through their hooks' should_stop: here all three, once the first one trains."""
    store = RunStore(tmp_path / "store")
    long_run = replace(TINY_CONFIG, steps=100_000)
    trials = record_trials(store, [replace(long_run, seed=seed) for seed in range(3)])
    started: set[str] = set()
    training: set[str] = set()

    class CancelOnceOneTrains(RunHooks):
        def __init__(self, run_id: str):
            self.run_id = run_id

        def progress(self, progress: Progress) -> None:
            started.add(self.run_id)
            if progress.phase == "training":
                training.add(self.run_id)

        def should_stop(self) -> bool:
            return bool(training)

    run_trials(store, trials, TrialResources(cpus=2), hooks_for=CancelOnceOneTrains)

    assert started == {trials[0].run_id}  # each trial takes both CPUs: never two at once, even while one waits
    records = [store.get(trial.run_id) for trial in trials]
    assert [record.status for record in records] == ["cancelled"] * 3
    assert records[0].message.startswith("Cancelled at step ")
    assert len(store.history(trials[0].run_id)) >= 5  # like any cancelled run, it keeps its curves so far
    assert [record.message for record in records[1:]] == ["Cancelled before it started."] * 2
    assert wait_for_free_cpus(), "a cancelled trial still holds its CPUs"


@pytest.mark.ray
def test_ctrl_c_in_the_driver_records_every_unfinished_trial_cancelled(cluster, tmp_path):
    store = RunStore(tmp_path / "store")
    trials = record_trials(store, [replace(TINY_CONFIG, steps=100_000, seed=seed) for seed in range(2)])

    class InterruptOnceTraining(RunHooks):
        def progress(self, progress: Progress) -> None:
            if progress.phase == "training":
                raise KeyboardInterrupt  # what Ctrl-C raises in the driver's loop

    with pytest.raises(KeyboardInterrupt):
        run_trials(store, trials, TrialResources(cpus=2), hooks_for=lambda run_id: InterruptOnceTraining())

    first, second = (store.get(trial.run_id) for trial in trials)
    assert (first.status, second.status) == ("cancelled", "cancelled")
    assert first.message.startswith("Interrupted from the keyboard at step ")
    assert second.message == "Interrupted from the keyboard before it started."
    assert wait_for_free_cpus(), "an interrupted trial still holds its CPUs"


@pytest.mark.ray
def test_files_a_trial_reads_must_exist_on_the_workers_before_anything_is_recorded(cluster, tmp_path):
    missing_root = tmp_path / "datasets"
    cfg = replace(TINY_CONFIG, dataset="cifar10", data_root=str(missing_root))
    with pytest.raises(DatasetUnavailable, match="same path on every node") as err:
        ray_sweep.check_cluster([cfg], TrialResources(cpus=1))
    assert f"{missing_root} (the data root holding cifar10)" in str(err.value)


@pytest.mark.ray
def test_a_trial_no_node_can_hold_is_refused(cluster):
    with pytest.raises(ClusterUnavailable, match="No node of the Ray cluster can hold a trial of 4 CPUs"):
        ray_sweep.check_cluster([TINY_CONFIG], TrialResources(cpus=4))


@pytest.mark.parametrize("flags, message", [
    (["--cpus-per-trial", "2"], "apply to sweeps on Ray: add --ray"),
    (["--ray", "--gpus-per-trial", "1.5"], "--gpus-per-trial must be a fraction up to 1"),
    (["--ray", "--cpus-per-trial", "0"], "--cpus-per-trial must be a number above 0"),
])
def test_bad_trial_resources_end_in_one_line_before_ray_starts(flags, message, capsys, tmp_path):
    assert main(["sweep", *TINY, "--store", str(tmp_path / "store"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert RunStore(tmp_path / "store").list() == []
