"""The Runs & sweeps page's Ray control: with a cluster address (from $LDIFS_RAY_ADDRESS or typed in), "Queue sweep"
hands the grid to Ray instead of the local worker, and the page follows the trials as they progress.

Ray itself is replaced by a fake with ray_sweep's contract (tests/test_ray_sweep.py runs the real one): it marks
each trial running with its step and node, holds until released or cancelled, then finishes it."""
from __future__ import annotations

import threading
import time

import pytest

from app import jobs
from app.jobs import RAY_ADDRESS_ENV, JobRunner
from ldifs_core.errors import ClusterUnavailable
from ldifs_core.store import RunStore
from tests.app.conftest import fake_execute, open_page, wait_for_status
from tests.app.sample_runs import finish_run

RAY_FIELD = "Ray cluster"  # the sweep form's address field


class FakeRay:
    """ray_sweep.run_trials on a connected cluster, in milliseconds: every trial starts at once on node-a."""

    def __init__(self):
        self.calls: list[tuple[list[str], str]] = []
        self.release = threading.Event()

    def __call__(self, store: RunStore, trials, address: str, hooks_for) -> None:
        self.calls.append(([run_id for run_id, _ in trials], address))
        for run_id, cfg in trials:
            store.update_progress(run_id, {"phase": "training", "step": 5, "total_steps": cfg.steps, "loss": 1.0,
                                           "eta_s": 30.0, "images_per_s": 50.0, "node": "node-a"})
            store.set_status(run_id, "running")  # last: a test that sees "running" also sees the progress
        waiting = dict(trials)
        while waiting:
            for run_id in [run_id for run_id in waiting if hooks_for(run_id).should_stop()]:
                store.fail(run_id, "cancelled", "Cancelled at step 5.")
                del waiting[run_id]
            if self.release.is_set():
                for run_id, cfg in waiting.items():
                    finish_run(store, run_id, cfg)
                return
            time.sleep(0.01)


@pytest.fixture
def ray(store, runner, monkeypatch) -> FakeRay:
    """Replaces the app's fake worker (conftest's `runner`) with one whose Ray sweeps go to FakeRay."""
    fake = FakeRay()
    runner = JobRunner(store, execute=fake_execute, sweep_on_ray=fake)
    monkeypatch.setattr(jobs, "job_runner", lambda: runner)
    return fake


def queue_sweep(app, lams=(1.0, 10.0)):
    next(m for m in app.multiselect if m.label == "λ values").set_value(list(lams))
    next(b for b in app.button if b.label == "Queue sweep").click()
    return app.run()


def progress_texts(app) -> list[str]:
    return [bar.proto.text for bar in app.get("progress")]


def test_with_ldifs_ray_address_set_a_sweep_goes_to_ray_and_its_trials_show_their_steps(app, store, ray, monkeypatch):
    monkeypatch.setenv(RAY_ADDRESS_ENV, "ray://head:10001")
    open_page(app, "runs")
    assert next(t for t in app.text_input if t.label == RAY_FIELD).value == "ray://head:10001"
    queue_sweep(app)

    wait_until(lambda: ray.calls)
    (run_ids, address), = ray.calls
    assert address == "ray://head:10001"
    assert sorted(store.get(run_id).config.lam for run_id in run_ids) == [1.0, 10.0]
    assert "Sent 2 runs to Ray (ray://head:10001)" in app.success[0].value
    for run_id in run_ids:
        wait_for_status(store, run_id, ("running",))
    app.run()
    assert [text for text in progress_texts(app) if "step 5/300" in text and "on node-a" in text]

    ray.release.set()
    for run_id in run_ids:
        wait_for_status(store, run_id, ("done",))


@pytest.mark.parametrize("address, says", [("ray://head:10001", "Sent 2 runs to Ray"),
                                            ("", "they run one after another")])
def test_the_sweeps_confirmation_survives_the_redraw_a_starting_run_causes(app, store, ray, monkeypatch, address, says):
    """A run that starts while the page draws makes the sidebar redraw the whole page; the confirmation must stay."""
    monkeypatch.setenv(RAY_ADDRESS_ENV, address)
    open_page(app, "runs")
    queue_sweep(app)
    app.run()  # the redraw
    assert [success.value for success in app.success if says in success.value]
    queue_sweep(app, lams=(3.0,))  # a new sweep replaces it
    assert [success.value for success in app.success if "1 run" in success.value]
    ray.release.set()
    for record in store.list():
        wait_for_status(store, record.run_id, ("done",))


def test_a_ray_trial_is_cancelled_from_its_card(app, store, ray, monkeypatch):
    monkeypatch.setenv(RAY_ADDRESS_ENV, "auto")
    open_page(app, "runs")
    queue_sweep(app, lams=(10.0,))
    wait_until(lambda: ray.calls)
    (run_id,), _ = ray.calls[0]
    wait_for_status(store, run_id, ("running",))
    app.run()  # the trial now shows under "Running and queued", with Cancel
    next(b for b in app.button if b.label == "Cancel").click().run()
    assert wait_for_status(store, run_id, ("cancelled",)) == "cancelled"


def test_without_an_address_the_sweep_goes_through_the_local_worker(app, store, ray, monkeypatch):
    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    open_page(app, "runs")
    assert next(t for t in app.text_input if t.label == RAY_FIELD).value == ""
    queue_sweep(app)
    assert "they run one after another" in app.success[0].value
    for record in store.list():
        wait_for_status(store, record.run_id, ("done",))
    assert ray.calls == []


def test_a_typed_address_overrides_the_environment(app, store, ray, monkeypatch):
    monkeypatch.setenv(RAY_ADDRESS_ENV, "auto")
    open_page(app, "runs")
    next(t for t in app.text_input if t.label == RAY_FIELD).input("ray://other:10001")
    queue_sweep(app, lams=(1.0,))
    wait_until(lambda: ray.calls)
    assert ray.calls[0][1] == "ray://other:10001"
    ray.release.set()


def test_a_cluster_that_cannot_take_the_sweep_fails_its_runs_with_the_reason(app, store, runner, monkeypatch):
    reason = "Could not reach the Ray cluster at ray://gone:10001 (ray client connection timeout)."

    def unreachable(store, trials, address, hooks_for):
        raise ClusterUnavailable(reason)

    refusing = JobRunner(store, execute=fake_execute, sweep_on_ray=unreachable)
    monkeypatch.setattr(jobs, "job_runner", lambda: refusing)
    monkeypatch.setenv(RAY_ADDRESS_ENV, "ray://gone:10001")
    open_page(app, "runs")
    queue_sweep(app, lams=(1.0, 10.0))
    for record in store.list():
        wait_for_status(store, record.run_id, ("failed",))
    app.run()
    assert [record.message for record in store.list()] == [reason, reason]
    assert list(app.dataframe[0].value["message"]) == [reason, reason]  # the runs table says why


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)
