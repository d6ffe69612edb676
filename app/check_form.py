"""Launch's "Check a fine-tuned checkpoint": a checkpoint made elsewhere, checked for forgetting as a run of kind
"checked" through the worker queue. Its files are checked with the CLI's own checks (ldifs_core.check) before
anything is queued; the result opens in Forgetting and Feature drift like any run."""
from __future__ import annotations

import streamlit as st

from app import jobs, launch_checks, model_picker, widgets
from app.launch_checks import checked_setting, passes
from ldifs_core.config import RunConfig
from ldifs_core.datasets import available_bank, known_datasets, same_dataset
from ldifs_core.errors import LabError

START_CHECK = "Start check"
NO_TASK = ""  # the task left out: the check then measures forgetting only, on every dataset chosen
LIMITS = ("eval_limit", "probe_limit", "probe_cap", "umap_points")


def check_form(root: str | None) -> None:
    """The form; on Start, every check runs (each problem shown by its field) and a good check is queued."""
    st.markdown("Compare a checkpoint fine-tuned elsewhere (open_clip's training script, your own loop) with the "
                "model it started from: what its image encoder forgot, measured exactly as for a run of this lab.")
    model = model_picker.choose_model()
    model_slot = st.empty()
    tuned = st.text_input("Fine-tuned checkpoint file", placeholder="/path/to/epoch_10.pt",
                          help="A state dict of the whole CLIP or of its image tower, an open_clip training "
                               "checkpoint ({'state_dict': {'module.…'}}) or safetensors, of the base model's "
                               "architecture.").strip()
    files_slot = st.empty()
    task_col, head_col = st.columns(2)
    datasets = known_datasets()
    task = task_col.selectbox("Fine-tuned on (optional)", [NO_TASK, *datasets],
                              format_func=lambda name: name or "not given (forgetting only)",
                              help="Task accuracy before and after, zero-shot and with a linear probe.")
    head = head_col.text_input("Its classification head (optional)", placeholder="/path/to/head.pt",
                               disabled=not task, help="A state dict with weight [classes, features] and an "
                                                       "optional bias, or a tensor; needs the task it classifies.")
    others = [name for name in datasets if not task or not same_dataset(name, task)]
    checks = st.multiselect("Check forgetting on", others, default=[d for d in available_bank() if d in others],
                            format_func=lambda name: launch_checks.dataset_label(name, root))
    checks_slot = st.empty()
    with st.expander("Advanced"):
        limits = {name: checked_setting(st, name) for name in LIMITS}
    if not st.button(START_CHECK, type="primary", icon=":material/play_arrow:"):
        return
    ready = None not in limits.values()
    if not tuned:
        files_slot.error("Give the path of the fine-tuned checkpoint file.", icon=":material/error:")
        ready = False
    if not checks:
        checks_slot.error("Pick at least one dataset to check for forgetting.", icon=":material/error:")
        ready = False
    elif not launch_checks.all_pass(checks_slot, launch_checks.check_checked, [task, *checks] if task else checks,
                                    root, False):
        ready = False
    with st.spinner("Checking the model loads…"):
        ready = passes(model_slot, model_picker.check_loads, model) and ready
    if not ready:
        return
    with st.spinner("Reading the checkpoint…"):
        cfg = passes_check(files_slot, model, tuned, task, checks, head if task else "", root, limits)
    if cfg is not None:
        run_id = jobs.job_runner().submit(cfg)
        widgets.remember_run(run_id)
        st.toast(f"Queued {cfg.describe()}", icon=":material/schedule:")


def passes_check(slot, model: model_picker.ModelChoice, tuned: str, task: str, checks: list[str], head: str,
                 root: str | None, limits: dict) -> RunConfig | None:
    """The CLI's checks (ldifs_core.preflight.check_inspection): the settings to queue, or None with the reason in
    `slot`."""
    from ldifs_core import preflight
    from ldifs_core.check import check_config  # torch: only when a check is started

    try:
        cfg = check_config(model.name, model.pretrained, tuned, task or None, checks, head.strip() or None,
                           data_root=root, **limits)
        preflight.check_inspection(cfg, launch_checks.DOWNLOAD_HINT)
    except LabError as err:
        slot.error(str(err), icon=":material/error:")
        return None
    return cfg
