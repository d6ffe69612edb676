"""What every objective plugin builds on: the Objective base class (plain cross-entropy on the head's logits), the
batch and prepared run it is given, and the two ways a classifier head starts (text tower or fitted probe).

An objective turns a batch into (total loss, named parts) for the one training loop and owns its classifier head:
where it starts, what it ends as, and how a WiSE-FT weight mix classifies. Its class also declares, in one
place, everything the front ends show of it (see `Objective`'s attributes).

Torch and the modules that use it are `deferred`: imported on first use, so listing the objectives (the CLI's
--help, the app's pages, reading the run store) never waits the seconds torch takes to import. A plugin reaches
torch through the names defined here and imports other torch-using modules with `deferred` too.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from ldifs_core.settings import Option

if TYPE_CHECKING:
    from ldifs_core.config import RunConfig
    from ldifs_core.datasets import ImageSet
    from ldifs_core.models import FoundationModel


class deferred:  # noqa: N801 - used like the module it stands for
    """A module imported when one of its attributes is first read."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


torch, nn, F = deferred("torch"), deferred("torch.nn"), deferred("torch.nn.functional")
encoding = deferred("ldifs_core.encoding")
probe = deferred("ldifs_core.probe")


@dataclass
class Batch:
    images: torch.Tensor  # model input, float [B, 3, S, S]
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the training pool (for precomputed frozen features)


@dataclass
class TrainingSetup:
    """What an objective builds itself from: a prepared run."""

    cfg: RunConfig
    base: FoundationModel  # what the run is anchored to (θ₀, or a stage's start weights): frozen, on its device
    tuned: nn.Module  # the run's CLIP being tuned (a copy of base.clip)
    head: nn.Linear  # the classifier head, already initialised by `initial_head`
    train: ImageSet
    device: torch.device


def text_head(model: FoundationModel, data: ImageSet) -> nn.Linear:
    """A frozen head from `model`'s text tower: class embeddings times its logit scale (CLIP's zero-shot head)."""
    weight = encoding.zero_shot_head(model, data.class_names, data.templates) * model.clip.logit_scale.exp().item()
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.zero_()
    return head.requires_grad_(False)


def probe_head(cfg: RunConfig, model: FoundationModel, data: ImageSet) -> nn.Linear:
    """A linear probe fitted on θ₀'s features of a per-class subset of the training pool."""
    pool = data.per_class_subset(cfg.probe_limit, cfg.probe_cap, cfg.seed)
    features = encoding.encode_images(model.clip.visual, pool.images, model)
    fitted = probe.fit_linear_probe(features, pool.labels, data.num_classes, seed=cfg.seed)
    head = nn.Linear(features.shape[1], data.num_classes)
    with torch.no_grad():
        head.weight.copy_(fitted.weight)
        head.bias.copy_(fitted.bias)
    return head


def multi_positive_cross_entropy(logits: torch.Tensor, row_groups: torch.Tensor,
                                 column_groups: torch.Tensor) -> torch.Tensor:
    """Cross-entropy where every column of the row's group is a positive (images of one class share a caption)."""
    same = (row_groups[:, None] == column_groups[None, :]).float()
    return torch.sum(-same / same.sum(dim=1, keepdim=True) * F.log_softmax(logits, dim=1), dim=1).mean()


