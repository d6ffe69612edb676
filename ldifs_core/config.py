"""RunConfig: everything that defines a run, with a JSON round-trip and the checks a user needs."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ldifs_core.errors import BadConfig

OBJECTIVES = ("ce", "ldifs", "l2sp", "flyp", "lp", "ls", "flyp_ce", "lora", "lipsum", "zscl")
REGULARISED = ("ldifs", "l2sp", "lipsum", "zscl")  # the objectives that take a weight λ
INITS = ("zs", "lp")
LDIFS_VARIANTS = ("paper", "released")
BATCHNORM_MODES = ("train", "frozen")
MAX_SEED = 2**32 - 1
# What LDIFS and L2-SP pull a sequence's stage towards: the foundation model θ₀, or the weights the stage started
# from (the previous stage's); see sequence.py and the README's "Continual fine-tuning".
ANCHORS = ("original", "previous")

# Default regulariser weight per objective (see README "Choosing the defaults"). The store records each run's λ
# resolved, so changing a default never changes what a stored run says it was made with.
DEFAULT_LAMBDA = {"ce": 0.0, "ldifs": 10.0, "l2sp": 1.0, "flyp": 0.0, "lp": 0.0, "lipsum": 0.3, "zscl": 1.0}
# What λ = None ("the default") means in a run stored before the store resolved it: the defaults of that time.
STORED_DEFAULT_LAMBDA = {**DEFAULT_LAMBDA, "lipsum": 0.1}

# One line per objective: the README's objectives table and the app's Learn page say the same.
OBJECTIVE_SUMMARY = {
    "ce": "cross-entropy; image tower end to end + linear head on normalised features",
    "ldifs": "CE + λ·LDIFS: keeps the image tower's intermediate features close to θ₀'s",
    "l2sp": "CE + λ·‖θ − θ₀‖² over the image tower's weights",
    "flyp": "CLIP's contrastive loss between images and their class prompts; both towers train",
    "lp": "linear probe on the frozen encoder: the no-forgetting reference",
    "ls": "cross-entropy with label smoothing (factor ε); image tower end to end",
    "flyp_ce": "both towers train; cross-entropy over one sampled prompt per class (the authors' FLYP variant)",
    "lora": "low-rank adapters on the image tower's attention and MLP maps (+ head); merged at the end",
    "lipsum": "CE + λ·(1/2M)‖v_θ(x) − v_θ₀(x)‖²: similarities to M random texts stay as θ₀'s (Lipsum-FT)",
    "zscl": "CE + λ·KL(θ₀ ‖ θ) of image-to-caption distributions on unlabeled reference images (ZSCL)",
}

# LDIFS taps: a count (the stem + that many evenly spaced blocks/stages) or named groups joined by "+".
LDIFS_TAP_GROUPS = ("stem", "blocks", "last", "embedding")
ZSCL_BANK = "bank"  # zscl_reference: the other concept-bank domains (train split); else one domain or a folder

# The settings only one objective reads: another objective's run is the same run whatever their values (reuse.py).
OBJECTIVE_OPTIONS = {
    "ls": ("ls_factor",),
    "lora": ("lora_rank", "lora_alpha", "lora_dropout"),
    "lipsum": ("lipsum_texts", "lipsum_length"),
    "zscl": ("zscl_reference",),
}

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
SCHEMA_VERSION = 2  # of metrics.json; see the README's "The metrics JSON"
# Of the code that turns a RunConfig into numbers (training, evaluation). Raise it with any change that moves a
# run's metrics: a finished run is reused for an identical config only when it was made by this version
# (ldifs_core/reuse.py). Runs stored before the number existed count as version 1.
CODE_VERSION = 1


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
    # A count: the stem plus this many evenly spaced blocks (ViT) / stages (ResNet); or groups such as "last",
    # "stem+blocks", "embedding" (see parse_ldifs_taps).
    ldifs_taps: int | str = 4
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
    # -- the comparison bench: options of ls, lora, lipsum and zscl (each read only by its objective) --
    ls_factor: float = 0.1  # label smoothing ε of `ls`
    lora_rank: int = 8
    lora_alpha: float = 64.0  # adapters are scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.0  # rank dropout: each of the r components is dropped with this probability per step
    lipsum_texts: int = 80  # M random token sequences per step
    lipsum_length: int = 8  # tokens per random sequence
    zscl_reference: str = ZSCL_BANK  # where ZSCL's unlabeled reference images come from
    # -- continual fine-tuning (sequence.py): a stage of a sequence starts from an earlier run's tuned weights --
    start_from: str | None = None  # id of the finished run whose tuned weights this run starts from (None: θ₀)
    anchor: str = "original"  # what ldifs and l2sp compare to: θ₀ ("original") or the start weights ("previous")
    sequence_id: str = ""  # the sequence this run is a stage of ('' for a single run) ...
    stage: int | None = None  # ... and its position there (1 = the first task)

    @property
    def effective_lam(self) -> float:
        return DEFAULT_LAMBDA.get(self.objective, 0.0) if self.lam is None else float(self.lam)

    def with_lambda_resolved(self, defaults: dict[str, float] = DEFAULT_LAMBDA) -> "RunConfig":
        """This config with a regulariser's λ explicit, None ('the default') read from `defaults`: how stores keep
        a run's λ. Objectives without a regulariser keep None (their λ is always 0)."""
        if self.lam is not None or self.objective not in REGULARISED:
            return self
        return replace(self, lam=defaults[self.objective])

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
        problems += bench_problems(self)
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
        if self.objective == "ldifs" and (self.ldifs_taps, self.ldifs_variant) != (4, "paper"):
            lam += f" taps={self.ldifs_taps} {self.ldifs_variant}"
        stage = f", stage {self.stage}" if self.stage else ""
        return f"{self.objective}{lam} on {self.dataset} ({self.steps} steps, seed {self.seed}{stage})"


