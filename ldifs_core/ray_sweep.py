"""Sweeps on a Ray cluster: each trial of a grid is one Ray core task that runs one ordinary `runner.execute`.

Why Ray core tasks and not Ray Tune: a trial here is a plain function of a RunConfig whose result is a value (the
run's record), there is nothing to search adaptively, and the run store, not Tune's trial folders, is where
results live. Tasks give exactly that, with Ray's scheduler placing them by their declared CPUs and GPUs.

The driver (the CLI or the app's server) records every trial in its own RunStore, so the store may live on the
driver's disk only: a trial runs in a temporary store on its worker and returns the finished run's files as a
value (`store.FinishedRun`), which the driver writes. Trials post progress to a small actor (`TrialBoard`), so
`list`, the app and the terminal show queued → running (step n of N) → done / failed / cancelled.

What must be the same on every node: the project's code and the concept bank travel through Ray's runtime
environment (the project folder as `working_dir`); torchvision datasets, ImageFolder datasets and local
checkpoints do not, and must exist at the same path on every node. `check_cluster` verifies that on each node,
and that a node can hold a trial at all, before any trial is recorded.

Why one module over 350 lines: it is the only one that imports Ray; the session, the checks on each node, the
trial on a worker and the driver share its types, and splitting them would spread that import.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import ray
from ray.exceptions import RayError, RayTaskError, TaskCancelledError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ldifs_core.config import RunConfig
from ldifs_core.errors import BadConfig, ClusterUnavailable, DatasetUnavailable, LabError
from ldifs_core.hooks import NO_HOOKS, Progress, RunHooks
from ldifs_core.paths import PROJECT_ROOT
from ldifs_core.store import FinishedRun, RunStore

LOCAL = "local"  # start a Ray instance on this machine for the sweep (and stop it afterwards)
# What the workers need of the project is its code and assets/; the rest stays behind (Ray also skips what
# .gitignore names, such as runs/ and .venv/).
WORKING_DIR_EXCLUDES = ["runs", ".ldifs", "tests", "docs", "benchmarks", "app", ".ci",
                        "test-artifacts", "__pycache__", "*.pyc"]
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2  # results are megabytes; Ray spills larger objects to disk
POLL_S = 0.25  # how often the driver drains progress and looks for cancellations


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks Ray for. gpus None: one GPU when the cluster has GPUs, else none."""

    cpus: float = 1.0
    gpus: float | None = None

    def check(self) -> "TrialResources":
        if not (math.isfinite(self.cpus) and self.cpus > 0):
            raise BadConfig(f"--cpus-per-trial must be a number above 0 (got {self.cpus:g}).")
        if self.gpus is not None and not (math.isfinite(self.gpus) and self.gpus >= 0 and
                                          (self.gpus <= 1 or self.gpus.is_integer())):
            raise BadConfig(f"--gpus-per-trial must be a fraction up to 1 (e.g. 0.5 shares a GPU between two "
                            f"trials) or a whole number (got {self.gpus:g}).")
        return self

    def on_cluster(self) -> "TrialResources":
        """With the GPU default filled in from the connected cluster."""
        if self.gpus is not None:
            return self
        return replace(self, gpus=1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0)


@dataclass(frozen=True)
class Trial:
    """A run recorded (queued) in the driver's store, to be executed on the cluster."""

    run_id: str
    cfg: RunConfig


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial sends back: the finished run's files, or why it did not finish (with its curves so far)."""

    status: str  # done, failed or cancelled
    message: str = ""
    history: list[dict] = field(default_factory=list)
    finished: FinishedRun | None = None


