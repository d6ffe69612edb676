"""Launch: pick a model, a task and an objective, and queue a fine-tuning run; follow it live."""
from pathlib import Path

import streamlit as st

from app import jobs, model_picker, objective_options, results, widgets
from ldifs_core.config import (ANCHORS, BATCHNORM_MODES, DEFAULT_LAMBDA, INITS, MAX_SEED, OBJECTIVES, REGULARISED,
                               RunConfig)
from ldifs_core.sequence import SequenceConfig
from ldifs_core.datasets import available_bank, known_datasets
from ldifs_core.errors import BadConfig, DatasetUnavailable, LabError
from ldifs_core.models import describe_device, pick_device

DEFAULT = RunConfig()
LEARNING_RATES = tuple(sorted({1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, DEFAULT.lr}))
IMAGE_FOLDER = "ImageFolder directory…"
RECENT_RUNS = 5  # run cards shown live; the rest are on the Runs page
INIT_LABELS = {"zs": "Zero-shot head (text prompts)", "lp": "Linear-probe head (fitted first)"}
BN_LABELS = {"train": "updated while training (the paper's recipe)", "frozen": "kept from the pre-trained model"}
SEQUENCE_DEFAULT = SequenceConfig(("mnist", "fashion_mnist", "animals"))
SEQUENCE_TASKS = list(SEQUENCE_DEFAULT.tasks)
ANCHOR_LABELS = {"original": "the pre-trained model θ₀", "previous": "where the stage started (released code)"}


@st.cache_resource(show_spinner=False)
def device_line() -> str:
    return describe_device(pick_device("auto"))


jobs.job_runner().request_warm_up()  # runs start here: the idle worker pays its heavy imports now, once
st.title("Launch a fine-tuning run")
st.markdown("Fine-tune the image encoder on one dataset, then measure what it forgot on the others. "
            "Runs go to a queue and continue in the background — you can switch pages or close the tab.")

model = model_picker.choose_model()

task, checks = st.columns(2)
datasets = known_datasets()
# -- continual fine-tuning (ldifs_core/sequence.py): a sequence of tasks, each stage starting from the last --
as_sequence = task.toggle("A sequence of tasks (continual fine-tuning)", key="launch-sequence",
                          help="Fine-tune on task after task with the settings below; each stage starts from the "
                               "encoder the stage before left, with a new head. Results on the Continual page.")
if as_sequence:
    tasks = task.multiselect("Tasks, in training order", datasets, default=SEQUENCE_TASKS,
                             help="The order you pick them in is the order they are trained in.")
    anchor = task.radio("LDIFS / L2-SP compare each stage to", ANCHORS, index=ANCHORS.index(SEQUENCE_DEFAULT.anchor),
                        format_func=ANCHOR_LABELS.__getitem__, horizontal=True)
    dataset = tasks[0] if tasks else DEFAULT.dataset
else:
    tasks, anchor = [], SEQUENCE_DEFAULT.anchor
    dataset = task.selectbox("Fine-tune on", datasets + [IMAGE_FOLDER], index=datasets.index(DEFAULT.dataset),
                             help="Concept-bank domains ship with the lab; torchvision datasets need their files "
                                  "(see Advanced → data folder); an ImageFolder has one sub-folder per class.")
    if dataset == IMAGE_FOLDER:
        dataset = task.text_input("ImageFolder path", placeholder="/path/to/images (one sub-folder per class)").strip()
others = [d for d in datasets if d != dataset and d not in tasks]
eval_datasets = checks.multiselect("Also check (never trained on)" if as_sequence else "Check forgetting on", others,
                                   default=[d for d in available_bank() if d in others],
                                   help="The encoder is tested on these before and after fine-tuning.")

objective_col, lam_col = st.columns(2)
objective = objective_col.selectbox("Objective", OBJECTIVES, index=OBJECTIVES.index(DEFAULT.objective),
                                    format_func=widgets.OBJECTIVE_LABELS.__getitem__)
lam = lam_col.select_slider(
    "λ (regulariser weight, log scale)", widgets.LAMBDAS,
    value=min(widgets.LAMBDAS, key=lambda v: abs(v - DEFAULT_LAMBDA[objective])) if objective in REGULARISED else 0.0,
    disabled=objective not in REGULARISED, format_func=lambda v: f"{v:g}",
    help=f"How strongly the regulariser pulls towards the pre-trained model; 0 is plain CE. Only "
         f"{', '.join(REGULARISED)} use it.")
objective_kwargs = objective_options.objective_settings(objective)  # the chosen objective's own settings

init = st.radio("Classifier head starts from", INITS, horizontal=True, format_func=INIT_LABELS.__getitem__,
                help="Zero-shot init uses the text tower's class prompts (as in the paper); LP-init fits a probe first.")
