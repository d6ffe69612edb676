"""Continual: sequences of tasks; the forgetting matrix as a heatmap and as lines across stages, two side by side."""
import pandas as pd
import streamlit as st

from app import display, jobs, plots, results, tables, widgets
from ldifs_core import export
from ldifs_core.config import RunConfig
from ldifs_core.errors import LabError

NONE = "—"
ACTIVE = ("queued", "running")


def label(summary: dict) -> str:
    base = RunConfig.from_dict(summary["config"]["base"])
    lam = f" λ={base.effective_lam:g}, anchor {summary['anchor']}" if base.regularised else ""
    return (f"{summary['objective']}{lam} on {' → '.join(summary['tasks'])} (seed {base.seed}) · "
            f"{summary['status']} · {summary['sequence_id']}")


def stage_table(summary: dict) -> pd.DataFrame:
    return pd.DataFrame([{"stage": s["stage"], "task": s["task"], "status": s["status"], "run": s["run_id"],
                          "message": s["message"]} for s in summary["stage_status"]])


def headline(summary: dict, probe: str) -> None:
    """The derived numbers after the last finished stage."""
    average, bwt, unseen = (summary["avg_accuracy"][probe], summary["backward_transfer"][probe],
                            summary["unseen_delta"][probe])
    left, middle, right = st.columns(3)
    left.metric("Average accuracy over the tasks seen", f"{average[-1]:.1f}%")
    middle.metric("Backward transfer", "–" if bwt is None else f"{tables.signed(bwt)} points",
                  help="How much the earlier tasks lost by the last stage (mean of acc[last][j] − acc[j][j]); "
                       "negative = forgotten.")
    right.metric("Change on datasets never trained on", "–" if unseen is None else f"{tables.signed(unseen[-1])} points",
                 help=f"Mean change from θ₀ on {', '.join(summary['matrix']['unseen']) or 'none'}.")
    st.caption(f"Each cell rests on {display.sample_sizes(summary['matrix']['n'])} test images per dataset; the lines "
               f"show every cell's 95 % interval, the JSON and CSV carry them.")


def follow(summary: dict, key: str) -> None:
    """A running or queued sequence: which stage, and Cancel (for the whole sequence) when this app runs it."""
    stages = summary["stage_status"]
    done = sum(s["status"] == "done" for s in stages)
    running = next((s for s in stages if s["status"] == "running"), None)
    text = (f"Stage {running['stage']} of {len(stages)} ({display.plain(running['task'])}) is running" if running
            else "Queued — jobs go one at a time")
    st.progress(done / len(stages), text=f"{text}; {done} of {len(stages)} stages done.")
    runner = jobs.job_runner()
    if runner.owns(summary["sequence_id"]):
        widgets.cancel_control(summary["sequence_id"], key=f"cancel-{key}-{summary['sequence_id']}", what="sequence")
    else:
        st.caption(f"Run by another process {widgets.OTHER_PROCESS}")


def show_sequence(summary: dict, probe: str, key: str) -> None:
    st.markdown(f"{widgets.STATUS_ICONS.get(summary['status'], '')} **{display.plain(label(summary))}**")
    if summary["status"] in ACTIVE:
        follow(summary, key)
    elif summary["status"] == "failed":
        st.error(summary["message"], icon=":material/error:")
    elif summary["status"] != "done":
        st.warning(summary["message"], icon=":material/warning:")
    with st.expander("Stages (each an ordinary run: open it on the Forgetting page)"):
        st.dataframe(stage_table(summary), hide_index=True)
    if summary["matrix"] is None:
        st.info("The matrix appears when the first stage has finished.", icon=":material/info:")
        return
    headline(summary, probe)
    st.plotly_chart(plots.forgetting_heatmap(summary, probe), key=f"heatmap-{key}-{summary['sequence_id']}")
    st.plotly_chart(plots.matrix_lines(summary, probe), key=f"lines-{key}-{summary['sequence_id']}")
    csv_col, json_col = st.columns(2)
    csv_col.download_button("Matrix as CSV", export.sequence_csv(summary), on_click="ignore",
                            file_name=f"{summary['sequence_id']}.csv", mime="text/csv", icon=":material/table:",
                            key=f"csv-{key}-{summary['sequence_id']}")
    json_col.download_button("Sequence as JSON", tables.metrics_json(summary), on_click="ignore",
                             file_name=f"{summary['sequence_id']}.json", mime="application/json",
                             icon=":material/data_object:", key=f"json-{key}-{summary['sequence_id']}")


def read(sequence_id: str) -> dict | None:
    try:
        return results.sequence(sequence_id)
    except LabError as err:
        widgets.show_error(err)
        return None


def sequences_view(first: str, second: str | None, probe: str, was_active: bool) -> None:
    chosen = [read(first)] + ([read(second)] if second else [])
    if any(summary is None for summary in chosen):
        return
    if len(chosen) == 1:
        show_sequence(chosen[0], probe, "a")
    else:
        for column, summary, key in zip(st.columns(2), chosen, ("a", "b")):
            with column:
                show_sequence(summary, probe, key)
        finished = {f"{chr(ord('A') + i)} · {summary['objective']}, anchor {summary['anchor']}": summary
                    for i, summary in enumerate(chosen) if summary["matrix"] is not None}
        if finished:
            st.plotly_chart(plots.sequences_average(finished, probe), key="sequences-average")
    if was_active and not any(summary["status"] in ACTIVE for summary in chosen):
        widgets.redraw_page()  # it just ended: redraw once and stop polling


st.title("Continual fine-tuning")
st.markdown("A **sequence** fine-tunes on task after task: each stage starts from the encoder the last one left, "
            "with a new head. After every stage the encoder is checked on every task and on datasets it never "
            "trained on; the **forgetting matrix** holds those accuracies, stage by stage. Queue one on the Launch "
            "page (*A sequence of tasks*).")
ids = results.sequence_ids()
if not ids:
    widgets.empty_state("No sequence yet — queue one on the Launch page under “A sequence of tasks”.")
else:
    names, statuses = {}, {}
    for sequence_id in ids:
        summary = read(sequence_id)
        if summary is not None:
            names[sequence_id], statuses[sequence_id] = label(summary), summary["status"]
    if names:
        pick, other = st.columns(2)
        first = pick.selectbox("Sequence", list(names), format_func=names.__getitem__, key="sequence-a")
        rest = [NONE] + [sequence_id for sequence_id in names if sequence_id != first]
        second = other.selectbox("Side by side with", rest, format_func=lambda s: names.get(s, NONE),
                                 key="sequence-b", help="For example CE next to LDIFS on the same tasks.")
        probe = st.radio("Accuracy", list(tables.PROBES), format_func=tables.PROBES.__getitem__, horizontal=True,
                         key="sequence-probe")
        second = None if second == NONE else second
        active = any(statuses[s] in ACTIVE for s in (first, second) if s)
        st.fragment(run_every=widgets.POLL_S if active else None)(sequences_view)(first, second, probe, active)
