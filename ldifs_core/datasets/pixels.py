"""One picture as the lab stores it: `pil_to_uint8` is the one place where a decoded image becomes the uint8
[3, S, S] tensor, so a folder of PNGs and a torchvision dataset look exactly alike to training and evaluation."""
from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps
from torchvision.transforms import InterpolationMode

# What a damaged or unsupported image file raises while PIL opens and decodes it.
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB. Transparent pixels are composited on white (not dropped: dropping alpha shows
    whatever colour the transparent pixels happen to hold, often black); 16-bit and float images are scaled
    down by their maximum when it exceeds 255."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        values = np.asarray(img, dtype=np.float32)
        img = Image.fromarray(np.clip(values * (255.0 / max(float(values.max()), 255.0)), 0, 255).astype(np.uint8))
    if "A" in img.getbands() or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def pil_to_uint8(img: Image.Image, image_size: int) -> torch.Tensor:
    """A PIL image of any mode and size -> uint8 [3, S, S], with open_clip's geometry: the shorter side resized
    to S (bicubic, antialiased), then a centre crop. Colour conversion comes first so that palette images are
    resized in RGB rather than by nearest palette index."""
    img = TF.resize(_to_rgb(img), image_size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    return TF.pil_to_tensor(TF.center_crop(img, image_size))