def resolve_address(address: str | None) -> str:
    """`--ray` alone (None or ''): $RAY_ADDRESS when set, else a local instance. 'auto', 'host:port' and
    'ray://host:port' join an existing cluster; 'local' always starts one here."""
    return address or os.environ.get("RAY_ADDRESS") or LOCAL


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES) -> Iterator[str]:
    """Connected to Ray for the duration; yields the address used. A local instance is sized to this machine
    (or `num_cpus`), without dashboard, and stopped afterwards. A process already connected (a test session that
    started Ray once for many sweeps) keeps its connection."""
    if ray.is_initialized():
        yield "the connected cluster"
        return
    address = resolve_address(address)
    options: dict = {"runtime_env": {"working_dir": str(PROJECT_ROOT), "excludes": WORKING_DIR_EXCLUDES},
                     "logging_level": logging.ERROR, "log_to_driver": False}
    if address == LOCAL:
        options.update(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                       object_store_memory=object_store_bytes)
    try:
        with warnings.catch_warnings():  # Ray warns, then raises; the error below says it once, with what to do
            warnings.simplefilter("ignore")
            ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as err:
        raise ClusterUnavailable(
            f"Could not {'start Ray here' if address == LOCAL else f'reach the Ray cluster at {address}'} "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}). Start one with `ray start --head` "
            f"and pass its address (`--ray auto` on its head node, or `--ray ray://HOST:10001`).") from None
    try:
        yield address
    finally:
        ray.shutdown()


def record_trials(store: RunStore, configs: Sequence[RunConfig]) -> list[Trial]:
    """Each config recorded as a queued run, with its local paths made absolute (a worker's current folder is
    its copy of the project, not the driver's)."""
    return [Trial(store.create(cfg), cfg) for cfg in map(with_absolute_paths, configs)]


def with_absolute_paths(cfg: RunConfig) -> RunConfig:
    from ldifs_core.datasets import known_datasets

    absolute = lambda path: str(Path(path).expanduser().resolve())
    registered = set(known_datasets())
    is_folder = lambda name: name not in registered and Path(name).expanduser().is_dir()
    return replace(
        cfg,
        dataset=absolute(cfg.dataset) if is_folder(cfg.dataset) else cfg.dataset,
        eval_datasets=None if cfg.eval_datasets is None else
        [absolute(name) if is_folder(name) else name for name in cfg.eval_datasets],
        data_root=absolute(cfg.data_root) if cfg.data_root else None,
        pretrained=absolute(cfg.pretrained) if cfg.pretrained and Path(cfg.pretrained).expanduser().is_file()
        else cfg.pretrained,
    )


# -- checks before any trial is recorded -----------------------------------------------------------------


def paths_needed(cfg: RunConfig) -> list[tuple[str, str]]:
    """(path, what it is) that a run of `cfg` reads from the disk of the node it runs on."""
    from ldifs_core.datasets import BANK_NAMES, torchvision_sets

    needed = []
    checkpoint = cfg.pretrained or ""
    if os.path.sep in checkpoint or checkpoint.endswith((".pt", ".pth", ".bin", ".safetensors")):  # not a zoo tag
        needed.append((str(Path(checkpoint).expanduser()), "the checkpoint file"))
    for name in (cfg.dataset, *(cfg.eval_datasets or ())):
        if name in torchvision_sets.TORCHVISION_SETS:
            if not cfg.download:
                root = Path(cfg.data_root).expanduser() if cfg.data_root else torchvision_sets.default_root()
                needed.append((str(root), f"the data root holding {name}"))
        elif name not in BANK_NAMES:
            needed.append((str(Path(name).expanduser()), "the ImageFolder dataset"))
    return list(dict.fromkeys(needed))


def missing_paths(configs: Sequence[RunConfig]) -> list[str]:
    """Run on a node: what the trials need that is not there ('path (what)'). An empty folder counts as missing."""
    missing = []
    for path, what in dict.fromkeys(item for cfg in configs for item in paths_needed(cfg)):
        target = Path(path)
        if not target.exists() or (target.is_dir() and not any(target.iterdir())):
            missing.append(f"{path} ({what})")
    return missing


@ray.remote(num_cpus=0, max_retries=0)
def _missing_on_node(configs: list[RunConfig]) -> tuple[str, list[str]]:
    return socket.gethostname(), missing_paths(configs)


