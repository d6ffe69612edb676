"""metrics.json (schema 2, the README's "The metrics JSON") as a typed record, and its one flattening to rows.

`RunMetrics.from_json` checks a parsed metrics.json against the record (the store reads every results file
through it, so a file of the wrong shape shows as unreadable instead of failing a page or a command later);
`to_json` gives back exactly the JSON the lab writes, keys in the same order. `estimate_rows` is the one
flattening: the CSV export, the app's tables and the report all read a run's numbers through it, from the
`Evaluation` part that a WiSE-FT mix shares with a run.

Why one module over 350 lines: its classes, their checks and the flattening describe one file format, so a
changed key is changed in one place.
"""
from __future__ import annotations

import functools
import types
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import ClassVar, NewType, Self, get_args, get_origin, get_type_hints

from ldifs_core.config import RunConfig
from ldifs_core.curve_records import Curve
from ldifs_core.stats import forgotten_order

Interval = NewType("Interval", list)  # [low, high] of a 95 % interval, in percent or points
PROBES = ("zs", "lp")  # zero-shot and linear probe, as the checked datasets report them


class MetricsShapeError(ValueError):
    """A metrics.json that is valid JSON but not the documented record; the message names the first place."""


@dataclass
class ClassRow:
    """One concept: accuracy before and after on its `n` test images (classes without test images are left out)."""

    label: int
    class_name: str
    n: int
    before: float
    after: float
    change: float
    before_ci: Interval
    after_ci: Interval
    change_ci: Interval


@dataclass
class TaskReport:
    """The fine-tuning task: the pre-trained zero-shot accuracy vs the tuned model with its trained head."""

    dataset: str
    n: int
    zero_shot_before: float
    zero_shot_before_ci: Interval
    accuracy_after: float
    accuracy_after_ci: Interval
    change: float
    change_ci: Interval
    zero_shot_after: float
    zero_shot_after_ci: Interval
    per_class: list[ClassRow]


@dataclass
class DatasetReport:
    """A dataset checked for forgetting (or a sequence stage's own task), zero-shot and linear probe."""

    dataset: str
    n: int
    test_images: int
    probe_images: int
    lp_l2_before: float
    lp_l2_after: float
    zs_before: float
    zs_before_ci: Interval
    zs_after: float
    zs_after_ci: Interval
    zs_delta: float
    zs_delta_ci: Interval
    lp_before: float
    lp_before_ci: Interval
    lp_after: float
    lp_after_ci: Interval
    lp_delta: float
    lp_delta_ci: Interval
    per_class: list[ClassRow]
    per_class_lp: list[ClassRow]
    layer_distance: list[float]
    ldifs_distance: float
    centroid_shift: float
    knn_overlap: float

    def probe(self, probe: str) -> tuple[float, Interval, float, Interval, float, Interval]:
        """before, its interval, after, its interval, change, its interval of `probe` ("zs" or "lp")."""
        return tuple(getattr(self, f"{probe}_{part}") for part in
                     ("before", "before_ci", "after", "after_ci", "delta", "delta_ci"))

    def concepts(self, probe: str) -> list[ClassRow]:
        return self.per_class if probe == "zs" else self.per_class_lp


@dataclass
class Timings:
    """Seconds spent training, evaluating and in all; milliseconds per training step."""

    train_s: float
    eval_s: float
    total_s: float
    step_ms: float
    sequence_s: float | None = None  # a sequence's stage only

    def measured(self) -> dict[str, float]:
        """Each timing the run has, by its metrics.json name."""
        return _write(self)


@dataclass
class CheckedCheckpoint:
    """A checked run's files (ldifs_core/check.py): what was found in the tuned file, and whether it equals the base."""

    tuned: str
    tuned_sha256: str
    found: str  # "whole model" or "image tower only"
    identical: bool  # every tensor in the file equals the base model's
    note: str  # shown with the run ('' when there is nothing to say)
    head: str | None = None  # the classification head file, when one was given


@dataclass(kw_only=True)
class Evaluation:
    """What one evaluation of tuned weights measured: a run's, or a WiSE-FT mix's (wise.py: these keys plus
    "alpha"). The tables, the charts and the CSV read this much of a metrics.json."""

    run_id: str
    downstream: TaskReport | None = None  # None: a checked checkpoint whose task was not given
    forgetting: list[DatasetReport]
    mean_zs_delta: float
    mean_zs_delta_ci: Interval
    mean_lp_delta: float
    mean_lp_delta_ci: Interval

    @classmethod
    def from_json(cls, data: object) -> Self:
        """The record of a parsed metrics.json; MetricsShapeError says where it differs. Keys this version does
        not know are ignored."""
        try:
            return _reader(cls)(data)
        except _Misfit as misfit:
            raise MetricsShapeError(misfit.message()) from None

    def to_json(self) -> dict:
        """The metrics.json this record came from (absent optional keys stay absent)."""
        return _write(self)

    def mean_delta(self, probe: str) -> tuple[float, Interval]:
        return getattr(self, f"mean_{probe}_delta"), getattr(self, f"mean_{probe}_delta_ci")


