"""The background job runner: one run at a time in submission order, cancellable, and never killed by a bad run."""
from __future__ import annotations

import threading
import time

import pytest

from app.jobs import CANCELLED_BEFORE_START, JobRunner, wise_job_id
from ldifs_core.config import RunConfig
from ldifs_core.errors import DatasetUnavailable, RunNotFound
from ldifs_core.hooks import RunHooks
from ldifs_core.store import RunStore
from ldifs_core.wise_records import wise_results
from tests.app.conftest import FakeWisePath, HeldExecute, fake_execute, wait_for_status, wait_for_wise
from tests.app.sample_runs import add_finished_run

TINY = dict(steps=5, eval_limit=200, probe_limit=200, umap_points=60)


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path)


def test_submitted_runs_are_recorded_queued_and_run_one_at_a_time_in_order(store):
    held = HeldExecute()
    runner = JobRunner(store, execute=held)
    first, second, third = (runner.submit(RunConfig(steps=3, seed=s)) for s in range(3))
    wait_for_status(store, first, ("running",))
    assert [store.get(r).status for r in (second, third)] == ["queued", "queued"]
    assert (runner.queue_position(second), runner.queue_position(third)) == (1, 2)
    held.release.set()
    wait_for_status(store, third, ("done",))
    assert held.started == [first, second, third]


def test_cancelling_a_queued_run_records_it_cancelled_without_running_it(store):
    held = HeldExecute()
    runner = JobRunner(store, execute=held)
    running, waiting = runner.submit(RunConfig(steps=3)), runner.submit(RunConfig(steps=3))
    wait_for_status(store, running, ("running",))
    runner.cancel(waiting)
    assert (store.get(waiting).status, store.get(waiting).message) == ("cancelled", CANCELLED_BEFORE_START)
    held.release.set()
    wait_for_status(store, running, ("done",))
    assert waiting not in held.started


def test_cancelling_the_running_run_stops_it(store):
    held = HeldExecute()
    runner = JobRunner(store, execute=held)
    run_id = runner.submit(RunConfig(steps=3))
    wait_for_status(store, run_id, ("running",))
    runner.cancel(run_id)
    assert wait_for_status(store, run_id, ("cancelled",), timeout_s=2) == "cancelled"


def test_the_worker_survives_failing_runs_and_records_them(store):
    def seed_decides(cfg, store, run_id, **kwargs):
        if cfg.seed == 0:
            store.fail(run_id, "failed", "No such dataset. Pick another.")  # as execute records user errors
            raise DatasetUnavailable("No such dataset. Pick another.")
        if cfg.seed == 1:
            raise RuntimeError("a bug before execute could record anything")
        return fake_execute(cfg, store, run_id, **kwargs)

    runner = JobRunner(store, execute=seed_decides)
    user_error, bug, healthy = (runner.submit(RunConfig(steps=2, seed=seed)) for seed in range(3))
    assert wait_for_status(store, healthy, ("done",)) == "done"
    assert store.get(user_error).message == "No such dataset. Pick another."
    assert store.get(bug).status == "failed" and "RuntimeError" in store.get(bug).message


def test_live_history_has_every_step_of_the_running_run(store):
    seen = threading.Event()
    steps_seen: list[int] = []

    class Watched(RunHooks):
        """The worker's hooks, and after each step how much of the live curve the worker shows."""

        def __init__(self, worker: RunHooks, run_id: str):
            self.worker, self.run_id = worker, run_id

        def step(self, event):
            self.worker.step(event)
            steps_seen.append(len(runner.live_history(self.run_id)))

    def watched(cfg, store, run_id, hooks):
        fake_execute(cfg, store, run_id, Watched(hooks, run_id))
        seen.set()
        return run_id

    runner = JobRunner(store, execute=watched)
    run_id = runner.submit(RunConfig(steps=4))
    assert seen.wait(5)
    assert steps_seen == [1, 2, 3, 4]
    assert runner.live_history(run_id) == []  # once ended, the store holds the history


