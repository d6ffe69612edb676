"""Background runs: one worker thread, a FIFO queue, cancellation, and live per-step curves.

One worker because runs share the CPU/GPU: two at once would only slow both. Streamlit reruns its script on
every click, so a run can never live in the script; it lives here and records everything in the run store,
which the pages poll. The worker makes no st.* calls.
"""
from __future__ import annotations

import importlib
import logging
import threading
from collections import deque
from collections.abc import Callable

import streamlit as st

from app.results import store_at, store_root
from ldifs_core.config import RunConfig, TrainEvent
from ldifs_core.errors import LabError
from ldifs_core.store import RunStore

log = logging.getLogger(__name__)

# runner.execute's signature: (cfg, store, run_id=..., on_event=..., should_stop=...) -> run id
Execute = Callable[..., str]
CANCELLED_BEFORE_START = "Cancelled before it started."


def execute_for_real(cfg: RunConfig, store: RunStore, **kwargs) -> str:
    """ldifs_core's runner, imported on first use: torch/open_clip must not slow the first page load."""
    from ldifs_core.runner import execute

    return execute(cfg, store, **kwargs)


def warm_up() -> None:
    """Pay the heavy imports and numba's UMAP compilation before the first run instead of during it."""
    importlib.import_module("ldifs_core.runner")  # torch, open_clip, torchvision: seconds, once
    from ldifs_core.drift import warm_umap

    warm_umap()


class JobRunner:
    """Process-wide queue of runs; every session submits here and reads results from the store."""

    def __init__(self, store: RunStore, execute: Execute = execute_for_real,
                 warm_up: Callable[[], None] | None = None):
        self.store = store
        self._execute = execute
        self._warm_up = warm_up
        self._changed = threading.Condition()
        self._pending: deque[tuple[str, RunConfig]] = deque()
        self._current: str | None = None
        self._stop_requested = False
        self._live: dict[str, list[dict]] = {}
        threading.Thread(target=self._work, name="ldifs-job-worker", daemon=True).start()

    # -- what sessions call --------------------------------------------------------------------------

    def submit(self, cfg: RunConfig) -> str:
        """Record the run as queued (so every tab sees it at once) and put it at the end of the queue."""
        run_id = self.store.create(cfg, status="queued")
        with self._changed:
            self._pending.append((run_id, cfg))
            self._changed.notify()
        return run_id

    def cancel(self, run_id: str) -> None:
        """A queued run is recorded cancelled without running; the running one stops before its next step."""
        with self._changed:
            if run_id == self._current:
                self._stop_requested = True
                return
            for item in self._pending:
                if item[0] == run_id:
                    self._pending.remove(item)
                    self.store.fail(run_id, "cancelled", CANCELLED_BEFORE_START)
                    return

    def cancelling(self, run_id: str) -> bool:
        with self._changed:
            return run_id == self._current and self._stop_requested

    def queue_position(self, run_id: str) -> int | None:
        """1 for the next run to start; None when the run is not waiting in this queue."""
        with self._changed:
            ids = [item[0] for item in self._pending]
        return ids.index(run_id) + 1 if run_id in ids else None

    def live_history(self, run_id: str) -> list[dict]:
        """Per-step losses of the running run (the store only gets the full history when the run ends)."""
        with self._changed:
            return list(self._live.get(run_id, ()))

    # -- the worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        if self._warm_up is not None:
            try:
                self._warm_up()
            except Exception:  # a failed warm-up only costs the first run some seconds
                log.exception("warm-up failed")
        while True:
            run_id, cfg = self._next()
            try:
                self._execute(cfg, self.store, run_id=run_id, on_event=lambda e: self._record(run_id, e),
                              should_stop=self._should_stop)
            except LabError:
                pass  # execute recorded it as failed with the user-facing message
            except Exception as err:
                log.exception("run %s crashed", run_id)
                self._record_crash(run_id, err)
            finally:
                with self._changed:
                    self._current = None
                    self._live.pop(run_id, None)

    def _next(self) -> tuple[str, RunConfig]:
        with self._changed:
            while not self._pending:
                self._changed.wait()
            run_id, cfg = self._pending.popleft()
            self._current, self._stop_requested = run_id, False
            self._live[run_id] = []
            return run_id, cfg

    def _should_stop(self) -> bool:
        with self._changed:
            return self._stop_requested

    def _record(self, run_id: str, event: TrainEvent) -> None:
        entry = {"step": event.step, "loss": event.loss, **event.parts, "images_per_s": event.images_per_s}
        with self._changed:
            self._live.setdefault(run_id, []).append(entry)

    def _record_crash(self, run_id: str, err: Exception) -> None:
        """execute records its own crashes; this covers one that happened before it could. It never raises:
        the worker must outlive any run (a run the store cannot update shows as interrupted after a restart)."""
        try:
            if self.store.get(run_id).status in ("queued", "running"):
                self.store.fail(run_id, "failed", f"Internal error ({type(err).__name__}: {err}). Please report it.")
        except Exception:
            log.exception("could not record the crash of run %s", run_id)


@st.cache_resource(show_spinner=False)
def _runner_for(root: str) -> JobRunner:
    return JobRunner(store_at(root), warm_up=warm_up)


def job_runner() -> JobRunner:
    """The one JobRunner of this process for the current store (shared by all sessions)."""
    return _runner_for(store_root())
