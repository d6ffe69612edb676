"""UI pieces shared by the pages: run picking, live run cards, the sidebar job list, error messages.

Each browser session keeps its own launched run ids in st.session_state, so two tabs never mix their runs;
results themselves always come from the shared run store.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app import display, jobs, plots, results, tables
from ldifs_core.errors import LabError
from ldifs_core.objectives import OBJECTIVE_TYPES
from ldifs_core.hooks import Progress
from ldifs_core.curve_records import Curve
from ldifs_core.metrics import RunMetrics
from ldifs_core.sequence import sequence_curve
from ldifs_core.store import RunRecord

MY_RUNS = "my_runs"  # session_state: ids this session launched, oldest first
FOCUS = "focus_run"  # session_state: the run the result pages show (follows the user across pages)
POLL_S = 1.0
LAMBDAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # the paper's λ grid, with 0 = plain CE: offered as
# hints and sweep values; any λ >= 0 can be typed
LAUNCH_PAGE = "views/launch.py"
FORGETTING_PAGE = "views/forgetting.py"
NO_FINISHED_RUNS = "No finished runs yet — start one on the Launch page."
OBJECTIVE_LABELS = {name: kind.label or name for name, kind in OBJECTIVE_TYPES.items()}  # the Launch page's
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/stop_circle:", "interrupted": ":material/warning:",
                "unreadable": ":material/broken_image:"}
OTHER_PROCESS = ("(the CLI or another app server on this store), not this app's worker: stop it there "
                 "(Ctrl-C for the CLI).")


def remember_run(run_id: str) -> None:
    """A newly launched run becomes this session's own, and the result pages will show it once it is done."""
    st.session_state.setdefault(MY_RUNS, []).append(run_id)
    st.session_state.pop(FOCUS, None)


def my_run_ids() -> list[str]:
    return list(st.session_state.get(MY_RUNS, []))


def run_label(record: RunRecord) -> str:
    name = f"“{record.config.label}” " if record.config.label else ""
    return f"{name}{record.config.describe()} · {tables.model_name(record.config)} · {record.run_id}"


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def show_error(err: Exception) -> None:
    """User-caused problems are shown as their message, which says what to do; never as a traceback."""
    st.error(str(err), icon=":material/error:")


def empty_state(message: str = NO_FINISHED_RUNS) -> None:
    st.info(message, icon=":material/info:")
    st.page_link(LAUNCH_PAGE, label="Go to Launch", icon=":material/rocket_launch:")


def default_run(run_ids: Sequence[str]) -> str:
    """The run this session looked at last, else its newest finished run, else the newest finished run."""
    focus = st.session_state.get(FOCUS)
    if focus in run_ids:
        return focus
    mine = [run_id for run_id in reversed(my_run_ids()) if run_id in run_ids]
    return mine[0] if mine else run_ids[0]


def pick_run(records: Sequence[RunRecord], label: str = "Run", key: str | None = None,
             container: DeltaGenerator | None = None, start: str | None = None) -> str:
    """A run selector over `records` starting on `start` (default: the session's focus run)."""
    ids = [record.run_id for record in records]
    labels = {record.run_id: run_label(record) for record in records}
    index = ids.index(start if start in ids else default_run(ids))
    return (container or st).selectbox(label, ids, index=index, format_func=labels.__getitem__, key=key)


def pick_finished_run() -> str | None:
    """The finished run a result page shows, or None (with an empty-state message) when there is none.
    The choice becomes the session's focus, so the next result page opens on the same run. Runs that cannot be
    read are named with their reason above the picker; the others stay usable."""
    records = results.run_store().list()
    unreadable_runs([record for record in records if record.status == "unreadable"])
    finished = [record for record in records if record.status == "done"]
    if not finished:
        empty_state()
        return None
    st.session_state[FOCUS] = pick_run(finished)
    return st.session_state[FOCUS]


def finished_run_metrics() -> dict | None:
    """The metrics of the finished run the user picks, or None (the page shows why: no finished run yet, or
    this one's results cannot be read)."""
    run_id = pick_finished_run()
    return None if run_id is None else run_metrics(run_id)