@pytest.mark.slow
def test_a_real_run_and_its_wise_ft_path_go_through_the_worker_and_a_cancel_lands_within_seconds(store):
    """The real runner and wise.wise_ft_path end to end on the embedded model: results recorded, the WiSE-FT
    mixes cached (α = 1 mixes nothing in, so it is the run; α = 0 is the pre-trained encoder), then a long run
    cancelled mid-training."""
    runner = JobRunner(store)
    finished = runner.submit(RunConfig(**{**TINY, "eval_datasets": ["animals"]}))
    wait_for_status(store, finished, ("done",), timeout_s=180)
    metrics = store.metrics(finished)
    assert {"downstream", "forgetting", "mean_zs_delta", "mean_lp_delta"} <= metrics.keys()
    assert any(key.startswith("umap_pre/") for key in store.arrays(finished))

    assert runner.submit_wise(finished, (0.0, 1.0))
    state = wait_for_wise(runner, finished, ("done", "failed"), timeout_s=180)
    assert state.status == "done", state.message
    mixes = wise_results(store, finished)
    assert sorted(mixes) == [0.0, 1.0]
    assert mixes[1.0]["downstream"]["accuracy_after"] == pytest.approx(metrics["downstream"]["accuracy_after"], abs=1e-6)
    assert mixes[1.0]["mean_zs_delta"] == pytest.approx(metrics["mean_zs_delta"], abs=1e-6)
    assert mixes[0.0]["mean_zs_delta"] == pytest.approx(0.0, abs=1e-6)

    long_run = runner.submit(RunConfig(**{**TINY, "steps": 100_000}))
    deadline = time.monotonic() + 120
    while store.get(long_run).progress.get("phase") != "training":
        assert time.monotonic() < deadline, "the long run never started training"
        time.sleep(0.1)
    progress = store.get(long_run).progress
    step_s = RunConfig().batch_size / max(progress.get("images_per_s", 0.0), 1.0)  # on this machine, now
    asked = time.monotonic()
    runner.cancel(long_run)
    wait_for_status(store, long_run, ("cancelled",), timeout_s=30)
    assert time.monotonic() - asked < 3 + 2 * step_s  # it stops at the next step, not at the end


# -- WiSE-FT paths go through the same worker --------------------------------------------------------------

ALPHAS = (0.0, 0.5, 1.0)


def test_a_wise_ft_path_runs_in_the_worker_and_caches_every_alpha_in_the_store(store):
    wise = FakeWisePath()
    runner = JobRunner(store, execute=fake_execute, wise_path=wise)
    run_id = add_finished_run(store)
    assert runner.submit_wise(run_id, ALPHAS)
    state = wait_for_wise(runner, run_id, ("done",))
    assert wise.threads == ["ldifs-job-worker"]  # never the caller's (a page's) thread
    assert sorted(wise_results(store, run_id)) == list(ALPHAS) and state.computed == list(ALPHAS)


def test_a_wise_ft_path_waits_its_turn_behind_a_running_run_and_a_second_request_is_ignored(store):
    held, wise = HeldExecute(), FakeWisePath()
    runner = JobRunner(store, execute=held, wise_path=wise)
    finished = add_finished_run(store)
    running = runner.submit(RunConfig(steps=3))
    wait_for_status(store, running, ("running",))
    assert runner.submit_wise(finished, ALPHAS)
    assert not runner.submit_wise(finished, ALPHAS)  # a second click while it waits
    assert (runner.wise_state(finished).status, runner.queue_position(wise_job_id(finished))) == ("queued", 1)
    assert [s.run_id for s in runner.active_wise()] == [finished]
    assert wise.calls == []  # nothing evaluates beside the run
    held.release.set()
    wait_for_wise(runner, finished, ("done",))
    assert wise.calls == [finished] and runner.active_wise() == []
    assert runner.submit_wise(finished, ALPHAS)  # once done, asking again is allowed (and reads the cache)


