"""Command-line front end: `python -m ldifs_core run|sweep|sequence|check|list|show|export|wise|model-stock|
report|store|find-lambda`.

Thin over runner and store; `main(argv)` returns an exit code so tests call it in-process. Every input is checked
before any work starts, and every problem a user can cause ends in one line "error: ..." saying what to do.

Exit codes: 0 every run finished (or the command did what it was asked); 1 a sweep in which at least one run
failed (each is recorded with its reason and listed in the summary; the others still ran); 2 bad input, or a
run, store or file problem the message explains (`run` exits 2 when its run failed); 130 interrupted.

Why one module over 350 lines: each subcommand is a few lines over the library, and they share the parser
building (flags come from settings.py), the input checks and the one-line error handling.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ldifs_core.config import (DEFAULT_LAMBDA, GRID_SETTINGS, MAX_SEED, NO_FLAG, OBJECTIVE_OPTIONS,
                               REGULARISED, RUN_OBJECTIVES, RUN_SETTINGS, TRAINED, RunConfig)
from ldifs_core.curve_records import Curve
from ldifs_core.errors import BadConfig, LabError, RunNotFound
from ldifs_core.metrics import RunMetrics
from ldifs_core.objectives import OBJECTIVE_TYPES
from ldifs_core.hooks import Progress, RunHooks
from ldifs_core.store import LISTED_STATUSES, RunStore

if TYPE_CHECKING:  # ray loads only for --ray
    from ldifs_core.ray_sweep import TrialResources

T = TypeVar("T")
STORE_HELP = "run store folder (default: $LDIFS_STORE or ./runs)"
DOWNLOAD_HINT = "Add --download to fetch it, or give --data-root the folder that holds its files."


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose complaints end like every other bad input: one line, exit code 2 (via main)."""

    def error(self, message: str):
        raise BadConfig(f"{message} (see `{self.prog} --help`)")


# -- checking input before any work ------------------------------------------------------------------


def limit(text: str) -> int | None:
    """An image limit: a number, or 'all' for none (only the images a run uses are decoded)."""
    return None if text.strip().lower() == "all" else int(text)


def comma_list(flag: str, text: str, convert: Callable[[str], T], example: str) -> list[T]:
    """The items of a comma list, each converted; a BadConfig naming the flag and the item that does not fit.

    `convert` raises ValueError with a short reason ("is not a number") for an item it refuses.
    """
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise BadConfig(f"{flag} is empty: give a comma list such as {example}.")
    values = []
    for item in items:
        if not item:
            raise BadConfig(f"{flag} '{text}' has an empty item: give a comma list such as {example}.")
        try:
            values.append(convert(item))
        except ValueError as err:
            raise BadConfig(f"{flag}: '{item}' {err}; give a comma list such as {example}.") from None
    return values


def number(item: str) -> float:
    try:
        value = float(item)
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(value):
        raise ValueError("is not a finite number")
    return value


def whole_number(item: str) -> int:
    try:
        return int(item)
    except ValueError:
        raise ValueError("is not a whole number") from None


def seed(item: str) -> int:
    value = whole_number(item)
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"is outside the seed range 0..{MAX_SEED}")
    return value


def alpha(item: str) -> float:
    value = number(item)
    if not 0.0 <= value <= 1.0:
        raise ValueError("is outside 0..1 (α = 0 is the base model, 1 the fine-tuned one)")
    return value


def objective(item: str) -> str:
    if item not in TRAINED:
        raise ValueError(f"is not an objective (use {', '.join(TRAINED)})")
    return item


def name(item: str) -> str:
    return item


def check_output(flag: str, path: Path | None) -> None:
    """An output file can be written where it is asked for, or BadConfig says why, before any work starts."""
    if path is None:
        return
    if path.is_dir():
        raise BadConfig(f"{flag} {path} is a folder: give a file name.")
    folder = path.parent
    if not folder.is_dir():
        raise BadConfig(f"{flag} {path}: the folder {folder} does not exist; create it first or choose another path.")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise BadConfig(f"{flag} {path} cannot be written here (permission denied); choose another path.")


def write_output(flag: str, path: Path, text: str, note: str = "") -> None:
    try:
        path.write_text(text)
    except OSError as err:
        raise BadConfig(f"{flag} {path} could not be written ({err.strerror}){note}.") from None


# -- run options ---------------------------------------------------------------------------------------


