"""`flyp_ce`: FLYP with cross-entropy over one sampled prompt per class (the authors' released variant)."""
from __future__ import annotations

from ldifs_core.objectives.base import Batch, F, torch
from ldifs_core.objectives.flyp import FLYP


class FLYPCrossEntropy(FLYP):
    """Both towers train; the logits are CLIP's similarities to one prompt per class (a template sampled per
    class per step), and cross-entropy runs over the classes, as in the authors' released FLYP variant."""

    name = "flyp_ce"
    summary = "both towers train; cross-entropy over one sampled prompt per class (the authors' FLYP variant)"
    label = "FLYP-CE — both towers, CE over class prompts"
    order = 6
    color, symbol = "#8c564b", "triangle-down"

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip = self.setup.tuned
        classes, templates = self.prompt_tokens.shape[:2]
        picks = torch.tensor([self.rng.randrange(templates) for _ in range(classes)])
        tokens = self.prompt_tokens[torch.arange(classes), picks].to(batch.images.device)
        image = F.normalize(self.classifier.visual(batch.images), dim=-1)
        text = F.normalize(clip.encode_text(tokens), dim=-1)
        ce = F.cross_entropy(clip.logit_scale.exp().clamp(max=100) * image @ text.T, batch.labels)
        return ce, {"ce": ce.detach()}


OBJECTIVE = FLYPCrossEntropy
