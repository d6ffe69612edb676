"""The real-scale data path, measured: time from a fresh process to the first training step, cold (nothing
decoded yet) and warm (the decoded-image cache filled by the cold run), and the peak memory of the process.

Fabricated data (written once under --data, default /tmp/ldifs-bench-data): EuroSAT in torchvision's on-disk
layout (27,000 64-px JPEGs, its real size) and a 40,000-image ImageFolder of 96-px JPEGs (40 classes). The model is
open_clip ViT-B-32 with random weights from a local checkpoint (224 px), on the CPU; default limits, 2 steps at
batch 8. Each measured run is a new process that stops once training is done: the forgetting report of a
ViT-B-32 on 2 CPU cores takes minutes and is not what this measures.

Run: `.venv/bin/python benchmarks/data_bench.py [--data DIR]`. Figures, budgets and ratios; never pass/fail.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGETS = {"cold_s": 120.0, "warm_s": 20.0, "peak_rss_gb": 4.0}
EUROSAT = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake")


def write_jpegs(jobs: list[tuple[Path, int, int]]) -> None:
    """(path, size, seed) -> a smooth coloured JPEG with some texture (photo-like sizes on disk)."""
    import numpy as np
    from PIL import Image

    for path, size, seed in jobs:
        rng = np.random.default_rng(seed)
        ramp = np.linspace(0, 1, size)[:, None, None]
        pixels = rng.integers(0, 256, 3) * ramp + rng.integers(0, 256, 3) * (1 - ramp)
        pixels = np.clip(pixels + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)


def fabricate(data: Path) -> tuple[Path, Path, Path]:
    from concurrent.futures import ProcessPoolExecutor

    eurosat_root, folder = data / "torchvision", data / "photos40k"
    jobs = [(eurosat_root / "eurosat" / "2750" / c / f"{c}_{i + 1}.jpg", 64, k * 10_000 + i)
            for k, c in enumerate(EUROSAT) for i in range(2700)]
    jobs += [(folder / f"class_{c:02d}" / f"{i:04d}.jpg", 96, 10**6 + c * 10_000 + i) for c in range(40)
             for i in range(1000)]
    todo = [job for job in jobs if not job[0].is_file()]
    if todo:
        print(f"writing {len(todo):,} fabricated JPEGs under {data} (once)…", flush=True)
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(write_jpegs, [todo[i:i + 500] for i in range(0, len(todo), 500)]))
    checkpoint = data / "vit_b_32_random.pt"
    if not checkpoint.is_file():
        import open_clip
        import torch

        torch.manual_seed(0)
        clip, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
        torch.save(clip.state_dict(), checkpoint)
    return eurosat_root, folder, checkpoint


def child(args: argparse.Namespace) -> None:
    """One measured run in this (fresh) process: prints a JSON line."""
    from ldifs_core.config import RunConfig
    from ldifs_core.hooks import RunHooks
    from ldifs_core.runner import execute
    from ldifs_core.store import RunStore

    first_step: list[float] = []

    class TwoSteps(RunHooks):
        """Notes when each step ends and stops after the second: only the time to the first step is measured."""

        def step(self, event) -> None:
            first_step.append(time.perf_counter() - START)

        def should_stop(self) -> bool:
            return len(first_step) >= 2

    cfg = RunConfig(dataset=args.dataset, objective="ldifs", model="ViT-B-32", pretrained=args.checkpoint, steps=2,
                    batch_size=8, data_root=args.data_root, eval_datasets=args.eval_datasets.split(","),
                    save_weights=False)
    execute(cfg, RunStore(Path(args.store)), hooks=TwoSteps())
    print(json.dumps({"first_step_s": first_step[0],
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "workers_peak_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20}))


def measure(label: str, dataset: str, eval_datasets: str, eurosat_root: Path, checkpoint: Path,
            cache: Path, store: Path) -> dict:
    env = {**os.environ, "LDIFS_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, __file__, "--child", "--dataset", dataset, "--eval-datasets", eval_datasets,
                          "--data-root", str(eurosat_root), "--checkpoint", str(checkpoint), "--store", str(store)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{label}: the run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def line(label: str, value: float, unit: str, budget: float) -> None:
    print(f"{label:<66} {value:8.1f} {unit:<3} budget {budget:g} {unit}   ratio {value / budget:5.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "ldifs-bench-data")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--dataset", "--eval-datasets", "--data-root", "--checkpoint", "--store"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    eurosat_root, folder, checkpoint = fabricate(args.data)
    print(f"{os.cpu_count()} cores; ViT-B-32 (random weights, local checkpoint) on the CPU; 2 steps at batch 8, "
          f"default limits (10,000 training images, 1,000 test images per dataset, 100 probe images per class)")
    cases = [("EuroSAT, torchvision layout (27,000 images at 64 px)", "eurosat", "mnist,fashion_mnist,quickdraw,animals"),
             ("ImageFolder of 40,000 96-px JPEGs, EuroSAT checked too", str(folder), "eurosat,mnist,animals")]
    with tempfile.TemporaryDirectory(prefix="ldifs-data-bench-") as scratch:
        for label, dataset, checked in cases:
            cache, store = Path(scratch) / f"cache-{dataset[-6:]}", Path(scratch) / "store"
            cold = measure(label, dataset, checked, eurosat_root, checkpoint, cache, store)
            warm = measure(label, dataset, checked, eurosat_root, checkpoint, cache, store)
            print(f"\n{label}")
            line("  cold: fresh process to the first training step", cold["first_step_s"], "s", BUDGETS["cold_s"])
            line("  warm (decoded images cached): fresh process to the first step", warm["first_step_s"], "s",
                 BUDGETS["warm_s"])
            line("  peak RSS of the run's process (cold / warm: the larger)",
                 max(cold["peak_rss_gb"], warm["peak_rss_gb"]), "GB", BUDGETS["peak_rss_gb"])
            print(f"  {'largest decoding worker process (cold)':<64} {cold['workers_peak_rss_gb']:8.1f} GB")
            size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**30
            print(f"  {'decoded-image cache on disk':<64} {size:8.1f} GB")


if __name__ == "__main__":
    main()
