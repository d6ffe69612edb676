"""RunConfig: everything that defines a run, each setting declared once (ldifs_core/settings.py) with the checks a
user needs, and a JSON round-trip."""
from __future__ import annotations

from pathlib import Path
from dataclasses import asdict, dataclass, fields, make_dataclass, replace

from ldifs_core.errors import BadConfig
from ldifs_core.objectives import OBJECTIVE_TYPES
from ldifs_core.settings import Setting, setting

INITS = ("zs", "lp")
LDIFS_VARIANTS = ("paper", "released")
BATCHNORM_MODES = ("train", "frozen")
MAX_SEED = 2**32 - 1
# What LDIFS and L2-SP pull a sequence's stage towards: the foundation model θ₀, or the weights the stage started
# from (the previous stage's); see sequence.py and the README's "Continual fine-tuning".
ANCHORS = ("original", "previous")
# LDIFS taps: a count (the stem + that many evenly spaced blocks/stages) or named groups joined by "+".
LDIFS_TAP_GROUPS = ("stem", "blocks", "last", "embedding")

# -- what the objective plugins declare (ldifs_core/objectives/), in the forms the rest of the lab reads --
OBJECTIVES = tuple(OBJECTIVE_TYPES)
TRAINED = tuple(name for name, kind in OBJECTIVE_TYPES.items() if kind.trained)  # what a run, sweep or sequence offers
REGULARISED = tuple(name for name, kind in OBJECTIVE_TYPES.items() if kind.default_lam is not None)  # take a λ
# Default regulariser weight per objective (see README "Choosing the defaults"); 0 for those without one. The store
# records each run's λ resolved, so changing a default never changes what a stored run says it was made with.
DEFAULT_LAMBDA = {name: kind.default_lam or 0.0 for name, kind in OBJECTIVE_TYPES.items()}
# What λ = None ("the default") means in a run stored before the store resolved it: the defaults of that time.
STORED_DEFAULT_LAMBDA = {**DEFAULT_LAMBDA, "lipsum": 0.1}
OBJECTIVE_SUMMARY = {name: kind.summary for name, kind in OBJECTIVE_TYPES.items()}
# The settings only one objective reads: another objective's run is the same run whatever their values (reuse.py).
OBJECTIVE_OPTIONS = {name: tuple(option.name for option in kind.options)
                     for name, kind in OBJECTIVE_TYPES.items() if kind.options}
# Settings a CLI sweep takes as comma lists, running every value for the objectives that name them (ldifs: taps).
GRID_SETTINGS = tuple(dict.fromkeys(name for kind in OBJECTIVE_TYPES.values() for name in kind.grid))
# A run the lab did not train: a checkpoint fine-tuned elsewhere, compared with its base model by `check`
# (ldifs_core/check.py) and evaluated and stored exactly as a trained run. Its objective says so; nothing trains.
CHECKED = "checked"
RUN_OBJECTIVES = (*OBJECTIVES, CHECKED)  # what a stored run's objective may be

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
SCHEMA_VERSION = 2  # of metrics.json; see the README's "The metrics JSON"
# Of the code that turns a RunConfig into numbers (training, evaluation). Raise it with any change that moves a
# run's metrics: a finished run is reused for an identical config only when it was made by this version
# (ldifs_core/reuse.py). Runs stored before the number existed count as version 1.
CODE_VERSION = 2  # 2: linear probes fitted in float64 (the same on every thread count)
NO_FLAG = ""  # set by the CLI's own flags (they differ between run, sweep and sequence), or by no front end


def ldifs_taps_problem(taps: int | str) -> str | None:
    try:
        parse_ldifs_taps(taps)
    except ValueError as err:
        return f"ldifs_taps: {err} (e.g. 4, last, stem+blocks)"
    return None


def ldifs_taps_text(text: str) -> int | str:
    """A tap count as a number, named groups as written ("last", "stem+blocks")."""
    try:
        spec = parse_ldifs_taps(text)
    except ValueError:
        raise ValueError(f"is not a tap count >= 1 nor groups joined by '+' from {', '.join(LDIFS_TAP_GROUPS)}") \
            from None
    return spec if isinstance(spec, int) else text


