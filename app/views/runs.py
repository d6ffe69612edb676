"""Runs and sweeps: every run in the store, the accuracy/forgetting trade-off, λ sweeps, WiSE-FT, compare, download."""
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app import jobs, model_picker, plots, results, tables, widgets
from ldifs_core.config import RunConfig
from ldifs_core.store import RunRecord
from ldifs_core.datasets import available_bank
from ldifs_core.errors import BadConfig, LabError

ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))
ALL = "all"
WISE_DONE = "wise_alphas"  # session_state: {run id: α values evaluated}, to draw the WiSE-FT path


def filtered(table: pd.DataFrame, column: str, container: DeltaGenerator) -> pd.DataFrame:
    choice = container.selectbox(column.capitalize(), [ALL] + sorted(table[column].unique()), key=f"filter-{column}")
    return table if choice == ALL else table[table[column] == choice]


def runs_section(table: pd.DataFrame) -> None:
    model_col, dataset_col, objective_col = st.columns(3)
    table = filtered(filtered(filtered(table, "model", model_col), "dataset", dataset_col), "objective", objective_col)
    st.dataframe(table, hide_index=True, column_config={
        "accuracy after": st.column_config.NumberColumn(format="%.1f%%"),
        "mean zero-shot Δ": st.column_config.NumberColumn(format="%+.1f"),
        "mean linear-probe Δ": st.column_config.NumberColumn(format="%+.1f"),
        "λ": st.column_config.NumberColumn(format="%g"),
        "message": st.column_config.TextColumn(width="medium", help="Why a run failed, was cancelled or interrupted."),
    })


def tradeoff_section(table: pd.DataFrame) -> None:
    points = tables.tradeoff_points(table)
    if points.empty:
        widgets.empty_state()
        return
    st.plotly_chart(plots.tradeoff(points))
    st.caption("Up is better on the fine-tuning task, right is less forgetting elsewhere. A good regulariser moves "
               "points up and to the right of plain CE.")


def sweep_tab() -> None:
    st.markdown("Queue one LDIFS run per λ on the same task and seed, then read the trade-off plot.")
    with st.form("sweep"):
        bank = available_bank()
        dataset = st.selectbox("Fine-tune on", bank, index=bank.index("mnist") if "mnist" in bank else 0)
        lams = st.multiselect("λ values", widgets.LAMBDAS, default=[0.0, 1.0, 10.0, 100.0],
                              format_func=lambda v: f"{v:g}", help="λ = 0 is plain cross-entropy.")
        steps_col, seed_col = st.columns(2)
        steps = steps_col.number_input("Steps", min_value=1, value=RunConfig().steps, step=50)
        seed = seed_col.number_input("Seed", min_value=0, value=0)
        submitted = st.form_submit_button("Queue sweep", type="primary", icon=":material/playlist_add:")
    if submitted:
        try:
            if not lams:
                raise BadConfig("Pick at least one λ value for the sweep.")
            configs = [RunConfig(dataset=dataset, objective="ldifs", lam=lam, steps=int(steps), seed=int(seed),
                                 label=f"sweep λ={lam:g}").validate() for lam in sorted(lams)]
            model_picker.check_loads(model_picker.ModelChoice())
        except LabError as err:
            widgets.show_error(err)
            return
        for cfg in configs:
            widgets.remember_run(jobs.job_runner().submit(cfg))
        st.success(f"Queued {len(configs)} runs; they run one after another.", icon=":material/schedule:")
        st.page_link("views/launch.py", label="Follow them on the Launch page", icon=":material/monitoring:")


def wise_ft_tab(finished: list[RunRecord]) -> None:
    with_weights = [record for record in finished if record.config.save_weights]
    if not with_weights:
        widgets.empty_state("No finished run with saved weights yet — start one on the Launch page.")
        return
    st.markdown("WiSE-FT mixes weights: (1 − α)·θ₀ + α·θ. α = 0 is the pre-trained model, α = 1 the fine-tuned "
                "one. Each mix is evaluated once (a few seconds) and then remembered.")
    run_id = widgets.pick_run(with_weights, key="wise-run")
    alpha = st.select_slider("α", ALPHAS, value=0.5)
    done = st.session_state.setdefault(WISE_DONE, {}).setdefault(run_id, [])
    if not (st.button("Evaluate this mix", icon=":material/blender:") or alpha in done):
        return
    try:
        with st.spinner(f"Evaluating WiSE-FT at α = {alpha:g}…"):
            mixed = results.wise_ft(run_id, alpha)
    except LabError as err:
        widgets.show_error(err)
        return
    if alpha not in done:
        done.append(alpha)
    full = results.metrics(run_id)
    acc, zs = st.columns(2)
    acc.metric("Accuracy on the fine-tuning task", f"{mixed['downstream']['accuracy_after']:.1f}%",
               f"{mixed['downstream']['accuracy_after'] - full['downstream']['accuracy_after']:+.1f} vs the run")
    zs.metric("Mean zero-shot change elsewhere", f"{mixed['mean_zs_delta']:+.1f}",
              f"{mixed['mean_zs_delta'] - full['mean_zs_delta']:+.1f} vs the run")
    st.plotly_chart(plots.accuracy_change(mixed))
    if len(done) > 1:
        st.plotly_chart(plots.wise_ft_path([results.wise_ft(run_id, a) for a in done]))


def compare_tab(finished: list[RunRecord]) -> None:
    if len(finished) < 2:
        widgets.empty_state("Comparing needs two finished runs — start another on the Launch page.")
        return
    left, right = st.columns(2)
    first = widgets.pick_run(finished, "Run A", key="compare-a", container=left)
    others = [record for record in finished if record.run_id != first]
    second = widgets.pick_run(others, "Run B", key="compare-b", container=right, start=others[0].run_id)
    widgets.compare_runs([first, second])


def download_tab(finished: list[RunRecord]) -> None:
    if not finished:
        widgets.empty_state()
        return
    run_id = widgets.pick_run(finished, key="download-run")
    metrics = results.metrics(run_id)
    csv_col, json_col = st.columns(2)
    csv_col.download_button("Metrics as CSV", tables.metrics_csv(metrics), file_name=f"{run_id}-metrics.csv",
                            mime="text/csv", on_click="ignore", icon=":material/table:")
    json_col.download_button("Metrics as JSON", tables.metrics_json(metrics), file_name=f"{run_id}-metrics.json",
                             mime="application/json", on_click="ignore", icon=":material/data_object:")
    st.caption("CSV: one row per (dataset, metric) — columns run_id, section, dataset, metric, value. "
               "JSON: the complete metrics.json, including per-class accuracies and per-layer distances.")


st.title("Runs and sweeps")
records = results.run_store().list()
finished = [record for record in records if record.status == "done"]
table = tables.runs_table(records)
if records:
    runs_section(table)
    tradeoff_section(table)
else:
    widgets.empty_state("No runs yet — start one on the Launch page.")
sweep, wise, compare, download = st.tabs(["λ sweep", "WiSE-FT", "Compare two runs", "Download"])
with sweep:
    sweep_tab()
with wise:
    wise_ft_tab(finished)
with compare:
    compare_tab(finished)
with download:
    download_tab(finished)
