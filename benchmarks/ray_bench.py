"""Overhead of a sweep on Ray (a local instance) over the sequential sweep: 4 default runs, each from the CLI.

Run: `.venv/bin/python benchmarks/ray_bench.py [RUN FLAGS]` (also part of `make bench`). The grid is ce and
ldifs × seeds 0, 1 at the default settings; flags given (e.g. `--steps 40 --no-umap`) go to both sweeps, for a
quicker, smaller figure on a busy machine (shorter runs make Ray's fixed seconds weigh more, never less).
Sequential: one run after another, each with every core. On Ray: a local instance sized to the machine, Ray's
start, the upload of the project, worker start-up and shutdown all counted, twice: with every core per trial (one
trial at a time, as many torch threads as the sequential runs: Ray's own overhead) and with one CPU per trial (the
default: trials side by side, one thread each). Budget: Ray's wall time ≤ 1.15 × the sequential one. Figures
vary with whatever else the machine is doing; on a busy machine, single-threaded trials side by side suffer less
from the contention than two-threaded runs, so the default can even come out ahead.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = ["sweep", "--objectives", "ce,ldifs", "--seeds", "0,1"]
BUDGET = 1.15
HEADLINES = (("downstream", "accuracy_after"), ("mean_zs_delta",), ("mean_lp_delta",))


def timed_sweep(folder: Path, name: str, *flags: str) -> tuple[float, list[dict]]:
    """Wall time of the CLI sweep and its --json (one entry per run)."""
    out = folder / f"{name}.json"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ldifs_core", *GRID, "--store", str(folder / name), "--json", str(out),
                    *flags], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, json.loads(out.read_text())


def headline(metrics: dict, path: tuple[str, ...]) -> float:
    for key in path:
        metrics = metrics[key]
    return float(metrics)


def main(run_flags: list[str]) -> None:
    settings = " ".join(run_flags) or "the default settings"
    print(f"{os.cpu_count()} CPUs; grid: {' '.join(GRID[1:])} at {settings} (4 runs)\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sequential_s, sequential = timed_sweep(folder, "sequential", *run_flags)
        print(f"{'sequential sweep, 4 runs':<50} {sequential_s:8.1f} s", flush=True)
        cores = str(os.cpu_count())
        for label, name, flags in ((f"--ray --cpus-per-trial {cores} (one trial at a time)", "ray_whole",
                                    ("--cpus-per-trial", cores)),
                                   ("--ray (1 CPU per trial, side by side)", "ray", ())):
            ray_s, on_ray = timed_sweep(folder, name, *run_flags, "--ray", *flags)
            print(f"{label:<50} {ray_s:8.1f} s   budget {BUDGET:.2f} x sequential   ratio {ray_s / sequential_s:5.2f}",
                  flush=True)
    run_s = lambda runs: sum(run["timings"]["total_s"] for run in runs)
    print(f"{'sum of the runs own times, sequential / on Ray':<50} {run_s(sequential):8.1f} / {run_s(on_ray):.1f} s")
    largest = max(abs(headline(a, path) - headline(b, path)) for a, b in zip(sequential, on_ray) for path in HEADLINES)
    print(f"{'largest difference of a headline number (points)':<50} {largest:8.2f}   (1 vs {os.cpu_count()} torch "
          f"threads: summation order)")


if __name__ == "__main__":
    main(sys.argv[1:])
