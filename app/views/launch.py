"""Launch: pick a model, a task and an objective, and queue a fine-tuning run, or check a checkpoint fine-tuned
elsewhere (app/check_form.py); follow it live."""
import datetime as dt
from dataclasses import replace
from pathlib import Path

import streamlit as st

from app import check_form, jobs, launch_checks, model_picker, objective_options, results, widgets
from app.folder_preview import folder_preview
from app.launch_checks import checked_setting, passes
from ldifs_core import estimate, preflight, reuse
from ldifs_core.availability import folder_summary
from ldifs_core.config import (ANCHORS, BATCHNORM_MODES, DEFAULT_LAMBDA, INITS, REGULARISED, RUN_SETTINGS,
                               TRAINED, RunConfig)
from ldifs_core.sequence import SequenceConfig
from ldifs_core.datasets import available_bank, known_datasets, same_dataset
from ldifs_core.errors import BadConfig, LabError, RunNotFound
from ldifs_core.models import describe_device, pick_device

DEFAULT = RunConfig()
IMAGE_FOLDER = "ImageFolder directory…"
RECENT_RUNS = 5  # the store's newest runs shown live here; the rest are on the Runs page
OFFER = "launch-offer"  # session_state: {"cfg": settings, "run_id": the finished run that already answers them}
FOLDERS = "launch-folders"  # session_state: image folders added to "Check forgetting on" in this session
ADD_FOLDER, ADD_FOLDER_ERROR = "launch-add-folder", "launch-add-folder-error"
DATA_ROOT = "launch-data-root"
RUN_AGAIN = "Run again anyway"
INIT_LABELS = {"zs": "Zero-shot head (text prompts)", "lp": "Linear-probe head (fitted first)"}
BN_LABELS = {"train": "updated while training (the paper's recipe)", "frozen": "kept from the pre-trained model"}
SEQUENCE_DEFAULT = SequenceConfig(("mnist", "fashion_mnist", "animals"))
SEQUENCE_TASKS = list(SEQUENCE_DEFAULT.tasks)
ANCHOR_LABELS = {"original": "the pre-trained model θ₀", "previous": "where the stage started (released code)"}
FINE_TUNE, CHECK = "Fine-tune", "Check a fine-tuned checkpoint"


@st.cache_resource(show_spinner=False)
def device_line() -> str:
    return describe_device(pick_device("auto"))


def add_folder() -> None:
    """On Enter in the folder field: a usable folder joins the list (and the selection); else the field keeps the
    path and says what is wrong with it."""
    path = st.session_state[ADD_FOLDER].strip()
    st.session_state.pop(ADD_FOLDER_ERROR, None)
    if not path:
        return
    try:
        folder_summary(path)
    except LabError as err:
        st.session_state[ADD_FOLDER_ERROR] = str(err)
        return
    folders = st.session_state.setdefault(FOLDERS, [])
    if path not in folders:
        folders.append(path)
    st.session_state[ADD_FOLDER] = ""


def submit(cfg: RunConfig) -> None:
    run_id = jobs.job_runner().submit(cfg)
    widgets.remember_run(run_id)
    st.toast(f"Queued {cfg.describe()}", icon=":material/schedule:")


def offer_finished(cfg: RunConfig | None) -> bool:
    """The finished run offered instead of retraining, while the settings still equal it, with "Run again anyway";
    True when that was pressed (and the run queued)."""
    offer = st.session_state.get(OFFER)
    if offer is None:
        return False
    offered = RunConfig.from_dict(offer["cfg"])
    try:
        record = results.run_store().get(offer["run_id"])
    except RunNotFound:
        record = None
    if cfg is None or record is None or reuse.run_identity(offered) != reuse.run_identity(cfg):
        st.session_state.pop(OFFER)  # the settings changed (or the run was deleted): the offer no longer applies
        return False
    with st.container(border=True):
        when = dt.datetime.fromtimestamp(record.updated_at).strftime("%d %b %Y, %H:%M")
        st.info(f"An identical run finished on {when} with this version of the lab, so nothing was queued: the "
                f"same settings give the same numbers. Its results are below.", icon=":material/recycling:")
        widgets.run_card(record)
        st.session_state[widgets.FOCUS] = record.run_id
        if st.button(RUN_AGAIN, icon=":material/replay:", help="Train it again all the same (a new run beside the "
                                                                "finished one)."):
            st.session_state.pop(OFFER)
            submit(cfg)
            return True
    return False


def recent_runs(stored: list) -> None:
    """The store's newest runs, live, under either form."""
    recent = stored[:RECENT_RUNS]
    if recent:
        st.subheader("Recent runs")
        st.caption("The newest runs of this lab, from every tab and session (and the command line): they stay here "
                   "after a reload.")
        widgets.live_runs([record.run_id for record in reversed(recent)])
        older = len(stored) - len(recent)
        if older:
            st.page_link("views/runs.py", label=f"{older} older run(s) on Runs & sweeps", icon=":material/table_rows:")