@dataclass
class RunSettings:
    """The settings every run has; RunConfig adds the objectives' own options. Each field's Setting (its help,
    range and flag) is what the CLI, the Launch page and `validate` read."""

    # None: a checked run whose task was not given (it then has no task row, only the datasets it checks)
    dataset: str | None = setting("mnist", help="registered dataset name or an ImageFolder path", flag=NO_FLAG,
                                  empty=True, unset="no task")
    objective: str = setting("ldifs", help="the fine-tuning objective (the README's objectives table says what each "
                             "does), or 'checked' for a checkpoint fine-tuned elsewhere", choices=RUN_OBJECTIVES,
                             flag=NO_FLAG)
    lam: float | None = setting(None, help="regulariser weight", least=0, empty=True, unset="the objective's default",
                                what="λ", label="λ (regulariser weight)", flag=NO_FLAG)
    init: str = setting("zs", help="head init: zero-shot or linear probe", choices=INITS)
    model: str | None = setting(None, help="open_clip model name (default: the embedded model)", empty=True)
    pretrained: str | None = setting(None, help="open_clip pretrained tag or a local checkpoint file", empty=True)
    eval_datasets: list[str] | None = setting(None, help="datasets checked for forgetting", empty=True,
                                              flag=NO_FLAG)  # None: every other concept-bank domain
    steps: int = setting(300, help="fine-tuning steps", least=1, most=1_000_000, label="Steps")
    lr: float = setting(5e-4, help="peak learning rate", label="Learning rate", least=0, most=1, above=True, below=True, hint="try 5e-4")
    batch_size: int = setting(64, help="images per step", least=2, most=65536, what="batch size", label="Batch size")
    weight_decay: float = setting(0.1, help="AdamW weight decay", least=0, label="Weight decay (AdamW)")
    warmup_steps: int = setting(20, help="linear warmup steps", least=0, label="Warmup steps")
    grad_clip: float = setting(1.0, help="gradient-norm clip", least=0, above=True, label="Gradient-norm clip")
    seed: int = setting(0, help=f"0..{MAX_SEED}", least=0, most=MAX_SEED, label="Seed", flag=NO_FLAG)
    device: str = setting("auto", help="auto, cpu, cuda or mps")
    augment: bool = setting(False, help="random shifts of the training images")
    ldifs_variant: str = setting("paper", help=f"LDIFS variant: {' or '.join(LDIFS_VARIANTS)}", choices=LDIFS_VARIANTS)
    # A count: the stem plus this many evenly spaced blocks (ViT) / stages (ResNet); or groups such as "last",
    # "stem+blocks", "embedding" (see parse_ldifs_taps). Feature drift is measured at these taps for every run.
    ldifs_taps: int | str = setting(4, help=f"LDIFS taps: a count (the stem + that many evenly spaced blocks) or "
                                    f"groups joined by '+' from {', '.join(LDIFS_TAP_GROUPS)}, e.g. last or "
                                    f"stem+blocks", check=ldifs_taps_problem, parse=ldifs_taps_text,
                                    hint="4,last,stem+blocks")
    # BatchNorm statistics of an end-to-end run: "train" updates them as the paper's recipe (model.train()) does,
    # "frozen" keeps θ₀'s. Frozen towers and the `lp` objective are always in eval mode.
    bn: str = setting("train", help="BatchNorm statistics of an end-to-end run: updated (train) or kept (frozen)",
                      choices=BATCHNORM_MODES)
    train_limit: int | None = setting(10000, help="fine-tuning pool size ('all': the whole train split)", least=10,
                                      empty=True, label="Fine-tuning pool (train images)")
    eval_limit: int | None = setting(1000, help="test images per dataset ('all': every one)", least=10, empty=True,
                                     label="Test images per dataset")  # a fixed subset
    probe_limit: int | None = setting(100, help="train images per class for linear probes ('all': every one)",
                                      least=2, empty=True, label="Train images per class for linear probes")
    probe_cap: int | None = setting(5000, help="at most this many linear-probe train images per dataset ('all': no "
                                    "cap)", least=10, empty=True,
                                    label="At most this many linear-probe train images per dataset")
    curve_points: int = setting(20, help="points of the forgetting-over-training curve, measured every steps/points "
                                "steps (0: no curve)", least=0, most=10000, label="Forgetting-curve points")
    curve_images: int = setting(200, help="test images per dataset for each point of the forgetting curve", least=10,
                                most=100000, label="Forgetting-curve images per dataset")
    umap_points: int = setting(500, help="points per dataset in the UMAP, pre and post each", least=0,
                               label="Points per dataset in the UMAP", flag=NO_FLAG)
    data_root: str | None = setting(None, help="root of torchvision datasets", empty=True)
    download: bool = setting(False, help="allow downloading a torchvision dataset")
    save_weights: bool = setting(True, help="keep no tuned weights (WiSE-FT then cannot mix them; a Ray trial sends "
                                 "back less)", flag="--no-weights")
    label: str = setting("", help="a name of the user's", flag=NO_FLAG)
    # -- continual fine-tuning (sequence.py): a stage of a sequence starts from an earlier run's tuned weights --
    start_from: str | None = setting(None, help="id of the finished run whose tuned weights this run starts from "
                                     "(None: θ₀)", empty=True, flag=NO_FLAG)
    anchor: str = setting("original", help="what ldifs and l2sp compare to: θ₀ (original) or the start weights "
                          "(previous)", choices=ANCHORS, flag=NO_FLAG)
    sequence_id: str = setting("", help="the sequence this run is a stage of ('' for a single run)", flag=NO_FLAG)
    stage: int | None = setting(None, help="its position there (1 = the first task)", empty=True, flag=NO_FLAG)
    # -- a checked run (objective "checked"): the files it compares with the base model, named and hashed --
    tuned: str | None = setting(None, help="the fine-tuned checkpoint a checked run compares with the base model",
                                empty=True, flag=NO_FLAG)
    tuned_sha256: str | None = setting(None, help="its content hash", empty=True, flag=NO_FLAG)
    tuned_head: str | None = setting(None, help="the classification head trained with it (optional)", empty=True,
                                     flag=NO_FLAG)
    tuned_head_sha256: str | None = setting(None, help="its content hash", empty=True, flag=NO_FLAG)

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
    def checked(self) -> bool:
        """A checkpoint fine-tuned elsewhere, not a run the lab trains."""
        return self.objective == CHECKED

    @property
    def regularised(self) -> bool:
        return self.objective in REGULARISED

    def forgetting_datasets(self, bank: list[str]) -> list[str]:
        """Datasets checked for forgetting: the chosen ones, else every concept-bank domain; never the task."""
        from ldifs_core.datasets import same_dataset

        names = self.eval_datasets if self.eval_datasets is not None else bank
        return [name for name in names if self.dataset is None or not same_dataset(name, self.dataset)]

    def validate(self) -> "RunConfig":
        """Refuse settings that cannot work, before any work starts; the message says what to change. Each run's
        settings pass here once, where the run enters the lab (the CLI, the app, runner.execute without a run)."""
        problems = [problem for name, declared in RUN_SETTINGS.items()
                    if (problem := declared.problem(name, getattr(self, name)))]
        if self.lam is not None:
            if not self.regularised:
                problems.append(f"λ is only used by {' and '.join(REGULARISED)}; {self.objective} has no regulariser "
                                f"(leave λ out)")
        if self.train_limit is not None and self.batch_size > self.train_limit:
            problems.append(f"batch size {self.batch_size} is larger than the fine-tuning pool ({self.train_limit} "
                            f"images): lower the batch size or raise the train limit")
        if self.eval_datasets is not None and not self.forgetting_datasets([]):
            problems.append("no dataset is left to check for forgetting (the list is empty or only the task): "
                            "name at least one other dataset")
        if self.objective in OBJECTIVE_TYPES:
            problems += OBJECTIVE_TYPES[self.objective].problems(self)
        if self.dataset is None and not self.checked:
            problems.append("a fine-tuning run needs its task: name the dataset to fine-tune on")
        if self.checked and not (self.tuned and self.tuned_sha256):
            problems.append("a checked run needs the tuned checkpoint and its hash (use `check`)")
        if self.checked and bool(self.tuned_head) != bool(self.tuned_head_sha256):
            problems.append("a checked run's head file needs its hash (use `check`)")
        if not self.checked and (self.tuned or self.tuned_head):
            problems.append("tuned and tuned_head belong to checked runs only")
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
        if self.checked:
            head = f" with its head {Path(self.tuned_head).name}" if self.tuned_head else ""
            task = f" on {self.dataset}" if self.dataset else " (no task)"
            return f"checked {Path(self.tuned or '').name}{head}{task}"
        lam = f" λ={self.effective_lam:g}" if self.regularised else ""
        if self.objective == "ldifs" and (self.ldifs_taps, self.ldifs_variant) != (4, "paper"):
            lam += f" taps={self.ldifs_taps} {self.ldifs_variant}"
        stage = f", stage {self.stage}" if self.stage else ""
        return f"{self.objective}{lam} on {self.dataset} ({self.steps} steps, seed {self.seed}{stage})"


# A run is fully described by its RunConfig; the same config and seed on the CPU give the same metrics. Its fields
# are RunSettings' and every objective plugin's options, written flat (config.json, run identity, keyword arguments).
RunConfig = make_dataclass("RunConfig",
                           [option.field() for kind in OBJECTIVE_TYPES.values() for option in kind.options],
                           bases=(RunSettings,), namespace={"__doc__": RunSettings.__doc__, "__module__": __name__})


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


RUN_SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(RunConfig)}  # every field's