def run_curve(metrics: dict) -> Curve | None:
    """A finished run's forgetting-over-training curve; a sequence stage's runs on from the stages before it."""
    cfg = metrics["config"]
    if not cfg.get("sequence_id"):
        return RunMetrics.from_json(metrics).curve
    try:
        return sequence_curve(results.run_store(), cfg["sequence_id"], cfg.get("stage"))
    except LabError as err:
        show_error(err)
        return None


def run_metrics(run_id: str) -> dict | None:
    """A finished run's metrics, or None with the reason shown (a run can turn unreadable after it was listed)."""
    return _read_or_explain(results.metrics, run_id)


def run_arrays(run_id: str) -> dict | None:
    """A finished run's stored arrays (UMAP points), or None with the reason shown when they cannot be read."""
    return _read_or_explain(results.arrays, run_id)


def _read_or_explain(read: Callable[[str], dict], run_id: str) -> dict | None:
    try:
        return read(run_id)
    except LabError as err:
        show_error(err)
        return None


def unreadable_runs(records: Sequence[RunRecord]) -> None:
    """One warning naming every run whose stored files cannot be read, with the store's reason for each."""
    if records:
        st.warning(f"{len(records)} run(s) cannot be read and are left out here:\n"
                   + "\n".join(f"- {record.run_id}: {record.message}" for record in records),
                   icon=":material/broken_image:")


def interval_caption(metrics: dict, probe: str) -> str:
    """The caption under a mean change's metric: its interval only, the metric shows the number."""
    return display.interval(metrics[f"mean_{probe}_delta_ci"])


def compare_runs(run_ids: Sequence[str]) -> None:
    """Finished runs side by side: one chart of accuracy changes, then each run's headline numbers and bars."""
    runs = {}
    for i, record in enumerate(results.records(run_ids)):
        metrics = run_metrics(record.run_id)
        if metrics is None:
            return
        runs[f"{chr(ord('A') + i)} · {record.config.describe()}"] = metrics
    st.plotly_chart(plots.run_comparison(runs), key=f"compare-{'-'.join(run_ids)}")
    for column, (name, metrics) in zip(st.columns(len(runs)), runs.items()):
        with column:
            st.markdown(f"**{display.plain(name)}**")
            st.metric("Accuracy on the fine-tuning task", tables.task_accuracy(metrics))
            st.metric("Mean zero-shot change elsewhere", f"{tables.signed(metrics['mean_zs_delta'])} points")
            st.caption(interval_caption(metrics, "zs"))
            st.metric("Mean linear-probe change elsewhere", f"{tables.signed(metrics['mean_lp_delta'])} points")
            st.caption(interval_caption(metrics, "lp"))
            st.plotly_chart(plots.accuracy_change(metrics), key=f"compare-bars-{metrics['run_id']}")


# -- live runs -----------------------------------------------------------------------------------------

PAGE_DRAWING = "page-drawing"  # set by main.py while the page's whole script runs, not while a fragment runs alone


def redraw_page() -> None:
    """For a polling fragment that saw its jobs end. Only when the fragment ran on its own: in a whole-page run the
    page is being drawn already, and a rerun there would drop the click that started the run."""
    if not st.session_state.get(PAGE_DRAWING):
        st.rerun()


def live_runs(run_ids: Sequence[str]) -> None:
    """Cards for the given runs; they refresh every second while any of them is queued or running."""
    active = any(record.status in results.ACTIVE for record in results.records(run_ids))
    st.fragment(run_every=POLL_S if active else None)(_run_cards)(list(run_ids), active)


def _run_cards(run_ids: list[str], was_active: bool) -> None:
    records = results.records(run_ids)
    for record in reversed(records):
        with st.container(border=True):
            run_card(record)
    if was_active and not any(record.status in results.ACTIVE for record in records):
        redraw_page()  # the last one ended: redraw the page once with final results and stop polling


def run_card(record: RunRecord) -> None:
    st.markdown(f"{STATUS_ICONS[record.status]} **{display.plain(run_label(record))}** — {record.status}")
    if record.status == "queued":
        _queued(record)
    elif record.status == "running":
        _running(record)
    elif record.status == "done":
        _done(record)
    else:
        _ended(record)


