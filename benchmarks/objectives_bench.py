"""Step time of every objective relative to `ce` on the same batch, and what `lora` trains (figures, never pass/fail).

Run: `.venv/bin/python benchmarks/objectives_bench.py [--repeats 30] [--batch-size 64] [--objectives ce,fda,spd]`
(`make bench` runs it too).
Each objective is built as the training loop builds it (its own head, its own trainable parameters, train mode)
and timed interleaved with the others, so a busy machine slows all of them alike; the figure is the median step.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ldifs_core.config import TRAINED, RunConfig  # noqa: E402
from ldifs_core.datasets import load_split  # noqa: E402
from ldifs_core.encoding import model_inputs  # noqa: E402
from ldifs_core.models import load_model  # noqa: E402
from ldifs_core.objectives import OBJECTIVE_TYPES, Batch, TrainingSetup  # noqa: E402
from ldifs_core.train import set_training_mode  # noqa: E402

CPU = torch.device("cpu")


def build(objective: str, base, data, batch_size: int):
    """An objective, its optimiser (its own: spd's projects) and its trainable parameters, as `finetune` sets
    them up."""
    cfg = RunConfig(objective=objective, batch_size=batch_size, train_limit=len(data), probe_limit=10).validate()
    kind = OBJECTIVE_TYPES[objective]
    tuned = copy.deepcopy(base.clip)
    built = kind(TrainingSetup(cfg, base, tuned, kind.initial_head(cfg, base, data), data, CPU))
    trainable = built.trainable_parameters()
    for p in trainable:
        p.requires_grad_(True)
    set_training_mode(tuned, cfg, built)
    return built, built.make_optimizer(trainable), trainable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--objectives", default=",".join(TRAINED), help="comma list (default: every one that trains; "
                        "ce is always timed, as the reference)")
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(["ce", *(name for name in args.objectives.split(",") if name)]))

    base = load_model().private_copy()
    data = load_split("mnist", "train").subset(args.batch_size)
    batch = Batch(model_inputs(base, data.images, CPU), data.labels, torch.arange(len(data)))
    contenders = {name: build(name, base, data, args.batch_size) for name in names}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, (objective, optimizer, trainable) in contenders.items():
            started = time.perf_counter()
            loss, _ = objective.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            times[name].append(time.perf_counter() - started)

    ms = {name: 1000 * statistics.median(t[3:]) for name, t in times.items()}
    print(f"Step time per objective, batch {args.batch_size}, same batch, interleaved, median of "
          f"{args.repeats - 3} steps ({torch.get_num_threads()} threads):")
    print(f"{'objective':<10} {'step ms':>9} {'/ ce':>6} {'trainable params':>17}")
    for name, (_, _, trainable) in contenders.items():
        print(f"{name:<10} {ms[name]:9.1f} {ms[name] / ms['ce']:6.2f} {sum(p.numel() for p in trainable):17,}")
    if "lora" not in contenders:
        return
    tower = sum(p.numel() for p in base.clip.visual.parameters())
    _, _, lora = contenders["lora"]
    head = sum(p.numel() for p in contenders["lora"][0].setup.head.parameters())
    adapters = sum(p.numel() for p in lora) - head
    cfg = RunConfig()
    print(f"lora (r = {cfg.lora_rank}): {adapters:,} adapter parameters + {head:,} head = "
          f"{adapters / tower:.1%} of the image tower's {tower:,}; step ratio to ce {ms['lora'] / ms['ce']:.2f}")


if __name__ == "__main__":
    main()
