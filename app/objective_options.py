"""Launch-page widgets for the settings one objective reads, drawn from what its plugin declares
(ldifs_core/objectives/), and for the optimiser; each returns RunConfig keyword arguments, checked by
RunConfig.validate like every other input. A number out of range is None, its field saying why
(launch_checks.checked_setting)."""
from __future__ import annotations

import streamlit as st

from app.launch_checks import checked_setting
from ldifs_core.config import LDIFS_TAP_GROUPS, LDIFS_VARIANTS
from ldifs_core.objectives import OBJECTIVE_TYPES

TAP_PRESETS = ("4", "1", "2", "last", "embedding", "stem+last", "stem+blocks")
TAP_LABELS = {"4": "4 — the stem + 4 evenly spaced blocks (the paper's choice)", "1": "1 — the stem + the last block",
              "2": "2 — the stem + 2 evenly spaced blocks", "last": "last block only",
              "embedding": "final embedding only", "stem+last": "stem + last block",
              "stem+blocks": "stem + every block"}
VARIANT_LABELS = {"paper": "paper (each position unit-normalised over channels)",
                  "released": "released code (each channel normalised over positions)"}
MAX_COLUMNS = 3


def objective_settings(objective: str) -> dict:
    """The widgets of `objective`'s grid settings (ldifs: taps and variant) and of its own options, side by side."""
    kind = OBJECTIVE_TYPES[objective]
    chosen = grid_settings(kind.grid)
    options = kind.options
    for start in range(0, len(options), MAX_COLUMNS):
        row = options[start:start + MAX_COLUMNS]
        for column, option in zip(st.columns(len(row)), row):
            chosen[option.name] = option_widget(column, option)
    return chosen


def option_widget(column, option):
    """A field for one option, by its type: a checkbox, a choice, a number or a text."""
    declared, label = option.setting, option.setting.label or option.name
    if option.kind is bool:
        return column.checkbox(label, value=option.default, help=declared.help)
    if declared.choices:
        return column.radio(label, declared.choices, index=declared.choices.index(option.default), help=declared.help)
    if option.kind in (int, float):
        return checked_setting(column, option.name, help=declared.help)
    return column.text_input(label, value=option.default, help=declared.help).strip() or option.default


def grid_settings(names: tuple[str, ...]) -> dict:
    """LDIFS's taps and variant: general settings (feature drift is measured at the taps), offered beside the
    objective whose sweep takes them as a grid."""
    if "ldifs_taps" not in names:
        return {}
    left, right = st.columns(2)
    taps = left.selectbox("LDIFS taps: which layers are kept close", TAP_PRESETS, format_func=TAP_LABELS.get,
                          help=f"Groups joined by '+' from {', '.join(LDIFS_TAP_GROUPS)}; the CLI and sweeps "
                               f"take any such combination (--ldifs-taps).")
    variant = right.radio("LDIFS variant", LDIFS_VARIANTS, format_func=VARIANT_LABELS.get, horizontal=False)
    return {"ldifs_taps": int(taps) if taps.isdigit() else taps, "ldifs_variant": variant}


def optimiser_settings(column) -> dict:
    """AdamW weight decay, linear warmup and gradient-norm clipping (Advanced)."""
    return {name: checked_setting(column, name) for name in ("weight_decay", "warmup_steps", "grad_clip")}

