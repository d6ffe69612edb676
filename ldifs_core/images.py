"""Turn stored uint8 image batches into what a CLIP image tower takes, and light augmentation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