def check_cluster(configs: Sequence[RunConfig], resources: TrialResources) -> TrialResources:
    """Refuse, before any trial is recorded, a sweep the cluster cannot run: no node big enough for one trial,
    a GPU device without GPUs, or files a trial reads missing on a node that could run it. Returns the resources
    with the GPU default filled in."""
    resources = resources.check().on_cluster()
    if resources.gpus == 0 and any(cfg.device == "cuda" for cfg in configs):
        raise BadConfig("--device cuda needs GPUs per trial: pass --gpus-per-trial (e.g. 1 or 0.5).")
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    fitting = [node for node in nodes if node["Resources"].get("CPU", 0) >= resources.cpus
               and node["Resources"].get("GPU", 0) >= resources.gpus]
    if not fitting:
        largest = max((f"{node['Resources'].get('CPU', 0):g} CPUs and {node['Resources'].get('GPU', 0):g} GPUs"
                       for node in nodes), default="no node")
        raise ClusterUnavailable(f"No node of the Ray cluster can hold a trial of {resources.cpus:g} CPUs and "
                                 f"{resources.gpus:g} GPUs (the largest has {largest}). Lower --cpus-per-trial or "
                                 f"--gpus-per-trial, or add a bigger node.")
    if not any(paths_needed(cfg) for cfg in configs):
        return resources  # the concept bank and the embedded model travel with the code
    checks = [_missing_on_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
              .remote(list(configs)) for node in fitting]
    problems = [f"on {host}: {', '.join(missing)}" for host, missing in ray.get(checks) if missing]
    if problems:
        raise DatasetUnavailable(f"Files the trials read are missing on the Ray workers ({'; '.join(problems)}). "
                                 f"Ray ships the project's code and concept bank, not datasets or checkpoints: put "
                                 f"them at the same path on every node (or on a shared filesystem).")
    return resources


# -- one trial, on a worker ------------------------------------------------------------------------------


@ray.remote(num_cpus=0)
class TrialBoard:
    """Where the trials of one sweep post their progress and learn that they were cancelled. Cancelling through
    the board lets a running trial stop at its next check like any run (recorded cancelled, curves kept): an
    interrupt from outside could land inside an import and leave the worker broken for the next trial."""

    def __init__(self):
        self._posted: list[tuple[str, Progress]] = []
        self._cancelled: set[str] = set()

    def post(self, run_id: str, progress: Progress) -> None:
        self._posted.append((run_id, progress))

    def take(self) -> list[tuple[str, Progress]]:
        posted, self._posted = self._posted, []
        return posted

    def cancel(self, run_id: str) -> None:
        self._cancelled.add(run_id)

    def is_cancelled(self, run_id: str) -> bool:
        return run_id in self._cancelled


class BoardHooks(RunHooks):
    """A trial's hooks on its worker: the progress worth recording goes to the sweep's board, tagged with the
    node; a cancel is read from the board."""

    def __init__(self, board: ray.actor.ActorHandle, run_id: str):
        self.board, self.run_id, self.node = board, run_id, socket.gethostname()
        self.answer = board.is_cancelled.remote(run_id)

    def progress(self, progress: Progress) -> None:
        if progress.worth_recording():
            self.board.post.remote(self.run_id, replace(progress, node=self.node))

    def should_stop(self) -> bool:
        """The board's latest answer, never waited for: a task blocked in ray.get lends its CPUs to the next
        trial, which would put more trials on a node than it has CPUs for."""
        ready, _ = ray.wait([self.answer], timeout=0)
        if not ready:
            return False
        self.answer = self.board.is_cancelled.remote(self.run_id)
        return ray.get(ready[0])


@ray.remote(max_retries=0)
def _run_trial(cfg: RunConfig, run_id: str, board: ray.actor.ActorHandle, threads: int) -> TrialOutcome:
    """One ordinary run in a temporary store on this worker; its record goes back to the driver as a value."""
    import torch

    from ldifs_core.runner import execute

    torch.set_num_threads(threads)  # as many threads as CPUs reserved: trials sharing a node do not oversubscribe
    hooks = BoardHooks(board, run_id)
    hooks.progress(Progress("loading"))
    with tempfile.TemporaryDirectory(prefix="ldifs-trial-") as folder:
        store = RunStore(folder)
        local_id = store.create(cfg)
        try:
            execute(cfg, store, local_id, hooks)
        except Exception:  # recorded by execute: a LabError with its message, anything else as an internal error
            pass
        record = store.get(local_id)
        if record.status != "done":
            return TrialOutcome(record.status, record.message, store.history(local_id))
        return TrialOutcome("done", finished=store.finished_run(local_id))


# -- the driver ------------------------------------------------------------------------------------------


TrialHooks = Callable[[str], RunHooks]  # run id -> the hooks of that trial, as the driver hears it
EndHook = Callable[[str], None]


