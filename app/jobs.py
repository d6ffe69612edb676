"""Background work: one worker thread, one FIFO queue of runs and WiSE-FT paths, cancellation, live curves.

One worker because jobs share the CPU/GPU: two at once would only slow both, and the base model is never touched
by two jobs at a time. Streamlit reruns its script on every click, so a job can never live in the script (nor in
a page's thread); it lives here and records everything in the run store, which the pages poll. The worker makes
no st.* calls.

Three kinds of job share the queue:
- a run (`submit`): `runner.execute`, recorded in the store as queued → running → done / failed / cancelled; a
  Model Stock merge of two finished runs (`submit_model_stock`) is such a run;
- a WiSE-FT path (`submit_wise`): `wise.wise_ft_path` of a finished run for a list of α, measured together and each
  cached in the store (`wise_records.wise_results`); its state and progress live here (`wise_state`), its results in
  the store;
- a sequence (`submit_sequence`): `sequence.run_sequence`, its stages recorded as queued runs at once, each run
  through the same execute as a single run; cancelling any of its stages cancels the sequence.

A sweep can also go to a Ray cluster instead (`submit_ray_sweep`): its runs bypass the queue, run side by side on
the cluster (ldifs_core.ray_sweep), and are recorded in the store like any run, so the same cards follow them and
Cancel reaches them. The cluster's address comes from $LDIFS_RAY_ADDRESS or the Runs & sweeps page.

Why one module over 350 lines: the three kinds of job share one queue, one lock and one worker thread, whose
state (queued, current, cancelling, live curves) every method reads under that lock.
"""
from __future__ import annotations

import gc
import importlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import streamlit as st

from app.results import store_at, store_root
from ldifs_core.config import RunConfig
from ldifs_core.curve_records import Curve
from ldifs_core.errors import LabError, RunCancelled
from ldifs_core.hooks import Progress, RunHooks, TrainEvent
from ldifs_core.store import RunStore

if TYPE_CHECKING:
    from ldifs_core.sequence import SequenceConfig

log = logging.getLogger(__name__)

# runner.execute's signature: (cfg, store, run_id=..., hooks=RunHooks) -> run id
Execute = Callable[..., str]
# wise.wise_ft_path's signature: (store, run_id, alphas, hooks=RunHooks, on_alpha=(α, metrics) -> None) -> list
WisePath = Callable[..., list]
# ray_sweep on a connected cluster: (store, [(run id, cfg)], address, hooks_for=(run id) -> RunHooks) -> None
SweepOnRay = Callable[..., None]
# sequence.run_sequence's signature: (store, sequence_id, execute=..., hooks=RunHooks)
RunSequence = Callable[..., object]
CANCELLED_BEFORE_START = "Cancelled before it started."
WISE_PREFIX = "wise-"
WISE_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))  # the app's WiSE-FT path: α = 0, 0.1, …, 1
RAY_ADDRESS_ENV = "LDIFS_RAY_ADDRESS"  # where "Queue sweep" sends sweeps by default ('' or unset: the worker)


def execute_for_real(cfg: RunConfig, store: RunStore, **kwargs) -> str:
    """ldifs_core's runner, imported on first use: torch/open_clip must not slow the first page load."""
    from ldifs_core.runner import execute

    return execute(cfg, store, **kwargs)


def wise_path_for_real(store: RunStore, run_id: str, alphas: Sequence[float], **kwargs) -> list:
    from ldifs_core.wise import wise_ft_path

    return wise_ft_path(store, run_id, alphas, **kwargs)


def sweep_on_ray_for_real(store: RunStore, trials: Sequence[tuple[str, RunConfig]], address: str,
                          hooks_for: Callable[[str], RunHooks]) -> None:
    """The recorded runs as Ray trials at `address` ('local' starts Ray in this process; see ray_sweep)."""
    from ldifs_core import ray_sweep

    with ray_sweep.ray_session(address):
        resources = ray_sweep.check_cluster([cfg for _, cfg in trials], ray_sweep.TrialResources())
        ray_sweep.run_trials(store, [ray_sweep.Trial(run_id, cfg) for run_id, cfg in trials], resources,
                             hooks_for=hooks_for)


def default_ray_address() -> str:
    return os.environ.get(RAY_ADDRESS_ENV, "").strip()


