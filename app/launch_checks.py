"""Checks before queuing, shown next to the field they are about, in the app's words.

Numbers are typed into fields without bounds, so what the user typed stays what they see; a value out of range is
refused with a message under its field (a bounded st.number_input silently replaced −5 steps by the default).
Datasets, models and taps are checked when Start is pressed, by ldifs_core.preflight: the checks the CLI makes
before it stores a run, so the two front ends refuse the same settings.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app import results
from ldifs_core import availability, preflight
from ldifs_core.config import RUN_SETTINGS, RunConfig
from ldifs_core.datasets import BANK_NAMES
from ldifs_core.errors import LabError
from ldifs_core.settings import Setting
from ldifs_core.store import RunRecord

DOWNLOAD_HINT = ("To fetch it, tick “Download missing torchvision datasets” under Advanced on the Launch page; if "
                 "its files are elsewhere, give that folder there as “Data folder for torchvision datasets”.")
FILES_HERE, NEEDS_DOWNLOAD = "files here", "needs download"


def checked_setting(container: DeltaGenerator, name: str, **kwargs) -> int | float | None:
    """The number field of RunConfig's setting `name` (general or an objective's option), with its declared label,
    help, step and range (ldifs_core/settings.py): see checked_number."""
    declared = RUN_SETTINGS[name]
    if declared.step is not None:
        kwargs.setdefault("step", declared.step)
    if isinstance(getattr(RunConfig, name), float):
        kwargs.setdefault("format", "%g")
    return checked_number(container, declared.label or name, getattr(RunConfig, name), declared, **kwargs)


def checked_number(container: DeltaGenerator, label: str, default: int | float, declared: Setting,
                   **kwargs) -> int | float | None:
    """A number field that keeps what was typed (a whole number when `default` is one); None, with the reason
    under the field, when the value is outside the declared range."""
    whole = isinstance(default, int)
    value = container.number_input(label, value=default, **kwargs)
    if value is None or not declared.fits(value):
        bound = declared.bound(lambda v: f"{v:,}" if whole else f"{v:g}")
        shown = "empty" if value is None else f"{value:,}" if whole else f"{value:g}"
        container.error(f"{label} must be {'a whole number' if whole else 'a number'} {bound}; it is {shown}.",
                        icon=":material/error:")
        return None
    return int(value) if whole else float(value)


def data_root_typed(key: str) -> str | None:
    """The data folder typed into the field `key` (drawn further down the page, so read from the session)."""
    return str(st.session_state.get(key, "")).strip() or None


def dataset_label(name: str, root: str | None = None) -> str:
    """How a dataset is listed: torchvision datasets say whether their files are here; a folder shows its name."""
    if name in BANK_NAMES:
        return name
    if availability.is_torchvision(name):
        return f"{name} — {FILES_HERE if availability.files_here(name, root) else NEEDS_DOWNLOAD}"
    return f"{Path(name).name} — folder {name}"


def check_dataset(name: str, root: str | None, download: bool) -> None:
    """preflight.check_dataset, with how to get a torchvision dataset in the app's words."""
    preflight.check_dataset(name, root, download, DOWNLOAD_HINT)


def check_task(cfg: RunConfig) -> None:
    """The dataset `cfg` fine-tunes on (preflight.check_task): usable and large enough for its batch."""
    preflight.check_task(cfg, DOWNLOAD_HINT)


def check_checked(name: str, root: str | None, download: bool) -> None:
    """A dataset checked for forgetting (preflight.check_checked): usable, with test images of two classes."""
    preflight.check_checked([name], root, download, DOWNLOAD_HINT)


def passes(slot: DeltaGenerator, check, *args) -> bool:
    """Run one check; its LabError is shown in `slot`, next to the field it is about. True when it passed."""
    try:
        check(*args)
    except LabError as err:
        slot.error(str(err), icon=":material/error:")
        return False
    return True


def all_pass(slot: DeltaGenerator, check, items: Sequence, *args) -> bool:
    """check(item, *args) for every item, each problem shown in `slot` (all of them, not only the first)."""
    with slot.container():
        return all([passes(st, check, item, *args) for item in items])


def stored_folders(records: Sequence[RunRecord] | None = None) -> list[str]:
    """Image folders the runs (default: every run of the store) used that still exist here: own data is offered
    again."""
    seen: dict[str, None] = {}
    for record in results.run_store().list() if records is None else records:
        for name in [record.config.dataset, *(record.config.eval_datasets or [])]:
            if name not in BANK_NAMES and not availability.is_torchvision(name) and Path(name).expanduser().is_dir():
                seen.setdefault(name)
    return list(seen)
