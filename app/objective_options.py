"""Launch-page widgets for the settings one objective reads (LDIFS taps and variant, ls, lora, lipsum, zscl) and
for the optimiser; each returns RunConfig keyword arguments, checked by RunConfig.validate like every other input.
A number out of range is None, its field saying why (launch_checks.checked_number)."""
from __future__ import annotations

import streamlit as st

from app.launch_checks import checked_number
from ldifs_core.config import LDIFS_TAP_GROUPS, LDIFS_VARIANTS, ZSCL_BANK, RunConfig

DEFAULT = RunConfig()
TAP_PRESETS = ("4", "1", "2", "last", "embedding", "stem+last", "stem+blocks")
TAP_LABELS = {"4": "4 — the stem + 4 evenly spaced blocks (the paper's choice)", "1": "1 — the stem + the last block",
              "2": "2 — the stem + 2 evenly spaced blocks", "last": "last block only",
              "embedding": "final embedding only", "stem+last": "stem + last block",
              "stem+blocks": "stem + every block"}
VARIANT_LABELS = {"paper": "paper (each position unit-normalised over channels)",
                  "released": "released code (each channel normalised over positions)"}


def objective_settings(objective: str) -> dict:
    """The widgets of `objective`'s own settings (none for ce, l2sp, flyp, flyp_ce, lp)."""
    if objective == "ldifs":
        left, right = st.columns(2)
        taps = left.selectbox("LDIFS taps: which layers are kept close", TAP_PRESETS, format_func=TAP_LABELS.get,
                              help=f"Groups joined by '+' from {', '.join(LDIFS_TAP_GROUPS)}; the CLI and sweeps "
                                   f"take any such combination (--ldifs-taps).")
        variant = right.radio("LDIFS variant", LDIFS_VARIANTS, format_func=VARIANT_LABELS.get, horizontal=False)
        return {"ldifs_taps": int(taps) if taps.isdigit() else taps, "ldifs_variant": variant}
    if objective == "ls":
        return {"ls_factor": checked_number(st, "Label smoothing ε", DEFAULT.ls_factor, 0.0, 0.99, step=0.05,
                                            help="0 is plain cross-entropy.")}
    if objective == "lora":
        rank, alpha, dropout = st.columns(3)
        return {"lora_rank": checked_number(rank, "LoRA rank r", DEFAULT.lora_rank, 1, 1024),
                "lora_alpha": checked_number(alpha, "LoRA α (scale α / r)", DEFAULT.lora_alpha, 0.0, above=True),
                "lora_dropout": checked_number(dropout, "Rank dropout", DEFAULT.lora_dropout, 0.0, 0.95, step=0.05)}
    if objective == "lipsum":
        texts, length = st.columns(2)
        return {"lipsum_texts": checked_number(texts, "Random texts per step (M)", DEFAULT.lipsum_texts, 1, 4096),
                "lipsum_length": checked_number(length, "Tokens per random text", DEFAULT.lipsum_length, 1, 75)}
    if objective == "zscl":
        folder = st.text_input("Reference images (empty: the other concept-bank domains)",
                               placeholder="/path/to/images (one sub-folder per class)",
                               help="Unlabeled images from datasets other than the task; ZSCL keeps the model's "
                                    "image-to-caption distributions on them close to θ₀'s.").strip()
        return {"zscl_reference": folder or ZSCL_BANK}
    return {}


def optimiser_settings(column) -> dict:
    """AdamW weight decay, linear warmup and gradient-norm clipping (Advanced)."""
    return {"weight_decay": checked_number(column, "Weight decay (AdamW)", DEFAULT.weight_decay, 0.0, step=0.05,
                                           format="%g"),
            "warmup_steps": checked_number(column, "Warmup steps", DEFAULT.warmup_steps, 0, step=10),
            "grad_clip": checked_number(column, "Gradient-norm clip", DEFAULT.grad_clip, 0.0, above=True, step=0.5,
                                        format="%g")}