@dataclass(kw_only=True)
class RunMetrics(Evaluation):
    """A finished run's metrics.json: its evaluation and what made it."""

    # the order the lab writes the keys in (from_json, to_json and messages follow it)
    JSON_ORDER: ClassVar[tuple[str, ...]] = (
        "code_version", "run_id", "config", "status", "model", "device", "schema_version", "downstream", "forgetting",
        "mean_zs_delta", "mean_zs_delta_ci", "mean_lp_delta", "mean_lp_delta_ci", "stage_task", "checked", "curve",
        "timings")
    code_version: int | None = None  # None: stored before runs carried it (counts as 1)
    config: dict  # RunConfig.to_dict() of the run
    status: str
    model: str
    device: str
    schema_version: int
    # its own task checked as the other datasets are: a sequence's stage (the matrix's diagonal), a checked run
    stage_task: DatasetReport | None = None
    checked: CheckedCheckpoint | None = None  # a checked run only
    curve: Curve | None = None  # forgetting over training (curve_records.py); None: a run made without one
    timings: Timings

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config)


# -- the one flattening ----------------------------------------------------------------------------------

ROW_COLUMNS = ["run_id", "role", "dataset", "probe", "class_name", "label", "n", "before", "before_ci_low",
               "before_ci_high", "after", "after_ci_low", "after_ci_high", "change", "change_ci_low", "change_ci_high"]
TUNED = "tuned"  # the task's probe: zero-shot of the base model before, the tuned classifier after
ConceptChoice = Callable[[str, str], bool]  # (dataset, probe) -> whether its concept rows are wanted
Estimate = tuple[float | None, Interval | None]  # a number and its interval


def estimate_rows(metrics: Evaluation, concepts_of: ConceptChoice = lambda dataset, probe: True) -> list[dict]:
    """Every number of a run as rows with the keys of ROW_COLUMNS, in this order:

    - role "downstream" (the fine-tuning task; none for a check without one): probe "tuned" (before: zero-shot
      of the base model, after: the tuned classifier) with its concept rows, then probe "zs" (zero-shot before and
      after; no change interval);
    - role "forgetting", per dataset checked: probe "zs" then "lp", each a dataset row followed by its concept
      rows, most surely forgotten first (`stats.rank_forgotten`);
    - role "mean": the mean change over the forgetting datasets per probe (change and interval only).

    Dataset rows have class_name and label None; so do numbers that are not measured (no rounding here).
    `concepts_of` keeps the concept rows of some (dataset, probe) pairs only (a table of one dataset's concepts
    of a run with thousands of them need not flatten them all).
    """
    run_id, task = metrics.run_id, metrics.downstream
    row = lambda role, dataset, probe, **values: _row(run_id, role, dataset, probe, **values)
    concepts = lambda role, dataset, probe, rows: (_ranked([_class_row(run_id, role, dataset, probe, c) for c in rows])
                                                   if concepts_of(dataset, probe) else [])
    rows = []
    if task is not None:  # a check without a task has none
        rows.append(row("downstream", task.dataset, TUNED, n=task.n,
                        before=(task.zero_shot_before, task.zero_shot_before_ci),
                        after=(task.accuracy_after, task.accuracy_after_ci), change=(task.change, task.change_ci)))
        rows += concepts("downstream", task.dataset, TUNED, task.per_class)
        rows.append(row("downstream", task.dataset, "zs", n=task.n,
                        before=(task.zero_shot_before, task.zero_shot_before_ci),
                        after=(task.zero_shot_after, task.zero_shot_after_ci),
                        change=(task.zero_shot_after - task.zero_shot_before, None)))
    for report in metrics.forgetting:
        for probe in PROBES:
            before, before_ci, after, after_ci, change, change_ci = report.probe(probe)
            rows.append(row("forgetting", report.dataset, probe, n=report.n, before=(before, before_ci),
                            after=(after, after_ci), change=(change, change_ci)))
            rows += concepts("forgetting", report.dataset, probe, report.concepts(probe))
    rows += [row("mean", None, probe, change=metrics.mean_delta(probe)) for probe in PROBES]
    return rows


def _ranked(concept_rows: list[dict]) -> list[dict]:
    return sorted(concept_rows, key=lambda r: forgotten_order(r["change_ci_high"], r["change"], r["class_name"]))