def add_run_options(parser: argparse.ArgumentParser, sweep: bool = False, sequence: bool = False) -> None:
    """The flags of one run; a sweep lists objectives, λ values and seeds instead, a sequence lists its tasks. Every
    other setting's flag is the one RunConfig declares (add_setting_flags)."""
    if sequence:
        add_sequence_options(parser)
    else:
        parser.add_argument("--dataset", default=RunConfig.dataset, help=RUN_SETTINGS["dataset"].help)
    parser.add_argument("--eval-datasets", help="comma list of datasets checked for forgetting "
                        "(default: every other concept-bank domain)")
    if sweep:
        parser.add_argument("--objectives", default="ce,ldifs", help=f"comma list of {','.join(TRAINED)}")
        parser.add_argument("--lams", default="", help=f"comma list of λ values for {' and '.join(REGULARISED)} "
                            f"(default: their default λ)")
        parser.add_argument("--seeds", default="0", help=f"comma list of seeds (0..{MAX_SEED})")
        # -- on a Ray cluster (ray_sweep.py)
        parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                            help="run the trials as Ray tasks: alone, on $RAY_ADDRESS if set, else on a Ray instance "
                            "started here; 'auto' or 'ray://HOST:PORT' joins an existing cluster")
        parser.add_argument("--cpus-per-trial", type=float, help="CPUs Ray reserves per trial (with --ray; default 1)")
        parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (with --ray; "
                            "default 1 when the cluster has GPUs, else 0)")
    else:
        parser.add_argument("--objective", default=RunConfig.objective, choices=TRAINED,
                            help=RUN_SETTINGS["objective"].help)
        parser.add_argument("--lam", type=float, help=f"regulariser weight, only for {' and '.join(REGULARISED)} "
                            f"(default: {', '.join(f'{o} {DEFAULT_LAMBDA[o]:g}' for o in REGULARISED)})")
        parser.add_argument("--seed", type=int, default=RunConfig.seed, help=RUN_SETTINGS["seed"].help)
    add_setting_flags(parser, sweep)
    parser.add_argument("--no-umap", action="store_true", help="skip the UMAP pictures (faster)")
    parser.add_argument("--store", type=Path, help=STORE_HELP)
    parser.add_argument("--json", type=Path, help="also write the sequence's JSON (matrix and derived numbers) here"
                        if sequence else "also write the metrics JSON here" +
                        (" (a list: every run, failed ones with their status and message)" if sweep else ""))


def flag_of(name: str) -> str:
    return RUN_SETTINGS[name].flag or f"--{name.replace('_', '-')}"


def add_setting_flags(parser: argparse.ArgumentParser, sweep: bool, only: tuple[str, ...] | None = None) -> None:
    """A flag for every setting that declares one (or for those named in `only`), general or an objective's option,
    with its help, default and choices. A grid setting (one an objective's sweep runs every value of) takes a comma
    list."""
    for setting_name, declared in RUN_SETTINGS.items():
        if declared.flag == NO_FLAG or (only is not None and setting_name not in only):
            continue
        default = getattr(RunConfig, setting_name)
        owner = next((o for o, options in OBJECTIVE_OPTIONS.items() if setting_name in options), None)
        text = f"{owner}: {declared.help}" if owner else declared.help
        if declared.least is not None or declared.most is not None:
            text += f" ({declared.bound()})"
        if isinstance(default, bool):
            parser.add_argument(flag_of(setting_name), dest=setting_name, action="store_false" if default else
                                "store_true", help=text)
        elif setting_name in GRID_SETTINGS:
            plural = " (a comma list in a sweep: every value is run)" if sweep else ""
            parser.add_argument(flag_of(setting_name), dest=setting_name, default=str(default), help=text + plural)
        else:
            parser.add_argument(flag_of(setting_name), dest=setting_name, default=default, help=text,
                                type=limit if declared.empty and isinstance(default, int) else
                                type(default) if default is not None else str, choices=declared.choices or None)


def grid_values(args: argparse.Namespace, setting_name: str) -> list:
    """The values of a grid setting's comma list, each read as RunConfig holds it."""
    declared, flag = RUN_SETTINGS[setting_name], flag_of(setting_name)
    default = getattr(RunConfig, setting_name)

    def value(item: str):
        if declared.choices and item not in declared.choices:
            raise ValueError(f"is not one of {', '.join(declared.choices)}")
        if declared.parse:
            return declared.parse(item)
        return type(default)(item)

    example = ",".join(declared.choices) or declared.hint or str(default)
    return comma_list(flag, getattr(args, setting_name), value, example)


def one_value(flag: str, values: list[T]) -> T:
    if len(values) > 1:
        raise BadConfig(f"{flag} takes one value in `run`; a comma list belongs to `sweep`, which runs every value.")
    return values[0]


def config_from(args: argparse.Namespace, objective: str, lam: float | None, seed: int, grid: dict | None = None,
                dataset: str | None = None) -> RunConfig:
    """The run's settings (on `dataset`, default --dataset; `grid`: the sweep's values of grid settings), validated,
    with every dataset name known: LabError says what to change."""
    from ldifs_core.datasets import check_known  # imports torch: only commands that train pay for it

    eval_datasets = (comma_list("--eval-datasets", args.eval_datasets, name, "animals,quickdraw")
                     if args.eval_datasets is not None else None)
    if grid is None:
        grid = {key: one_value(flag_of(key), grid_values(args, key)) for key in GRID_SETTINGS}
    flagged = {key: getattr(args, key) for key, declared in RUN_SETTINGS.items()
               if declared.flag != NO_FLAG and key not in GRID_SETTINGS}
    cfg = RunConfig(**{**flagged, **grid}, dataset=args.dataset if dataset is None else dataset, objective=objective,
                    lam=lam, seed=seed, eval_datasets=eval_datasets,
                    umap_points=0 if args.no_umap else RunConfig.umap_points).validate()
    for dataset in (cfg.dataset, *(cfg.eval_datasets or ())):
        check_known(dataset)
    return cfg


