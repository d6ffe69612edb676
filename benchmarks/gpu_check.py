"""The accelerator check, prepared to run in one short call on a GPU machine (it also runs on a CPU).

1. One whole `runner.execute` on fabricated data with a real open_clip ViT-B-32 (random weights, loaded from a
   local checkpoint through the lab's one model loader): decoding, training, the forgetting report, UMAP and a
   WiSE-FT mix, on the chosen device.
2. The training step's throughput for `ce`, `ldifs`, `ldifs` with precomputed frozen features, and the authors'
   released step shape (below), on the same batch, interleaved round by round, with images/s and ratios.

The released code's LDIFS step runs the tuned encoder twice (once for the logits, once more for the tapped
features), plus the frozen encoder's pass, in fp32. That shape is rebuilt here, in the benchmark only, from the
lab's own tap primitives, so the comparison isolates the step's structure and precision.

Run: `.venv/bin/python benchmarks/gpu_check.py [--device cuda] [--batch-size 128] [--rounds 3] [--steps 6]`.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from ldifs_core.config import RunConfig  # noqa: E402
from ldifs_core.datasets import ImageSet  # noqa: E402
from ldifs_core.encoding import model_inputs  # noqa: E402
from ldifs_core.hooks import RunHooks  # noqa: E402
from ldifs_core.ldifs import distance_from_taps, forward_with_taps  # noqa: E402
from ldifs_core.models import describe_device, load_model, pick_device  # noqa: E402
from ldifs_core.objectives import OBJECTIVE_TYPES, TrainingSetup  # noqa: E402
from ldifs_core.runner import execute  # noqa: E402
from ldifs_core.store import RunStore  # noqa: E402
from ldifs_core.train import finetune, host_read_interval  # noqa: E402
from ldifs_core.wise import wise_ft_metrics  # noqa: E402

LAM = 10.0


def random_checkpoint(folder: Path) -> Path:
    """ViT-B-32 with random weights, saved as a local checkpoint (what a user's fine-tuned file looks like)."""
    torch.manual_seed(0)
    clip, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    path = folder / "vit_b_32_random.pt"
    torch.save(clip.state_dict(), path)
    return path


def fabricated_folder(folder: Path, classes: int = 10, per_class: int = 60, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (folder / f"class_{c}").mkdir(parents=True)
        tint = rng.integers(0, 256, 3)
        for i in range(per_class):
            pixels = np.clip(rng.normal(tint, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"class_{c}" / f"{i}.jpg", quality=90)
    return folder


def whole_run(checkpoint: Path, data: Path, device: torch.device, store_dir: Path) -> None:
    """Every stage of a run on `device`; on a CPU a token size (a ViT-B-32 step takes seconds there)."""
    cuda = device.type == "cuda"
    cfg = RunConfig(dataset=str(data), objective="ldifs", model="ViT-B-32", pretrained=str(checkpoint),
                    steps=40 if cuda else 2, batch_size=64 if cuda else 4, device=str(device),
                    eval_datasets=["mnist", "animals"], eval_limit=500 if cuda else 40, probe_limit=20 if cuda else 2,
                    umap_points=200 if cuda else 30, warmup_steps=2)
    store = RunStore(store_dir)
    started = time.perf_counter()
    run_id = execute(cfg, store)
    run_s = time.perf_counter() - started
    metrics = store.metrics(run_id)
    started = time.perf_counter()
    wise = wise_ft_metrics(store, run_id, 0.5)
    print(f"whole run on {metrics['device']}: {run_s:.1f} s (train {metrics['timings']['train_s']:.1f} s, report "
          f"{metrics['timings']['eval_s']:.1f} s); task accuracy {metrics['downstream']['accuracy_after']:.1f} %, mean "
          f"ZS Δ {metrics['mean_zs_delta']:+.1f}; WiSE-FT α=0.5 {time.perf_counter() - started:.1f} s (task "
          f"{wise['downstream']['accuracy_after']:.1f} %)", flush=True)


def ours_step_seconds(objective: str, model, data: ImageSet, device: torch.device, steps: int, batch: int,
                      precompute: bool = False) -> list[float]:
    """Per-step seconds of the lab's loop, between the host's reads of the losses (the loop waits for the device
    there); the steps before the first read, which include warm-up, are left out."""
    reads: list[tuple[float, int]] = []
    interval = host_read_interval(device)
    cfg = RunConfig(objective=objective, lam=LAM if objective == "ldifs" else None, steps=steps, batch_size=batch,
                    device=str(device), warmup_steps=1, precompute_frozen=precompute)

    class HostReads(RunHooks):
        def step(self, event) -> None:
            if event.step % interval == 0 or event.step == event.total_steps:
                reads.append((time.perf_counter(), event.step))

    finetune(cfg, model, data, device, HostReads())
    return [(t2 - t1) / (s2 - s1) for (t1, s1), (t2, s2) in zip(reads, reads[1:])]


def released_step_seconds(model, data: ImageSet, device: torch.device, steps: int, batch: int) -> list[float]:
    """The released code's step: fp32, the tuned encoder run twice, the frozen one once."""
    cfg = RunConfig(objective="ldifs", lam=LAM, steps=steps, batch_size=batch, device=str(device))
    kind = OBJECTIVE_TYPES["ldifs"]
    head = kind.initial_head(cfg, model, data)
    tuned = copy.deepcopy(model.clip)
    params = kind(TrainingSetup(cfg, model, tuned, head, data, device)).trainable_parameters()
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    tuned.visual.train()
    times = []
    for step in range(steps):
        idx = torch.arange(step * batch, (step + 1) * batch) % len(data)
        synchronize(device)
        started = time.perf_counter()
        images = model_inputs(model, data.images[idx], device)
        labels = data.labels[idx].to(device)
        logits = head(F.normalize(tuned.visual(images), dim=-1))
        _, tuned_taps = forward_with_taps(tuned.visual, images, cfg.ldifs_taps)  # the second tuned pass
        with torch.no_grad():
            _, frozen_taps = forward_with_taps(model.clip.visual, images, cfg.ldifs_taps)
        loss = F.cross_entropy(logits, labels) + LAM * distance_from_taps(frozen_taps, tuned_taps, "released").mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        float(loss.detach())  # the host reads the loss, as the released loop logs it
        synchronize(device)
        times.append(time.perf_counter() - started)
    return times[1:]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 128 on CUDA, 8 on a CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default: 30 CUDA, 4 CPU)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-run", action="store_true", help="only the step timings")
    args = parser.parse_args()
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch_size or (128 if cuda else 8)
    steps = args.steps or (30 if cuda else 4)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"autocast: {'bf16' if cuda else 'off (fp32)'}; batch {batch}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ldifs-gpu-check-") as scratch:
        scratch = Path(scratch)
        os.environ.setdefault("LDIFS_CACHE_DIR", str(scratch / "decoded"))
        checkpoint = random_checkpoint(scratch)
        if not args.skip_run:
            whole_run(checkpoint, fabricated_folder(scratch / "photos"), device, scratch / "store")
        model = load_model("ViT-B-32", str(checkpoint)).private_copy(device)
        g = torch.Generator().manual_seed(0)
        data = ImageSet("synthetic", "train", torch.randint(0, 256, (4 * batch, 3, 224, 224), dtype=torch.uint8,
                                                            generator=g),
                        torch.arange(4 * batch) % 10, [f"class {i}" for i in range(10)])
        timings: dict[str, list[float]] = {name: [] for name in ("ce", "ldifs", "ldifs precomputed", "released")}
        for _ in range(args.rounds):  # interleaved: each round times every step shape once
            timings["ce"] += ours_step_seconds("ce", model, data, device, steps + 1, batch)
            timings["ldifs"] += ours_step_seconds("ldifs", model, data, device, steps + 1, batch)
            timings["ldifs precomputed"] += ours_step_seconds("ldifs", model, data, device, steps + 1, batch, True)
            timings["released"] += released_step_seconds(model, data, device, steps + 1, batch)
    median = {name: statistics.median(values) for name, values in timings.items()}
    for name, seconds in median.items():
        print(f"ViT-B-32 {name + ' step':<26} {1000 * seconds:9.1f} ms  {batch / seconds:8.1f} images/s   "
              f"(time / ce {seconds / median['ce']:.2f})")
    print(f"released step shape / ours (ldifs): {median['released'] / median['ldifs']:.2f}x "
          f"(target on a GPU with bf16: >= 2x); / ours precomputed: "
          f"{median['released'] / median['ldifs precomputed']:.2f}x")
    if cuda:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
