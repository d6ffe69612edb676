"""Reading runs from the run store, with the caching that keeps page and run switches fast.

A finished run never changes, so its metrics and arrays are cached by (store, run id); anything still
active is read fresh. The store path is part of every key, so two stores in one process never mix.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from ldifs_core.paths import default_store_dir
from ldifs_core.store import RunRecord, RunStore

ACTIVE = ("queued", "running")


def store_root() -> str:
    return str(default_store_dir())


@st.cache_resource(show_spinner=False)
def store_at(root: str) -> RunStore:
    """Opening the store once per process also marks runs of a dead previous process as interrupted."""
    return RunStore(root)


def run_store() -> RunStore:
    return store_at(store_root())


@st.cache_data(show_spinner=False, max_entries=64)
def _metrics(root: str, run_id: str) -> dict:
    return store_at(root).metrics(run_id)


@st.cache_data(show_spinner=False, max_entries=16)
def _arrays(root: str, run_id: str) -> dict[str, np.ndarray]:
    return store_at(root).arrays(run_id)


@st.cache_data(show_spinner=False, max_entries=64)
def _history(root: str, run_id: str) -> list[dict]:
    return store_at(root).history(run_id)


def metrics(run_id: str) -> dict:
    """metrics.json of a finished run (raises RunNotFound for runs without results, RunUnreadable for runs whose
    files cannot be read; neither is cached, so a repaired run reads again)."""
    return _metrics(store_root(), run_id)


def arrays(run_id: str) -> dict[str, np.ndarray]:
    return _arrays(store_root(), run_id)


def history(record: RunRecord) -> list[dict]:
    """Per-step history; only runs that ended are cached (their history file no longer changes)."""
    if record.status in ACTIVE:
        return run_store().history(record.run_id)
    return _history(store_root(), record.run_id)


def records(run_ids: Sequence[str]) -> list[RunRecord]:
    """The given runs that the store still knows (a session's runs may have been deleted meanwhile)."""
    known = {record.run_id: record for record in run_store().list()}
    return [known[run_id] for run_id in run_ids if run_id in known]


def umap_datasets(run_arrays: dict[str, np.ndarray]) -> list[str]:
    """Datasets of a run that have a joint UMAP embedding stored."""
    return [key.split("/", 1)[1] for key in run_arrays if key.startswith("umap_pre/")]


def class_names(metrics_of_run: dict, dataset: str, labels: np.ndarray) -> list[str]:
    """Label index → class name for a UMAP. Every UMAP point is a test image, so its class is in `per_class`."""
    report = next(r for r in metrics_of_run["forgetting"] if r["dataset"] == dataset)
    by_label = {c["label"]: c["class_name"] for c in report["per_class"]}
    return [by_label.get(k, f"class {k}") for k in range(int(labels.max()) + 1 if len(labels) else 0)]


def wise_results(run_id: str) -> dict[float, dict]:
    """WiSE-FT mixes of a run already computed by the worker (α → metrics), read fresh: a path fills in while
    its job runs."""
    from ldifs_core.wise_records import wise_results

    return wise_results(run_store(), run_id)


def sequence_ids() -> list[str]:
    """Every sequence in the store, newest first."""
    from ldifs_core.sequence_records import sequence_ids

    return sequence_ids(run_store())


def sequence(sequence_id: str) -> dict:
    """A sequence's JSON (SequenceState.to_dict), read fresh: its status comes from its stages' runs, which change
    while it runs. Raises RunNotFound / RunUnreadable for a missing or damaged record."""
    from ldifs_core.sequence import sequence_state

    return sequence_state(run_store(), sequence_id).to_dict()