def sweep_configs(args: argparse.Namespace) -> list[RunConfig]:
    """Every configuration of the grid, all validated before the first one runs: objectives × λ values × seeds, and
    for an objective with grid settings (ldifs: taps, variant) every combination of their values."""
    objectives = comma_list("--objectives", args.objectives, objective, "ce,ldifs")
    lams = comma_list("--lams", args.lams, number, "1,10") if args.lams.strip() else None
    seeds = comma_list("--seeds", args.seeds, seed, "0,1,2")
    values = {key: grid_values(args, key) for key in GRID_SETTINGS}
    if lams is not None and not any(o in REGULARISED for o in objectives):
        raise BadConfig(f"--lams applies to {', '.join(REGULARISED)} only, and none is in --objectives.")

    def grids(kind) -> list[dict]:
        """Every combination of the objective's grid settings; its other grid settings at their defaults."""
        axes = [values[key] if key in kind.grid else [getattr(RunConfig, key)] for key in GRID_SETTINGS]
        return [dict(zip(GRID_SETTINGS, combination)) for combination in itertools.product(*axes)]

    return [config_from(args, o, lam, s, grid)
            for o, s in itertools.product(objectives, seeds)
            for lam in ((lams or [None]) if o in REGULARISED else [None])
            for grid in grids(OBJECTIVE_TYPES[o])]


# -- commands ------------------------------------------------------------------------------------------


class TerminalProgress(RunHooks):
    """A run's progress on stderr: a bar over its training steps, opened by the first step (a run that fails while
    loading prints only its error), then one over the evaluation's image encodings, naming the dataset measured
    and the probes fitted, with tqdm's ETA. A sequence's stages each get their own bars, titled by stage."""

    def __init__(self, title: str = "", stages: int = 0):
        self.title, self.stages = title, stages
        self.bar, self.phase = None, ""

    def stage(self, stage: int, run_id: str, cfg: RunConfig) -> None:
        self.close()
        self.title = f"stage {stage}/{self.stages}: {cfg.describe()}"

    def progress(self, progress: Progress) -> None:
        if progress.phase == "training":
            bar = self._bar("training", progress.total_steps, self.title, "step")
            bar.update(progress.step - bar.n)
            bar.set_postfix(loss=f"{progress.loss:.3f}", img_s=f"{progress.images_per_s:.0f}")
        elif progress.phase == "evaluating" and progress.dataset is not None:
            bar = self._bar("evaluating", progress.images_to_encode, "", "img")
            bar.total = progress.images_to_encode  # a sequence's stage plans its own task last
            where = progress.where()
            bar.set_postfix_str(f"probes {progress.probes_fitted}/{progress.probes_total}", refresh=False)
            # a new dataset is drawn at once: tqdm's rate limit would skip a dataset that a fast machine finishes
            bar.set_description(where, refresh=where != bar.desc.rstrip(": "))
            bar.update(progress.images_encoded - bar.n)

    def _bar(self, phase: str, total: int, title: str, unit: str):
        from tqdm import tqdm

        if self.phase != phase:
            self.close()
            self.bar, self.phase = tqdm(total=total, desc=title, unit=unit, file=sys.stderr, dynamic_ncols=True), phase
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.phase = None, ""


def run_with_progress(cfg: RunConfig, store: RunStore, run_id: str) -> None:
    """Execute the recorded run `run_id`, with its progress on stderr."""
    from ldifs_core.runner import execute

    progress = TerminalProgress(cfg.describe())
    try:
        execute(cfg, store, run_id, progress)
    finally:
        progress.close()


def summary_line(metrics: dict) -> str:
    down = metrics.get("downstream")
    task = (f"{down['dataset']}: {down['zero_shot_before']:.1f}% -> {down['accuracy_after']:.1f}%" if down else
            "no task")
    return (f"{metrics['run_id']}  {metrics['config']['objective']:<6} {task}   forgetting: "
            f"ZS {metrics['mean_zs_delta']:+.1f} pts{interval(metrics.get('mean_zs_delta_ci'))}, "
            f"LP {metrics['mean_lp_delta']:+.1f} pts{interval(metrics.get('mean_lp_delta_ci'))}   "
            f"({metrics['timings']['total_s']:.0f} s)")


def interval(ci: list[float] | None) -> str:
    return f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else ""


def cmd_run(args) -> int:
    from ldifs_core import preflight

    cfg = config_from(args, args.objective, args.lam, args.seed)
    check_output("--json", args.json)
    preflight.check_run(cfg, DOWNLOAD_HINT, load=True)  # nothing is stored for a run that cannot start
    return record_and_run(cfg, args)


def record_and_run(cfg: RunConfig, args) -> int:
    """Record the run of the checked settings `cfg` in the store, run it, print its summary (and write --json)."""
    store = RunStore(args.store)
    run_id = store.create(cfg)
    try:
        run_with_progress(cfg, store, run_id)
    except LabError as err:  # recorded as failed with this reason
        print(f"error: run {run_id} failed: {err}", file=sys.stderr)
        return 2
    record = store.get(run_id)
    if record.status != "done":  # cancelled
        print(f"error: run {run_id} {record.status}: {record.message}", file=sys.stderr)
        return 1
    metrics = store.metrics(run_id)
    print(summary_line(metrics))
    if args.json:
        write_output("--json", args.json, json.dumps(metrics, indent=2), f"; the run is kept as {run_id}")
    return 0


