"""RunConfig: everything that defines a run, with a JSON round-trip and the checks a user needs."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ldifs_core.errors import BadConfig

OBJECTIVES = ("ce", "ldifs", "l2sp", "flyp", "lp")
INITS = ("zs", "lp")
LDIFS_VARIANTS = ("paper", "released")

# Default regulariser weight per objective (see README "Choosing the defaults").
DEFAULT_LAMBDA = {"ce": 0.0, "ldifs": 10.0, "l2sp": 1.0, "flyp": 0.0, "lp": 0.0}

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")


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
    train_limit: int | None = 10000  # fine-tuning pool (train split)
    eval_limit: int | None = 1000  # test images per dataset in the report (fixed subset)
    probe_limit: int | None = 1000  # train images per dataset for linear probes (fixed subset)
    umap_points: int = 500  # per dataset, pre and post each
    data_root: str | None = None
    download: bool = False
    save_weights: bool = True
    label: str = ""

    @property
    def effective_lam(self) -> float:
        return DEFAULT_LAMBDA[self.objective] if self.lam is None else float(self.lam)

    def validate(self) -> "RunConfig":
        problems = []
        if self.objective not in OBJECTIVES:
            problems.append(f"objective '{self.objective}' is unknown (use one of {', '.join(OBJECTIVES)})")
        if self.init not in INITS:
            problems.append(f"init '{self.init}' is unknown (use zs or lp)")
        if self.ldifs_variant not in LDIFS_VARIANTS:
            problems.append(f"ldifs_variant '{self.ldifs_variant}' is unknown (use paper or released)")
        if self.lam is not None and (not math.isfinite(self.lam) or self.lam < 0):
            problems.append("lam must be a finite number >= 0")
        if self.steps < 1 or self.steps > 1_000_000:
            problems.append("steps must be between 1 and 1,000,000")
        if self.batch_size < 2 or self.batch_size > 65536:
            problems.append("batch size must be between 2 and 65536")
        if not (0 < self.lr < 1):
            problems.append("lr must be between 0 and 1 (try 5e-4)")
        if self.weight_decay < 0 or self.grad_clip <= 0 or self.warmup_steps < 0:
            problems.append("weight decay and warmup must be >= 0 and grad clip > 0")
        if self.ldifs_taps < 1:
            problems.append("ldifs_taps must be at least 1")
        for name in ("train_limit", "eval_limit", "probe_limit"):
            value = getattr(self, name)
            if value is not None and value < 10:
                problems.append(f"{name} must be at least 10 (or empty for no limit)")
        if self.umap_points < 0:
            problems.append("umap_points must be >= 0")
        if self.eval_datasets is not None and self.dataset in self.eval_datasets:
            self.eval_datasets = [d for d in self.eval_datasets if d != self.dataset]
        if problems:
            raise BadConfig("Invalid run settings: " + "; ".join(problems) + ".")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadConfig(f"Unknown run settings: {', '.join(unknown)}. Known: {', '.join(sorted(known))}.")
        return cls(**data)

    def describe(self) -> str:
        lam = f" λ={self.effective_lam:g}" if self.objective in ("ldifs", "l2sp") else ""
        return f"{self.objective}{lam} on {self.dataset} ({self.steps} steps, seed {self.seed})"


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
