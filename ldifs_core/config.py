"""RunConfig: everything that defines a run, with a JSON round-trip and the checks a user needs."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ldifs_core.errors import BadConfig

OBJECTIVES = ("ce", "ldifs", "l2sp", "flyp", "lp")
REGULARISED = ("ldifs", "l2sp")  # the objectives that take a weight λ
INITS = ("zs", "lp")
LDIFS_VARIANTS = ("paper", "released")
BATCHNORM_MODES = ("train", "frozen")
MAX_SEED = 2**32 - 1
# What LDIFS and L2-SP pull a sequence's stage towards: the foundation model θ₀, or the weights the stage started
# from (the previous stage's); see sequence.py and the README's "Continual fine-tuning".
ANCHORS = ("original", "previous")

# Default regulariser weight per objective (see README "Choosing the defaults").
DEFAULT_LAMBDA = {"ce": 0.0, "ldifs": 10.0, "l2sp": 1.0, "flyp": 0.0, "lp": 0.0}

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
SCHEMA_VERSION = 2  # of metrics.json; see the README's "The metrics JSON"


@dataclass
class RunConfig:
    """A run is fully described by this; same config and seed on the CPU give the same metrics."""

    dataset: str = "mnist"
    objective: str = "ldifs"
    lam: float | None = None  # None: DEFAULT_LAMBDA[objective]
    init: str = "zs"
    model: str | None = None  # None: the embedded default
    pretrained: str | None = None
    eval_datasets: list[str] | None = None  # None: every other concept-bank domain
    steps: int = 300
    lr: float = 5e-4
    batch_size: int = 64
    weight_decay: float = 0.1
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    augment: bool = False
    ldifs_variant: str = "paper"
    ldifs_taps: int = 4  # residual-stream taps after evenly spaced blocks (ViT) / stages (ResNet), plus the stem
    precompute_frozen: bool = False
    # BatchNorm statistics of an end-to-end run: "train" updates them as the paper's recipe (model.train()) does,
    # "frozen" keeps θ₀'s. Frozen towers and the `lp` objective are always in eval mode.
    bn: str = "train"
    train_limit: int | None = 10000  # fine-tuning pool (train split)
    eval_limit: int | None = 1000  # test images per dataset in the report (fixed subset)
    probe_limit: int | None = 100  # train images PER CLASS for linear probes (fixed subset) ...
    probe_cap: int | None = 5000  # ... and at most this many per dataset in all (fewer per class when it binds)
    umap_points: int = 500  # per dataset, pre and post each
    data_root: str | None = None
    download: bool = False
    save_weights: bool = True
    label: str = ""
    # -- continual fine-tuning (sequence.py): a stage of a sequence starts from an earlier run's tuned weights --
    start_from: str | None = None  # id of the finished run whose tuned weights this run starts from (None: θ₀)
    anchor: str = "original"  # what ldifs and l2sp compare to: θ₀ ("original") or the start weights ("previous")
    sequence_id: str = ""  # the sequence this run is a stage of ('' for a single run) ...
    stage: int | None = None  # ... and its position there (1 = the first task)

    @property
    def effective_lam(self) -> float:
        return DEFAULT_LAMBDA.get(self.objective, 0.0) if self.lam is None else float(self.lam)

    @property
    def regularised(self) -> bool:
        return self.objective in REGULARISED

    def forgetting_datasets(self, bank: list[str]) -> list[str]:
        """Datasets checked for forgetting: the chosen ones, else every concept-bank domain; never the task."""
        names = self.eval_datasets if self.eval_datasets is not None else bank
        return [name for name in names if name != self.dataset]

    def validate(self) -> "RunConfig":
        """Refuse settings that cannot work, before any work starts; the message says what to change."""
        problems = []
        if self.objective not in OBJECTIVES:
            problems.append(f"objective '{self.objective}' is unknown (use one of {', '.join(OBJECTIVES)})")
        if self.init not in INITS:
            problems.append(f"init '{self.init}' is unknown (use zs or lp)")
        if self.ldifs_variant not in LDIFS_VARIANTS:
            problems.append(f"ldifs_variant '{self.ldifs_variant}' is unknown (use paper or released)")
        if self.bn not in BATCHNORM_MODES:
            problems.append(f"bn '{self.bn}' is unknown (use train or frozen)")
        if self.lam is not None:
            if not self.regularised:
                problems.append(f"λ is only used by {' and '.join(REGULARISED)}; {self.objective} has no regulariser "
                                f"(leave λ out)")
            elif not math.isfinite(self.lam) or self.lam < 0:
                problems.append("λ must be a finite number >= 0")
        if not 0 <= self.seed <= MAX_SEED:
            problems.append(f"seed must be between 0 and {MAX_SEED}")
        if self.steps < 1 or self.steps > 1_000_000:
            problems.append("steps must be between 1 and 1,000,000")
        if self.batch_size < 2 or self.batch_size > 65536:
            problems.append("batch size must be between 2 and 65536")
        if self.train_limit is not None and self.batch_size > self.train_limit:
            problems.append(f"batch size {self.batch_size} is larger than the fine-tuning pool ({self.train_limit} "
                            f"images): lower the batch size or raise the train limit")
        if not (0 < self.lr < 1):
            problems.append("lr must be between 0 and 1 (try 5e-4)")
        if self.weight_decay < 0 or self.grad_clip <= 0 or self.warmup_steps < 0:
            problems.append("weight decay and warmup must be >= 0 and grad clip > 0")
        if self.ldifs_taps < 1:
            problems.append("ldifs_taps must be at least 1")
        if self.precompute_frozen and self.augment:
            problems.append("precomputed frozen features cannot follow random augmentation (LDIFS would penalise "
                            "the augmentation itself): drop one of the two")
        for name, least in (("train_limit", 10), ("eval_limit", 10), ("probe_limit", 2), ("probe_cap", 10)):
            value = getattr(self, name)
            if value is not None and value < least:
                problems.append(f"{name} must be at least {least} (or empty for no limit)")
        if self.umap_points < 0:
            problems.append("umap_points must be >= 0")
        if self.eval_datasets is not None and not self.forgetting_datasets([]):
            problems.append("no dataset is left to check for forgetting (the list is empty or only the task): "
                            "name at least one other dataset")
        if self.anchor not in ANCHORS:
            problems.append(f"anchor '{self.anchor}' is unknown (use original or previous)")
        if problems:
            raise BadConfig("Invalid run settings: " + "; ".join(problems) + ".")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def unknown_keys(cls, data: dict) -> list[str]:
        """Settings in `data` that this version does not know (a run store written by another version)."""
        return sorted(set(data) - {f.name for f in fields(cls)})

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """Unknown keys are ignored (callers that care warn with `unknown_keys`), so old and new stores both load."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def describe(self) -> str:
        lam = f" λ={self.effective_lam:g}" if self.regularised else ""
        stage = f", stage {self.stage}" if self.stage else ""
        return f"{self.objective}{lam} on {self.dataset} ({self.steps} steps, seed {self.seed}{stage})"


@dataclass
class TrainEvent:
    """What the training loop reports after every step (and the app/CLI draw)."""

    step: int
    total_steps: int
    loss: float
    parts: dict[str, float] = field(default_factory=dict)  # e.g. {"ce": .., "ldifs": ..} (λ-weighted regulariser)
    lr: float = 0.0
    images_per_s: float = 0.0
    eta_s: float = 0.0
