"""Contrastively pretrain the embedded tiny CLIP on captioned concept-bank images.

Run `python -m scripts.pretrain` (about 8 minutes on 2 CPU cores). The mix mirrors the paper's setting:
broad concepts (every QuickDraw class) plus only a small captioned slice of the domains offered as
fine-tuning tasks, so the model knows them partly. Batches draw equally from every domain and fine-tuning has room to help - and to forget.
The checkpoint is written in fp16 safetensors (it loads through open_clip like any other) and the
model card's numbers are measured from that very file.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ldifs_core.datasets import BANK_NAMES, load_split
from ldifs_core.encoding import random_shift, to_model_input
from ldifs_core.models import EMBEDDED_CHECKPOINT, EMBEDDED_MODEL, register_embedded_config
from ldifs_core.objectives import multi_positive_cross_entropy
from ldifs_core.train import lr_factor


@dataclass
class PretrainConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    seed: int = 0
    # Captioned images per class taken from each domain's train split; None means the whole split.
    per_class: dict[str, int | None] = field(
        default_factory=lambda: {"quickdraw": None, "mnist": 10, "fashion_mnist": 20, "animals": 30})


def pretraining_pool(cfg: PretrainConfig):
    """Images, global concept ids, domain ids and the captions [concept][template]."""
    generator = torch.Generator().manual_seed(cfg.seed)
    images, concept_ids, domain_ids, captions = [], [], [], []
    for name in BANK_NAMES:
        data = load_split(name, "train")
        keep = cfg.per_class.get(name, 0)
        if keep == 0:
            continue
        chosen = torch.arange(len(data))
        if keep is not None:
            chosen = torch.cat([
                (data.labels == c).nonzero().flatten()[torch.randperm(int((data.labels == c).sum()), generator=generator)[:keep]]
                for c in range(data.num_classes)])
        images.append(data.images[chosen])
        concept_ids.append(data.labels[chosen] + len(captions))
        domain_ids.append(torch.full((len(chosen),), len(images) - 1))
        captions.extend([[t.format(c) for t in data.templates] for c in data.class_names])
    return torch.cat(images), torch.cat(concept_ids), torch.cat(domain_ids), captions


def balanced_batch(domain_members: list[torch.Tensor], batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """An equal share of the batch from every domain, so small captioned slices are seen as often as big ones."""
    share = batch_size // len(domain_members)
    return torch.cat([members[torch.randint(0, len(members), (share,), generator=generator)]
                      for members in domain_members])


def pretrain(cfg: PretrainConfig, log_every: int = 100) -> open_clip.model.CLIP:
    torch.manual_seed(cfg.seed)
    register_embedded_config()
    clip, _, _ = open_clip.create_model_and_transforms(EMBEDDED_MODEL)
    tokenizer = open_clip.get_tokenizer(EMBEDDED_MODEL)
    mean, std = clip.visual.preprocess_cfg["mean"], clip.visual.preprocess_cfg["std"]
    images, concepts, domains, captions = pretraining_pool(cfg)
    domain_members = [(domains == d).nonzero().flatten() for d in domains.unique()]
    n_templates = len(captions[0])
    tokens = tokenizer([c for per_concept in captions for c in per_concept]).view(len(captions), n_templates, -1)
    print(f"pretraining on {len(images)} captioned images of {len(captions)} concepts")

    optimizer = torch.optim.AdamW(clip.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg.steps, cfg.warmup_steps))
    generator = torch.Generator().manual_seed(cfg.seed)
    clip.train()
    started = time.time()
    for step in range(cfg.steps):
        idx = balanced_batch(domain_members, cfg.batch_size, generator)
        x = to_model_input(random_shift(images[idx], generator), 28, mean, std)
        template_pick = torch.randint(0, n_templates, (len(captions),), generator=generator)
        concept_text = tokens[torch.arange(len(captions)), template_pick]
        image_features = F.normalize(clip.encode_image(x), dim=-1)
        text_features = F.normalize(clip.encode_text(concept_text), dim=-1)
        logits = clip.logit_scale.exp().clamp(max=100) * image_features @ text_features.T
        # image -> every concept's caption, and each caption -> the batch images showing its concept
        loss = 0.5 * (F.cross_entropy(logits, concepts[idx])
                      + multi_positive_cross_entropy(logits.T[concepts[idx]], concepts[idx], concepts[idx]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clip.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - started:6.1f}s", flush=True)
    return clip.eval()


def save_checkpoint(clip: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in clip.state_dict().items()}
    save_file(state, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pretrain the embedded tiny CLIP and write its model card.")
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps)
    parser.add_argument("--out", type=Path, default=EMBEDDED_CHECKPOINT)
    args = parser.parse_args(argv)
    cfg = PretrainConfig(steps=args.steps)
    started = time.time()
    clip = pretrain(cfg)
    save_checkpoint(clip, args.out)
    minutes = (time.time() - started) / 60
    from scripts.model_card import measure_and_write_card

    measure_and_write_card(args.out, {"pretrain_config": asdict(cfg), "pretrain_minutes": round(minutes, 1)})
    print(json.dumps({"checkpoint": str(args.out), "minutes": round(minutes, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
