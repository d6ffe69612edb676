"""`flyp`: CLIP's contrastive loss between images and a prompt of their class; both towers train (Goyal et al.,
2023), and the tuned model classifies with its own text tower."""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ldifs_core.objectives.base import (Batch, F, Objective, TrainingSetup, multi_positive_cross_entropy,
                                        text_head, torch)

if TYPE_CHECKING:
    from torch import nn

    from ldifs_core.datasets import ImageSet
    from ldifs_core.models import FoundationModel


class FLYP(Objective):
    """CLIP's contrastive loss between images and a prompt of their class; both towers train."""

    name = "flyp"
    summary = "CLIP's contrastive loss between images and their class prompts; both towers train"
    label = "FLYP — contrastive, both towers"
    order = 3
    color, symbol = "#9467bd", "triangle-up"
    trains_text = True

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        train = setup.train
        prompts = [t.format(c) for c in train.class_names for t in train.templates]
        self.prompt_tokens = setup.base.tokenizer(prompts).view(train.num_classes, len(train.templates), -1)
        self.rng = random.Random(setup.cfg.seed)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip = self.setup.tuned
        templates = self.prompt_tokens.shape[1]
        picks = torch.tensor([self.rng.randrange(templates) for _ in range(len(batch.labels))])
        tokens = self.prompt_tokens[batch.labels.cpu(), picks].to(batch.images.device)
        image = F.normalize(self.classifier.visual(batch.images), dim=-1)
        text = F.normalize(clip.encode_text(tokens), dim=-1)
        logits = clip.logit_scale.exp().clamp(max=100) * image @ text.T
        contrastive = 0.5 * (multi_positive_cross_entropy(logits, batch.labels, batch.labels)
                             + multi_positive_cross_entropy(logits.T, batch.labels, batch.labels))
        return contrastive, {"contrastive": contrastive.detach()}

    def final_head(self) -> nn.Linear:
        """FLYP classifies with its own tuned text tower's class embeddings."""
        return text_head(self.setup.base.with_clip(self.setup.tuned), self.setup.train).cpu().eval()

    @classmethod
    def mixed_head(cls, base: FoundationModel, mixed_clip: nn.Module, initial: nn.Linear, final: nn.Linear,
                   alpha: float, task: ImageSet) -> nn.Linear:
        """The mixed text tower's own class embeddings: a text-derived head is recomputed, not interpolated."""
        return text_head(base.with_clip(mixed_clip), task).cpu().eval()


OBJECTIVE = FLYP