def cancel_control(job_id: str, key: str, what: str = "run") -> None:
    """Cancel for a job of this process's worker, from any session, page or tab; says so while it stops."""
    runner = jobs.job_runner()
    if runner.cancelling(job_id):
        st.caption(f"Cancelling… the {what} stops at its next check (a training step, a dataset, or an α).")
    elif st.button("Cancel", key=key, icon=":material/stop_circle:"):
        runner.cancel(job_id)
        st.rerun(scope="fragment")


def _cancel_button(record: RunRecord) -> None:
    """Cancel when this app's worker runs it; otherwise who runs it, since only that process can stop it."""
    if jobs.job_runner().owns(record.run_id):
        cancel_control(record.run_id, key=f"cancel-{record.run_id}")
    else:
        st.caption(run_elsewhere(record))


def run_elsewhere(record: RunRecord) -> str:
    return f"Run by {record.owner or 'another process'} {OTHER_PROCESS}"


def _queued(record: RunRecord) -> None:
    runner = jobs.job_runner()
    address = runner.ray_address(record.run_id)
    if address is not None:
        st.progress(0.0, text=f"Queued on Ray ({address}) — it starts when the cluster has room.")
    elif record.config.stage and record.config.stage > 1:  # its sequence runs it right after the stage before
        st.progress(0.0, text=f"Queued — waits for stage {record.config.stage - 1} of its sequence, whose weights it "
                              f"starts from.")
    else:
        st.progress(0.0, text=queue_line(runner.queue_position(record.run_id), runner.warming_up_s()))
    _cancel_button(record)


def queue_line(position: int | None, warming_s: float | None) -> str:
    """Where a queued run waits, and what for when the worker is still starting (minutes on a busy machine)."""
    if position and position > 1:
        return f"Queued — {position - 1} more job(s) ahead of it; jobs go one at a time."
    if warming_s is not None:
        return (f"Queued — next in line, waiting for the worker to start: loading torch, open_clip and the model "
                f"({format_duration(warming_s)} so far, once per server start).")
    return "Queued — next in line; jobs go one at a time."


def progress_bar(record: RunRecord) -> tuple[float, str]:
    """Fraction done and the line under the bar, from the progress the runner writes to the store."""
    progress = record.progress
    phase = progress.get("phase", "loading")
    node = f" · on {progress['node']}" if "node" in progress else ""  # a Ray trial says which node runs it
    if phase == "training":
        step, total = progress.get("step", 0), progress.get("total_steps", record.config.steps)
        return step / max(1, total), (f"Training: step {step}/{total} · about "
                                      f"{format_duration(progress.get('eta_s', 0.0))} left · "
                                      f"{progress.get('images_per_s', 0):.0f} images/s{node}")
    if phase == "evaluating" and progress.get("images_to_encode"):
        return evaluation_bar(Progress.from_dict(progress), node)
    if phase == "evaluating":
        return 1.0, ("Training done — measuring forgetting on the other datasets (Cancel stops it before the next "
                     f"dataset)…{node}")
    if progress.get("images_total"):
        done, total = progress["images_done"], progress["images_total"]
        return done / total, (f"Loading data ({done:,} / {total:,} images decoded; decoded once, then "
                              f"cached)…{node}")
    return 0.0, f"Loading the model and data…{node}"


def evaluation_bar(shown: Progress, node: str) -> tuple[float, str]:
    """How far the evaluation after training is: the dataset measured, images encoded, probes fitted, time left."""
    left = f" · about {format_duration(shown.eta_s)} left" if shown.eta_s is not None else ""
    measuring = min(shown.datasets_done + 1, shown.datasets_total)
    return shown.images_encoded / shown.images_to_encode, (
        f"Measuring forgetting: {shown.dataset} (dataset {measuring} of {shown.datasets_total}) · "
        f"{shown.images_encoded:,} / {shown.images_to_encode:,} images encoded · {shown.probes_fitted} of "
        f"{shown.probes_total} probes fitted{left} (Cancel stops it before the next dataset){node}")


def _running(record: RunRecord) -> None:
    st.progress(*progress_bar(record))
    _cancel_button(record)
    history = jobs.job_runner().live_history(record.run_id)
    if len(history) > 1:
        st.plotly_chart(plots.training_curves(history), key=f"live-{record.run_id}")
    curve = jobs.job_runner().live_curve(record.run_id)
    if curve is not None and curve.points:
        st.plotly_chart(plots.forgetting_curve(curve), key=f"live-curve-{record.run_id}")