jobs.job_runner().request_warm_up()  # runs start here: the idle worker pays its heavy imports now, once
st.title("Launch a fine-tuning run")
if st.segmented_control("What to launch", (FINE_TUNE, CHECK), default=FINE_TUNE, required=True,
                        label_visibility="collapsed", key="launch-action") == CHECK:
    check_form.check_form(launch_checks.data_root_typed(DATA_ROOT))
    recent_runs(results.run_store().list())
    st.stop()
st.markdown("Fine-tune the image encoder on one dataset, then measure what it forgot on the others. "
            "Runs go to a queue and continue in the background — you can switch pages or close the tab.")

model = model_picker.choose_model()
model_slot = st.empty()

task, checks = st.columns(2)
datasets = known_datasets()
root = launch_checks.data_root_typed(DATA_ROOT)
dataset_label = lambda name: name if name == IMAGE_FOLDER else launch_checks.dataset_label(name, root)
# -- continual fine-tuning (ldifs_core/sequence.py): a sequence of tasks, each stage starting from the last --
as_sequence = task.toggle("A sequence of tasks (continual fine-tuning)", key="launch-sequence",
                          help="Fine-tune on task after task with the settings below; each stage starts from the "
                               "encoder the stage before left, with a new head. Results on the Continual page.")
if as_sequence:
    tasks = task.multiselect("Tasks, in training order", datasets, default=SEQUENCE_TASKS, format_func=dataset_label,
                             help="The order you pick them in is the order they are trained in.")
    anchor = task.radio("LDIFS / L2-SP compare each stage to", ANCHORS, index=ANCHORS.index(SEQUENCE_DEFAULT.anchor),
                        format_func=ANCHOR_LABELS.__getitem__, horizontal=True)
    dataset = tasks[0] if tasks else DEFAULT.dataset
else:
    tasks, anchor = [], SEQUENCE_DEFAULT.anchor
    dataset = task.selectbox("Fine-tune on", datasets + [IMAGE_FOLDER], index=datasets.index(DEFAULT.dataset),
                             format_func=dataset_label,
                             help="Concept-bank domains ship with the lab; torchvision datasets need their files "
                                  "(“files here” or “needs download”: see Advanced → data folder); an image folder "
                                  "has one sub-folder per class.")
    if dataset == IMAGE_FOLDER:
        dataset = task.text_input("ImageFolder path", placeholder="/path/to/images (one sub-folder per class)").strip()
task_slot = task.empty()
stored = results.run_store().list()  # newest first
added = st.session_state.get(FOLDERS, [])
folders = list(dict.fromkeys(launch_checks.stored_folders(stored) + added))
others = [d for d in datasets + folders if not any(same_dataset(d, t) for t in [dataset, *tasks])]
eval_datasets = checks.multiselect("Also check (never trained on)" if as_sequence else "Check forgetting on", others,
                                   default=[d for d in available_bank() + added if d in others],
                                   format_func=dataset_label,
                                   help="The encoder is tested on these before and after fine-tuning: concept-bank "
                                        "domains, torchvision datasets and image folders.")
checks.text_input("Add an image folder to check", key=ADD_FOLDER, on_change=add_folder,
                  placeholder="/path/to/images, then Enter (one sub-folder per class)",
                  help="Your own images, one sub-folder per class; it joins the list above.")
if ADD_FOLDER_ERROR in st.session_state:
    checks.error(st.session_state[ADD_FOLDER_ERROR], icon=":material/error:")
checks_slot = checks.empty()

previews = [name for name in dict.fromkeys([*(tasks or [dataset]), *eval_datasets])
            if name not in datasets and name and Path(name).expanduser().is_dir()]
image_size = model_picker.image_size(model) if previews else None
for name in previews if image_size else []:
    folder_preview(name, image_size, expanded=name == dataset)

objective_col, lam_col = st.columns(2)
objective = objective_col.selectbox("Objective", TRAINED, index=TRAINED.index(DEFAULT.objective),
                                    format_func=widgets.OBJECTIVE_LABELS.__getitem__)
lam_help = (f"How strongly the regulariser pulls towards the pre-trained model: any number ≥ 0; 0 is plain CE. The "
            f"paper's grid: {', '.join(f'{v:g}' for v in widgets.LAMBDAS[1:])}. Only {', '.join(REGULARISED)} use it.")
if objective in REGULARISED:  # the field starts at the objective's own default λ (its plugin declares it)
    lam = {"lam": checked_setting(lam_col, "lam", float(DEFAULT_LAMBDA[objective]), help=lam_help)}
else:
    lam = {}
    lam_col.text_input(RUN_SETTINGS["lam"].label, value="", placeholder=f"{objective} has no regulariser",
                       disabled=True, help=lam_help)
objective_kwargs = objective_options.objective_settings(objective)  # the chosen objective's own settings

init = st.radio("Classifier head starts from", INITS, horizontal=True, format_func=INIT_LABELS.__getitem__,
                help="Zero-shot init uses the text tower's class prompts (as in the paper); LP-init fits a probe first.")