def outcome(store: RunStore, run_id: str) -> dict:
    """What a sweep reports for one run: the metrics of a finished run, else its status and message."""
    record = store.get(run_id)
    if record.status == "done":
        return store.metrics(run_id)
    return {"run_id": run_id, "status": record.status, "message": record.message, "config": record.config.to_dict()}


def cmd_sweep(args) -> int:
    configs = sweep_configs(args)
    check_output("--json", args.json)
    if args.ray is None and (args.cpus_per_trial is not None or args.gpus_per_trial is not None):
        raise BadConfig("--cpus-per-trial and --gpus-per-trial apply to sweeps on Ray: add --ray.")
    from ldifs_core import preflight

    preflight.check_sweep(configs, DOWNLOAD_HINT, load=args.ray is None)  # Ray trials load the model themselves
    store = RunStore(args.store)
    if args.ray is None:
        return report_sweep(args, len(configs), lambda results: sweep_one_by_one(configs, store, results))
    from ldifs_core import ray_sweep

    cpus = 1.0 if args.cpus_per_trial is None else args.cpus_per_trial
    resources = ray_sweep.TrialResources(cpus, args.gpus_per_trial).check()
    with ray_sweep.ray_session(args.ray) as address:
        resources = ray_sweep.check_cluster(configs, resources)
        return report_sweep(args, len(configs),
                            lambda results: sweep_on_ray(configs, store, address, resources, results))


def report_sweep(args: argparse.Namespace, planned: int, sweep: Callable[[list[dict]], None]) -> int:
    """Run `sweep`, which appends each run's outcome; then, whatever happened, the table of every run and --json."""
    results: list[dict] = []
    try:
        sweep(results)
    finally:
        print_sweep_table(results, planned)
        if args.json:
            write_output("--json", args.json, json.dumps(results, indent=2))
    return 0 if all(result["status"] == "done" for result in results) else 1


def sweep_one_by_one(configs: list[RunConfig], store: RunStore, results: list[dict]) -> None:
    """The grid in this process, one run after another; each outcome is appended to `results` as it ends."""
    for cfg in configs:
        run_id = store.create(cfg)
        try:
            run_with_progress(cfg, store, run_id)
        except LabError:
            pass  # recorded as failed with its reason; the sweep goes on
        except KeyboardInterrupt:
            results.append(outcome(store, run_id))
            raise
        except Exception:  # a bug: recorded as failed ("Internal error"); shown, and the sweep goes on
            traceback.print_exc()
        results.append(outcome(store, run_id))
        print(summary_line(results[-1]) if results[-1]["status"] == "done" else failure_line(results[-1]))


def sweep_on_ray(configs: list[RunConfig], store: RunStore, address: str, resources: TrialResources,
                 results: list[dict]) -> None:
    """The grid as Ray tasks (ray_sweep.py), Ray connected and the cluster checked: one bar over the trials with
    the running ones' steps, a line per trial as it ends. `results` gets every trial in grid order, also after
    Ctrl-C (the unfinished ones recorded cancelled)."""
    from tqdm import tqdm

    from ldifs_core import ray_sweep

    trials = ray_sweep.record_trials(store, configs)
    names = {trial.run_id: short_name(trial.cfg) for trial in trials}
    steps: dict[str, str] = {}
    bar = tqdm(total=len(trials), desc=f"trials on Ray ({address})", unit="trial", file=sys.stderr,
               dynamic_ncols=True)

    class TrialOnBar(RunHooks):
        """Where one trial is, among the running ones on the sweep's bar."""

        def __init__(self, run_id: str):
            self.run_id = run_id

        def progress(self, progress: Progress) -> None:
            steps[self.run_id] = progress.where()
            bar.set_postfix_str(", ".join(f"{names[run_id]} {step}" for run_id, step in steps.items()))

    def on_end(run_id: str) -> None:
        steps.pop(run_id, None)
        result = outcome(store, run_id)
        bar.write(summary_line(result) if result["status"] == "done" else failure_line(result))
        bar.update()

    try:
        ray_sweep.run_trials(store, trials, resources, hooks_for=TrialOnBar, on_end=on_end)
    finally:
        bar.close()
        results.extend(outcome(store, trial.run_id) for trial in trials)


def short_name(cfg: RunConfig) -> str:
    lam = f" λ={cfg.effective_lam:g}" if cfg.regularised else ""
    return f"{cfg.objective}{lam} s{cfg.seed}"


def failure_line(result: dict) -> str:
    return f"{result['run_id']}  {result['config']['objective']:<6} {result['status']}: {result['message']}"


def print_sweep_table(results: list[dict], planned: int) -> None:
    done = sum(result["status"] == "done" for result in results)
    print(f"\nSweep: {len(results)} of {planned} runs, {done} done, {len(results) - done} not done")
    print(f"{'run':<22}  {'objective':<9}  {'λ':>6}  {'seed':>4}  {'status':<10}  result")
    for result in results:
        cfg = RunConfig.from_dict(result["config"])
        lam = f"{cfg.effective_lam:g}" if cfg.regularised else "-"
        if result["status"] == "done":
            text = (f"{result['downstream']['accuracy_after']:.1f}%  ZS {result['mean_zs_delta']:+.1f}  "
                    f"LP {result['mean_lp_delta']:+.1f}")
        else:
            text = result["message"]
        print(f"{result['run_id']:<22}  {cfg.objective:<9}  {lam:>6}  {cfg.seed:>4}  {result['status']:<10}  {text}")


