"""Checking a checkpoint fine-tuned elsewhere for forgetting: a run of its own kind (objective "checked"), evaluated
and stored by the one path a trained run takes (runner.execute), so every page and command reads it unchanged.

`check_config` names the user's files in a RunConfig (path and content hash); `preflight.check_inspection` checks
everything a check reads before the store is touched (the CLI's `check` and the app's Launch page share it), with
`read_check_inputs` for the files; `checked_result` is what runner.execute evaluates in place of a fine-tuning.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ldifs_core.checkpoints import IMAGE_TOWER, clip_with, read_file, read_tuned_weights, state_dict_in, \
    unwrapped
from ldifs_core.config import CHECKED, RunConfig
from ldifs_core.datasets import BANK_NAMES, ImageSet, check_known, load_bank, split_index
from ldifs_core.errors import BadCheckpoint, BadConfig, ModelUnavailable
from ldifs_core.models import FoundationModel
from ldifs_core.objectives.base import text_head
from ldifs_core.train import FinetuneResult

IDENTICAL_NOTE = ("The two checkpoints are identical (every tensor of the tuned file equals the base model's), so "
                  "every change is 0.")
HEAD_RESAVE = "Save the head with torch.save(head.state_dict(), path): a weight [classes, features] and a bias."


@dataclass(frozen=True)
class CheckInputs:
    """The user's files, read and checked against the base model."""

    state: dict[str, torch.Tensor]  # the tuned weights, as read_tuned_weights gives them
    found: str  # checkpoints.WHOLE_MODEL or IMAGE_TOWER
    head: nn.Linear | None  # the user's classification head, on the CPU
    identical: bool  # every tensor in the file equals the base model's


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def existing_file(path: str, what: str) -> Path:
    """`path` made absolute; a LabError when it is missing or a folder (before it is hashed)."""
    found = Path(path).expanduser()
    if not found.exists():
        raise ModelUnavailable(f"The {what} '{path}' does not exist. Check the path.")
    if found.is_dir():
        raise BadCheckpoint(f"The {what} '{path}' is a folder. Give the file inside it (.pt, .pth, .bin, "
                            f".safetensors).")
    return found.resolve()


def check_config(model: str | None, base: str | None, tuned: str, task: str | None = None,
                 datasets: list[str] | None = None, head: str | None = None, **settings) -> RunConfig:
    """The settings of a check, its files named by absolute path and content hash, validated, with every dataset
    known; a LabError says what to change. The files' contents are checked by `read_check_inputs`."""
    if head and not task:
        raise BadConfig("A classification head needs the task it classifies: name it with --task (in the app: "
                        "'Fine-tuned on').")
    tuned_path = existing_file(tuned, "tuned checkpoint")
    head_path = existing_file(head, "head file") if head else None
    cfg = RunConfig(objective=CHECKED, dataset=task or None, model=model, pretrained=base,
                    eval_datasets=datasets, tuned=str(tuned_path), tuned_sha256=file_sha256(tuned_path),
                    tuned_head=str(head_path) if head_path else None,
                    tuned_head_sha256=file_sha256(head_path) if head_path else None, **settings).validate()
    for name in ([cfg.dataset] if cfg.dataset else []) + list(cfg.eval_datasets or ()):
        check_known(name)
    return cfg


def read_check_inputs(cfg: RunConfig, base: FoundationModel) -> CheckInputs:
    """The tuned weights and head of a check, each file still the one the config hashed."""
    for path, digest in ((cfg.tuned, cfg.tuned_sha256), (cfg.tuned_head, cfg.tuned_head_sha256)):
        if path and file_sha256(existing_file(path, "file")) != digest:
            raise BadCheckpoint(f"'{path}' changed since the check was set up (its content differs): start the "
                                f"check again.")
    state, found = read_tuned_weights(cfg.tuned, base)
    head = read_head(Path(cfg.tuned_head), base, cfg) if cfg.tuned_head else None
    reference = (base.clip.visual if found == IMAGE_TOWER else base.clip).state_dict()
    identical = all(torch.equal(tensor, reference[key].cpu()) for key, tensor in state.items())
    return CheckInputs(state, found, head, identical)


def task_classes(cfg: RunConfig) -> int:
    """How many classes the check's task has, without decoding its images."""
    if cfg.dataset in BANK_NAMES:
        return load_bank(cfg.dataset, "test").num_classes
    return len(split_index(cfg.dataset, "test", root=cfg.data_root, download=cfg.download).class_names)


def read_head(path: Path, base: FoundationModel, cfg: RunConfig) -> nn.Linear:
    """The classification head the user trained with the checkpoint: a tensor [classes, features], or a state dict
    with one such weight and optionally its bias. It classifies L2-normalised image features (as WiSE-FT's
    ClassificationHead does)."""
    content = read_file(path)
    if isinstance(content, torch.Tensor):
        weight, bias = content, None
    else:
        state = {unwrapped(key): tensor for key, tensor in state_dict_in(content, path).items()}
        weights = [key for key, tensor in state.items() if key.endswith("weight") and tensor.dim() == 2]
        if len(weights) != 1:
            raise BadCheckpoint(f"'{path}' is not a classification head: it holds {len(weights)} weight matrices "
                                f"({', '.join(list(state)[:4])}), a head has one. {HEAD_RESAVE}")
        weight, bias = state[weights[0]], state.get(weights[0].removesuffix("weight") + "bias")
    width, classes = base.clip.visual.output_dim, task_classes(cfg)
    if weight.dim() != 2 or weight.shape[1] != width:
        raise BadCheckpoint(f"'{path}' is not a head for {base.name}: its weight is {tuple(weight.shape)}, a head of "
                            f"{base.name} takes features of width {width}. {HEAD_RESAVE}")
    if weight.shape[0] != classes:
        raise BadConfig(f"The head '{path}' has {weight.shape[0]} classes, the task {cfg.dataset} has {classes}. "
                        f"Give the task the head was trained on (--task), or leave the head out.")
    if bias is not None and tuple(bias.shape) != (classes,):
        raise BadCheckpoint(f"'{path}': its bias has shape {tuple(bias.shape)}, not ({classes},). {HEAD_RESAVE}")
    head = nn.Linear(width, classes)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias if bias is not None else torch.zeros(classes))
    return head.requires_grad_(False)


def checked_result(cfg: RunConfig, base: FoundationModel, task: ImageSet | None) -> tuple[FinetuneResult, dict]:
    """The tuned CLIP and heads of a check, as a fine-tuning would leave them (on `base`, a run's private θ₀), and
    what the metrics say of the files. The task is classified with the user's head if given, else with the original
    text tower's zero-shot head; that head is also WiSE-FT's start. Without a task there are no heads."""
    inputs = read_check_inputs(cfg, base)
    initial = text_head(base, task) if task is not None else None
    head = inputs.head if inputs.head is not None else copy.deepcopy(initial)  # its own tensors: both are saved
    result = FinetuneResult(clip_with(base, inputs.state, inputs.found), head, initial)
    checked = {"tuned": cfg.tuned, "tuned_sha256": cfg.tuned_sha256, "found": inputs.found,
               "identical": inputs.identical, "note": IDENTICAL_NOTE if inputs.identical else "",
               **({"head": cfg.tuned_head} if cfg.tuned_head else {})}
    return result, checked