def settle_memory() -> None:
    """Exempt every object alive now (imported modules, the cached model) from the cyclic garbage collector.

    Every session's script run allocates enough to trigger full collections, and each one walks every tracked
    object of the process: with torch and open_clip loaded that walk made 20 sessions opening at once take 6 s
    instead of 1.5 s (benchmarks/app_bench.py). Called once after the imports, not per run: frozen objects are
    still freed by reference counting, only cycles among them would stay.
    """
    gc.collect()
    gc.freeze()


def run_sequence_for_real(store: RunStore, sequence_id: str, **kwargs) -> object:
    from ldifs_core.sequence import run_sequence

    return run_sequence(store, sequence_id, **kwargs)


def warm_up() -> None:
    """Pay the heavy imports and numba's UMAP compilation before the first run instead of during it."""
    importlib.import_module("ldifs_core.runner")  # torch, open_clip, torchvision: seconds, once
    from ldifs_core.drift import warm_umap

    warm_umap()
    settle_memory()


def wise_job_id(run_id: str) -> str:
    """The queue id of the WiSE-FT path of a run (one per run: a second request while it waits is ignored)."""
    return f"{WISE_PREFIX}{run_id}"


@dataclass
class RunJob:
    job_id: str  # the run id
    cfg: RunConfig


@dataclass
class WiseJob:
    job_id: str
    run_id: str
    alphas: tuple[float, ...]


@dataclass
class SequenceJob:
    job_id: str  # the sequence id
    run_ids: tuple[str, ...]  # its stages' runs, in order


@dataclass
class WiseState:
    """What sessions see of a run's WiSE-FT job: status is queued, running, done, failed or cancelled."""
    run_id: str
    alphas: tuple[float, ...]
    status: str = "queued"
    message: str = ""
    computed: list[float] = field(default_factory=list)  # α values evaluated by this job so far
    progress: Progress | None = None  # where the evaluation of the missing α (all measured together) is

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def describe(self) -> str:
        shown = ", ".join(f"{a:g}" for a in self.alphas[:3]) + (", …, " + f"{self.alphas[-1]:g}"
                                                                  if len(self.alphas) > 3 else "")
        return f"WiSE-FT path of run {self.run_id} for α in {shown}"