def cmd_list(args) -> int:
    store = RunStore(args.store)
    records = store.list(dataset=args.dataset, objective=args.objective, status=args.status)
    if not records:
        filters = [f"--{key} {value}" for key, value in
                   (("dataset", args.dataset), ("objective", args.objective), ("status", args.status)) if value]
        print(f"No runs match {' '.join(filters)}." if filters else
              "No runs yet. Start one with `python -m ldifs_core run`.")
    for r in records:
        s = r.summary
        numbers = (f"acc {s['accuracy_after']:.1f}  ZS Δ {s['mean_zs_delta']:+.1f}  LP Δ {s['mean_lp_delta']:+.1f}"
                   if r.status == "done" and {"accuracy_after", "mean_zs_delta", "mean_lp_delta"} <= set(s)
                   else progress_text(r.progress) if r.status == "running" else r.message[:100])
        print(f"{r.run_id}  {r.status:<11} {r.config.describe():<45} {numbers}")
    return 0


def progress_text(progress: dict) -> str:
    """Where a running run is: its step, the dataset it measures or its phase, and the node of a Ray trial."""
    shown = Progress.from_dict(progress)
    return shown.where() + (f" on {shown.node}" if shown.node else "")


def curve_text(curve: Curve) -> str:
    """The forgetting-over-training curve as a compact table (zero-shot accuracy in %)."""
    header, *rows = curve.table()
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in (header, *rows)]
    return "Forgetting over training (zero-shot accuracy %, every " + f"{curve.every} steps):\n  " + "\n  ".join(lines)


def cmd_show(args) -> int:
    store = RunStore(args.store)
    record = store.get(args.run)
    metrics = store.metrics(args.run) if record.status == "done" else None
    if args.json:
        shown = {"run_id": record.run_id, "status": record.status, "message": record.message}
        if record.status != "unreadable":
            shown.update(config=record.config.to_dict(), progress=record.progress)
        print(json.dumps(shown if metrics is None else metrics, indent=2))
        return 0
    print(f"Run {record.run_id}: {record.status}" + (f": {record.message.removeprefix('unreadable: ')}"
                                                     if record.message else ""))
    cfg = record.config
    made = (f"base {cfg.model or 'embedded'} ({cfg.pretrained or 'embedded weights'}), tuned file {cfg.tuned} "
            f"(sha256 {(cfg.tuned_sha256 or '')[:12]}…)" if cfg.checked else
            f"model {cfg.model or 'embedded'}, lr {cfg.lr:g}, batch {cfg.batch_size}, init {cfg.init}")
    print(f"  {cfg.describe()}; {made}" + (f"; {progress_text(record.progress)}" if record.status == "running"
                                           else ""))
    if metrics is not None:
        print(results_summary(metrics))
        if (curve := RunMetrics.from_json(metrics).curve) is not None:
            print(curve_text(curve))
    folder = store.root / record.run_id
    files = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    print(f"Files: {folder}" + (f" ({', '.join(files)})" if files else " (none)"))
    print(f"All numbers: python -m ldifs_core show {record.run_id} --json")
    return 0


