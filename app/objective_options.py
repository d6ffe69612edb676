"""Launch-page widgets for the settings one objective reads (LDIFS taps and variant, ls, lora, lipsum, zscl) and
for the optimiser; each returns RunConfig keyword arguments, checked by RunConfig.validate like every other input."""
from __future__ import annotations

import streamlit as st

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
        return {"ls_factor": st.number_input("Label smoothing ε", min_value=0.0, max_value=0.99, step=0.05,
                                             value=DEFAULT.ls_factor, help="0 is plain cross-entropy.")}
    if objective == "lora":
        rank, alpha, dropout = st.columns(3)
        return {"lora_rank": int(rank.number_input("LoRA rank r", min_value=1, max_value=1024, value=DEFAULT.lora_rank)),
                "lora_alpha": alpha.number_input("LoRA α (scale α / r)", min_value=0.01, value=DEFAULT.lora_alpha),
                "lora_dropout": dropout.number_input("Rank dropout", min_value=0.0, max_value=0.95, step=0.05,
                                                     value=DEFAULT.lora_dropout)}
    if objective == "lipsum":
        texts, length = st.columns(2)
        return {"lipsum_texts": int(texts.number_input("Random texts per step (M)", min_value=1, max_value=4096,
                                                       value=DEFAULT.lipsum_texts)),
                "lipsum_length": int(length.number_input("Tokens per random text", min_value=1, max_value=75,
                                                         value=DEFAULT.lipsum_length))}
    if objective == "zscl":
        folder = st.text_input("Reference images (empty: the other concept-bank domains)",
                               placeholder="/path/to/images (one sub-folder per class)",
                               help="Unlabeled images from datasets other than the task; ZSCL keeps the model's "
                                    "image-to-caption distributions on them close to θ₀'s.").strip()
        return {"zscl_reference": folder or ZSCL_BANK}
    return {}


def optimiser_settings(column) -> dict:
    """AdamW weight decay, linear warmup and gradient-norm clipping (Advanced)."""
    return {"weight_decay": column.number_input("Weight decay (AdamW)", min_value=0.0, value=DEFAULT.weight_decay,
                                                step=0.05, format="%g"),
            "warmup_steps": int(column.number_input("Warmup steps", min_value=0, value=DEFAULT.warmup_steps, step=10)),
            "grad_clip": column.number_input("Gradient-norm clip", min_value=0.001, value=DEFAULT.grad_clip, step=0.5,
                                             format="%g")}