class JobRunner:
    """Process-wide queue of jobs; every session submits here and reads results from the store."""

    def __init__(self, store: RunStore, execute: Execute = execute_for_real,
                 warm_up: Callable[[], None] | None = None, wise_path: WisePath = wise_path_for_real,
                 sweep_on_ray: SweepOnRay = sweep_on_ray_for_real, run_sequence: RunSequence = run_sequence_for_real):
        self.store = store
        self._execute = execute
        self._wise_path = wise_path
        self._sweep_on_ray = sweep_on_ray
        self._run_sequence = run_sequence
        self._on_ray: dict[str, str] = {}  # run id -> cluster address, while the run is queued or running there
        self._ray_cancel: set[str] = set()
        self._ray_driver = threading.Lock()  # one sweep at a time drives Ray (one connection per process)
        self._warm_up = warm_up
        self._changed = threading.Condition()
        self._pending: deque[RunJob | WiseJob | SequenceJob] = deque()
        self._current: str | None = None  # job id
        self._current_ids: tuple[str, ...] = ()  # the ids that name the running job (a sequence's: its stage runs too)
        self._stop_requested = False
        self._live: dict[str, list[dict]] = {}
        self._live_curves: dict[str, Curve] = {}  # the forgetting curve so far, per running run
        self._wise: dict[str, WiseState] = {}  # run id -> its latest WiSE-FT job
        self._warm_up_asked = self._warmed = False
        self._warming_since: float | None = None  # monotonic time the warm-up began, while it runs
        threading.Thread(target=self._work, name="ldifs-job-worker", daemon=True).start()

    # -- what sessions call --------------------------------------------------------------------------

    def request_warm_up(self) -> None:
        """Warm up while idle, once: asked by the page where runs are started, not at server start, because the
        warm-up holds the interpreter for many seconds and would slow every session that opens meanwhile.
        Without a request it happens before the first job (which would pay the same imports anyway)."""
        with self._changed:
            if self._warm_up is not None and not self._warm_up_asked:
                self._warm_up_asked = True
                self._changed.notify()

    def submit(self, cfg: RunConfig) -> str:
        """Record the run as queued (so every tab sees it at once) and put it at the end of the queue."""
        run_id = self.store.create(cfg, status="queued")
        with self._changed:
            self._pending.append(RunJob(run_id, cfg))
            self._changed.notify()
        return run_id

    def submit_model_stock(self, run_a: str, run_b: str) -> str:
        """Record the Model Stock merge of two finished runs as a queued run and queue it like one (execute hands it
        to ldifs_core.merging); a pair that cannot be merged raises a LabError before anything is recorded."""
        from ldifs_core.merging import model_stock_config

        return self.submit(model_stock_config(self.store, run_a, run_b))

    def submit_wise(self, run_id: str, alphas: Sequence[float]) -> bool:
        """Queue the WiSE-FT path of a finished run; False (and nothing queued) while one for that run is
        already queued or running, so a second click never starts a second evaluation."""
        with self._changed:
            state = self._wise.get(run_id)
            if state is not None and state.active:
                return False
            job = WiseJob(wise_job_id(run_id), run_id, tuple(alphas))
            self._wise[run_id] = WiseState(run_id, job.alphas)
            self._pending.append(job)
            self._changed.notify()
        return True

    def submit_ray_sweep(self, configs: Sequence[RunConfig], address: str) -> list[str]:
        """Record the runs as queued and hand them to the Ray cluster at `address` from a driver thread; a sweep
        submitted while another drives Ray waits for it. A cluster that cannot take them (unreachable, too small,
        files missing on its nodes) fails every run with the reason."""
        trials = [(self.store.create(cfg, status="queued"), cfg) for cfg in configs]
        with self._changed:
            self._on_ray.update({run_id: address for run_id, _ in trials})
        threading.Thread(target=self._drive_ray, args=(trials, address), name="ldifs-ray-sweep", daemon=True).start()
        return [run_id for run_id, _ in trials]

    def ray_address(self, run_id: str) -> str | None:
        """The Ray cluster a run of this process was sent to, while it is queued or running there."""
        with self._changed:
            return self._on_ray.get(run_id)

    def submit_sequence(self, seq: SequenceConfig) -> str:
        """Record a sequence with its stages as queued runs, and queue it as one job; returns the sequence id. Bad
        settings raise a LabError before anything is recorded."""
        from ldifs_core.sequence import plan_sequence, sequence_state

        sequence_id = plan_sequence(seq, self.store)
        stages = tuple(stage.run_id for stage in sequence_state(self.store, sequence_id).stages)
        with self._changed:
            self._pending.append(SequenceJob(sequence_id, stages))
            self._changed.notify()
        return sequence_id

    def cancel(self, job_id: str) -> None:
        """A queued job is dropped (a run, or every stage of a sequence, recorded cancelled) without running; the
        running one stops at its next check: before the next training step, the next dataset of its evaluation, or
        the next α. A sequence's stage id cancels the whole sequence (the later stages need it). A run on Ray is
        cancelled there the same way."""
        with self._changed:
            if job_id in self._on_ray:
                self._ray_cancel.add(job_id)
                return
            if job_id in self._current_ids:
                self._stop_requested = True
                return
            job = next((job for job in self._pending if job_id in job_ids(job)), None)
            if job is None:
                return
            self._pending.remove(job)
            if isinstance(job, WiseJob):
                self._wise[job.run_id].status, self._wise[job.run_id].message = "cancelled", CANCELLED_BEFORE_START
        if isinstance(job, RunJob):
            self.store.fail(job.job_id, "cancelled", CANCELLED_BEFORE_START)
        if isinstance(job, SequenceJob):
            for run_id in job.run_ids:
                self.store.fail(run_id, "cancelled", CANCELLED_BEFORE_START)

    def owns(self, job_id: str) -> bool:
        """Whether this process's worker has the job (queued or running): only those can be cancelled here."""
        with self._changed:
            return (job_id in self._current_ids or job_id in self._on_ray
                    or any(job_id in job_ids(job) for job in self._pending))

    def cancelling(self, job_id: str) -> bool:
        with self._changed:
            return (job_id in self._current_ids and self._stop_requested) or job_id in self._ray_cancel

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to start; None when the job is not waiting in this queue."""
        with self._changed:
            for position, job in enumerate(self._pending, 1):
                if job_id in job_ids(job):
                    return position
        return None

    def warming_up_s(self) -> float | None:
        """Seconds the worker has been warming up (loading torch, open_clip, compiling UMAP), None when it is not:
        the next job waits for it, which can take minutes on a busy machine."""
        with self._changed:
            return None if self._warming_since is None else time.monotonic() - self._warming_since

    def live_history(self, run_id: str) -> list[dict]:
        """Per-step losses of the running run (the store only gets the full history when the run ends)."""
        with self._changed:
            return list(self._live.get(run_id, ()))

    def live_curve(self, run_id: str) -> Curve | None:
        """The forgetting-over-training curve of the running run so far (None before its first point)."""
        with self._changed:
            return self._live_curves.get(run_id)

    def wise_state(self, run_id: str) -> WiseState | None:
        """The latest WiSE-FT job of a run in this process (a copy), or None if none was asked for."""
        with self._changed:
            state = self._wise.get(run_id)
            return None if state is None else WiseState(state.run_id, state.alphas, state.status, state.message,
                                                        list(state.computed), state.progress)

    def active_wise(self) -> list[WiseState]:
        """WiSE-FT jobs queued or running, in queue order (the running one first)."""
        with self._changed:
            order = [self._current] + [job.job_id for job in self._pending]
            states = [s for s in self._wise.values() if s.active]
        return sorted(states, key=lambda s: order.index(wise_job_id(s.run_id)) if wise_job_id(s.run_id) in order
                      else len(order))

    # -- the worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                self._do_warm_up()
                continue
            try:
                if isinstance(job, WiseJob):
                    self._run_wise(job)
                elif isinstance(job, SequenceJob):
                    self._run_stages(job)
                else:
                    self._run(job)
            finally:
                with self._changed:
                    self._current, self._current_ids = None, ()
                    for run_id in job_ids(job):
                        self._live.pop(run_id, None)
                        self._live_curves.pop(run_id, None)

    def _run(self, job: RunJob) -> None:
        run_id = job.job_id
        try:
            self._execute(job.cfg, self.store, run_id=run_id, hooks=WorkerHooks(self, run_id))
        except LabError:
            pass  # execute recorded it as failed with the user-facing message
        except Exception as err:
            log.exception("run %s crashed", run_id)
            self._record_crash(run_id, err)

    def _drive_ray(self, trials: list[tuple[str, RunConfig]], address: str) -> None:
        with self._ray_driver:
            try:
                self._sweep_on_ray(self.store, trials, address, hooks_for=lambda run_id: RayTrialHooks(self, run_id))
            except LabError as err:  # before any trial ran: the cluster could not take them
                for run_id, _ in trials:
                    self._fail_unfinished(run_id, str(err))
            except Exception as err:
                log.exception("the Ray sweep at %s crashed", address)
                for run_id, _ in trials:
                    self._fail_unfinished(run_id, f"Internal error ({type(err).__name__}: {err}). Please report it.")
            finally:
                with self._changed:
                    for run_id, _ in trials:
                        self._on_ray.pop(run_id, None)
                        self._ray_cancel.discard(run_id)

    def _fail_unfinished(self, run_id: str, message: str) -> None:
        """Record a run that never got its outcome as failed; never raises (see _record_crash)."""
        try:
            if self.store.get(run_id).status in ("queued", "running"):
                self.store.fail(run_id, "failed", message)
        except Exception:
            log.exception("could not record the failure of run %s", run_id)

    def _run_stages(self, job: SequenceJob) -> None:
        """The stages in order; each one's live curve is kept under its run id while it trains."""
        hooks = WorkerHooks(self, None)
        try:
            self._run_sequence(self.store, job.job_id, execute=self._execute, hooks=hooks)
        except Exception as err:  # a bug: the stage that crashed is recorded (run_sequence cancels the rest)
            log.exception("sequence %s crashed", job.job_id)
            if hooks.run_id is not None:
                self._record_crash(hooks.run_id, err)

    def _run_wise(self, job: WiseJob) -> None:
        self._set_wise(job.run_id, status="running")
        try:
            self._wise_path(self.store, job.run_id, job.alphas, hooks=WiseHooks(self, job.run_id),
                            on_alpha=lambda alpha, metrics: self._wise_computed(job.run_id, alpha))
        except RunCancelled as cancel:
            self._set_wise(job.run_id, status="cancelled", message=str(cancel))
        except LabError as err:
            self._set_wise(job.run_id, status="failed", message=str(err))
        except Exception as err:  # a bug: shown as such, and the worker goes on with the next job
            log.exception("WiSE-FT of run %s crashed", job.run_id)
            self._set_wise(job.run_id, status="failed",
                           message=f"Internal error ({type(err).__name__}: {err}). Please report it.")
        else:
            self._set_wise(job.run_id, status="done")

    def _set_wise(self, run_id: str, **changes) -> None:
        with self._changed:
            for name, value in changes.items():
                setattr(self._wise[run_id], name, value)

    def _wise_computed(self, run_id: str, alpha: float) -> None:
        with self._changed:
            self._wise[run_id].computed.append(alpha)

    def _do_warm_up(self) -> None:
        with self._changed:
            self._warming_since = time.monotonic()
        try:
            self._warm_up()
        except Exception:  # a failed warm-up only costs the first run some seconds
            log.exception("warm-up failed")
        finally:
            with self._changed:
                self._warming_since = None

    def _next(self) -> RunJob | WiseJob | None:
        """The next job, or None when it is time to warm up (once: when asked, or before the first job)."""
        with self._changed:
            while not self._pending and not (self._warm_up_asked and not self._warmed):
                self._changed.wait()
            if self._warm_up is not None and not self._warmed:
                self._warmed = True
                return None
            job = self._pending.popleft()
            self._current, self._current_ids, self._stop_requested = job.job_id, job_ids(job), False
            if isinstance(job, RunJob):
                self._live[job.job_id] = []
            return job

    def _should_stop(self) -> bool:
        with self._changed:
            return self._stop_requested

    def _ray_should_stop(self, run_id: str) -> bool:
        with self._changed:
            return run_id in self._ray_cancel

    def _start_live(self, run_id: str) -> None:
        with self._changed:
            self._live[run_id] = []

    def _record(self, run_id: str, event: TrainEvent) -> None:
        with self._changed:
            self._live.setdefault(run_id, []).append(event.history_row())

    def _record_curve(self, run_id: str, curve: Curve) -> None:
        with self._changed:
            self._live_curves[run_id] = curve

    def _record_crash(self, run_id: str, err: Exception) -> None:
        """execute records its own crashes; this covers one that happened before it could. It never raises:
        the worker must outlive any run (a run the store cannot update shows as interrupted after a restart)."""
        self._fail_unfinished(run_id, f"Internal error ({type(err).__name__}: {err}). Please report it.")


