"""Run hooks: what a run tells the front end that started it, and how that front end stops it.

One object travels down from the CLI, the app's worker or a Ray trial through runner, train, evaluate, sequence
and wise, instead of separate callables passed by hand. The progress record (`Progress`) is built here, once: the
store keeps it as JSON (`RunRecord.progress`), `list` and the app's run card read it back, a Ray driver receives it
from its trials, and the terminal draws it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING

from ldifs_core.errors import RunCancelled

if TYPE_CHECKING:
    from torch import nn

    from ldifs_core.config import RunConfig
    from ldifs_core.curve_records import Curve

RECORD_EVERY = 5  # training steps between the progress records kept in a store (or posted by a Ray trial)


@dataclass(frozen=True)
class TrainEvent:
    """What the training loop reports after every step (and the app/CLI draw)."""

    step: int
    total_steps: int
    loss: float
    parts: dict[str, float] = field(default_factory=dict)  # e.g. {"ce": .., "ldifs": ..} (λ-weighted regulariser)
    lr: float = 0.0
    images_per_s: float = 0.0
    eta_s: float = 0.0

    def history_row(self) -> dict:
        """The step as a row of the run's history.json (and of the app's live curve)."""
        return {"step": self.step, "loss": self.loss, **self.parts, "lr": self.lr, "images_per_s": self.images_per_s}


@dataclass(frozen=True)
class Progress:
    """Where a run is. Fields that do not apply to its phase are None and left out of the stored JSON, whose keys
    are the field names."""

    phase: str = "loading"  # loading, training or evaluating
    step: int | None = None  # training (and evaluating, which comes after the last step)
    total_steps: int | None = None
    loss: float | None = None
    parts: dict[str, float] | None = None
    eta_s: float | None = None  # training or evaluating: seconds left, from the rate so far
    images_per_s: float | None = None
    images_done: int | None = None  # loading: images decoded, of images_total
    images_total: int | None = None
    dataset: str | None = None  # evaluating: the dataset being measured now
    datasets_done: int | None = None
    datasets_total: int | None = None
    images_encoded: int | None = None  # evaluating: image encodings done (each tower counts), of images_to_encode
    images_to_encode: int | None = None
    probes_fitted: int | None = None  # evaluating: linear probes fitted, of probes_total
    probes_total: int | None = None
    node: str | None = None  # the host of a Ray trial

    @classmethod
    def training(cls, event: TrainEvent) -> "Progress":
        return cls("training", event.step, event.total_steps, event.loss, dict(event.parts), event.eta_s,
                   event.images_per_s)

    @classmethod
    def from_dict(cls, data: dict) -> "Progress":
        """A stored record (keys this version does not know are ignored; {} reads as loading)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def worth_recording(self) -> bool:
        """Every record but training steps in between RECORD_EVERY (the last step is always kept)."""
        return self.phase != "training" or self.step % RECORD_EVERY == 0 or self.step == self.total_steps

    def where(self) -> str:
        """A few words for a table or a bar: the step, or the dataset being measured."""
        if self.phase == "evaluating" and self.dataset is not None:
            measuring = min(self.datasets_done + 1, self.datasets_total)
            return f"evaluating {self.dataset} ({measuring}/{self.datasets_total})"
        if self.phase == "training" and self.step is not None:
            return f"step {self.step}/{self.total_steps}"
        return self.phase


class RunHooks:
    """What a front end hears of a run and how it stops one. The base hears nothing and never stops; a front end
    overrides what it needs."""

    def step(self, event: TrainEvent) -> None:
        """After every training step (the loss curves)."""

    def progress(self, progress: Progress) -> None:
        """Where the run is: each phase, decoding chunk, training step and evaluation step. Cheap to call often;
        a hook that writes somewhere keeps only `progress.worth_recording()` ones."""

    def weights(self, step: int, clip: nn.Module) -> None:
        """The CLIP being tuned, after `step` training steps (0: before the first). Read it, never change it: a
        hook that needs another mode restores the one it found (curve.py)."""

    def curve(self, curve: Curve) -> None:
        """The forgetting-over-training curve so far (curve.py), after each new point: the hook's own copy."""

    def stage(self, stage: int, run_id: str, cfg: RunConfig) -> None:
        """A stage of a sequence starts (1-based); it then runs as an ordinary run with these hooks."""

    def should_stop(self) -> bool:
        return False

    def check(self, where: str) -> None:
        """Raise RunCancelled ("Cancelled <where>.") once the front end asked to stop."""
        if self.should_stop():
            raise RunCancelled(f"Cancelled {where}.")


NO_HOOKS = RunHooks()


class EvaluationProgress:
    """Counts what an evaluation has done (datasets measured, images encoded, probes fitted) and tells the hooks,
    with an ETA from the rate so far; a cancel is heard before each dataset.

    Datasets are planned in the order they are measured, with the encodings and probe fits each needs, so the
    totals are known from the first record; work a cache saves (θ₀'s probe features) counts as done when its
    dataset ends.
    """

    def __init__(self, hooks: RunHooks = NO_HOOKS, during: Progress = Progress("evaluating")):
        self.hooks, self.during = hooks, during
        # (dataset, images to encode, probes to fit) in the order measured; `last` ones after all the others
        self.first: list[tuple[str, int, int]] = []
        self.last: list[tuple[str, int, int]] = []
        self.current: str | None = None
        self.finished = self.encoded = self.fitted = 0
        self.started = time.perf_counter()

    @property
    def planned(self) -> list[tuple[str, int, int]]:
        return self.first + self.last

    def plan(self, dataset: str, images: int, probes: int, last: bool = False) -> None:
        """`last`: measured after every dataset planned without it, even those planned later (a check's or a
        sequence stage's own task, measured once the report is done, is planned before the report starts so the
        totals hold from the first record)."""
        (self.last if last else self.first).append((dataset, images, probes))

    def begin(self, dataset: str) -> None:
        self.hooks.check(f"while evaluating (before {dataset})")
        self.current = dataset
        self._tell()

    def add_encoded(self, images: int) -> None:
        self.encoded += images
        self._tell()

    def add_probe(self) -> None:
        self.fitted += 1
        self._tell()

    def end(self) -> None:
        self.finished += 1
        self.encoded = sum(images for _, images, _ in self.planned[:self.finished])
        self.fitted = sum(probes for _, _, probes in self.planned[:self.finished])
        self._tell()

    def _tell(self) -> None:
        to_encode = sum(images for _, images, _ in self.planned)
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.encoded * (to_encode - self.encoded) if self.encoded else None
        self.hooks.progress(replace(self.during, dataset=self.current, datasets_done=self.finished,
                                    datasets_total=len(self.planned), images_encoded=min(self.encoded, to_encode),
                                    images_to_encode=to_encode, probes_fitted=self.fitted,
                                    probes_total=sum(probes for _, _, probes in self.planned), eta_s=eta))