steps_col, lr_col, batch_col, seed_col = st.columns(4)
steps = steps_col.number_input("Steps", min_value=1, max_value=100_000, value=DEFAULT.steps, step=50)
lr = lr_col.select_slider("Learning rate", LEARNING_RATES, value=DEFAULT.lr, format_func=lambda v: f"{v:g}")
batch_size = batch_col.number_input("Batch size", min_value=2, max_value=4096, value=DEFAULT.batch_size, step=16)
seed = seed_col.number_input("Seed", min_value=0, max_value=MAX_SEED, value=DEFAULT.seed)

with st.expander("Advanced"):
    left, right = st.columns(2)
    eval_limit = left.number_input("Test images per dataset", min_value=10, value=DEFAULT.eval_limit, step=100)
    probe_limit = left.number_input("Train images per class for linear probes", min_value=2,
                                    value=DEFAULT.probe_limit, step=10,
                                    help="Every class gets this many probe-training images (fewer if it has fewer).")
    probe_cap = left.number_input("At most this many linear-probe train images per dataset", min_value=10,
                                  value=DEFAULT.probe_cap, step=1000,
                                  help="Caps datasets with many classes (quickdraw has 345); fewer per class then.")
    umap_points = left.number_input("Points per dataset in the UMAP", min_value=0, value=DEFAULT.umap_points, step=100)
    train_limit = right.number_input("Fine-tuning pool (train images)", min_value=10, value=DEFAULT.train_limit,
                                     step=1000)
    augment = right.checkbox("Random-shift augmentation", value=DEFAULT.augment)
    bn = right.radio("BatchNorm statistics (ResNet towers)", BATCHNORM_MODES, format_func=BN_LABELS.__getitem__,
                     index=BATCHNORM_MODES.index(DEFAULT.bn),
                     help="ViT towers have none. Frozen towers and the linear probe always keep θ₀'s statistics.")
    data_root = right.text_input("Data folder for torchvision datasets", placeholder="~/data")
    download = right.checkbox("Download missing torchvision datasets", value=False)
    optimiser_kwargs = objective_options.optimiser_settings(right)
    label = st.text_input("Label (optional)", placeholder="e.g. baseline")

st.caption(f"Runs on: **{device_line()}**")

if st.button("Start sequence" if as_sequence else "Start run", type="primary", icon=":material/play_arrow:"):
    try:
        if not eval_datasets:
            raise BadConfig("Pick at least one dataset under “Check forgetting on”: without one the run has "
                            "nothing to measure forgetting on.")
        if dataset not in datasets and not (dataset and Path(dataset).expanduser().is_dir()):
            raise DatasetUnavailable(f"“{dataset}” is not a folder. Give the path of an ImageFolder directory, "
                                     f"one sub-folder per class: <folder>/<class name>/<image>.png.")
        cfg = RunConfig(
            dataset=dataset, objective=objective, lam=lam if objective in REGULARISED else None, init=init,
            model=model.name, pretrained=model.pretrained, eval_datasets=eval_datasets, steps=int(steps), lr=lr,
            batch_size=int(batch_size), seed=int(seed), eval_limit=int(eval_limit), probe_limit=int(probe_limit),
            probe_cap=int(probe_cap), umap_points=int(umap_points), train_limit=int(train_limit), augment=augment, bn=bn,
            data_root=data_root.strip() or None, download=download, label=label.strip(),
            **objective_kwargs, **optimiser_kwargs,
        ).validate()
        sequence = SequenceConfig(tuple(tasks), anchor, cfg).validate() if as_sequence else None
        with st.spinner("Checking the model loads…"):
            model_picker.check_loads(model)
    except LabError as err:
        widgets.show_error(err)
    else:
        if sequence is None:
            run_id = jobs.job_runner().submit(cfg)
            widgets.remember_run(run_id)
            st.toast(f"Queued {cfg.describe()}", icon=":material/schedule:")
        else:
            sequence_id = jobs.job_runner().submit_sequence(sequence)
            for run_id in results.sequence(sequence_id)["stages"]:
                widgets.remember_run(run_id)
            st.toast(f"Queued the sequence {sequence.describe()}", icon=":material/schedule:")
            st.page_link("views/continual.py", label="Follow its forgetting matrix on the Continual page",
                         icon=":material/stacked_line_chart:")

mine = widgets.my_run_ids()
if mine:
    st.subheader("Your runs")
    widgets.live_runs(mine[-RECENT_RUNS:])
    if len(mine) > RECENT_RUNS:
        st.page_link("views/runs.py", label=f"{len(mine) - RECENT_RUNS} older run(s) on Runs & sweeps",
                     icon=":material/table_rows:")
