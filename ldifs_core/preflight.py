"""Everything about a run that can be checked before anything is stored: its device, its model and checkpoint, its
taps, its datasets and whether they hold enough to train and measure. The CLI (run, sweep, sequence) and the app's
Launch page call these same checks, so the two never disagree about what may start.

A run refused here leaves nothing in the store; what is refused later (a loss that diverges) is recorded as a failed
run with its reason. The checks read file lists, headers and a few images; the model itself is loaded only by
`check_run(..., load=True)`, into the runner's cache, where the run then finds it (loaded once, not twice).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ldifs_core import availability
from ldifs_core.config import RunConfig, parse_ldifs_taps
from ldifs_core.datasets import available_bank
from ldifs_core.errors import BadConfig, DatasetUnavailable

if TYPE_CHECKING:
    from ldifs_core.sequence import SequenceConfig


def check_device(requested: str) -> None:
    """Refuse a device this machine does not have ('cuda' without a GPU) or does not know ('tpu')."""
    from ldifs_core.models import pick_device

    pick_device(requested)


def check_model(name: str | None, pretrained: str | None) -> None:
    """Refuse, without loading weights, an unknown model or tag, a missing file, a folder, and a file that is not a
    checkpoint, is truncated or holds pickled code."""
    from ldifs_core.checkpoints import check_file
    from ldifs_core.models import checked_source

    name, pretrained = checked_source(name, pretrained)
    if Path(pretrained).expanduser().is_file():
        check_file(Path(pretrained).expanduser())


def check_taps(cfg: RunConfig) -> None:
    """Refuse a tap count beyond the model's image tower (4 taps of a 4-block tower at most), which a run would
    otherwise not be able to keep."""
    from ldifs_core.ldifs import taps_beyond_tower
    from ldifs_core.models import EMBEDDED_MODEL, tower_blocks

    spec = parse_ldifs_taps(cfg.ldifs_taps)
    blocks = tower_blocks(cfg.model)
    if isinstance(spec, int) and blocks is not None and spec > blocks:
        raise BadConfig(taps_beyond_tower(spec, blocks, cfg.model or EMBEDDED_MODEL) + ".")


def check_dataset(name: str, root: str | None, download: bool, hint: str = "") -> None:
    """availability.check_dataset, with `hint` (the front end's words for getting a torchvision dataset) added."""
    try:
        availability.check_dataset(name, root=root, download=download)
    except DatasetUnavailable as err:
        if hint and availability.is_torchvision(name):
            raise DatasetUnavailable(f"{err} {hint}") from None
        raise


def check_task(cfg: RunConfig, hint: str = "") -> None:
    """The dataset a run fine-tunes on: usable, and (an image folder) with enough training images of two classes."""
    check_dataset(cfg.dataset, cfg.data_root, cfg.download, hint)
    if availability.is_folder(cfg.dataset):
        summary = availability.folder_summary(cfg.dataset)
        if sum(1 for count in summary.train_counts if count) < 2:
            raise DatasetUnavailable(f"“{cfg.dataset}” has training images of fewer than two classes (the rest are "
                                     f"its fixed test images). Add images: at least two per class.")
        train = sum(summary.train_counts)
        if train < min(cfg.batch_size, cfg.train_limit or train):
            raise DatasetUnavailable(f"“{cfg.dataset}” has only {train} training images, fewer than the batch size "
                                     f"{cfg.batch_size}. Lower the batch size or add images.")


def check_checked(names: Sequence[str], root: str | None, download: bool, hint: str = "") -> None:
    """The datasets a run measures forgetting on: usable, and (image folders) with test images of two classes."""
    for name in names:
        check_dataset(name, root, download, hint)
        if availability.is_folder(name):
            summary = availability.folder_summary(name)
            if sum(1 for count in summary.test_counts if count) < 2:
                raise DatasetUnavailable(f"“{name}” has test images of fewer than two classes, so forgetting cannot "
                                         f"be measured on it. Add images: at least two per class.")


def check_run(cfg: RunConfig, hint: str = "", load: bool = False) -> None:
    """Every check of one run's settings, cheapest first; with `load`, the model is then loaded into the runner's
    cache (where the run will find it), so a checkpoint of another architecture is refused here too."""
    check_device(cfg.device)
    check_model(cfg.model, cfg.pretrained)
    check_taps(cfg)
    check_task(cfg, hint)
    check_checked(cfg.forgetting_datasets(available_bank()), cfg.data_root, cfg.download, hint)
    if load:
        from ldifs_core.runner import cached_model

        cached_model(cfg.model, cfg.pretrained)


def check_inspection(cfg: RunConfig, hint: str = "") -> None:
    """A check of a checkpoint fine-tuned elsewhere (check.py): nothing trains, so its task needs test images only;
    then the base model is loaded into the runner's cache (where the run finds it) and the user's files are read
    against it, so a file of another architecture, a bad head or pickled code is refused before anything is stored."""
    from ldifs_core.check import read_check_inputs
    from ldifs_core.runner import cached_model

    check_device(cfg.device)
    check_model(cfg.model, cfg.pretrained)
    check_taps(cfg)
    task = [cfg.dataset] if cfg.dataset else []  # the task is optional
    check_checked([*task, *cfg.forgetting_datasets(available_bank())], cfg.data_root, cfg.download, hint)
    read_check_inputs(cfg, cached_model(cfg.model, cfg.pretrained))


def check_sweep(configs: Sequence[RunConfig], hint: str = "", load: bool = False) -> None:
    """A sweep's runs: they share their data, model and device and differ in objective, λ, seed and grid settings,
    so the first is checked whole and the others for their taps."""
    check_run(configs[0], hint, load)
    for cfg in configs[1:]:
        check_taps(cfg)


def check_sequence(seq: SequenceConfig, hint: str = "", load: bool = False) -> None:
    """Every stage of a sequence, as the run it will be (its task, and every other task and dataset checked)."""
    for stage in range(1, len(seq.tasks) + 1):
        check_run(seq.stage_config(stage), hint, load and stage == 1)