def results_summary(metrics: dict) -> str:
    """The task's accuracy before and after, and the forgetting on each dataset checked, with n and intervals."""
    down, checked = metrics.get("downstream"), metrics.get("checked")
    after = ("with its head" if checked.get("head") else "zero-shot") if checked else "after fine-tuning"
    lines = [f"Task {down['dataset']} (n = {down['n']}): {down['zero_shot_before']:.1f} % zero-shot before -> "
             f"{down['accuracy_after']:.1f} % {after} ({down['change']:+.1f} points"
             f"{interval(down.get('change_ci'))})" if down else
             "Task: none given (check --task names the dataset it was fine-tuned on)"]
    if checked:
        lines.append(f"Checked: {checked['tuned']} ({checked['found']}) against the base model"
                     + (f". Note: {checked['note']}" if checked["note"] else ""))
    lines.append("Forgetting: change of accuracy in points, 95 % interval (negative = forgotten)")
    task = [{**metrics["stage_task"], "dataset": f"{down['dataset']} (task)"}] if checked and down else []
    rows = [(f["dataset"], str(f["n"]), f"{f['zs_delta']:+.1f}{interval(f.get('zs_delta_ci'))}",
             f"{f['lp_delta']:+.1f}{interval(f.get('lp_delta_ci'))}") for f in task + metrics["forgetting"]]
    rows.append(("mean", "", f"{metrics['mean_zs_delta']:+.1f}{interval(metrics.get('mean_zs_delta_ci'))}",
                 f"{metrics['mean_lp_delta']:+.1f}{interval(metrics.get('mean_lp_delta_ci'))}"))
    table = [("dataset", "n", "zero-shot", "linear probe"), *rows]
    widths = [max(len(row[column]) for row in table) for column in range(4)]
    lines += ["  " + "  ".join(cell.rjust(width) if column == 1 else cell.ljust(width)
                               for column, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in table]
    timings = metrics["timings"]
    lines.append(f"Took {timings['total_s']:.0f} s" + (f" (training {timings['train_s']:.0f} s)"
                                                       if "train_s" in timings else ""))
    return "\n".join(lines)


def cmd_export(args) -> int:
    from ldifs_core.export import metrics_csv, sequence_csv

    check_output("--out", args.out)
    store = RunStore(args.store)
    if args.run.startswith("seq-"):  # a sequence: its forgetting matrix
        from ldifs_core.sequence import sequence_state

        summary = sequence_state(store, args.run).to_dict()
        text = sequence_csv(summary) if args.format == "csv" else json.dumps(summary, indent=2)
    else:
        metrics = store.metrics(args.run)
        text = metrics_csv(metrics) if args.format == "csv" else json.dumps(metrics, indent=2)
    if args.out:
        write_output("--out", args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_wise(args) -> int:
    alphas = comma_list("--alphas", args.alphas, alpha, "0,0.5,1")
    store = RunStore(args.store)
    record = store.get(args.run)
    if record.status not in ("done", "unreadable"):
        reason = f" ({record.message})" if record.message else ""
        raise RunNotFound(f"Run {args.run} is {record.status}{reason}: WiSE-FT mixes the weights of a finished run; "
                          f"pick one from `python -m ldifs_core list --status done`.")
    store.metrics(args.run)  # an unreadable run says why here
    if store.weights_path(args.run) is None:  # a damaged file says so here
        raise RunNotFound(f"Run {args.run} kept no weights (save_weights was off), so WiSE-FT cannot mix them. "
                          f"Run it again with weights saved.")
    from ldifs_core.wise import wise_ft_path

    for m in wise_ft_path(store, args.run, alphas):
        down = m.get("downstream")
        task = f"{down['dataset']}: {down['accuracy_after']:.1f}%" if down else "no task"
        print(f"α={m['alpha']:.2f}  {task}   "
              f"forgetting: ZS {m['mean_zs_delta']:+.1f} pts, LP {m['mean_lp_delta']:+.1f} pts")
    return 0


# -- check: a checkpoint fine-tuned elsewhere, evaluated and stored like a run (ldifs_core/check.py) ---------

# The settings a check reads (no training settings: nothing trains).
CHECK_SETTINGS = ("eval_limit", "probe_limit", "probe_cap", "ldifs_taps", "device", "data_root", "download",
                  "save_weights")


def add_check_parser(sub) -> argparse.ArgumentParser:
    check = sub.add_parser("check", help="check a checkpoint fine-tuned elsewhere for forgetting: a run of kind "
                           "'checked', shown and exported like any run")
    check.add_argument("--model", help="open_clip model the checkpoint was fine-tuned from, e.g. ViT-B-32 "
                       "(default: the embedded model)")
    check.add_argument("--base", help="its base weights: an open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a "
                       "checkpoint file (default: the embedded model's)")
    check.add_argument("--tuned", required=True, help="the fine-tuned checkpoint: a state dict of the whole CLIP or "
                       "of its image tower, an open_clip training checkpoint, or safetensors")
    check.add_argument("--task", help="the dataset it was fine-tuned on: accuracy before/after there (optional: "
                       "without it the check measures forgetting only)")
    check.add_argument("--datasets", help="comma list of datasets checked for forgetting (default: every other "
                       "concept-bank domain)")
    check.add_argument("--head", help="the classification head trained with it (a state dict with weight [classes, "
                       "features] and optional bias, or a tensor): task accuracy with that head too")
    check.add_argument("--seed", type=int, default=RunConfig.seed, help="seed of the linear probes and the UMAP")
    add_setting_flags(check, sweep=False, only=CHECK_SETTINGS)
    check.add_argument("--no-umap", action="store_true", help="skip the UMAP pictures (faster)")
    check.add_argument("--store", type=Path, help=STORE_HELP)
    check.add_argument("--json", type=Path, help="also write the metrics JSON here")
    return check


def cmd_check(args) -> int:
    """Every file is read and checked against the base model before the run is recorded."""
    from ldifs_core import preflight
    from ldifs_core.check import check_config

    datasets = (comma_list("--datasets", args.datasets, name, "animals,quickdraw")
                if args.datasets is not None else None)
    settings = {key: getattr(args, key) for key in CHECK_SETTINGS if key != "ldifs_taps"}
    cfg = check_config(args.model, args.base, args.tuned, args.task, datasets, args.head, seed=args.seed,
                       ldifs_taps=one_value(flag_of("ldifs_taps"), grid_values(args, "ldifs_taps")),
                       umap_points=0 if args.no_umap else RunConfig.umap_points, **settings)
    check_output("--json", args.json)
    preflight.check_inspection(cfg, DOWNLOAD_HINT)  # nothing is stored for a check that cannot start
    return record_and_run(cfg, args)


def cmd_model_stock(args) -> int:
    from ldifs_core.merging import model_stock_run

    store = RunStore(args.store)
    progress = TerminalProgress()
    try:
        run_id = model_stock_run(store, args.run_a, args.run_b, hooks=progress)
    finally:
        progress.close()
    record = store.get(run_id)
    if record.status != "done":
        print(f"error: run {run_id} {record.status}: {record.message}", file=sys.stderr)
        return 2
    m = store.metrics(run_id)
    print(f"Model Stock of {args.run_a} and {args.run_b}: run {run_id}\n{m['downstream']['dataset']}: "
          f"{m['downstream']['accuracy_after']:.1f}%   forgetting: ZS {m['mean_zs_delta']:+.1f} pts, "
          f"LP {m['mean_lp_delta']:+.1f} pts")
    return 0


# -- report: one self-contained HTML file of finished runs ---------------------------------------------------


def cmd_report(args) -> int:
    from ldifs_core.report import run_report  # plotly loads only for a report

    check_output("-o", args.out)
    text = run_report(RunStore(args.store), args.runs)
    write_output("-o", args.out, text)
    print(f"Report of {len(args.runs)} run(s) written to {args.out} ({len(text.encode()) / 1e6:.1f} MB); it opens "
          f"offline in any current browser.")
    return 0


def add_report_parser(sub) -> argparse.ArgumentParser:
    report = sub.add_parser("report", help="finished runs (one, or several compared) as one self-contained HTML file")
    report.add_argument("runs", nargs="+", metavar="RUN", help="run ids of finished runs")
    report.add_argument("-o", "--out", type=Path, required=True, help="the HTML file to write")
    return report


# -- sequences (continual fine-tuning) -----------------------------------------------------------------------


def add_sequence_options(parser: argparse.ArgumentParser) -> None:
    from ldifs_core.config import ANCHORS

    parser.add_argument("--tasks", required=True, help="comma list of tasks in training order, at least two "
                        "(e.g. mnist,fashion_mnist,animals)")
    parser.add_argument("--anchor", default="previous", choices=ANCHORS, help="what ldifs and l2sp compare each "
                        "stage to: θ₀ (original) or the weights the stage starts from (previous, the default)")


def cmd_sequence(args) -> int:
    from ldifs_core.sequence import SequenceConfig, plan_or_resume, run_sequence

    tasks = comma_list("--tasks", args.tasks, name, "mnist,fashion_mnist,animals")
    seq = SequenceConfig(tuple(tasks), args.anchor, config_from(args, args.objective, args.lam, args.seed,
                                                                 dataset=tasks[0]))
    check_output("--json", args.json)
    from ldifs_core import preflight

    preflight.check_sequence(seq.validate(), DOWNLOAD_HINT, load=True)
    store = RunStore(args.store)
    sequence_id, done = plan_or_resume(seq, store)
    if done is not None:
        kept = f"stage(s) 1–{done} are done and kept" if done else "no stage had finished"
        print(f"Resuming sequence {sequence_id}, which stopped before its end: {kept}; it goes on from stage "
              f"{done + 1}.", file=sys.stderr)
    progress = TerminalProgress(stages=len(tasks))
    try:
        state = run_sequence(store, sequence_id, hooks=progress)
    finally:
        progress.close()
    summary = state.to_dict()
    print(sequence_table(summary))
    if args.json:
        write_output("--json", args.json, json.dumps(summary, indent=2), f"; the sequence is kept as {sequence_id}")
    if state.status != "done":
        print(f"error: sequence {sequence_id} {state.status}: {state.message}", file=sys.stderr)
        return 1
    return 0


def cmd_store(args) -> int:
    """Upkeep of the store itself: `store rebuild-index` brings back every run its folders hold."""
    from ldifs_core.store import rebuild_index

    store, added, kept = rebuild_index(args.store)
    aside = f"; the unreadable index is kept as {kept}" if kept else ""
    print(f"Run index of {store.root}: {added} run(s) added from their folders, {len(store.list())} in all{aside}.")
    return 0


def sequence_table(summary: dict) -> str:
    """The forgetting matrix as text: one row per finished stage, one column per dataset, zero-shot / probe."""
    lines = [f"Sequence {summary['sequence_id']}: {summary['objective']} on {' → '.join(summary['tasks'])}, "
             f"anchor {summary['anchor']} — {summary['status']}"]
    matrix = summary["matrix"]
    if matrix is None:
        return "\n".join(lines)
    lines.append("accuracy (%) zero-shot / linear probe after each stage:")
    lines.append(f"{'':<24}" + "".join(f"{d:>18}" for d in matrix["datasets"]))
    rows = [("θ₀", matrix["before"]["zs"], matrix["before"]["lp"])]
    rows += [(f"{k + 1}. {task}", zs, lp) for k, (task, zs, lp) in
             enumerate(zip(summary["tasks"], matrix["zs"], matrix["lp"]))]
    for label, zs, lp in rows:
        lines.append(f"{label:<24}" + "".join(f"{f'{z:.1f} / {p:.1f}':>18}" for z, p in zip(zs, lp)))
    for probe, title in (("zs", "zero-shot"), ("lp", "linear probe")):
        bwt = summary["backward_transfer"][probe]
        unseen = summary["unseen_delta"][probe]
        lines.append(f"{title}: average accuracy over the tasks seen {summary['avg_accuracy'][probe][-1]:.1f}%, "
                     f"backward transfer {'–' if bwt is None else f'{bwt:+.1f}'} pts, change on datasets never "
                     f"trained on {'–' if unseen is None else f'{unseen[-1]:+.1f}'} pts")
    return "\n".join(lines)


def cmd_find_lambda(args) -> int:
    from ldifs_core.lambda_finder import StoreTrial, find_lambda, save_search

    if args.lam is not None:
        raise BadConfig("find-lambda searches λ itself: leave --lam out.")
    base = config_from(args, args.objective, None, args.seed)
    check_output("--json", args.json)
    store = RunStore(args.store)
    trial = StoreTrial(str(store.root))
    kept: Path | None = None  # the search's file in the store, rewritten after each trial

    def tell(search) -> None:
        nonlocal kept
        latest = search.tried[-1] if search.tried else search.ce
        print(f"  {'CE' if latest.lam is None else f'λ = {latest.lam:.4g}'}: run {latest.run_id}"
              f"{' (reused)' if latest.reused else ''}", flush=True)
        kept = save_search(store, search, kept)

    if args.ray is None:
        result = find_lambda(base, trial, args.tolerance, args.budget, on_trial=tell)
    else:
        from ldifs_core import ray_sweep
        from ldifs_core.lambda_tune import find_lambda_on_tune

        with ray_sweep.ray_session(args.ray):
            result = find_lambda_on_tune(base, trial, args.tolerance, args.budget)
    save_search(store, result, kept)
    print(result.summary())
    if args.json:
        write_output("--json", args.json, json.dumps(result.to_dict(), indent=2), "")
    return 0 if result.chosen is not None else 1


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m ldifs_core", description="LDIFS Lab: fine-tune CLIP, measure concept "
                            "forgetting.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_options(sub.add_parser("run", help="fine-tune once and report forgetting"))
    add_run_options(sub.add_parser("sweep", help="grid over objectives, λ values and seeds; a failed run is "
                                   "recorded and the others go on (exit code 1 if any failed)"), sweep=True)
    add_run_options(sub.add_parser("sequence", help="continual fine-tuning: one objective over tasks in order, "
                                   "each stage starting from the last; prints the forgetting matrix"), sequence=True)
    finder = sub.add_parser("find-lambda", help="the λ with the least forgetting whose task accuracy stays within "
                            "--tolerance points of CE's (docs/find-lambda.md); exit code 1 if no λ does")
    add_run_options(finder)
    finder.add_argument("--tolerance", type=float, default=1.0, help="points of task accuracy below CE's allowed")
    finder.add_argument("--budget", type=int, default=8, help="runs at most, the CE reference included (>= 3)")
    finder.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run the trials on Ray Tune: alone, "
                        "on $RAY_ADDRESS if set, else on a Ray instance started here")
    listing = sub.add_parser("list", help="runs in the store (unreadable ones with the reason)")
    listing.add_argument("--dataset")
    listing.add_argument("--objective", choices=RUN_OBJECTIVES)
    listing.add_argument("--status", choices=LISTED_STATUSES)
    show = sub.add_parser("show", help="one run's summary: status, settings, accuracy, forgetting, files")
    show.add_argument("run")
    show.add_argument("--json", action="store_true", help="print the run's whole metrics.json (or status) instead")
    export = sub.add_parser("export", help="a run's metrics, or a sequence's forgetting matrix, as CSV or JSON")
    export.add_argument("run", help="a run id, or a sequence id (seq-…)")
    export.add_argument("--format", choices=("csv", "json"), default="json")
    export.add_argument("--out", type=Path)
    wise = sub.add_parser("wise", help="WiSE-FT: evaluate (1-α)·θ₀ + α·θ of a finished run")
    wise.add_argument("run")
    wise.add_argument("--alphas", default="0,0.25,0.5,0.75,1", help="comma list of α in 0..1")
    add_check_parser(sub)
    stock = sub.add_parser("model-stock", help="Model Stock: merge two finished runs of the same settings (other "
                           "seeds) with θ₀ layer by layer, evaluate and store the merge as a run")
    stock.add_argument("run_a", metavar="RUN_A")
    stock.add_argument("run_b", metavar="RUN_B")
    report = add_report_parser(sub)
    store = sub.add_parser("store", help="upkeep of the run store: `store rebuild-index` rebuilds a lost, emptied or "
                           "unreadable index from the run folders (nothing is deleted)")
    store.add_argument("action", choices=("rebuild-index",))
    for p in (listing, show, export, wise, stock, report, store):
        p.add_argument("--store", type=Path, help=STORE_HELP)
    return parser


COMMANDS = {"run": cmd_run, "check": cmd_check, "sweep": cmd_sweep, "list": cmd_list, "show": cmd_show,
            "export": cmd_export, "wise": cmd_wise, "model-stock": cmd_model_stock, "sequence": cmd_sequence,
            "report": cmd_report, "store": cmd_store, "find-lambda": cmd_find_lambda}


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = show_warning  # one line, like the errors
        try:
            args = build_parser().parse_args(argv)
            code = COMMANDS[args.command](args)
            sys.stdout.flush()  # here, where a closed pipe can still be caught
            return code
        except BrokenPipeError:  # `list | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
            return 128 + signal.SIGPIPE  # what a shell reports for a writer its reader left
        except LabError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        except SystemExit as exit:  # --help
            return exit.code if isinstance(exit.code, int) else 0
