"""Speed figures of the core, printed with their budgets and ratios (figures, never pass/fail).

Run: `.venv/bin/python benchmarks/core_bench.py` (the Makefile's `make bench` runs every benchmark).
Budgets are for 2 CPU cores; numbers vary with whatever else the machine is doing.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def report(label: str, seconds: float, budget: float | None = None, unit: str = "s") -> None:
    value = seconds * 1000 if unit == "ms" else seconds
    line = f"{label:<58} {value:9.2f} {unit}"
    if budget is not None:
        line += f"   budget {budget:g} {unit}   ratio {value / budget:5.2f}"
    print(line, flush=True)


def fresh_process_load() -> float:
    """Model + every bank split, in a new interpreter, imports excluded (they are start-up, not loading)."""
    code = ("import time, ldifs_core.models as m, ldifs_core.datasets as d\n"
            "t = time.perf_counter(); m.load_model()\n"
            "[d.load_split(n, s) for n in d.BANK_NAMES for s in ('train', 'test')]\n"
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def step_milliseconds(repeats: int = 40) -> dict[str, float]:
    """Median optimizer-step time of each objective on the same batch of 64, measured interleaved."""
    import copy
    import dataclasses

    import torch

    from ldifs_core.config import RunConfig
    from ldifs_core.datasets import load_split
    from ldifs_core.encoding import model_inputs
    from ldifs_core.models import load_model
    from ldifs_core.objectives import Batch, Objective, TrainingSetup
    from ldifs_core.objectives.ldifs import LDIFS

    base = load_model().private_copy()
    data = load_split("mnist", "train").subset(64)
    batch = Batch(model_inputs(base, data.images, torch.device("cpu")), data.labels, torch.arange(64))

    def setup(kind, **settings):
        tuned = copy.deepcopy(base.clip)
        tuned.visual.train().requires_grad_(True)
        head = torch.nn.Linear(base.clip.visual.output_dim, 10)
        cfg = dataclasses.replace(RunConfig(objective=kind.name, train_limit=64), **settings)
        objective = kind(TrainingSetup(cfg, base, tuned, head, data, torch.device("cpu")))
        return objective, torch.optim.AdamW([*tuned.visual.parameters(), *head.parameters()], lr=1e-4)

    contenders = {
        "ce": setup(Objective),
        "ldifs": setup(LDIFS),
        "ldifs, frozen features precomputed": setup(LDIFS, precompute_frozen=True),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, (objective, optimizer) in contenders.items():
            started = time.perf_counter()
            loss, _ = objective.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(t[5:]) for name, t in times.items()}


def main() -> None:
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs\n")
    report("load embedded model + whole concept bank (fresh process)", fresh_process_load(), 3)

    from ldifs_core.datasets import BANK_NAMES, load_split
    from ldifs_core.encoding import encode_images
    from ldifs_core.models import load_model

    model = load_model()
    tests = [load_split(n, "test") for n in BANK_NAMES]
    encode_images(model.clip.visual, tests[0].images[:256], model)
    started = time.perf_counter()
    for data in tests:
        encode_images(model.clip.visual, data.images, model)
    n = sum(len(t) for t in tests)
    report(f"encode every test image of every domain ({n} images)", time.perf_counter() - started, 10)

    steps = step_milliseconds()
    for name, ms in steps.items():
        report(f"{name} step, batch 64 (same batch, interleaved)", ms / 1000, unit="ms")
    print(f"{'ratio ldifs / ce step (budget 1.4)':<58} {steps['ldifs'] / steps['ce']:9.2f}")
    print(f"{'ratio ldifs precomputed / ce step':<58} "
          f"{steps['ldifs, frozen features precomputed'] / steps['ce']:9.2f}")

    from ldifs_core.probe import fit_linear_probe

    features = torch.nn.functional.normalize(torch.randn(10_000, 128) + torch.randn(10, 128).repeat(1000, 1), dim=1)
    labels = torch.arange(10).repeat(1000)
    started = time.perf_counter()
    fit_linear_probe(features, labels, 10)
    report("linear-probe fit, 10k x 128 features, 10 classes", time.perf_counter() - started, 2)

    from ldifs_core.drift import warm_umap

    warm_umap()  # what the app does once at start-up; the CLI then finds numba's on-disk cache warm
    with tempfile.TemporaryDirectory() as store:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ldifs_core", "run", "--store", store], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report("default run: CLI, 300 steps at batch 64, full report + UMAP", time.perf_counter() - started, 45)
        report("WiSE-FT path, 5 α values, default report (as the app's worker runs it)", wise_path_seconds(store), 10)


def wise_path_seconds(store_dir: str) -> float:
    """The α path 0, 0.25, …, 1 of the run just made, in this process, cold caches (what one worker job costs)."""
    from ldifs_core.store import RunStore
    from ldifs_core.wise import wise_ft_path

    store = RunStore(store_dir)
    (run,) = store.list(status="done")
    started = time.perf_counter()
    wise_ft_path(store, run.run_id, [0.0, 0.25, 0.5, 0.75, 1.0])
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