def _class_row(run_id: str, role: str, dataset: str, probe: str, row: ClassRow) -> dict:
    return _row(run_id, role, dataset, probe, class_name=row.class_name, label=row.label, n=row.n,
                before=(row.before, row.before_ci), after=(row.after, row.after_ci), change=(row.change, row.change_ci))


def _row(run_id: str, role: str, dataset: str | None, probe: str, *, class_name: str | None = None,
         label: int | None = None, n: int | None = None, before: Estimate = (None, None),
         after: Estimate = (None, None), change: Estimate = (None, None)) -> dict:
    row = {"run_id": run_id, "role": role, "dataset": dataset, "probe": probe, "class_name": class_name,
           "label": label, "n": n}
    for name, (value, interval) in (("before", before), ("after", after), ("change", change)):
        low, high = interval if interval is not None else (None, None)
        row.update({name: value, f"{name}_ci_low": low, f"{name}_ci_high": high})
    return row


# -- reading and writing the JSON, driven by the dataclasses' fields ----------------------------------------


@functools.cache
def _fields(cls: type) -> list[tuple[str, object, bool]]:
    """(name, type, required) of each field of a record class, in its JSON_ORDER if it has one."""
    hints = get_type_hints(cls)
    spec = [(f.name, hints[f.name], f.default is MISSING) for f in fields(cls)]
    order = getattr(cls, "JSON_ORDER", None)
    return spec if order is None else sorted(spec, key=lambda field: order.index(field[0]))


class _Misfit(Exception):
    """Where (path parts, filled in on the way up) and how a JSON value does not fit the record."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem, self.path = problem, []

    def message(self) -> str:
        where = "".join(part if part.startswith("[") else f".{part}" for part in self.path).lstrip(".")
        return f"metrics.json: {where} {self.problem}" if where else f"metrics.json {self.problem}"


Reader = Callable[[object], object]  # a JSON value -> the value as the record holds it; raises _Misfit


@functools.cache
def _reader(kind) -> Reader:
    """How to check and read a JSON value of one field type (a record class, X | None, a list, an Interval, a
    number, text or an object); made once per type, since a run has thousands of concept rows."""
    if is_dataclass(kind):
        return _record_reader(kind)
    if isinstance(kind, types.UnionType):  # X | None
        inner = _reader(next(k for k in get_args(kind) if k is not type(None)))
        return lambda value: None if value is None else inner(value)
    if get_origin(kind) is list:
        return _list_reader(_reader(get_args(kind)[0]))
    fits, name = _LEAVES[kind]

    def read_leaf(value: object) -> object:
        if not fits(value):
            raise _Misfit(f"is {_shown(value)}, not {name}")
        return value

    return read_leaf


def _list_reader(item: Reader) -> Reader:
    def read_list(value: object) -> list:
        if not isinstance(value, list):
            raise _Misfit(f"is {_shown(value)}, not a list")
        read = []
        for i, element in enumerate(value):
            try:
                read.append(item(element))
            except _Misfit as misfit:
                misfit.path.insert(0, f"[{i}]")
                raise
        return read

    return read_list


def _record_reader(cls: type) -> Reader:
    # (name, a leaf's check: the fast path for a run's thousands of numbers, the reader that says what misfits)
    spec = [(name, _LEAVES[kind][0] if kind in _LEAVES else None, _reader(kind)) for name, kind, _ in _fields(cls)]
    required = {name for name, _, needed in _fields(cls) if needed}

    def read_record(value: object):
        if not isinstance(value, dict):
            raise _Misfit(f"is {_shown(value)}, not an object")
        if not required <= value.keys():
            raise _Misfit(f"lacks {', '.join(name for name, *_ in spec if name in required - value.keys())}")
        values = {}
        for name, fits, read in spec:
            if name in value:
                item = value[name]
                if fits is not None and fits(item):
                    values[name] = item
                    continue
                try:
                    values[name] = read(item)
                except _Misfit as misfit:
                    misfit.path.insert(0, name)
                    raise
        return cls(**values)

    return read_record


def _is_number(value: object) -> bool:
    return type(value) is float or isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_interval(value: object) -> bool:
    return type(value) is list and len(value) == 2 and _is_number(value[0]) and _is_number(value[1])


_LEAVES = {  # type -> (does a JSON value fit it, how a message names it)
    float: (_is_number, "a number"),
    int: (lambda v: type(v) is int or isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    str: (lambda v: isinstance(v, str), "text"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    dict: (lambda v: isinstance(v, dict), "an object"),
    Interval: (_is_interval, "an interval [low, high]"),
}


def _shown(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _write(record) -> dict:
    values = ((name, getattr(record, name)) for name, _, _ in _fields(type(record)))
    return {name: _json_value(value) for name, value in values if value is not None}


def _json_value(value: object) -> object:
    if is_dataclass(value):
        return _write(value)
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    return value
