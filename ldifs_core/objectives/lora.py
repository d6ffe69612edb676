"""`lora`: only low-rank adapters on the image tower's attention and MLP maps (ldifs_core/lora.py) and the head
train; the adapters are merged into the weights after the last step."""
from __future__ import annotations

from ldifs_core.objectives.base import Objective, TrainingSetup, deferred, nn
from ldifs_core.settings import option

adapters = deferred("ldifs_core.lora")


class LoRA(Objective):
    """Only low-rank adapters on the image tower (see lora.py) and the head train; merged after the last step."""

    name = "lora"
    summary = "low-rank adapters on the image tower's attention and MLP maps (+ head); merged at the end"
    label = "LoRA — low-rank adapters only"
    order = 7
    options = (
        option("lora_rank", int, 8, help="rank r of the adapters", least=1, most=1024, hint="try 8",
               label="LoRA rank r"),
        option("lora_alpha", float, 64.0, help="scale α (adapters are scaled by α / r)", least=0.0, above=True,
               hint="try 64", label="LoRA α (scale α / r)"),
        option("lora_dropout", float, 0.0, help="rank dropout: each of the r components is dropped with this "
               "probability per step", least=0.0, most=1.0, below=True, label="Rank dropout"),
    )
    color, symbol = "#17becf", "star"

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        cfg = setup.cfg
        self.adapters = adapters.add_adapters(setup.tuned.visual, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout,
                                              cfg.seed)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.setup.head.parameters()) + [p for adapter in self.adapters for p in adapter.parameters()]

    def finalise(self) -> None:
        adapters.merge_adapters(self.setup.tuned.visual)


OBJECTIVE = LoRA
