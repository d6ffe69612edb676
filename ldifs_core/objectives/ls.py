"""`ls`: cross-entropy against labels smoothed by ε; ε = 0 is `ce`."""
from __future__ import annotations

from ldifs_core.objectives.base import Batch, F, Objective, torch
from ldifs_core.settings import option


class LabelSmoothing(Objective):
    """Cross-entropy against labels smoothed by ε (cfg.ls_factor): ε = 0 is `ce`."""

    name = "ls"
    summary = "cross-entropy with label smoothing (factor ε); image tower end to end"
    label = "Label smoothing — CE with smoothed labels"
    order = 5
    options = (option("ls_factor", float, 0.1, help="label smoothing ε (0 is plain cross-entropy)", least=0.0, most=1.0,
                      below=True, hint="0 is plain cross-entropy; try 0.1", label="Label smoothing ε"),)
    color, symbol = "#e377c2", "cross"

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(self.classifier(batch.images), batch.labels, label_smoothing=self.setup.cfg.ls_factor)
        return ce, {"ce": ce.detach()}


OBJECTIVE = LabelSmoothing