def test_cancelling_a_queued_wise_ft_path_drops_it_and_a_running_one_stops_before_its_next_alpha(store):
    held, wise = HeldExecute(), FakeWisePath(held=True)
    runner = JobRunner(store, execute=held, wise_path=wise)
    first, second = add_finished_run(store), add_finished_run(store, seed=1)
    running = runner.submit(RunConfig(steps=3))
    wait_for_status(store, running, ("running",))
    runner.submit_wise(first, ALPHAS)
    runner.submit_wise(second, ALPHAS)
    runner.cancel(wise_job_id(second))
    assert (runner.wise_state(second).status, runner.wise_state(second).message) == ("cancelled",
                                                                                   CANCELLED_BEFORE_START)
    held.release.set()
    wait_for_wise(runner, first, ("running",))
    assert runner.owns(wise_job_id(first))
    runner.cancel(wise_job_id(first))
    state = wait_for_wise(runner, first, ("cancelled",))
    assert "Cancelled before WiSE-FT α = 0" in state.message and wise_results(store, first) == {}
    assert wise.calls == [first]


def test_a_failing_wise_ft_path_records_its_reason_and_the_worker_goes_on(store):
    def no_weights(store, run_id, alphas, **kwargs):
        raise RunNotFound(f"Run {run_id} kept no weights (save_weights was off), so WiSE-FT cannot mix them.")

    runner = JobRunner(store, execute=fake_execute, wise_path=no_weights)
    finished = add_finished_run(store)
    runner.submit_wise(finished, ALPHAS)
    assert "kept no weights" in wait_for_wise(runner, finished, ("failed",)).message
    assert wait_for_status(store, runner.submit(RunConfig(steps=2)), ("done",)) == "done"



def test_the_worker_warms_up_only_when_asked_or_before_its_first_job_and_only_once(store):
    events = []

    def execute(cfg, store, run_id, **kwargs):
        events.append("run")
        return fake_execute(cfg, store, run_id, **kwargs)

    asked = JobRunner(store, execute=execute, warm_up=lambda: events.append("warm-up"))
    time.sleep(0.2)
    assert events == []  # not at start: 20 sessions opening at once would wait for it
    asked.request_warm_up()
    asked.request_warm_up()
    wait_for_status(store, asked.submit(RunConfig(steps=2)), ("done",))
    asked.request_warm_up()
    time.sleep(0.1)
    assert events == ["warm-up", "run"]

    events.clear()
    unasked = JobRunner(store, execute=execute, warm_up=lambda: events.append("warm-up"))
    for _ in range(2):
        wait_for_status(store, unasked.submit(RunConfig(steps=2)), ("done",))
    assert events == ["warm-up", "run", "run"]


def test_a_job_waiting_for_the_worker_to_warm_up_says_so_with_the_time_spent(store):
    """Issue 20 item 25: the first job after a server start sat at "next in line" for minutes, saying nothing."""
    from app.widgets import queue_line

    started, release = threading.Event(), threading.Event()

    def slow_warm_up():
        started.set()
        release.wait(10)

    runner = JobRunner(store, execute=fake_execute, warm_up=slow_warm_up)
    assert runner.warming_up_s() is None
    run_id = runner.submit(RunConfig(steps=2))
    assert started.wait(5)
    time.sleep(0.05)
    waited = runner.warming_up_s()
    assert waited is not None and waited > 0
    assert runner.queue_position(run_id) == 1 and store.get(run_id).status == "queued"
    line = queue_line(runner.queue_position(run_id), waited)
    assert "waiting for the worker to start: loading torch" in line and "so far" in line
    release.set()
    wait_for_status(store, run_id, ("done",))
    assert runner.warming_up_s() is None
    assert queue_line(1, None) == "Queued — next in line; jobs go one at a time."
    assert queue_line(3, 12.0).startswith("Queued — 2 more job(s) ahead of it")
