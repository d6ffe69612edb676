"""Run hooks for tests: hear everything a run tells, keep it, and stop when told."""
from __future__ import annotations

from collections.abc import Callable

from ldifs_core.hooks import Progress, RunHooks, TrainEvent


class RecordingHooks(RunHooks):
    """Keeps every step event, progress record and stage start; stops once `stop_when(self)` is true, and calls
    `on_step(event)` after keeping each step (a test's own probe)."""

    def __init__(self, stop_when: Callable[[RecordingHooks], bool] = lambda hooks: False,
                 on_step: Callable[[TrainEvent], None] = lambda event: None):
        self.stop_when, self.on_step = stop_when, on_step
        self.events: list[TrainEvent] = []
        self.progresses: list[Progress] = []
        self.stages: list[int] = []
        self.curves: list = []  # the forgetting curve so far, after each of its points

    def step(self, event: TrainEvent) -> None:
        self.events.append(event)
        self.on_step(event)

    def progress(self, progress: Progress) -> None:
        self.progresses.append(progress)

    def curve(self, curve) -> None:
        self.curves.append(curve)

    def stage(self, stage: int, run_id: str, cfg) -> None:
        self.stages.append(stage)

    def should_stop(self) -> bool:
        return self.stop_when(self)
