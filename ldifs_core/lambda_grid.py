"""The precomputed λ grid behind the Learn page's slider: CE and LDIFS at several λ on the embedded model, both
science tasks, three seeds, summarised to metrics only (assets/lambda_grid.json, about 50 KB), so a class sees λ's
trade-off without training anything.

This module is the grid's format, what the app reads: its records and the JSON round-trip with a schema check.
Building it from runs is a script's job (scripts/lambda_grid.py); regenerate the shipped file with the command in
`REGENERATE`.
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ldifs_core.errors import LambdaGridUnreadable
from ldifs_core.paths import ASSETS_DIR

GRID_PATH = ASSETS_DIR / "lambda_grid.json"
GRID_FORMAT = "ldifs-lambda-grid"
GRID_VERSION = 1
REGENERATE = "python -m scripts.experiments --lambda-grid --store STORE --out assets/lambda_grid.json"


@dataclass(frozen=True)
class Spread:
    """Mean and standard deviation over n seeds (std 0 when n = 1: one seed shows no spread)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        return cls(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


@dataclass(frozen=True)
class ForgottenConcept:
    """One concept of a checked dataset at one grid point, zero-shot, averaged over the cell's seeds.

    Every seed scores the same n test images (the evaluation subset is fixed), so `before` is the same in each;
    `change_ci` is the mean over seeds of each seed's paired 95 % interval, and ranks the concepts as the rest of
    the lab does (stats.rank_forgotten: by its upper end, so a concept resting on three images does not top the
    list on a single unlucky flip)."""

    dataset: str
    class_name: str
    n: int
    before: float
    after: float
    change: float
    change_std: float
    change_ci: tuple[float, float]


@dataclass(frozen=True)
class GridCell:
    """One (task, λ) point: its runs' headline numbers over seeds and the most-forgotten concepts per dataset."""

    task: str
    lam: float
    seeds: tuple[int, ...]
    run_ids: tuple[str, ...]
    zero_shot_before: float  # the task's zero-shot accuracy before fine-tuning (the same model in every cell)
    accuracy: Spread  # on the fine-tuning task, after
    zs_delta: Spread  # mean zero-shot change over the checked datasets (points)
    lp_delta: Spread  # mean linear-probe change over the checked datasets (points)
    forgotten: tuple[ForgottenConcept, ...]

    @property
    def is_ce(self) -> bool:
        return self.lam == 0


@dataclass(frozen=True)
class GridGap:
    """A grid point whose run is not (yet) in the store."""

    task: str
    lam: float
    seed: int


@dataclass(frozen=True)
class LambdaGrid:
    model: str
    settings: dict  # the RunConfig fields every run of the grid shares (all but dataset, objective, λ, seed)
    tasks: tuple[str, ...]
    lambdas: tuple[float, ...]
    seeds: tuple[int, ...]
    cells: tuple[GridCell, ...]
    missing: tuple[GridGap, ...]

    def cells_for(self, task: str) -> tuple[GridCell, ...]:
        """The task's cells, smallest λ (CE) first; λ values without any finished seed are absent."""
        return tuple(sorted((cell for cell in self.cells if cell.task == task), key=lambda cell: cell.lam))

    def missing_lambdas(self, task: str) -> tuple[float, ...]:
        present = {cell.lam for cell in self.cells_for(task)}
        return tuple(lam for lam in self.lambdas if lam not in present)

    def to_dict(self) -> dict:
        return {"format": GRID_FORMAT, "version": GRID_VERSION, "regenerate": REGENERATE, **asdict(self)}


# -- the JSON file ----------------------------------------------------------------------------------------------


DIGITS = 3  # stored precision of the measurements: the page shows one decimal, and the file stays small and readable


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, DIGITS)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


def save_grid(grid: LambdaGrid, path: str | Path) -> None:
    data = _rounded(grid.to_dict())
    data["settings"] = grid.settings  # exact: they say how to make the runs again (lr 5e-4 is not 0.001)
    Path(path).write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")


def load_grid(path: str | Path | None = None) -> LambdaGrid:
    """The grid at `path` (default: the shipped GRID_PATH); LambdaGridUnreadable (saying how to regenerate it) if
    it is missing or not a grid of this version."""
    path = Path(path) if path is not None else GRID_PATH
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LambdaGridUnreadable(f"No λ grid at {path}: generate it with `{REGENERATE}`.") from None
    except (OSError, ValueError) as err:
        raise LambdaGridUnreadable(f"The λ grid {path} cannot be read ({err}): regenerate it with "
                                   f"`{REGENERATE}`.") from None
    try:
        return grid_from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        problem = err.args[0] if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
        raise LambdaGridUnreadable(f"{path} is not a λ grid this version can read ({problem}): regenerate it "
                                   f"with `{REGENERATE}`.") from None


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} is {value!r}, not a finite number")
    return float(value)


def _spread(data: dict, what: str) -> Spread:
    n = data["n"]
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"{what}: n is {n!r}, not a count of seeds")
    return Spread(_number(data["mean"], f"{what} mean"), _number(data["std"], f"{what} std"), n)


def _concept(data: dict, where: str) -> ForgottenConcept:
    low, high = data["change_ci"]
    return ForgottenConcept(dataset=str(data["dataset"]), class_name=str(data["class_name"]), n=int(data["n"]),
                            **{key: _number(data[key], f"{where} {key}") for key in ("before", "after", "change",
                                                                                      "change_std")},
                            change_ci=(_number(low, f"{where} change_ci"), _number(high, f"{where} change_ci")))


def _cell(data: dict) -> GridCell:
    where = f"cell {data['task']} λ={data['lam']}"
    seeds = tuple(int(seed) for seed in data["seeds"])
    spreads = {key: _spread(data[key], f"{where} {key}") for key in ("accuracy", "zs_delta", "lp_delta")}
    if any(spread.n != len(seeds) for spread in spreads.values()):
        raise ValueError(f"{where}: its n differs from its {len(seeds)} seeds")
    return GridCell(task=str(data["task"]), lam=_number(data["lam"], f"{where} λ"), seeds=seeds,
                    run_ids=tuple(str(r) for r in data["run_ids"]),
                    zero_shot_before=_number(data["zero_shot_before"], f"{where} zero_shot_before"), **spreads,
                    forgotten=tuple(_concept(concept, where) for concept in data["forgotten"]))


def grid_from_dict(data: dict) -> LambdaGrid:
    """The grid of a parsed JSON file; ValueError/KeyError/TypeError say what does not fit the format."""
    if not isinstance(data, dict) or data.get("format") != GRID_FORMAT:
        raise ValueError(f"its format is not '{GRID_FORMAT}'")
    if data.get("version") != GRID_VERSION:
        raise ValueError(f"version {data.get('version')!r}, this version reads {GRID_VERSION}")
    if not isinstance(data["settings"], dict):
        raise ValueError("its settings are not an object")
    return LambdaGrid(model=str(data["model"]), settings=data["settings"], tasks=tuple(map(str, data["tasks"])),
                      lambdas=tuple(_number(lam, "a λ") for lam in data["lambdas"]),
                      seeds=tuple(int(seed) for seed in data["seeds"]), cells=tuple(map(_cell, data["cells"])),
                      missing=tuple(GridGap(str(g["task"]), _number(g["lam"], "a missing λ"), int(g["seed"]))
                                    for g in data["missing"]))
