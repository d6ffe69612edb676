"""From stored uint8 images to model input, image features and zero-shot heads: the primitives every
training step and every evaluation share.

Each function computes where its module lives (a run moves its private model to a device once, not per call),
and every evaluation feature goes through `encode_images`, so probes and tests always see one precision.
Zero-shot heads of loaded (untuned) weights are kept in memory and on disk beside the decoded images: a
ViT-B-32 text tower needs about 20 s of a 2-core CPU for 40 classes × 4 prompts, paid once per machine.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from contextlib import suppress

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from ldifs_core.datasets import ImageSet
from ldifs_core.datasets.decoding import HEADS_FOLDER, cache_dir
from ldifs_core.memo import ByteBudgetCache
from ldifs_core.models import FoundationModel
from ldifs_core.paths import write_atomic
from ldifs_core.stats import accuracy


class TunedClassifier(nn.Module):
    """Image tower + linear head on L2-normalised features (the zero-shot head is such a layer)."""

    def __init__(self, visual: nn.Module, head: nn.Linear):
        super().__init__()
        self.visual = visual
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(F.normalize(self.visual(images), dim=-1))


def to_model_input(images: torch.Tensor, image_size: int, mean, std) -> torch.Tensor:
    """uint8 [B, C, H, W] (C = 1 or 3) -> normalised float [B, 3, S, S], resized when H != S."""
    x = images.float().div_(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=True)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def random_shift(images: torch.Tensor, generator: torch.Generator, max_shift_fraction: float = 0.08) -> torch.Tensor:
    """Translate each image by a few pixels (zero fill); flips would change digits and letters, so none."""
    b, _, h, w = images.shape
    pad = max(1, round(max_shift_fraction * h))
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).view(b, 1, h, 1).expand(-1, images.shape[1], -1, w + 2 * pad)
    shifted = padded.gather(2, rows.to(images.device))
    cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).view(b, 1, 1, w).expand(-1, images.shape[1], h, -1)
    return shifted.gather(3, cols.to(images.device))


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 elsewhere (CPU bf16 is slower than fp32 for models this small)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def model_inputs(model: FoundationModel, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return to_model_input(images.to(device, non_blocking=True), model.image_size, model.mean, model.std)


@torch.inference_mode()
def encode_images(visual: torch.nn.Module, images: torch.Tensor, model: FoundationModel,
                  batch_size: int = 256, on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """L2-normalised image embeddings [N, D] (float32, on the CPU) of uint8 images [N, C, H, W]; `on_batch`
    hears how many images each batch encoded (an evaluation's progress)."""
    device = module_device(visual)
    chunks = []
    for start in range(0, len(images), batch_size):
        with autocast_for(device):
            chunks.append(F.normalize(visual(model_inputs(model, images[start:start + batch_size], device)).float(),
                                      dim=-1).cpu())
        if on_batch is not None:
            on_batch(len(chunks[-1]))
    return torch.cat(chunks) if chunks else torch.empty(0, model.clip.visual.output_dim)


HEAD_FORMAT = 1  # bump when the head's computation changes, so older files on disk are not used
HEADS = ByteBudgetCache(64 * 2**20, lambda head: head.numel() * head.element_size())


def zero_shot_head(model: FoundationModel, class_names: list[str], templates: list[str]) -> torch.Tensor:
    """Class embeddings [K, D] (on the CPU) from the text tower: mean of normalised template embeddings,
    renormalised. The caller's own tensor: cached heads are handed out as copies."""
    if model.weights_id is None:  # tuned or mixed weights: nothing to reuse
        return _text_head(model, class_names, templates)
    device = module_device(model.clip).type  # autocast precision differs by device
    key = hashlib.sha256(json.dumps([HEAD_FORMAT, model.weights_id, device, list(class_names), list(templates)])
                         .encode()).hexdigest()[:40]
    return HEADS.get(key, lambda: _stored_head(key, model, class_names, templates)).clone()


def _stored_head(key: str, model: FoundationModel, class_names: list[str], templates: list[str]) -> torch.Tensor:
    """From the disk cache when a sound head is there, else computed and written (under a temporary name, then
    renamed, so a killed process leaves no half file). A damaged entry is replaced, with a warning; a folder that
    cannot be written only costs the recomputation next time."""
    path = cache_dir() / HEADS_FOLDER / f"{key}.pt"
    if path.exists():
        try:
            width = open_clip.get_model_config(model.name)["embed_dim"]  # timm towers have no output_dim
            return _sound_head(torch.load(path, weights_only=True), (len(class_names), width))
        except Exception as err:  # truncated, foreign, of another shape, or not finite: compute it again
            warnings.warn(f"The cached zero-shot head {path} was damaged ({str(err).splitlines()[0][:120]}); "
                          f"computing it again.", stacklevel=3)
    head = _text_head(model, class_names, templates)
    with suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda temporary: torch.save(head, temporary))
    return head


def _sound_head(head: object, shape: tuple[int, int]) -> torch.Tensor:
    """`head` when it is what `_text_head` makes for this model and these classes; ValueError saying why not."""
    if not isinstance(head, torch.Tensor) or head.dtype != torch.float32:
        raise ValueError(f"not a float32 tensor: {type(head).__name__}")
    if tuple(head.shape) != shape:
        raise ValueError(f"of shape {tuple(head.shape)}, not {shape} (classes × embedding width)")
    if not torch.isfinite(head).all():
        raise ValueError("it holds values that are not finite")
    return head


@torch.inference_mode()
def _text_head(model: FoundationModel, class_names: list[str], templates: list[str]) -> torch.Tensor:
    device = module_device(model.clip)
    prompts = [template.format(name) for name in class_names for template in templates]
    tokens = model.tokenizer(prompts).to(device)
    with autocast_for(device):
        text = F.normalize(model.clip.encode_text(tokens).float(), dim=-1)
    per_class = text.view(len(class_names), len(templates), -1).mean(dim=1)
    return F.normalize(per_class, dim=-1).cpu()


def zero_shot_predictions(features: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return (features @ head.T).argmax(dim=1)


def zero_shot_accuracy(model: FoundationModel, data: ImageSet) -> float:
    """Top-1 zero-shot accuracy (in %) of `model` on `data`."""
    head = zero_shot_head(model, data.class_names, data.templates)
    features = encode_images(model.clip.visual, data.images, model)
    return accuracy(zero_shot_predictions(features, head), data.labels)
