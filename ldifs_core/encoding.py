"""Image features and zero-shot heads: the shared primitives of every evaluation.

Each function computes where its module lives (move the model to a device once, not per call).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ldifs_core.datasets import ImageSet
from ldifs_core.images import to_model_input
from ldifs_core.models import FoundationModel


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 elsewhere (CPU bf16 is slower than fp32 for models this small)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.inference_mode()
def encode_images(visual: torch.nn.Module, images: torch.Tensor, model: FoundationModel,
                  batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings [N, D] (float32, on the CPU) of uint8 images [N, C, H, W]."""
    device = module_device(visual)
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = to_model_input(images[start:start + batch_size].to(device), model.image_size, model.mean, model.std)
        with autocast_for(device):
            chunks.append(F.normalize(visual(batch).float(), dim=-1).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, model.clip.visual.output_dim)


@torch.inference_mode()
def zero_shot_head(model: FoundationModel, class_names: list[str], templates: list[str]) -> torch.Tensor:
    """Class embeddings [K, D] (on the CPU) from the text tower: mean of normalised template embeddings, renormalised."""
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
    return 100.0 * (zero_shot_predictions(features, head) == data.labels).float().mean().item()
