"""UI pieces shared by the pages: run picking, live run cards, the sidebar job list, error messages.

Each browser session keeps its own launched run ids in st.session_state, so two tabs never mix their runs;
results themselves always come from the shared run store.
"""
from __future__ import annotations

from collections.abc import Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app import jobs, plots, results, tables
from ldifs_core.store import RunRecord

MY_RUNS = "my_runs"  # session_state: ids this session launched, oldest first
FOCUS = "focus_run"  # session_state: the run the result pages show (follows the user across pages)
POLL_S = 1.0
LAMBDAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # the λ slider: log-spaced, with 0 = plain CE
LAUNCH_PAGE = "views/launch.py"
FORGETTING_PAGE = "views/forgetting.py"
NO_FINISHED_RUNS = "No finished runs yet — start one on the Launch page."
OBJECTIVE_LABELS = {
    "ce": "CE — plain fine-tuning",
    "ldifs": "LDIFS — CE + λ·feature distance",
    "l2sp": "L2-SP — CE + λ·weight distance",
    "flyp": "FLYP — contrastive, both towers",
    "lp": "Linear probe — encoder frozen",
}
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/stop_circle:", "interrupted": ":material/warning:"}


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
    The choice becomes the session's focus, so the next result page opens on the same run."""
    finished = results.finished_runs()
    if not finished:
        empty_state()
        return None
    st.session_state[FOCUS] = pick_run(finished)
    return st.session_state[FOCUS]


def compare_runs(run_ids: Sequence[str]) -> None:
    """Finished runs side by side: one chart of accuracy changes, then each run's headline numbers and bars."""
    chosen = results.records(run_ids)
    runs = {f"{chr(ord('A') + i)} · {record.config.describe()}": results.metrics(record.run_id)
            for i, record in enumerate(chosen)}
    st.plotly_chart(plots.run_comparison(runs), key=f"compare-{'-'.join(run_ids)}")
    for column, (name, metrics) in zip(st.columns(len(runs)), runs.items()):
        with column:
            st.markdown(f"**{name}**")
            st.metric("Accuracy on the fine-tuning task", f"{metrics['downstream']['accuracy_after']:.1f}%")
            st.metric("Mean zero-shot change elsewhere", f"{metrics['mean_zs_delta']:+.1f} points")
            st.metric("Mean linear-probe change elsewhere", f"{metrics['mean_lp_delta']:+.1f} points")
            st.plotly_chart(plots.accuracy_change(metrics), key=f"compare-bars-{metrics['run_id']}")


# -- live runs -----------------------------------------------------------------------------------------


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
        st.rerun()  # the last one ended: redraw the page once with final results and stop polling


def run_card(record: RunRecord) -> None:
    st.markdown(f"{STATUS_ICONS[record.status]} **{run_label(record)}** — {record.status}")
    if record.status == "queued":
        _queued(record)
    elif record.status == "running":
        _running(record)
    elif record.status == "done":
        _done(record)
    else:
        _ended(record)


def _cancel_button(record: RunRecord) -> None:
    runner = jobs.job_runner()
    if runner.cancelling(record.run_id):
        st.caption("Cancelling… the run stops before its next training step.")
    elif st.button("Cancel", key=f"cancel-{record.run_id}", icon=":material/stop_circle:"):
        runner.cancel(record.run_id)
        st.rerun(scope="fragment")


def _queued(record: RunRecord) -> None:
    position = jobs.job_runner().queue_position(record.run_id)
    ahead = f"{position - 1} more run(s) ahead of it" if position and position > 1 else "next in line"
    st.progress(0.0, text=f"Queued — {ahead}; runs go one at a time.")
    _cancel_button(record)


def progress_bar(record: RunRecord) -> tuple[float, str]:
    """Fraction done and the line under the bar, from the progress the runner writes to the store."""
    progress = record.progress
    phase = progress.get("phase", "loading")
    if phase == "training":
        step, total = progress.get("step", 0), progress.get("total_steps", record.config.steps)
        return step / max(1, total), (f"Training: step {step}/{total} · about "
                                      f"{format_duration(progress.get('eta_s', 0.0))} left · "
                                      f"{progress.get('images_per_s', 0):.0f} images/s")
    if phase == "evaluating":
        return 1.0, "Training done — measuring forgetting on the other datasets (this last phase cannot be cancelled)…"
    return 0.0, "Loading the model and data…"


def _running(record: RunRecord) -> None:
    st.progress(*progress_bar(record))
    if record.progress.get("phase") != "evaluating":
        _cancel_button(record)
    history = jobs.job_runner().live_history(record.run_id)
    if len(history) > 1:
        st.plotly_chart(plots.training_curves(history), key=f"live-{record.run_id}")


def _done(record: RunRecord) -> None:
    summary = record.summary
    left, middle, right = st.columns(3)
    left.metric("Accuracy on the fine-tuning task", f"{summary.get('accuracy_after', float('nan')):.1f}%")
    middle.metric("Mean zero-shot change elsewhere", f"{summary.get('mean_zs_delta', float('nan')):+.1f}")
    right.metric("Total time", format_duration(summary.get("total_s", 0.0)))
    st.page_link(FORGETTING_PAGE, label="See what it forgot", icon=":material/insights:")


def _ended(record: RunRecord) -> None:
    if record.status == "failed":
        st.error(record.message or "The run failed.", icon=":material/error:")
    else:
        st.warning(record.message or f"The run was {record.status}.", icon=":material/warning:")
    history = results.history(record)
    if len(history) > 1:
        with st.expander("Training curves up to where it stopped"):
            st.plotly_chart(plots.training_curves(history), key=f"partial-{record.run_id}")


# -- sidebar --------------------------------------------------------------------------------------------


def active_runs() -> list[RunRecord]:
    """Running and queued runs of every session (and of the CLI), oldest first."""
    return [r for r in reversed(results.run_store().list()) if r.status in results.ACTIVE]


def jobs_sidebar() -> None:
    """The job list in the sidebar; it polls only while something is active."""
    active = active_runs()
    st.fragment(run_every=POLL_S * 2 if active else None)(_jobs_panel)([(r.run_id, r.status) for r in active])


def _jobs_panel(seen: list[tuple[str, str]]) -> None:
    active = active_runs()
    if [(r.run_id, r.status) for r in active] != seen:
        st.rerun()  # a run started or ended: redraw the whole page so every view is current
    st.subheader("Jobs")
    if not active:
        st.caption("No runs active. Runs you start are queued here and go one at a time.")
    mine = set(my_run_ids())
    for record in active:
        progress = record.progress
        step = f" · step {progress['step']}/{progress['total_steps']}" if "step" in progress else ""
        owner = " (yours)" if record.run_id in mine else ""
        st.caption(f"{STATUS_ICONS[record.status]} {record.config.describe()}{owner} — {record.status}{step}")
