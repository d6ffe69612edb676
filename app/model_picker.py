"""Choosing the base model: the embedded default, an open_clip (name, tag) from the zoo, or a local checkpoint.

open_clip is imported only when its lists are needed: it takes seconds, and most runs use the default.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

EMBEDDED, ZOO, CHECKPOINT = "Embedded default", "open_clip zoo", "Local checkpoint file"
DEFAULT_ARCHITECTURE = "ViT-B-32"


@dataclass(frozen=True)
class ModelChoice:
    name: str | None = None  # None: the embedded default
    pretrained: str | None = None  # an open_clip tag or a checkpoint path ('': a checkpoint path not given yet)


@st.cache_data(show_spinner="Looking for cached weights…", ttl=600)
def zoo_weights() -> list[tuple[str, str, bool]]:
    """Every open_clip (name, tag) with whether its weights are already on this machine."""
    import open_clip

    from ldifs_core.models import weights_available

    return [(name, tag, weights_available(name, tag)) for name, tag in open_clip.list_pretrained()]


@st.cache_data(show_spinner=False)
def architectures() -> list[str]:
    import open_clip

    return open_clip.list_models()


def zoo_label(entry: tuple[str, str, bool]) -> str:
    name, tag, available = entry
    return f"{name} · {tag} — {'weights here' if available else 'needs a download'}"


def choose_model() -> ModelChoice:
    """The base-model widgets; returns what the user picked (checked later by `check_loads`)."""
    from ldifs_core.models import EMBEDDED_MODEL

    source = st.radio("Base model", (EMBEDDED, ZOO, CHECKPOINT), horizontal=True,
                      help="The CLIP whose image encoder is fine-tuned. The embedded default needs no network.")
    if source == EMBEDDED:
        st.caption(f"**{EMBEDDED_MODEL}**: a tiny CLIP shipped with the lab (28×28 images, the quickest to "
                   f"fine-tune; the time a run takes here is estimated next to Start).")
        return ModelChoice()
    if source == ZOO:
        entries = zoo_weights()
        entry = st.selectbox("open_clip model and pretrained weights", entries, format_func=zoo_label,
                             index=next((i for i, e in enumerate(entries) if e[2]), 0))
        if entry[2]:
            st.badge("weights available here", icon=":material/check_circle:", color="green")
        else:
            st.badge("weights not on this machine: needs a download", icon=":material/cloud_download:",
                     color="orange")
        return ModelChoice(entry[0], entry[1])
    names = architectures()
    path = st.text_input("Checkpoint file", placeholder="/path/to/checkpoint.safetensors",
                         help="A state_dict saved with torch.save or safetensors.")
    name = st.selectbox("Architecture of the checkpoint", names,
                        index=names.index(DEFAULT_ARCHITECTURE) if DEFAULT_ARCHITECTURE in names else 0)
    return ModelChoice(name, str(Path(path.strip()).expanduser()) if path.strip() else "")


def check_loads(choice: ModelChoice) -> None:
    """Load the model now, so 'no weights offline' or a bad path shows before queuing (raises LabError).

    The load goes through the runner's own model cache, so the queued run reuses it instead of loading again.
    That cached model is shared, read-only, by every thread of the process: it is only loaded here, never
    returned, kept or touched (runs work on private copies in the worker).
    """
    from ldifs_core import preflight, runner
    from ldifs_core.errors import ModelUnavailable

    if choice.name and choice.pretrained == "":
        raise ModelUnavailable("Give the path of a checkpoint file: the weights of the chosen architecture, saved "
                               "with torch.save (.pt, .pth, .bin) or safetensors (.safetensors).")
    preflight.check_model(choice.name, choice.pretrained)  # the CLI's checks first: a bad file costs no load
    runner.cached_model(choice.name, choice.pretrained)


def image_size(choice: ModelChoice) -> int | None:
    """The side in pixels of the images the chosen model takes (None for an architecture open_clip lacks)."""
    from ldifs_core.errors import LabError
    from ldifs_core.models import input_resolution

    try:
        return input_resolution(choice.name)
    except LabError:
        return None