steps_col, lr_col, batch_col, seed_col = st.columns(4)
numbers = {"steps": checked_setting(steps_col, "steps")}
numbers["lr"] = checked_setting(lr_col, "lr")
numbers["batch_size"] = checked_setting(batch_col, "batch_size")
numbers["seed"] = checked_setting(seed_col, "seed")

with st.expander("Advanced"):
    left, right = st.columns(2)
    numbers["eval_limit"] = checked_setting(left, "eval_limit")
    numbers["probe_limit"] = checked_setting(
        left, "probe_limit", help="Every class gets this many probe-training images (fewer if it has fewer).")
    numbers["probe_cap"] = checked_setting(
        left, "probe_cap", help="Caps datasets with many classes (quickdraw has 345); fewer per class then.")
    numbers["umap_points"] = checked_setting(left, "umap_points")
    numbers["train_limit"] = checked_setting(right, "train_limit")
    numbers["curve_points"] = checked_setting(right, "curve_points", help="Zero-shot accuracy on the task and "
                                              "each checked dataset every steps/points steps, drawn live (0: none).")
    numbers["curve_images"] = checked_setting(right, "curve_images")
    augment = right.checkbox("Random-shift augmentation", value=DEFAULT.augment)
    bn = right.radio("BatchNorm statistics (ResNet towers)", BATCHNORM_MODES, format_func=BN_LABELS.__getitem__,
                     index=BATCHNORM_MODES.index(DEFAULT.bn),
                     help="ViT towers have none. Frozen towers and the linear probe always keep θ₀'s statistics.")
    right.text_input("Data folder for torchvision datasets", placeholder="~/data", key=DATA_ROOT,
                     help="Where torchvision datasets are (or are downloaded to). Empty: $LDIFS_DATA, else "
                          "~/.cache/ldifs_lab/data.")
    download = right.checkbox("Download missing torchvision datasets", value=False)
    optimiser_kwargs = objective_options.optimiser_settings(right)
    label = st.text_input("Label (optional)", placeholder="e.g. baseline")

settings = {**lam, **numbers, **objective_kwargs, **optimiser_kwargs}
# The settings as typed; None while a number field holds a value it refuses (the field says why).
cfg = None if None in settings.values() else RunConfig(
    dataset=dataset, objective=objective, init=init, model=model.name,
    pretrained=model.pretrained, eval_datasets=eval_datasets, augment=augment, bn=bn, data_root=root,
    download=download, label=label.strip(), **settings)

st.caption(f"Runs on: **{device_line()}**. Expected time: "
           f"{estimate.describe([cfg or DEFAULT] * (len(tasks) if as_sequence else 1), results.run_store())}.")

started = st.button("Start sequence" if as_sequence else "Start run", type="primary", icon=":material/play_arrow:")
if started:
    st.session_state.pop(OFFER, None)
    start_slot = st.empty()
    # Every check runs, so that every problem shows at once, each next to its field.
    ready = cfg is not None
    if not ready:
        start_slot.error("Some settings above cannot be used; each says why under its field.", icon=":material/error:")
    if not dataset:
        task_slot.error("Give the path of an image folder, one sub-folder per class.", icon=":material/error:")
        ready = False
    elif cfg is None:  # the dataset alone: its batch is not known yet
        ready = launch_checks.all_pass(task_slot, launch_checks.check_dataset, tasks or [dataset], root, download) \
            and ready
    elif not launch_checks.all_pass(task_slot, launch_checks.check_task,
                                    [replace(cfg, dataset=name) for name in tasks or [dataset]]):
        ready = False
    if not eval_datasets:
        checks_slot.error("Pick at least one dataset under “Check forgetting on”: without one the run has nothing to "
                          "measure forgetting on.", icon=":material/error:")
        ready = False
    elif not launch_checks.all_pass(checks_slot, launch_checks.check_checked, eval_datasets, root, download):
        ready = False
    with st.spinner("Checking the model loads…"):
        ready = passes(model_slot, model_picker.check_loads, model) and ready
    if ready:
        ready = passes(start_slot, preflight.check_taps, cfg)
    if ready:
        try:  # the settings are checked once, here (a sequence's stages as it is recorded)
            if as_sequence:
                sequence = SequenceConfig(tuple(tasks), anchor, cfg)
                sequence_id = jobs.job_runner().submit_sequence(sequence)
            else:
                cfg.validate()
        except BadConfig as err:
            widgets.show_error(err)
        else:
            if as_sequence:
                for run_id in results.sequence(sequence_id)["stages"]:
                    widgets.remember_run(run_id)
                st.toast(f"Queued the sequence {sequence.describe()}", icon=":material/schedule:")
                st.page_link("views/continual.py", label="Follow its forgetting matrix on the Continual page",
                             icon=":material/stacked_line_chart:")
            elif (finished := reuse.finished_run(results.run_store(), cfg)) is not None:
                st.session_state[OFFER] = {"cfg": cfg.to_dict(), "run_id": finished}
            else:
                submit(cfg)
ran_again = offer_finished(None if as_sequence else cfg)

if started or ran_again:
    stored = results.run_store().list()  # with the run just queued
recent_runs(stored)
