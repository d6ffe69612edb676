"""What one α of a WiSE-FT path costs: the path that measures its mixes together (θ₀'s features, zero-shot heads
and probes once; each mix's tower once per image) against each mix evaluated alone by the ordinary evaluation, as
every α was before (budget: ratio ≤ 0.25). Prints figures, never pass/fail.

Run: `.venv/bin/python benchmarks/wise_bench.py` trains one short run (--steps, default 30: the training does not
change what evaluating it costs) at the default evaluation settings (test and probe subsets, checked datasets) in a
temporary store, then, in the same process and after one warm-up path (decoded data, θ₀'s cached probe features and
heads are then warm for both sides):

- before: each α mixed and evaluated alone (`forgetting_report`, the one evaluation of a run), seconds per α;
- now: `evaluate_mixes` of all the α, and of the first α alone; what each α adds is their difference divided by
  (count − 1), the path's loading and θ₀'s side cancelling out. Its total per α is printed too;
- floor: what the issue names as the path's floor, one forward pass of a mix's image tower over every evaluation
  image (the task's test set, each checked dataset's test and probe-train sets), and its ratio to `before`: the
  least ratio any path can reach that measures each mix on every image.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_RATIO = 0.25


def seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--alphas", default="0,0.25,0.5,0.75,1", help="comma list of α (the CLI's default)")
    args = parser.parse_args(argv)
    alphas = [float(a) for a in args.alphas.split(",")]

    from ldifs_core.config import RunConfig
    from ldifs_core.encoding import encode_images
    from ldifs_core.evaluate import forgetting_report
    from ldifs_core.objectives import OBJECTIVE_TYPES
    from ldifs_core.runner import execute, prepare
    from ldifs_core.store import RunStore
    from ldifs_core.weights import run_weights, tuned_from_weights
    from ldifs_core.wise import evaluate_mixes, mix_weights

    store = RunStore(tempfile.mkdtemp(prefix="wise-bench-"))
    run_id = execute(RunConfig(steps=args.steps, umap_points=0), store)
    cfg, weights = run_weights(store, run_id)
    run = prepare(cfg)
    tuned, final, initial = tuned_from_weights(run.base, weights)
    image_sets = [run.test, *(part for checked in run.others.values() for part in (checked.test, checked.train))]
    images = sum(len(data) for data in image_sets)
    print(f"run {run_id}: {cfg.dataset}, {len(run.others)} checked datasets, {images} evaluation images, "
          f"{len(alphas)} α")
    evaluate_mixes(store, run_id, alphas[:1])  # warm-up: every cache both sides read

    def alone(alpha: float) -> None:
        mixed = mix_weights(run.base.clip, tuned, alpha)
        head = OBJECTIVE_TYPES[cfg.objective].mixed_head(run.base, mixed, initial, final, alpha, run.test)
        forgetting_report(cfg, run.base, mixed.visual, head, run.test, run.others, with_umap=False)

    def one_pass(alpha: float) -> None:
        mixed = mix_weights(run.base.clip, tuned, alpha)
        for data in image_sets:
            encode_images(mixed.visual, data.images, run.base)

    before = sum(seconds(lambda: alone(alpha)) for alpha in alphas) / len(alphas)
    floor = sum(seconds(lambda: one_pass(alpha)) for alpha in alphas) / len(alphas)
    together = seconds(lambda: evaluate_mixes(store, run_id, alphas))
    single = seconds(lambda: evaluate_mixes(store, run_id, alphas[:1]))
    now = (together - single) / (len(alphas) - 1)
    print(f"before: {before:.2f} s per α (each mix evaluated alone)")
    print(f"now:    {now:.2f} s per α added to a path ({together:.2f} s for the path of {len(alphas)} α, "
          f"{together / len(alphas):.2f} s per α all included; {single:.2f} s for one α)")
    print(f"floor:  {floor:.2f} s per α (one forward pass of a mix over the evaluation images), "
          f"{floor / before:.2f} of before")
    print(f"ratio:  {now / before:.2f} (budget ≤ {BUDGET_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
