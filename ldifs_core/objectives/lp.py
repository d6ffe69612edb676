"""`lp`: a linear probe on the frozen encoder, the no-forgetting reference."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ldifs_core.objectives.base import Objective, probe_head

if TYPE_CHECKING:
    from torch import nn

    from ldifs_core.config import RunConfig
    from ldifs_core.datasets import ImageSet
    from ldifs_core.models import FoundationModel


class LinearProbeOnly(Objective):
    """Head only, frozen encoder: the no-forgetting reference. It always starts from the fitted probe."""

    name = "lp"
    summary = "linear probe on the frozen encoder: the no-forgetting reference"
    label = "Linear probe — encoder frozen"
    order = 4
    color, symbol = "#7f7f7f", "x"
    freezes_encoder = True

    @classmethod
    def initial_head(cls, cfg: RunConfig, base: FoundationModel, train: ImageSet) -> nn.Linear:
        return probe_head(cfg, base, train).to(base.clip.logit_scale.device)


OBJECTIVE = LinearProbeOnly
