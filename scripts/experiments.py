"""The science table: concept forgetting of every objective, several tasks and seeds, mean ± std.

Run `python -m scripts.experiments` (add `--datasets fashion_mnist` to split the work across
processes; finished runs already in the store are reused, so an interrupted table resumes). With `--sequence`,
the continual table: each method fine-tuned over a sequence of tasks (finished stages are reused likewise). With
`--lambda-grid --out assets/lambda_grid.json`, the Learn page's λ grid (see scripts/lambda_grid.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from ldifs_core.config import DEFAULT_LAMBDA, OBJECTIVES, REGULARISED, RunConfig
from ldifs_core.lambda_grid import GRID_PATH, save_grid
from ldifs_core.reuse import finished_run
from ldifs_core.merging import NAME as MODEL_STOCK
from ldifs_core.merging import model_stock_run
from ldifs_core.runner import execute
from ldifs_core.store import RunStore
from ldifs_core.wise import wise_ft_metrics
from scripts import lambda_grid as grid

WISE_ALPHA = 0.5
METHOD_ORDER = (*OBJECTIVES, f"wise-ft (α={WISE_ALPHA}, of ce)")  # model_stock: of ce, seeds s and s + 1


def run_grid(store: RunStore, datasets: list[str], seeds: list[int], objectives: tuple[str, ...] = OBJECTIVES,
             **settings) -> list[dict]:
    """One row per (dataset, seed, method) with downstream accuracy and mean forgetting (model_stock: merges of
    ce's runs, see model_stock_rows)."""
    rows = []
    for dataset in datasets:
        for seed in seeds:
            for objective in objectives:
                if objective == MODEL_STOCK:
                    continue
                run_id = default_run(store, dataset, objective, seed, settings)
                rows.append(row(dataset, seed, objective, store.metrics(run_id)))
                print(json.dumps(rows[-1]), flush=True)
                if objective == "ce":
                    rows.append(row(dataset, seed, METHOD_ORDER[-1], wise_ft_metrics(store, run_id, WISE_ALPHA)))
                    print(json.dumps(rows[-1]), flush=True)
        if MODEL_STOCK in objectives:
            rows += model_stock_rows(store, dataset, seeds, settings)
    return rows


def default_run(store: RunStore, dataset: str, objective: str, seed: int, settings: dict) -> str:
    """The finished run of `objective` at its defaults, trained now unless the store has it."""
    # λ written out, so a stored run keeps saying which λ it ran with if a default changes later
    lam = DEFAULT_LAMBDA[objective] if objective in REGULARISED else None
    cfg = RunConfig(dataset=dataset, objective=objective, lam=lam, seed=seed, umap_points=0, **settings).validate()
    return finished_run(store, cfg) or execute(cfg, store)


def model_stock_rows(store: RunStore, dataset: str, seeds: list[int], settings: dict) -> list[dict]:
    """Model Stock of the ce runs, seed by seed: seed s merges ce's seed s with the next seed of the list (the last
    with the first), so each seed's row is one merge of two ce runs."""
    if len(seeds) < 2:
        raise ValueError("model_stock rows merge two ce runs of other seeds: give at least two seeds")
    ce = {seed: default_run(store, dataset, "ce", seed, settings) for seed in seeds}
    rows = []
    for seed, partner in zip(seeds, [*seeds[1:], seeds[0]]):
        rows.append(row(dataset, seed, MODEL_STOCK, store.metrics(model_stock_run(store, ce[seed], ce[partner]))))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def row(dataset: str, seed: int, method: str, metrics: dict) -> dict:
    return {"dataset": dataset, "seed": seed, "method": method,
            "accuracy_after": metrics["downstream"]["accuracy_after"],
            "zero_shot_before": metrics["downstream"]["zero_shot_before"],
            "mean_zs_delta": metrics["mean_zs_delta"], "mean_lp_delta": metrics["mean_lp_delta"]}


def mean_std(values: list[float]) -> str:
    """Mean ± standard deviation over seeds; a single seed shows its value alone (it has no spread to show)."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def markdown_table(rows: list[dict]) -> str:
    datasets = sorted({r["dataset"] for r in rows}, key=[r["dataset"] for r in rows].index)
    header = "| method | " + " | ".join(f"{d}: accuracy | {d}: ZS Δ | {d}: LP Δ" for d in datasets) + " |"
    lines = [header, "|---" * (1 + 3 * len(datasets)) + "|"]
    for method in METHOD_ORDER:
        cells = []
        for d in datasets:
            picked = [r for r in rows if r["dataset"] == d and r["method"] == method]
            if not picked:
                cells += ["–"] * 3
                continue
            cells += [mean_std([r[k] for r in picked]) for k in ("accuracy_after", "mean_zs_delta", "mean_lp_delta")]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    zero_shot = {d: statistics.mean(r["zero_shot_before"] for r in rows if r["dataset"] == d) for d in datasets}
    lines.append("| zero-shot before | " + " | ".join(f"{zero_shot[d]:.1f} | | " for d in datasets) + " |")
    return "\n".join(lines)


# -- continual fine-tuning (`--sequence`): one sequence of tasks per method and seed ---------------------------

SEQUENCE_TASKS = "mnist,fashion_mnist,animals"
SEQUENCE_METHODS = (("ce", "previous"), ("ldifs", "previous"), ("ldifs", "original"), ("l2sp", "previous"))


def sequence_method(objective: str, anchor: str) -> str:
    return f"{objective} (anchor {anchor})" if objective in ("ldifs", "l2sp") else objective


def run_sequences(store: RunStore, tasks: list[str], seeds: list[int], methods: list[str] | None = None,
                  train: bool = True, **settings) -> list[dict]:
    """One row per (method, seed): the final average accuracy over the tasks, backward transfer and the change on
    the datasets never trained on, zero-shot and linear probe. Finished stages in the store are reused; `methods`
    (names as in the table) picks some, so that processes can share the work; without `train` only sequences
    already finished are tabulated."""
    from ldifs_core.sequence import SequenceConfig, find_sequence, plan_sequence, run_sequence, sequence_state

    rows = []
    for seed in seeds:
        for objective, anchor in SEQUENCE_METHODS:
            if methods is not None and sequence_method(objective, anchor) not in methods:
                continue
            seq = SequenceConfig(tuple(tasks), anchor, RunConfig(objective=objective, seed=seed, umap_points=0,
                                                                 **settings)).validate()
            sequence_id = find_sequence(store, seq)
            if not train:
                if sequence_id is None or sequence_state(store, sequence_id).status != "done":
                    continue
                state = sequence_state(store, sequence_id)
            else:
                sequence_id = sequence_id or plan_sequence(seq, store)
                state = run_sequence(store, sequence_id)
            if state.status != "done":
                print(f"sequence {sequence_id} {state.status}: {state.message}", file=sys.stderr, flush=True)
                continue
            summary = state.to_dict()
            rows.append({"method": sequence_method(objective, anchor), "seed": seed, "sequence_id": sequence_id,
                         "unseen": summary["matrix"]["unseen"],
                         **{f"{key}_{probe}": final(summary[key][probe])
                            for key in ("avg_accuracy", "backward_transfer", "unseen_delta") for probe in ("zs", "lp")},
                         "total_s": sum(store.metrics(run_id)["timings"]["total_s"] for run_id in summary["stages"])})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def final(value: list[float] | float | None) -> float | None:
    """After the last stage: the last of a per-stage list, or the number itself."""
    return value[-1] if isinstance(value, list) else value


def sequence_table(rows: list[dict]) -> str:
    unseen = ", ".join(rows[0]["unseen"]) if rows else "–"
    columns = [("avg_accuracy", "final avg. accuracy"), ("backward_transfer", "backward transfer"),
               ("unseen_delta", f"Δ {unseen}")]
    header = "| method | seeds | " + " | ".join(f"{title} ({probe.upper()})" for _, title in columns
                                              for probe in ("zs", "lp"))
    lines = [header + " |", "|---" * (2 + 2 * len(columns)) + "|"]
    for objective, anchor in SEQUENCE_METHODS:
        picked = [r for r in rows if r["method"] == sequence_method(objective, anchor)]
        if picked:
            spread = mean_std if len(picked) > 1 else lambda values: f"{values[0]:.1f}"  # no std from one seed
            cells = [spread([r[f"{key}_{probe}"] for r in picked]) for key, _ in columns for probe in ("zs", "lp")]
            seeds = ",".join(str(r["seed"]) for r in picked)
            lines.append(f"| {sequence_method(objective, anchor)} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence", action="store_true", help="continual fine-tuning instead: each method over "
                        "--tasks in order (default " + SEQUENCE_TASKS + ")")
    parser.add_argument("--lambda-grid", action="store_true", help="instead: the Learn page's λ grid (ce and "
                        "ldifs per λ in --lambdas on --datasets, --seeds), written to --out")
    parser.add_argument("--lambdas", default=",".join(f"{lam:g}" for lam in grid.GRID_LAMBDAS),
                        help="with --lambda-grid: the λ values (0 = plain ce)")
    parser.add_argument("--out", type=Path, default=GRID_PATH, help="with --lambda-grid: where the grid goes "
                        "(default assets/lambda_grid.json)")
    parser.add_argument("--no-train", action="store_true", help="with --lambda-grid: tabulate the runs already "
                        "finished in the store, train nothing, and list the missing ones")
    parser.add_argument("--tasks", default=SEQUENCE_TASKS, help="with --sequence: the tasks in order")
    parser.add_argument("--table-only", action="store_true", help="with --sequence: tabulate the sequences already "
                        "finished in the store, train nothing")
    parser.add_argument("--methods", help="with --sequence: a comma list of the table's methods to run, e.g. "
                        "'ce,ldifs (anchor previous)' (default: all), to share the work between processes")
    parser.add_argument("--datasets", default="mnist,fashion_mnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES),
                        help="comma list of objectives (default: all; wise-ft rows come with ce; model_stock "
                        "merges ce's runs of seed s and the next seed)")
    parser.add_argument("--store", type=Path, help="run store (default: $LDIFS_STORE or ./runs)")
    parser.add_argument("--rows", type=Path, help="also write the per-run rows as JSON")
    parser.add_argument("--table", type=Path, nargs="+", metavar="ROWS",
                        help="run nothing: print the table of these rows files (filtered by --datasets, --seeds)")
    parser.add_argument("--eval-limit", type=int, default=RunConfig.eval_limit, help="test images per dataset")
    parser.add_argument("--probe-limit", type=int, default=RunConfig.probe_limit, help="probe images per class")
    args = parser.parse_args(argv)
    datasets, seeds = [d for d in args.datasets.split(",") if d], [int(s) for s in args.seeds.split(",")]
    if args.table:
        rows = [r for path in args.table for r in json.loads(path.read_text())
                if r["dataset"] in datasets and r["seed"] in seeds]
        print(markdown_table(rows))
        return 0
    store = RunStore(args.store)
    if args.lambda_grid:
        try:
            lambdas = [float(lam) for lam in args.lambdas.split(",") if lam]
        except ValueError:
            lambdas = []
        if not lambdas or not all(0 <= lam < float("inf") for lam in lambdas):
            parser.error(f"--lambdas {args.lambdas!r}: give λ values >= 0 separated by commas, e.g. 0,1,3,10,30,100")
        result = grid.build_grid(store, datasets, lambdas, seeds, not args.no_train, eval_limit=args.eval_limit,
                                 probe_limit=args.probe_limit)
        save_grid(result, args.out)
        gaps = ", ".join(f"{g.task} λ={g.lam:g} seed {g.seed}" for g in result.missing)
        print(f"wrote {args.out}: {len(result.cells)} (task, λ) cells" + (f"; missing {gaps}" if gaps else ""))
        return 0
    if args.sequence:
        rows = run_sequences(store, [t for t in args.tasks.split(",") if t], seeds,
                             args.methods.split(",") if args.methods else None, not args.table_only,
                             eval_limit=args.eval_limit, probe_limit=args.probe_limit)
        if args.rows:
            args.rows.write_text(json.dumps(rows, indent=2))
        print(sequence_table(rows))
        return 0
    objectives = tuple(o for o in args.objectives.split(",") if o)
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        parser.error(f"unknown objective(s) {', '.join(unknown)}: use {', '.join(OBJECTIVES)}")
    rows = run_grid(store, datasets, seeds, objectives, eval_limit=args.eval_limit, probe_limit=args.probe_limit)
    if args.rows:
        args.rows.write_text(json.dumps(rows, indent=2))
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
