"""`zscl`: ZSCL's feature distillation (Zheng et al., ICCV 2023) on unlabeled reference images from other
datasets."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ldifs_core.errors import DatasetUnavailable
from ldifs_core.objectives.base import Batch, F, ToFrozenModel, TrainingSetup, encoding, torch
from ldifs_core.settings import option

if TYPE_CHECKING:
    from ldifs_core.config import RunConfig

BANK = "bank"  # zscl_reference: the other concept-bank domains (train split); else one domain or a folder


class ZSCL(ToFrozenModel):
    """On a batch of unlabeled reference images from other datasets, KL(p_θ₀ ‖ p_θ) between the image-to-caption
    distributions over a fixed set of captions embedded by the original text tower. ZSCL's weight ensemble and
    text-side loss are not part of this objective."""

    name = "zscl"
    summary = "CE + λ·KL(θ₀ ‖ θ) of image-to-caption distributions on unlabeled reference images (ZSCL)"
    label = "ZSCL — CE + λ·distillation on reference images"
    order = 9
    default_lam = 1.0
    options = (option("zscl_reference", str, BANK, help=f"unlabeled reference images: '{BANK}' (the other "
                      f"concept-bank domains), one concept-bank domain, or an image folder (one sub-folder per class)",
                      label="Reference images"),)
    color, symbol = "#2ca02c", "hexagon"
    per_reference_dataset = 2000  # reference images kept from each dataset

    @classmethod
    def problems(cls, cfg: RunConfig) -> list[str]:
        from ldifs_core.datasets.domains import DOMAINS  # names only: no torch

        if cfg.zscl_reference == BANK:
            return []
        if cfg.zscl_reference not in DOMAINS and not Path(cfg.zscl_reference).expanduser().is_dir():
            return [f"zscl_reference '{cfg.zscl_reference}' is neither '{BANK}', a concept-bank domain "
                    f"({', '.join(DOMAINS)}) nor an existing folder of images (one sub-folder per class)"]
        if Path(cfg.zscl_reference).expanduser().resolve() == Path(cfg.dataset).expanduser().resolve():
            return ["zscl_reference is the fine-tuning task itself: give other images"]
        return []

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        self.reference, captions = self.reference_images_and_captions()
        # a plain tensor for autograd
        self.captions = encoding.zero_shot_head(setup.base, captions, ["{}"]).to(setup.device).clone()

    def reference_images_and_captions(self) -> tuple[torch.Tensor, list[str]]:
        """uint8 images of the reference sets (train split; never the task) and one caption per class of each set."""
        from ldifs_core.datasets import available_bank, load_split

        cfg = self.setup.cfg
        names = ([n for n in available_bank() if n != cfg.dataset] if cfg.zscl_reference == BANK
                 else [cfg.zscl_reference])
        if not names:
            raise DatasetUnavailable("ZSCL needs reference images from a dataset other than the task, and none is "
                                     "available: give a folder of reference images (zscl_reference).")
        sets = [load_split(name, "train", image_size=self.setup.base.image_size).subset(self.per_reference_dataset,
                                                                                        cfg.seed)
                for name in names]
        captions = list(dict.fromkeys(s.templates[0].format(c) for s in sets for c in s.class_names))
        return torch.cat([s.images for s in sets]), captions

    def regulariser(self, batch: Batch, tuned_features: torch.Tensor) -> torch.Tensor:
        pick = torch.randint(len(self.reference), (len(batch.labels),), generator=self.generator)
        images = encoding.model_inputs(self.setup.base, self.reference[pick], batch.images.device)
        log_p_frozen = F.log_softmax(self.logit_scale * self.frozen_features(images) @ self.captions.T, dim=1)
        tuned = F.normalize(self.classifier.visual(images), dim=-1)
        log_p_tuned = F.log_softmax(self.logit_scale * tuned.float() @ self.captions.T, dim=1)
        return F.kl_div(log_p_tuned, log_p_frozen.float(), log_target=True, reduction="batchmean")


OBJECTIVE = ZSCL
