"""App tests run against a temporary run store and a fast fake job runner (no training, no warm-up)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import jobs
from app.jobs import JobRunner
from ldifs_core.config import RunConfig
from ldifs_core.hooks import NO_HOOKS, RunHooks, TrainEvent
from ldifs_core.store import RunStore
from ldifs_core.wise_records import save_wise, wise_results
from tests.app.sample_runs import finish_run, sample_wise

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PAGES = {"learn": "views/learn.py", "launch": "views/launch.py", "forgetting": "views/forgetting.py",
         "drift": "views/drift.py", "runs": "views/runs.py", "continual": "views/continual.py"}
LANDING = "learn"


def fake_execute(cfg: RunConfig, store: RunStore, run_id: str, hooks: RunHooks = NO_HOOKS) -> str:
    """runner.execute's contract in milliseconds: running, per-step events, cancellable, then done."""
    store.set_status(run_id, "running")
    for step in range(1, cfg.steps + 1):
        if hooks.should_stop():
            store.fail(run_id, "cancelled", f"Cancelled at step {step - 1} of {cfg.steps}.")
            return run_id
        hooks.step(TrainEvent(step, cfg.steps, 1.0 / step, {"ce": 1.0 / step}, 1e-4, 100.0, 0.0))
    finish_run(store, run_id, cfg)
    return run_id


class HeldExecute:
    """A fake run that stays running until released (then finishes like fake_execute) or cancelled, and notes
    the order runs start in: for watching queueing and cancelling."""

    def __init__(self):
        self.started: list[str] = []
        self.release = threading.Event()

    def __call__(self, cfg: RunConfig, store: RunStore, run_id: str, hooks: RunHooks = NO_HOOKS) -> str:
        self.started.append(run_id)
        for step in (1, 2):  # two steps done, as the runner reports them, then hold
            parts = {"ce": 1.5 / step, "ldifs": 0.5 / step}
            hooks.step(TrainEvent(step, cfg.steps, 2.0 / step, parts, 1e-4, 64.0, 42.0))
        store.update_progress(run_id, {"phase": "training", "step": 2, "total_steps": cfg.steps, "loss": 1.0,
                                       "parts": {"ce": 0.75, "ldifs": 0.25}, "eta_s": 42.0, "images_per_s": 64.0})
        store.set_status(run_id, "running")  # last: a test that sees "running" also sees the progress above
        while not self.release.wait(0.01):
            if hooks.should_stop():
                store.fail(run_id, "cancelled", "Cancelled at step 0.")
                return run_id
        return fake_execute(cfg, store, run_id, hooks)


class FakeWisePath:
    """wise.wise_ft_path's contract without a model: cached α are reused, each new α is computed (from the run's
    sample metrics), saved in the store and reported to on_alpha; the hooks are asked before each α. Holds
    before every new α until `release` is set, and notes which thread ran it."""

    def __init__(self, held: bool = False):
        self.release = threading.Event()
        if not held:
            self.release.set()
        self.calls: list[str] = []
        self.threads: list[str] = []

    def __call__(self, store: RunStore, run_id: str, alphas, hooks: RunHooks = NO_HOOKS, on_alpha=None) -> list[dict]:
        self.calls.append(run_id)
        self.threads.append(threading.current_thread().name)
        cached = wise_results(store, run_id)
        for alpha in sorted(set(alphas)):
            if alpha in cached:
                continue
            while not self.release.wait(0.01):
                hooks.check(f"before WiSE-FT α = {alpha:g}")
            hooks.check(f"before WiSE-FT α = {alpha:g}")
            cached[alpha] = sample_wise(store.metrics(run_id), alpha)
            save_wise(store, run_id, alpha, cached[alpha])
            if on_alpha is not None:
                on_alpha(alpha, cached[alpha])
        return [cached[alpha] for alpha in sorted(set(alphas))]


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("LDIFS_STORE", str(tmp_path / "runs"))
    return RunStore(tmp_path / "runs")


@pytest.fixture
def held(store, monkeypatch) -> HeldExecute:
    """The app's job runner with HeldExecute in place of training: runs stay running until released."""
    execute = HeldExecute()
    held_runner = JobRunner(store, execute=execute)
    monkeypatch.setattr(jobs, "job_runner", lambda: held_runner)
    yield execute
    execute.release.set()


@pytest.fixture
def runner(store, monkeypatch) -> JobRunner:
    """The app's job runner, with the fake execute in place of training."""
    fake = JobRunner(store, execute=fake_execute, wise_path=FakeWisePath())
    monkeypatch.setattr(jobs, "job_runner", lambda: fake)
    return fake


@pytest.fixture
def app(runner) -> AppTest:
    return AppTest.from_file(MAIN, default_timeout=60)


def open_page(app: AppTest, name: str) -> AppTest:
    """Run the app once (registers the pages), then show `name`."""
    app.run()
    if name != LANDING:
        app.switch_page(PAGES[name]).run()
    return app


def wait_for_status(store: RunStore, run_id: str, statuses: tuple[str, ...], timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := store.get(run_id).status) not in statuses:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is still {status} after {timeout_s} s")
        time.sleep(0.02)
    return status


def wait_for_wise(runner: JobRunner, run_id: str, statuses: tuple[str, ...], timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while (state := runner.wise_state(run_id)) is None or state.status not in statuses:
        if time.monotonic() > deadline:
            raise AssertionError(f"WiSE-FT of {run_id} is still {state and state.status} after {timeout_s} s")
        time.sleep(0.02)
    return state