def run_trials(store: RunStore, trials: Sequence[Trial], resources: TrialResources,
               hooks_for: TrialHooks | None = None, on_end: EndHook | None = None) -> None:
    """Run recorded (queued) runs as Ray tasks and write each outcome into `store`; Ray must be connected.

    A failing trial is recorded failed with its message and the others go on. `hooks_for(run_id)` hears that
    trial's progress as it arrives and, when its `should_stop()` says so, cancels it: a running one stops at its
    next check, a queued one never starts. Ctrl-C (KeyboardInterrupt) stops every unfinished trial at once,
    records it cancelled and is raised again. `on_end(run_id)` lets a front end draw each trial's end.
    """
    hooks_for = hooks_for or (lambda run_id: NO_HOOKS)
    resources = resources.on_cluster()
    board = TrialBoard.remote()
    threads = max(1, int(resources.cpus))
    pending = {_run_trial.options(num_cpus=resources.cpus, num_gpus=resources.gpus)
               .remote(trial.cfg, trial.run_id, board, threads): trial.run_id for trial in trials}
    latest: dict[str, Progress] = {}  # run id -> its last progress: a run with one has started
    cancelled: set[str] = set()

    def take_progress() -> None:
        for run_id, progress in ray.get(board.take.remote()):
            if run_id not in pending.values():
                continue  # posted just before the trial ended; its record is already written
            if run_id not in latest:
                store.set_status(run_id, "running")
            latest[run_id] = progress
            store.update_progress(run_id, progress.to_dict())
            hooks_for(run_id).progress(progress)

    def cancel(ref: ray.ObjectRef, run_id: str) -> None:
        cancelled.add(run_id)
        if run_id in latest:
            board.cancel.remote(run_id)
        else:  # still queued: dropped (had it just started, its worker is stopped, which is clean)
            ray.cancel(ref, force=True)

    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S, fetch_local=False)
            take_progress()
            for ref in ready:
                run_id = pending.pop(ref)
                _record_outcome(store, run_id, ref, latest.get(run_id), run_id in cancelled)
                if on_end is not None:
                    on_end(run_id)
            for ref, run_id in pending.items():
                if run_id not in cancelled and hooks_for(run_id).should_stop():
                    cancel(ref, run_id)
    except KeyboardInterrupt:
        for ref, run_id in pending.items():
            ray.cancel(ref, force=True)
            _record_quietly(store, run_id, "cancelled",
                            f"Interrupted from the keyboard {where_stopped(latest.get(run_id))}.")
        raise
    finally:
        ray.kill(board, no_restart=True)


def _record_outcome(store: RunStore, run_id: str, ref: ray.ObjectRef, progress: Progress | None,
                    was_cancelled: bool) -> None:
    """Write what became of one trial into the driver's store (never raises for a trial's own failure)."""
    try:
        outcome: TrialOutcome = ray.get(ref)
    except RayError as err:
        if was_cancelled or isinstance(err, TaskCancelledError):
            _record_quietly(store, run_id, "cancelled", f"Cancelled {where_stopped(progress)}.")
        elif isinstance(err, RayTaskError):  # raised outside execute: the worker could not even start the run
            _record_quietly(store, run_id, "failed", f"The trial failed on its worker: {_first_line(err.cause)}")
        else:  # a worker or node lost, a runtime environment that could not be set up: Ray says which
            _record_quietly(store, run_id, "failed", f"Ray could not finish the trial ({type(err).__name__}: "
                                                     f"{_first_line(err)}); run it again.")
        return
    if outcome.status == "done" and outcome.finished is not None:
        try:
            store.import_finished(run_id, outcome.finished)
        except LabError:
            pass  # recorded as failed with the reason (a full disk on the driver)
        return
    _record_quietly(store, run_id, outcome.status if outcome.status in ("failed", "cancelled") else "failed",
                    outcome.message, outcome.history)


def where_stopped(progress: Progress | None) -> str:
    """Where a trial was when it was stopped, from its last progress report."""
    if progress is None:
        return "before it started"
    if progress.step is not None:
        return f"at step {progress.step} of {progress.total_steps}"
    return "while loading"


def _record_quietly(store: RunStore, run_id: str, status: str, message: str, history: list[dict] | None = None) -> None:
    try:
        store.fail(run_id, status, message, history)
    except LabError:
        pass  # the store itself failed (read-only now, disk gone): the run shows as interrupted after a restart


def _first_line(err: object) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__
