"""When a stored run already answers a config: what makes two runs the same, and finding the one that does.

A run is fully described by its RunConfig, so a finished run with the same settings, made by the same version of
the training and evaluation code (config.CODE_VERSION), has the metrics a new run would get; the science table,
the app's Launch page, its demo and its λ sweep offer it instead of training again.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ldifs_core.config import CODE_VERSION, OBJECTIVE_OPTIONS, RunConfig
from ldifs_core.availability import is_torchvision
from ldifs_core.datasets import BANK_NAMES, available_bank
from ldifs_core.errors import LabError
from ldifs_core.store import RunRecord, RunStore

COSMETIC = ("label", "download")  # settings that never change a run's numbers
FIRST_CODE_VERSION = 1  # what a run stored before runs carried a code version was made by
ACTIVE = ("queued", "running")


def run_identity(cfg: RunConfig) -> dict:
    """The settings that decide a run's numbers, resolved: an explicit default λ is the default, no list of
    datasets to check is the concept-bank domains it stands for, and another objective's options are left out."""
    # vars, not asdict: every setting is a plain value except the one list, replaced here (asdict's deep copy was
    # most of the time of finding the demo's runs among a few hundred)
    identity = {**vars(cfg), "lam": cfg.effective_lam, "eval_datasets": cfg.forgetting_datasets(available_bank())}
    for key in COSMETIC:
        identity.pop(key)
    for objective, options in OBJECTIVE_OPTIONS.items():
        if objective != cfg.objective:
            for key in options:
                identity.pop(key)
    return identity


def code_version(metrics: dict) -> int:
    """The version of the code that made a finished run's metrics."""
    return int(metrics.get("code_version", FIRST_CODE_VERSION))


def same_runs(store: RunStore, cfg: RunConfig, statuses: Sequence[str] = (*ACTIVE, "done")) -> list[RunRecord]:
    """Runs of the store with `cfg`'s identity and one of `statuses`, newest first. A finished run counts only when
    this code version made it and its results can be read."""
    wanted = run_identity(cfg)
    found = []
    for record in store.list(dataset=cfg.dataset, objective=cfg.objective):
        if record.status not in statuses or run_identity(record.config) != wanted:
            continue
        if record.status == "done":
            try:
                if code_version(store.metrics(record.run_id)) != CODE_VERSION:
                    continue
            except LabError:  # turned unreadable since it was listed
                continue
        found.append(record)
    return found


def finished_run(store: RunStore, cfg: RunConfig) -> str | None:
    """The newest finished run that answers `cfg` (same settings, this code version, and no image folder it reads
    edited since it was made), or None."""
    done = [record for record in same_runs(store, cfg, ("done",)) if not folders_changed_since(cfg, record.created_at)]
    return done[0].run_id if done else None


def folders_changed_since(cfg: RunConfig, when: float) -> bool:
    """Whether an image folder the run reads has a file or sub-folder modified, added or removed after `when` (unix
    time): settings name a folder, not its content. Registered datasets never change."""
    names = [cfg.dataset, *cfg.forgetting_datasets(available_bank())]
    for name in names:
        if name in BANK_NAMES or is_torchvision(name) or not Path(name).expanduser().is_dir():
            continue
        for folder, _, files in os.walk(Path(name).expanduser()):
            # a folder's own time changes when an entry is added, removed or renamed
            if any(os.stat(os.path.join(folder, entry)).st_mtime > when for entry in [".", *files]):
                return True
    return False
