"""Checks before queuing, shown next to the field they are about, in the app's words.

Numbers are typed into text fields, so what the user typed stays what they see; text that is not a number, or a
value out of range, is refused with a message under its field (a bounded st.number_input silently replaced −5 steps
by the default, and any st.number_input puts its last value back over "abc").
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


def checked_setting(container: DeltaGenerator, name: str, default: int | float | None = None,
                    **kwargs) -> int | float | None:
    """The number field of RunConfig's setting `name` (general or an objective's option), with its declared label
    and range (ldifs_core/settings.py), starting at `default` (default: RunConfig's): see checked_number."""
    declared = RUN_SETTINGS[name]
    return checked_number(container, declared.label or name, getattr(RunConfig, name) if default is None else default,
                          declared, **kwargs)


def checked_number(container: DeltaGenerator, label: str, default: int | float, declared: Setting,
                   **kwargs) -> int | float | None:
    """A number field that keeps what was typed (a whole number when `default` is one); None, with the reason
    under the field, when the text is not such a number or is outside the declared range. It is a text field:
    st.number_input puts its last value back in the browser when the text is not a number ("abc"), and says
    nothing."""
    whole = isinstance(default, int)
    text = container.text_input(label, value=number_text(default), **kwargs).strip()
    value = read_number(text, whole)
    if value is None or not declared.fits(value):
        shown = lambda v: f"{v:,}" if whole else f"{v:g}"
        if not text:
            reason = "it is empty"
        elif value is not None:
            reason = f"it is {shown(value)}"
        else:
            reason = f"“{text}” is not {'a whole number' if read_number(text, False) is not None else 'a number'}"
        container.error(f"{label} must be {'a whole number' if whole else 'a number'} {declared.bound(shown)}; "
                        f"{reason}.", icon=":material/error:")
        return None
    return value


def number_text(value: int | float) -> str:
    """How a number field shows a number: as the CLI takes it (300, 0.0005)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def read_number(text: str, whole: bool) -> int | float | None:
    """The number typed (a whole one when `whole`: 300, 1,000 or 1e6), None when it is not one."""
    if whole:
        try:
            return int(text.replace(",", ""))
        except ValueError:
            number = read_number(text.replace(",", ""), False)
            return int(number) if number is not None and number.is_integer() else None
    try:
        return float(text)
    except ValueError:
        return None


def checked_lambdas(slot: DeltaGenerator, label: str, chosen: Sequence[float | str]) -> list[float] | None:
    """λ values picked from a list or typed into it (st.multiselect with new options gives those as text); None,
    with the reason in `slot`, when one is not a number λ can take (ldifs_core/settings.py: RunConfig's lam)."""
    declared, lams = RUN_SETTINGS["lam"], []
    for value in chosen:
        lam = value if isinstance(value, float) else read_number(str(value).strip(), whole=False)
        if lam is None or not declared.fits(lam):
            reason = "is not a number" if lam is None else f"is not {declared.bound()}"
            slot.error(f"{label}: “{value}” {reason}; λ is a number at least 0 (0 is plain cross-entropy).",
                       icon=":material/error:")
            return None
        lams.append(lam)
    return list(dict.fromkeys(lams))


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
            if (name and name not in BANK_NAMES and not availability.is_torchvision(name)
                    and Path(name).expanduser().is_dir()):
                seen.setdefault(name)
    return list(seen)