def _done(record: RunRecord) -> None:
    metrics = run_metrics(record.run_id)
    if metrics is None:
        return
    left, middle, right = st.columns(3)
    checked = metrics.get("checked")
    left.metric("Accuracy on the task (checked)" if checked else "Accuracy on the fine-tuning task",
                tables.task_accuracy(metrics))
    if checked and checked["note"]:
        st.caption(display.plain(checked["note"]))
    middle.metric("Mean zero-shot change elsewhere", f"{tables.signed(metrics['mean_zs_delta'])} points")
    middle.caption(interval_caption(metrics, "zs"))
    right.metric("Total time", format_duration(metrics.get("timings", {}).get("total_s", 0.0)))
    if (curve := run_curve(metrics)) is not None:
        st.plotly_chart(plots.forgetting_curve(curve), key=f"curve-{record.run_id}")
    st.page_link(FORGETTING_PAGE, label="See what it forgot", icon=":material/insights:")


def _ended(record: RunRecord) -> None:
    if record.status == "failed":
        st.error(record.message or "The run failed.", icon=":material/error:")
    else:
        st.warning(record.message or f"The run was {record.status}.", icon=":material/warning:")
    if record.status == "unreadable":
        return
    history = results.history(record)
    if len(history) > 1:
        with st.expander("Training curves up to where it stopped"):
            st.plotly_chart(plots.training_curves(history), key=f"partial-{record.run_id}")


# -- sidebar --------------------------------------------------------------------------------------------


def active_runs(records: Sequence[RunRecord] | None = None) -> list[RunRecord]:
    """Running and queued runs of every session (and of the CLI), oldest first."""
    records = results.run_store().list() if records is None else records
    return [r for r in reversed(records) if r.status in results.ACTIVE]


def jobs_sidebar() -> None:
    """The job list in the sidebar, with Cancel on every job of this app's worker; it polls only while
    something is active. Unreadable runs are counted here, so every page says when the store has some."""
    records = results.run_store().list()
    active = active_runs(records)
    wise = jobs.job_runner().active_wise()
    busy = bool(active or wise)
    st.fragment(run_every=POLL_S * 2 if busy else None)(_jobs_panel)(_jobs_seen(active, wise))
    broken = [record for record in records if record.status == "unreadable"]
    if broken:
        st.warning(f"{len(broken)} run(s) cannot be read: " + "; ".join(f"{r.run_id} ({r.message})" for r in broken),
                   icon=":material/broken_image:")


def _jobs_seen(active: Sequence[RunRecord], wise: Sequence) -> list[tuple[str, str]]:
    return [(r.run_id, r.status) for r in active] + [(jobs.wise_job_id(s.run_id), s.status) for s in wise]


def _jobs_panel(seen: list[tuple[str, str]]) -> None:
    active, wise = active_runs(), jobs.job_runner().active_wise()
    if _jobs_seen(active, wise) != seen:
        st.rerun()  # a job started or ended: redraw the whole page so every view is current
    st.subheader("Jobs")
    if not active and not wise:
        st.caption("No jobs active. Runs and WiSE-FT paths you start are queued here and go one at a time.")
    mine = set(my_run_ids())
    runner = jobs.job_runner()
    for record in active:
        progress = record.progress
        step = f" · step {progress['step']}/{progress['total_steps']}" if "step" in progress else ""
        owner = " (yours)" if record.run_id in mine else ""
        st.caption(f"{STATUS_ICONS[record.status]} {display.plain(record.config.describe())}{owner} — "
                   f"{record.status}{step}")
        if runner.owns(record.run_id):
            cancel_control(record.run_id, key=f"sidebar-cancel-{record.run_id}")
        else:
            st.caption(run_elsewhere(record))
    for state in wise:
        done = f" · {len(state.computed)}/{len(state.alphas)} α" if state.status == "running" else ""
        st.caption(f"{STATUS_ICONS[state.status]} {display.plain(state.describe())} — {state.status}{done}")
        cancel_control(jobs.wise_job_id(state.run_id), key=f"sidebar-cancel-{jobs.wise_job_id(state.run_id)}",
                       what="WiSE-FT path")