def parse_ldifs_taps(taps: int | str) -> int | tuple[str, ...]:
    """A tap count, or the named groups in order; ValueError says what is accepted."""
    if isinstance(taps, int) or str(taps).strip().isdigit():
        count = int(taps)
        if count < 1:
            raise ValueError("a tap count must be at least 1")
        return count
    groups = tuple(dict.fromkeys(part.strip() for part in str(taps).split("+")))
    unknown = [g for g in groups if g not in LDIFS_TAP_GROUPS]
    if not groups or unknown:
        raise ValueError(f"'{taps}' is not a tap count or groups joined by '+' from {', '.join(LDIFS_TAP_GROUPS)}")
    return groups


def bench_problems(cfg: RunConfig) -> list[str]:
    """What is wrong with the LDIFS ablation and comparison-bench settings (empty when they can work)."""
    problems = []
    try:
        parse_ldifs_taps(cfg.ldifs_taps)
    except ValueError as err:
        problems.append(f"ldifs_taps: {err} (e.g. 4, last, stem+blocks)")
    if not 0 <= cfg.ls_factor < 1:
        problems.append("ls_factor must be in [0, 1) (0 is plain cross-entropy; try 0.1)")
    if not 1 <= cfg.lora_rank <= 1024:
        problems.append("lora_rank must be between 1 and 1024 (try 8)")
    if not (math.isfinite(cfg.lora_alpha) and cfg.lora_alpha > 0):
        problems.append("lora_alpha must be a finite number > 0 (try 64)")
    if not 0 <= cfg.lora_dropout < 1:
        problems.append("lora_dropout must be in [0, 1)")
    if not 1 <= cfg.lipsum_texts <= 4096:
        problems.append("lipsum_texts (M) must be between 1 and 4096 (try 80)")
    if not 1 <= cfg.lipsum_length <= 75:
        problems.append("lipsum_length must be between 1 and 75 tokens (try 8)")
    if cfg.zscl_reference != ZSCL_BANK:
        from ldifs_core.datasets.domains import DOMAINS  # names only: no torch

        if cfg.zscl_reference not in DOMAINS and not Path(cfg.zscl_reference).expanduser().is_dir():
            problems.append(f"zscl_reference '{cfg.zscl_reference}' is neither '{ZSCL_BANK}', a concept-bank domain "
                            f"({', '.join(DOMAINS)}) nor an existing folder of images (one sub-folder per class)")
        elif Path(cfg.zscl_reference).expanduser().resolve() == Path(cfg.dataset).expanduser().resolve():
            problems.append("zscl_reference is the fine-tuning task itself: give other images")
    return problems

