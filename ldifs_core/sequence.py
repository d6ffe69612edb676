"""Continual fine-tuning: one objective over an ordered list of tasks, and the forgetting matrix it leaves.

Stage k fine-tunes the CLIP that stage k−1 produced, with a new head for task k (ZS-init from the text tower, or
LP-init on the encoder it starts from). Each stage is an ordinary run of `runner.execute` (same metrics.json,
same store), linked by `sequence_id` and `stage` in its RunConfig and starting from the previous stage's saved
weights (`start_from`). LDIFS and L2-SP compare to θ₀ (anchor "original") or to the stage's start (anchor
"previous", as in the authors' released code). Every stage's report compares its encoder with θ₀ and also covers
its own task (`stage_task`), so the matrix is read from the stage runs alone: accuracy[stage][dataset], zero-shot
and linear probe, over every task of the sequence and every other dataset checked.

A sequence's record (its settings, stage run ids and matrix) lives in the run store's sequences/ folder; its
status is always read from its stage runs, so a crash never leaves a stale "running" record.

Why one module over 350 lines: planning, running and reading a sequence's matrix share its stage configs;
its record's storage lives in sequence_records.py.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ldifs_core.config import ANCHORS, STORED_DEFAULT_LAMBDA, RunConfig
from ldifs_core.curve_records import Curve, joined
from ldifs_core.datasets import available_bank, check_known, same_dataset
from ldifs_core.errors import BadConfig, LabError
from ldifs_core.hooks import NO_HOOKS, RunHooks
from ldifs_core.reuse import run_identity
from ldifs_core.sequence_records import create_sequence, read_sequence, save_sequence, sequence_ids
from ldifs_core.store import RunStore

PROBES = ("zs", "lp")
RECORD_VERSION = 1
NOT_RUN = "Not run: stage {stage} ({task}) {status}."  # the message of the stages after one that did not finish
CANCELLED_BEFORE_START = "Cancelled before it started."
REPLACED = "Replaced by a new run when the sequence was resumed."
STOPPED = ("interrupted", "failed", "cancelled")  # a sequence in one of these is resumed by the same command

# runner.execute's signature: (cfg, store, run_id=..., hooks=...) -> run id
Execute = Callable[..., str]


@dataclass(frozen=True)
class SequenceConfig:
    """Tasks in order, the anchor of LDIFS and L2-SP, and the settings every stage shares (`base`: its objective,
    λ, head init, steps, …; its dataset is ignored and its eval_datasets name the datasets checked besides the
    tasks, default every other concept-bank domain)."""

    tasks: tuple[str, ...]
    anchor: str = "previous"
    base: RunConfig = field(default_factory=RunConfig)

    def checked(self) -> list[str]:
        """Datasets measured after every stage that no stage trains on."""
        names = self.base.eval_datasets if self.base.eval_datasets is not None else available_bank()
        return [name for name in names if not any(same_dataset(name, task) for task in self.tasks)]

    def datasets(self) -> list[str]:
        """The matrix's columns: the tasks in order, then the datasets never trained on."""
        return [*self.tasks, *self.checked()]

    def stage_config(self, stage: int, sequence_id: str = "", start_from: str | None = None) -> RunConfig:
        """The RunConfig of stage `stage` (1-based): its task, every other column checked, the previous weights."""
        task = self.tasks[stage - 1]
        return replace(self.base, dataset=task, eval_datasets=[d for d in self.datasets() if d != task],
                       anchor=self.anchor, start_from=start_from, sequence_id=sequence_id, stage=stage,
                       save_weights=True)  # the next stage starts from them

    def validate(self) -> "SequenceConfig":
        """Refuse what cannot work, before anything is recorded: one line that says what to change."""
        tasks = list(self.tasks)
        if len(tasks) < 2:
            raise BadConfig(f"A sequence needs at least two tasks (got {len(tasks)}): list them in order, e.g. "
                            f"mnist,fashion_mnist,animals; for one task use `run`.")
        twice = sorted({task for task in tasks if sum(same_dataset(task, other) for other in tasks) > 1})
        if twice:
            raise BadConfig(f"Task {', '.join(twice)} is listed twice: each task appears once in a sequence.")
        if self.anchor not in ANCHORS:
            raise BadConfig(f"Anchor '{self.anchor}' is unknown: use original (θ₀) or previous (the stage's start).")
        for name in [*tasks, *(self.base.eval_datasets or ())]:
            check_known(name)
        for stage in range(1, len(tasks) + 1):  # every stage's run enters the lab here (runner.execute trusts it)
            self.stage_config(stage).validate()
        return self

    def describe(self) -> str:
        lam = f" λ={self.base.effective_lam:g}, anchor {self.anchor}" if self.base.regularised else ""
        return f"{self.base.objective}{lam} on {' → '.join(self.tasks)} (seed {self.base.seed})"

    def to_dict(self) -> dict:
        return {"tasks": list(self.tasks), "anchor": self.anchor, "base": self.base.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "SequenceConfig":
        """A stored sequence's settings; λ None there is the default of the time it was stored (as for runs)."""
        return cls(tuple(data["tasks"]), data["anchor"],
                   RunConfig.from_dict(data["base"]).with_lambda_resolved(STORED_DEFAULT_LAMBDA))


# -- the forgetting matrix --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForgettingMatrix:
    """accuracy[probe][stage][dataset] after each finished stage, θ₀'s accuracy (`before`), and what follows.

    Rows are the finished stages in order (a sequence stopped early has fewer rows than tasks); columns are
    `datasets`: the tasks in order, then the datasets never trained on. Accuracies in %, changes in points.
    """

    tasks: tuple[str, ...]
    datasets: tuple[str, ...]
    n: tuple[int, ...]  # test images behind each column
    before: dict[str, list[float]]  # probe -> θ₀'s accuracy per dataset
    accuracy: dict[str, list[list[float]]]  # probe -> [stage][dataset]
    ci: dict[str, list[list[list[float]]]]  # probe -> [stage][dataset] -> 95 % Wilson interval [low, high]
    task_accuracy: tuple[float, ...]  # each stage on its own task with the head it trained (not zero-shot)

    @property
    def unseen(self) -> list[str]:
        return [d for d in self.datasets if d not in self.tasks]

    def column(self, dataset: str) -> int:
        return self.datasets.index(dataset)

    def avg_accuracy(self, probe: str) -> list[float]:
        """Per stage k: mean accuracy over the tasks seen so far (tasks 1..k)."""
        rows = self.accuracy[probe]
        return [float(np.mean([row[self.column(task)] for task in self.tasks[:k + 1]])) for k, row in enumerate(rows)]

    def backward_transfer(self, probe: str) -> float | None:
        """Mean over the earlier tasks j of acc[last][j] − acc[j][j] (Lopez-Paz & Ranzato, 2017): how much the
        tasks learned before lost by the end (negative = forgotten). None before two stages finished."""
        rows = self.accuracy[probe]
        if len(rows) < 2:
            return None
        last = rows[-1]
        return float(np.mean([last[self.column(task)] - rows[j][self.column(task)]
                              for j, task in enumerate(self.tasks[:len(rows) - 1])]))

    def unseen_delta(self, probe: str) -> list[float] | None:
        """Per stage: mean change from θ₀ on the datasets never trained on (None when every column is a task)."""
        if not self.unseen:
            return None
        cols = [self.column(d) for d in self.unseen]
        before = self.before[probe]
        return [float(np.mean([row[c] - before[c] for c in cols])) for row in self.accuracy[probe]]

    def to_dict(self) -> dict:
        return {"datasets": list(self.datasets), "tasks": list(self.tasks), "unseen": self.unseen, "n": list(self.n),
                **{probe: self.accuracy[probe] for probe in PROBES},
                **{f"{probe}_ci": self.ci[probe] for probe in PROBES},
                "before": self.before, "task_accuracy": list(self.task_accuracy)}

    @classmethod
    def from_dict(cls, data: dict) -> "ForgettingMatrix":
        return cls(tuple(data["tasks"]), tuple(data["datasets"]), tuple(data["n"]), data["before"],
                   {probe: data[probe] for probe in PROBES}, {probe: data[f"{probe}_ci"] for probe in PROBES},
                   tuple(data["task_accuracy"]))

    def derived(self) -> dict:
        """The headline numbers per probe: average accuracy over the tasks seen (per stage), backward transfer,
        and the mean change on never-trained datasets (per stage)."""
        return {"avg_accuracy": {p: self.avg_accuracy(p) for p in PROBES},
                "backward_transfer": {p: self.backward_transfer(p) for p in PROBES},
                "unseen_delta": {p: self.unseen_delta(p) for p in PROBES}}


def stage_reports(metrics: dict) -> dict[str, dict]:
    """Dataset → its report in a stage's metrics: every checked dataset, and the stage's own task."""
    return {**{r["dataset"]: r for r in metrics["forgetting"]}, metrics["downstream"]["dataset"]: metrics["stage_task"]}


def forgetting_matrix(seq: SequenceConfig, stage_metrics: list[dict]) -> ForgettingMatrix | None:
    """The matrix of the finished stages' metrics (in stage order); None before the first stage finished."""
    if not stage_metrics:
        return None
    datasets = seq.datasets()
    reports = [stage_reports(m) for m in stage_metrics]
    first = reports[0]
    return ForgettingMatrix(
        tasks=seq.tasks, datasets=tuple(datasets), n=tuple(first[d]["n"] for d in datasets),
        before={p: [first[d][f"{p}_before"] for d in datasets] for p in PROBES},
        accuracy={p: [[r[d][f"{p}_after"] for d in datasets] for r in reports] for p in PROBES},
        ci={p: [[r[d][f"{p}_after_ci"] for d in datasets] for r in reports] for p in PROBES},
        task_accuracy=tuple(m["downstream"]["accuracy_after"] for m in stage_metrics))


# -- planning and running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageState:
    """One stage as the store has it: its task, its run, and that run's status and message."""

    stage: int
    task: str
    run_id: str
    status: str
    message: str


@dataclass(frozen=True)
class SequenceState:
    """What a sequence is now: its settings, its stages' runs and statuses, and the matrix of the finished ones."""

    sequence_id: str
    config: SequenceConfig
    created_at: float
    stages: tuple[StageState, ...]
    matrix: ForgettingMatrix | None

    @property
    def status(self) -> str:
        """done when every stage is; failed, cancelled or interrupted after the first stage that ended so;
        running while a stage runs; else queued."""
        statuses = [s.status for s in self.stages]
        if all(status == "done" for status in statuses):
            return "done"
        for state in self.stages:
            if state.status not in ("done", "queued", "running"):
                return state.status
        return "running" if "running" in statuses or "done" in statuses else "queued"

    @property
    def message(self) -> str:
        """Which stage stopped the sequence and why ('' while all is well)."""
        for state in self.stages:
            if state.status not in ("done", "queued", "running"):
                return f"Stage {state.stage} ({state.task}) {state.status}: {state.message}"
        return ""

    def to_dict(self) -> dict:
        """The sequence's JSON (CLI `--json`, app download): documented in the README."""
        derived = self.matrix.derived() if self.matrix else {"avg_accuracy": None, "backward_transfer": None,
                                                             "unseen_delta": None}
        return {"sequence_id": self.sequence_id, "status": self.status, "message": self.message,
                "tasks": list(self.config.tasks), "anchor": self.config.anchor,
                "objective": self.config.base.objective, "config": self.config.to_dict(),
                "stages": [s.run_id for s in self.stages],
                "stage_status": [{"stage": s.stage, "task": s.task, "run_id": s.run_id, "status": s.status,
                                  "message": s.message} for s in self.stages],
                "matrix": self.matrix.to_dict() if self.matrix else None, **derived}


def plan_sequence(seq: SequenceConfig, store: RunStore) -> str:
    """Check the sequence, then record it with every stage as a queued run (each starting from the one before);
    returns the sequence id. Nothing is recorded when a check fails."""
    seq = replace(seq.validate(), base=seq.base.with_lambda_resolved())
    sequence_id = create_sequence(store, {"version": RECORD_VERSION, "config": seq.to_dict(),
                                          "created_at": time.time(), "stages": [], "matrix": None})
    stages: list[str] = []
    for stage in range(1, len(seq.tasks) + 1):
        stages.append(store.create(seq.stage_config(stage, sequence_id, stages[-1] if stages else None)))
    save_record(store, sequence_id, seq, stages, None)
    return sequence_id


def plan_or_resume(seq: SequenceConfig, store: RunStore) -> tuple[str, int | None]:
    """The sequence to run for `seq`: the newest recorded one with these settings when it stopped before its end
    (interrupted, failed or cancelled), so its finished stages are kept, else a new one (see plan_sequence).
    Returns its id and how many of its first stages are already done (None for a new one)."""
    seq.validate()
    sequence_id = find_sequence(store, seq)
    if sequence_id is not None:
        try:
            state = sequence_state(store, sequence_id)
        except LabError:  # a stage run the store no longer has: start again
            return plan_sequence(seq, store), None
        if state.status in STOPPED:
            done = next((s.stage - 1 for s in state.stages if s.status != "done"), len(state.stages))
            return sequence_id, done
    return plan_sequence(seq, store), None


def save_record(store: RunStore, sequence_id: str, seq: SequenceConfig, stages: list[str],
                matrix: ForgettingMatrix | None) -> None:
    record = read_sequence(store, sequence_id)
    save_sequence(store, sequence_id, {**record, "config": seq.to_dict(), "stages": stages,
                                       "matrix": matrix.to_dict() if matrix else None})


def sequence_state(store: RunStore, sequence_id: str) -> SequenceState:
    """The sequence as the store has it now (statuses from the stage runs, the matrix as last saved)."""
    record = read_sequence(store, sequence_id)
    seq = SequenceConfig.from_dict(record["config"])
    stages = []
    for stage, run_id in enumerate(record["stages"], 1):
        run = store.get(run_id)
        stages.append(StageState(stage, seq.tasks[stage - 1], run_id, run.status, run.message))
    matrix = ForgettingMatrix.from_dict(record["matrix"]) if record.get("matrix") else None
    return SequenceState(sequence_id, seq, record.get("created_at", 0.0), tuple(stages), matrix)


def sequence_curve(store: RunStore, sequence_id: str, up_to: int | None = None) -> Curve | None:
    """The forgetting-over-training curve across the finished stages (up to stage `up_to`), one after the other
    with their boundaries (curve_records.joined); None when none has a curve."""
    from ldifs_core.metrics import RunMetrics

    stages = sequence_state(store, sequence_id).stages[:up_to]
    return joined([RunMetrics.from_json(store.metrics(stage.run_id)).curve for stage in stages
                   if stage.status == "done"])


def find_sequence(store: RunStore, seq: SequenceConfig) -> str | None:
    """The newest recorded sequence with these settings (to resume or reuse it), or None. Settings compare as two
    runs' do (reuse.run_identity): an explicit default λ or another objective's option makes no new sequence."""
    wanted = sequence_identity(seq)
    for sequence_id in sequence_ids(store):
        try:
            if sequence_identity(SequenceConfig.from_dict(read_sequence(store, sequence_id)["config"])) == wanted:
                return sequence_id
        except (LabError, KeyError, TypeError):  # unreadable, or not a sequence this version can read
            continue
    return None


def sequence_identity(seq: SequenceConfig) -> tuple:
    return tuple(seq.tasks), seq.anchor, run_identity(seq.base)


def cancel_rest(store: RunStore, run_ids: list[str], message: str) -> None:
    """Record the stages that will not run as cancelled, with why."""
    for run_id in run_ids:
        if store.get(run_id).status in ("queued", "running"):
            store.fail(run_id, "cancelled", message)


def run_sequence(store: RunStore, sequence_id: str, execute: Execute | None = None,
                 hooks: RunHooks = NO_HOOKS) -> SequenceState:
    """Run the stages of a planned sequence in order, each through `execute` (runner.execute by default) with
    `hooks`, which hear each stage start (`hooks.stage`) and are asked before each stage whether to stop.

    Finished stages are kept, so an interrupted sequence resumes where it stopped: a stage that failed, was
    cancelled or interrupted (or whose start was replaced) gets a new run. A stage that does not finish stops the
    sequence; the stages after it are recorded cancelled, naming it. Returns the sequence's state at the end.
    """
    if execute is None:
        from ldifs_core.runner import execute
    record = read_sequence(store, sequence_id)
    seq, stages = SequenceConfig.from_dict(record["config"]), list(record["stages"])
    finished: list[dict] = []
    previous: str | None = None
    for stage, run_id in enumerate(stages, 1):
        run = store.get(run_id)
        if run.status == "done" and run.config.start_from == previous:
            finished.append(store.metrics(run_id))
            previous = run_id
            continue
        if run.status != "queued" or run.config.start_from != previous:
            cancel_rest(store, [run_id], REPLACED)
            stages[stage - 1] = run_id = store.create(seq.stage_config(stage, sequence_id, previous))
            save_record(store, sequence_id, seq, stages, forgetting_matrix(seq, finished))
        if hooks.should_stop():
            cancel_rest(store, stages[stage - 1:], CANCELLED_BEFORE_START)
            break
        cfg = store.get(run_id).config
        hooks.stage(stage, run_id, cfg)
        try:
            execute(cfg, store, run_id=run_id, hooks=hooks)
        except LabError:
            pass  # recorded as failed with its reason; the sequence stops below
        finally:  # failed, cancelled, interrupted (Ctrl-C) or a bug: the later stages never stay queued
            ended = store.get(run_id).status
            if ended != "done":
                cancel_rest(store, stages[stage:], NOT_RUN.format(stage=stage, task=seq.tasks[stage - 1],
                                                                 status=ended if ended != "running" else "stopped"))
        if ended != "done":
            break
        finished.append(store.metrics(run_id))
        previous = run_id
        save_record(store, sequence_id, seq, stages, forgetting_matrix(seq, finished))
    return sequence_state(store, sequence_id)