class WorkerHooks(RunHooks):
    """The worker's job as it runs: each step goes into the live curve of the run that trains (a sequence's
    current stage), and Cancel is heard through `JobRunner.cancel`. Progress reaches the pages through the store."""

    def __init__(self, runner: JobRunner, run_id: str | None):
        self.runner, self.run_id = runner, run_id

    def step(self, event: TrainEvent) -> None:
        self.runner._record(self.run_id, event)

    def curve(self, curve: Curve) -> None:
        self.runner._record_curve(self.run_id, curve)

    def stage(self, stage: int, run_id: str, cfg: RunConfig) -> None:
        self.run_id = run_id
        self.runner._start_live(run_id)

    def should_stop(self) -> bool:
        return self.runner._should_stop()


class WiseHooks(WorkerHooks):
    """A WiSE-FT job: its evaluation's progress is kept in its state (it has no run record of its own)."""

    def __init__(self, runner: JobRunner, run_id: str):
        super().__init__(runner, None)
        self.wise_run_id = run_id

    def progress(self, progress: Progress) -> None:
        self.runner._set_wise(self.wise_run_id, progress=progress)


class RayTrialHooks(RunHooks):
    """A run sent to Ray: Cancel reaches it through the driver (its progress reaches the store there)."""

    def __init__(self, runner: JobRunner, run_id: str):
        self.runner, self.run_id = runner, run_id

    def should_stop(self) -> bool:
        return self.runner._ray_should_stop(self.run_id)


def job_ids(job: RunJob | WiseJob | SequenceJob) -> tuple[str, ...]:
    """Every id that names the job: its own, and for a sequence the runs of its stages."""
    return (job.job_id, *job.run_ids) if isinstance(job, SequenceJob) else (job.job_id,)


@st.cache_resource(show_spinner=False)
def _runner_for(root: str) -> JobRunner:
    return JobRunner(store_at(root), warm_up=warm_up)


def job_runner() -> JobRunner:
    """The one JobRunner of this process for the current store (shared by all sessions)."""
    return _runner_for(store_root())
