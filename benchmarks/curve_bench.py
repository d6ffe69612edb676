"""What the forgetting-over-training curve costs: a default run with the curve on and off, same seed, in the same
process (budget: on / off ≤ 1.15). Prints both wall times, the ratio, and whether the final metrics are the same
(they must be). Figures, never pass/fail.

Run: `.venv/bin/python benchmarks/curve_bench.py` (two default runs: a few minutes on 2 CPU cores); `--steps N`
shortens both runs (the curve keeps its 20 points, so a short run overstates the ratio), `--repeats R` alternates
R pairs and reports the medians. A first untimed run warms the caches (decoded images, zero-shot heads).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_RATIO = 1.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps of both runs (default: a default "
                        "run's)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    from ldifs_core.config import RunConfig
    from ldifs_core.runner import execute
    from ldifs_core.store import RunStore

    cfg = RunConfig() if args.steps is None else RunConfig(steps=args.steps)
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder))
        execute(replace(cfg, steps=2, umap_points=0), store)  # warm-up: decoding and heads are paid once a machine
        seconds: dict[bool, list[float]] = {True: [], False: []}
        metrics: dict[bool, dict] = {}
        for _ in range(args.repeats):
            for on in (False, True):
                started = time.perf_counter()
                run_id = execute(replace(cfg, curve_points=cfg.curve_points if on else 0), store)
                seconds[on].append(time.perf_counter() - started)
                metrics[on] = store.metrics(run_id)
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    same = all(metrics[True][key] == metrics[False][key] for key in ("downstream", "forgetting", "mean_zs_delta"))
    points = len(metrics[True]["curve"]["points"])
    print(f"{cfg.describe()}, curve of {points} points on {cfg.curve_images} images per dataset")
    print(f"{'run with the curve off':<40} {off:8.2f} s")
    print(f"{'run with the curve on':<40} {on:8.2f} s")
    print(f"{'ratio on / off':<40} {on / off:8.3f}   budget {BUDGET_RATIO}")
    print(f"{'final metrics the same':<40} {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
