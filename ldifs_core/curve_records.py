"""The forgetting-over-training curve as metrics.json keeps it (its `curve` section; a run stored without one has
no curve), and the forms the front ends read: a sequence's stages joined into one curve, and a compact table.

Every point holds the zero-shot accuracy (in %, with the ORIGINAL text tower's heads) of the image tower as it
was after `step` training steps, on a fixed seeded subset of `n[dataset]` test images of the task and of each
checked dataset. ldifs_core/curve.py measures it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class CurvePoint:
    step: int  # training steps done (0: the weights the run started from)
    accuracy: dict  # dataset -> zero-shot accuracy in % on its curve subset


@dataclass
class Curve:
    task: str  # the dataset trained on (its line is the one highlighted)
    every: int  # training steps between points (the last step is always measured)
    n: dict  # dataset -> images of its curve subset
    points: list[CurvePoint] = field(default_factory=list)
    stage_starts: list[int] | None = None  # a sequence's joined curve: where each stage after the first begins

    def to_json(self) -> dict:
        """The metrics.json section (a curve of a single run has no stage_starts)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def datasets(self) -> list[str]:
        """The task first, then the checked datasets in the order they were measured."""
        return list(self.n)

    def line(self, dataset: str) -> tuple[list[int], list[float]]:
        """(steps, accuracies) of one dataset."""
        steps = [point.step for point in self.points if dataset in point.accuracy]
        return steps, [point.accuracy[dataset] for point in self.points if dataset in point.accuracy]

    def table(self, width: int = 8) -> list[list[str]]:
        """A compact table: a header row (step, then each dataset with its n), then one row per point, at most
        `width` rows of points, evenly spaced and always with the first and the last."""
        chosen = self.points
        if len(chosen) > width:
            last = len(chosen) - 1
            chosen = [chosen[round(i * last / (width - 1))] for i in range(width)]
        header = ["step", *(f"{name}{' (task)' if name == self.task else ''} n={self.n[name]}"
                            for name in self.datasets())]
        rows = [[str(point.step), *(f"{point.accuracy[name]:.1f}" if name in point.accuracy else "–"
                                    for name in self.datasets())] for point in chosen]
        return [header, *rows]


def joined(stages: list[Curve]) -> Curve | None:
    """A sequence's curve across its stages: each stage's steps follow the previous stage's, `stage_starts` marks
    where each later stage begins, and the task is the last stage's. None when no stage has a curve."""
    stages = [curve for curve in stages if curve is not None]
    if not stages:
        return None
    points, starts, offset, n = [], [], 0, {}
    for i, curve in enumerate(stages):
        if i:
            starts.append(offset)
        points += [CurvePoint(offset + point.step, dict(point.accuracy)) for point in curve.points]
        offset += curve.points[-1].step if curve.points else 0
        n.update(curve.n)
    return Curve(stages[-1].task, stages[-1].every, n, points, starts)