class Objective:
    """Cross-entropy on the head's logits; a plugin's subclass adds a regulariser or changes what trains.

    Its class attributes are the objective's declaration, read by the registry (ldifs_core/objectives/__init__.py)
    and everything derived from it: the CLI, the Launch and Learn pages, run identity, plots and the README table.
    """

    name: str = ""  # what runs, flags and the store call it; the plugin module has the same name
    summary: str = ""  # one line: the README's table and the Learn page
    label: str = ""  # the Launch page's choice
    order: int = 100  # position in every list of objectives (the built-in ones 0..9)
    default_lam: float | None = None  # the default weight λ of its regulariser; None: it takes no λ
    options: tuple[Option, ...] = ()  # settings only this objective reads (RunConfig gets a field for each)
    grid: tuple[str, ...] = ()  # RunConfig settings a CLI sweep takes as comma lists for this objective's runs
    color: str = "#7f7f7f"  # how plots draw it: a CSS colour ...
    symbol: str = "circle"  # ... and a plotly marker symbol
    trains_text = False
    freezes_encoder = False
    trained = True  # False: made from finished runs after training (model_stock) by `made`, never trained

    def __init__(self, setup: TrainingSetup):
        self.setup = setup
        self.classifier = encoding.TunedClassifier(setup.tuned.visual, setup.head)
        self.lam = setup.cfg.effective_lam

    @classmethod
    def problems(cls, cfg: RunConfig) -> list[str]:
        """What is wrong with `cfg` for this objective beyond each option's own range (empty when it can work)."""
        return []

    @classmethod
    def made(cls, cfg: RunConfig, store, run_id: str | None, hooks) -> str:
        """How a run of an objective that is not trained is made and recorded (runner.execute hands it over)."""
        raise NotImplementedError(f"{cls.name} is trained by the training loop")

    @classmethod
    def initial_head(cls, cfg: RunConfig, base: FoundationModel, train: ImageSet) -> nn.Linear:
        """ZS-init: the text tower's class embeddings times CLIP's logit scale; LP-init: a fitted linear probe."""
        head = text_head(base, train).requires_grad_(True) if cfg.init == "zs" else probe_head(cfg, base, train)
        return head.to(base.clip.logit_scale.device)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(self.classifier(batch.images), batch.labels)
        return ce, {"ce": ce.detach()}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates: the head, the image tower unless frozen, the text tower if it trains."""
        clip = self.setup.tuned
        params = list(self.setup.head.parameters())
        if not self.freezes_encoder:
            params += list(clip.visual.parameters())
        if self.trains_text:
            params += [p for name, p in clip.named_parameters()
                       if not name.startswith("visual.") and name != "logit_scale"]
        return params

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The optimiser of `params` (AdamW at the run's learning rate and weight decay); the loop schedules it."""
        cfg = self.setup.cfg
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def finalise(self) -> None:
        """After the last step: leave `setup.tuned` an ordinary CLIP (LoRA merges its adapters here)."""

    def final_head(self) -> nn.Linear:
        """The head the tuned model classifies its task with (on the CPU, frozen)."""
        return self.setup.head.cpu().eval().requires_grad_(False)

    @classmethod
    def mixed_head(cls, base: FoundationModel, mixed_clip: nn.Module, initial: nn.Linear | None,
                   final: nn.Linear | None, alpha: float, task: ImageSet | None) -> nn.Linear | None:
        """WiSE-FT's head for weights (1 − α)·θ₀ + α·θ: the heads are mixed like the weights (a check without a
        task has none)."""
        if final is None:
            return None
        head = nn.Linear(final.in_features, final.out_features)
        with torch.no_grad():
            head.weight.copy_(torch.lerp(initial.weight, final.weight, alpha))
            head.bias.copy_(torch.lerp(initial.bias, final.bias, alpha))
        return head.requires_grad_(False)


class ToFrozenModel(Objective):
    """CE + λ · a distance between the tuned and the frozen θ₀ tower's outputs; subclasses say which."""

    def __init__(self, setup: TrainingSetup):
        super().__init__(setup)
        self.frozen_visual = setup.base.clip.visual
        self.logit_scale = setup.base.clip.logit_scale.exp().item()  # θ₀'s: the scale of its zero-shot logits
        self.generator = torch.Generator().manual_seed(setup.cfg.seed)

    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            features = F.normalize(self.frozen_visual(images), dim=-1)
        return features.clone()

    def regulariser(self, batch: Batch, tuned_features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features = self.classifier.visual(batch.images)
        ce = F.cross_entropy(self.classifier.head(F.normalize(features, dim=-1)), batch.labels)
        reg = self.lam * self.regulariser(batch, features)
        return ce + reg, {"ce": ce.detach(), self.name: reg.detach()}
