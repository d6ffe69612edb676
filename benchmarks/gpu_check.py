"""Exercise the accelerator path: a real open_clip ViT-B-32 (random weights), bf16 autocast on CUDA,
a few `ce` and `ldifs` steps through the one training loop, and the throughput of each.

Run: `.venv/bin/python benchmarks/gpu_check.py [--device cuda] [--batch-size 128] [--steps 8]`.
On a CPU it also works (small batch), which is how CI-less sessions check the path is sound.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import open_clip  # noqa: E402
import torch  # noqa: E402

from ldifs_core.config import RunConfig  # noqa: E402
from ldifs_core.datasets import ImageSet  # noqa: E402
from ldifs_core.models import FoundationModel, describe_device, pick_device  # noqa: E402
from ldifs_core.train import finetune  # noqa: E402


def random_vit_b_32() -> FoundationModel:
    clip, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    cfg = clip.visual.preprocess_cfg
    return FoundationModel(clip.eval(), open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32", "random", 224,
                           tuple(cfg["mean"]), tuple(cfg["std"]))


def synthetic_images(n: int, classes: int = 10) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 224, 224), dtype=torch.uint8, generator=g)
    return ImageSet("synthetic", "train", images, torch.arange(n) % classes, [f"class {i}" for i in range(classes)])


def images_per_second(objective: str, model, data, device: str, steps: int, batch_size: int) -> float:
    rates, marks = [], [time.perf_counter()]

    def on_event(event):
        marks.append(time.perf_counter())
        assert torch.isfinite(torch.tensor(event.loss)), "non-finite loss on the accelerator path"

    cfg = RunConfig(objective=objective, steps=steps, batch_size=batch_size, device=device, warmup_steps=1)
    finetune(cfg, model, data, pick_device(device), on_event)
    if pick_device(device).type == "cuda":
        torch.cuda.synchronize()
    for a, b in zip(marks[2:], marks[3:]):  # skip the first steps (allocation, kernel selection)
        rates.append(batch_size / (b - a))
    return statistics.median(rates) if rates else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    device = pick_device(args.device)
    batch = args.batch_size or (128 if device.type == "cuda" else 4)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; autocast: "
          f"{'bf16' if device.type == 'cuda' else 'off (fp32)'}; batch {batch}")
    model = random_vit_b_32()
    model.clip.to(device)
    data = synthetic_images(max(2 * batch, 16))
    ce = images_per_second("ce", model, data, str(device), args.steps, batch)
    ldifs = images_per_second("ldifs", model, data, str(device), args.steps, batch)
    print(f"ViT-B-32 ce    step: {ce:9.1f} images/s")
    print(f"ViT-B-32 ldifs step: {ldifs:9.1f} images/s   (ldifs / ce time ratio {ce / ldifs:.2f})")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
