"""Fine-tuning objectives: each turns a batch into (total loss, named parts) for the one training loop.

All but FLYP train the image tower end to end with a linear head on its normalised features; FLYP
trains both towers contrastively against the class prompts, as in Goyal et al. (2023).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ldifs_core.features import forward_with_taps
from ldifs_core.ldifs import distance_from_taps


class TunedClassifier(nn.Module):
    """Image tower + linear head on L2-normalised features (the zero-shot head is such a layer)."""

    def __init__(self, visual: nn.Module, head: nn.Linear):
        super().__init__()
        self.visual = visual
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(F.normalize(self.visual(images), dim=-1))


@dataclass
class Batch:
    images: torch.Tensor  # model input, float [B, 3, S, S]
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the training pool (for precomputed frozen features)


class Objective:
    """Cross-entropy on the head's logits; subclasses add a regulariser."""

    name = "ce"
    trains_text = False
    freezes_encoder = False

    def __init__(self, classifier: TunedClassifier, lam: float = 0.0):
        self.classifier = classifier
        self.lam = lam

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        ce = F.cross_entropy(self.classifier(batch.images), batch.labels)
        return ce, {"ce": ce.item()}


class LinearProbeOnly(Objective):
    """Head only, frozen encoder: the no-forgetting reference."""

    name = "lp"
    freezes_encoder = True


class LDIFS(Objective):
    """CE + λ · LDIFS between the frozen pre-trained tower and the tuned one, on the same batch."""

    name = "ldifs"

    def __init__(self, classifier: TunedClassifier, lam: float, frozen_visual: nn.Module, taps: int = 4,
                 variant: str = "paper", frozen_cache: list[torch.Tensor] | None = None):
        super().__init__(classifier, lam)
        self.frozen_visual = frozen_visual
        self.taps = taps
        self.variant = variant
        self.frozen_cache = frozen_cache  # per-layer [N, P, C] features of the whole pool, when precomputed

    def frozen_taps(self, batch: Batch) -> list[torch.Tensor]:
        if self.frozen_cache is not None:
            return [layer[batch.indices].to(batch.images.device) for layer in self.frozen_cache]
        with torch.inference_mode():
            taps = forward_with_taps(self.frozen_visual, batch.images, self.taps)[1]
        return [tap.clone() for tap in taps]  # plain tensors again, so autograd may use them

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        pooled, tuned = forward_with_taps(self.classifier.visual, batch.images, self.taps)
        ce = F.cross_entropy(self.classifier.head(F.normalize(pooled, dim=-1)), batch.labels)
        reg = self.lam * distance_from_taps(self.frozen_taps(batch), tuned, self.variant).mean()
        return ce + reg, {"ce": ce.item(), "ldifs": reg.item()}


class L2SP(Objective):
    """CE + λ · ||θ − θ₀||² over the image tower's weights (Li et al., 2018)."""

    name = "l2sp"

    def __init__(self, classifier: TunedClassifier, lam: float, frozen_visual: nn.Module):
        super().__init__(classifier, lam)
        self.anchors = [p.detach().clone() for p in frozen_visual.parameters()]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        ce = F.cross_entropy(self.classifier(batch.images), batch.labels)
        drift = sum((p - p0).pow(2).sum() for p, p0 in zip(self.classifier.visual.parameters(), self.anchors))
        reg = self.lam * drift
        return ce + reg, {"ce": ce.item(), "l2sp": reg.item()}


class FLYP(Objective):
    """CLIP's contrastive loss between images and a prompt of their class; both towers train."""

    name = "flyp"
    trains_text = True

    def __init__(self, classifier: TunedClassifier, clip: nn.Module, prompt_tokens: torch.Tensor, seed: int):
        super().__init__(classifier, 0.0)
        self.clip = clip
        self.prompt_tokens = prompt_tokens  # [K, T, context]
        self.rng = random.Random(seed)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        templates = self.prompt_tokens.shape[1]
        picks = torch.tensor([self.rng.randrange(templates) for _ in range(len(batch.labels))])
        tokens = self.prompt_tokens[batch.labels.cpu(), picks].to(batch.images.device)
        image = F.normalize(self.classifier.visual(batch.images), dim=-1)
        text = F.normalize(self.clip.encode_text(tokens), dim=-1)
        logits = self.clip.logit_scale.exp().clamp(max=100) * image @ text.T
        # Images of one class share a caption: every same-class pair counts as a positive.
        same = (batch.labels[:, None] == batch.labels[None, :]).float()
        targets = same / same.sum(dim=1, keepdim=True)
        contrastive = 0.5 * (torch.sum(-targets * F.log_softmax(logits, 1), 1).mean()
                             + torch.sum(-targets * F.log_softmax(logits.T, 1), 1).mean())
        return contrastive, {"contrastive": contrastive.item()}
