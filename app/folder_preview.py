"""What the lab found in an image folder, before a run uses it: classes, images per class, and samples as the
model will see them (decoded and resized by the same code a run uses, ldifs_core.availability.folder_samples)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ldifs_core.availability import FolderSummary, folder_samples, folder_summary
from ldifs_core.datasets import data_version
from ldifs_core.errors import LabError

SHOWN_PX = 96  # samples are enlarged to at least this (nearest neighbour: every model pixel stays visible)
COLUMNS = 8


@st.cache_data(show_spinner="Reading the folder…", max_entries=8)
def _preview(path: str, image_size: int, version: str) -> tuple[FolderSummary, np.ndarray, list[str]]:
    """`version` (datasets.data_version) is only a cache key: an edited folder is read again."""
    samples = folder_samples(path, image_size)
    images = samples.images.permute(0, 2, 3, 1).numpy()
    return folder_summary(path), images, [samples.class_names[label] for label in samples.labels.tolist()]


def enlarged(image: np.ndarray) -> np.ndarray:
    factor = max(1, -(-SHOWN_PX // image.shape[0]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def folder_preview(path: str, image_size: int, expanded: bool = True) -> None:
    """An expander with the folder's classes and counts, and a grid of samples at `image_size` pixels; a folder
    the lab cannot use shows why instead."""
    with st.expander(f"What the lab found in {path}", expanded=expanded, icon=":material/folder_open:"):
        try:
            summary, images, labels = _preview(path, image_size, data_version(path))
        except LabError as err:
            st.error(str(err), icon=":material/error:")
            return
        st.markdown(f"**{len(summary.class_names)} classes, {summary.images:,} images** "
                    f"({sum(summary.train_counts):,} to train on, {sum(summary.test_counts):,} held out to test).")
        counts = pd.DataFrame({"class": summary.class_names, "train": summary.train_counts,
                               "test": summary.test_counts})
        st.bar_chart(counts, x="class", y=["train", "test"], horizontal=True, height=120 + 22 * len(counts),
                     x_label="images", y_label="")
        st.caption(f"Samples as the model sees them: {image_size}×{image_size} pixels (shorter side resized, then "
                   f"centre-cropped), shown enlarged.")
        for start in range(0, len(images), COLUMNS):
            for column, image, label in zip(st.columns(COLUMNS), images[start:start + COLUMNS],
                                            labels[start:start + COLUMNS]):
                column.image(enlarged(image), caption=label)
