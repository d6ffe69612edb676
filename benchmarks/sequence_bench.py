"""What a sequence costs beyond its runs: a 3-stage sequence at the default run settings against 3 × a single run
(budget: ratio ≤ 1.10). Prints figures, never pass/fail.

A stage is a single run of its task (the same training and the same report on the same number of checked
datasets) plus the sequence's own work: loading the previous stage's weights and the report on the stage's own task
(the matrix's diagonal), which each stage times itself (`timings.sequence_s`), and the matrix kept after each stage
(milliseconds). The single-run equivalent of a stage is its total minus that work. For stages recorded before
`sequence_s` existed, the extra work is measured afresh on the finished stages, at another moment than their totals
(noisy on a shared machine).

Run: `.venv/bin/python benchmarks/sequence_bench.py` runs one 3-stage LDIFS sequence (mnist → fashion_mnist →
animals, quickdraw never trained, UMAP off as in the science table) in a temporary store first — as long as three
default runs. `--store DIR` instead measures every finished 3-stage sequence already in DIR (e.g. the science
table's store), whose total times were taken when those runs ran.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_RATIO = 1.10


def sequence_overhead_s(store, state) -> list[float]:
    """Seconds of sequence-only work per stage: as the stage itself timed it (`timings.sequence_s`, same moment as
    its total), or, for stages run before that was recorded, measured now on the finished stages."""
    recorded = [store.metrics(stage.run_id)["timings"].get("sequence_s") for stage in state.stages]
    if None not in recorded:
        return recorded
    from ldifs_core.runner import evaluation_data, prepare, stage_task_report, starting_clip
    from ldifs_core.sequence import forgetting_matrix
    from ldifs_core.weights import run_weights, tuned_from_weights

    seconds, finished = [], []
    for stage in state.stages:
        cfg = store.get(stage.run_id).config
        run = prepare(cfg)  # a single run loads the same (cached here as in a long-lived process)
        started = time.perf_counter()
        starting_clip(store, cfg, run.base)
        load_s = time.perf_counter() - started
        _, weights = run_weights(store, stage.run_id)
        tuned = tuned_from_weights(run.base, weights)[0]
        started = time.perf_counter()
        stage_task_report(cfg, run, tuned.visual, evaluation_data(cfg, cfg.dataset, run.base.image_size))
        report_s = time.perf_counter() - started
        finished.append(store.metrics(stage.run_id))
        started = time.perf_counter()
        json.dumps(forgetting_matrix(state.config, finished).to_dict())  # the record's write itself: milliseconds
        seconds.append(load_s + report_s + time.perf_counter() - started)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="measure the finished 3-stage sequences in this store instead")
    args = parser.parse_args(argv)

    from ldifs_core.config import RunConfig
    from ldifs_core.sequence import SequenceConfig, plan_sequence, run_sequence, sequence_state
    from ldifs_core.sequence_records import sequence_ids
    from ldifs_core.store import RunStore

    if args.store is None:
        store = RunStore(tempfile.mkdtemp(prefix="sequence-bench-"))
        seq = SequenceConfig(("mnist", "fashion_mnist", "animals"), "previous", RunConfig(umap_points=0))
        started = time.perf_counter()
        run_sequence(store, plan_sequence(seq, store))
        print(f"3-stage sequence at the default settings, wall time: {time.perf_counter() - started:.0f} s")
    else:
        store = RunStore(args.store)
    states = [sequence_state(store, sid) for sid in sequence_ids(store)]
    states = [s for s in states if s.status == "done" and len(s.stages) == 3]
    if not states:
        print("No finished 3-stage sequence to measure.")
        return 1
    ratios = []
    print(f"{'sequence':<28} {'method':<22} {'stages total':>12} {'extra work':>11} {'3 × single':>11} {'ratio':>6}")
    for state in states:
        totals = [store.metrics(stage.run_id)["timings"]["total_s"] for stage in state.stages]
        extra = sequence_overhead_s(store, state)
        singles = sum(totals) - sum(extra)
        ratios.append(sum(totals) / singles)
        method = f"{state.config.base.objective} (anchor {state.config.anchor})"
        print(f"{state.sequence_id:<28} {method:<22} {sum(totals):>10.0f} s {sum(extra):>9.1f} s {singles:>9.0f} s "
              f"{ratios[-1]:>6.3f}")
    print(f"3-stage sequence / 3 × single run: median ratio {statistics.median(ratios):.3f} over {len(ratios)} "
          f"sequence(s); budget {BUDGET_RATIO:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
