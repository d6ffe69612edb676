"""Runs and sweeps: every run in the store, the accuracy/forgetting trade-off, λ sweeps, WiSE-FT and Model Stock,
compare, download."""
from functools import partial

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app import display, figure_cache, jobs, lambda_search, launch_checks, model_picker, plots, results, tables, widgets
from ldifs_core import export, merging, report, reuse
from ldifs_core.config import REGULARISED, RunConfig
from ldifs_core.datasets import known_datasets
from ldifs_core.errors import BadConfig, LabError
from ldifs_core.lambda_finder import saved_searches, search_state
from ldifs_core.store import RunRecord

ALPHAS = jobs.WISE_ALPHAS
ALPHAS_TEXT = "0, 0.1, …, 1"
ALL = "all"
TABS = ("λ sweep", "WiSE-FT", "Compare two runs", "Download")
CHART_TABS = ("Trade-off", "Per objective", "λ against accuracy and forgetting")
CHART_TAB = "runs-chart-tab"
RAY_FIELD = "Ray cluster"
RUN_AGAIN = "Run again anyway"
# session_state, kept because a run that starts makes the sidebar redraw the page, which would drop them:
SWEEP_REUSED = "sweep-reused"  # which λ the last sweep took from finished runs (None: none)
SWEEP_QUEUED = "sweep-queued"  # (message, icon, where to follow the runs) of the last sweep queued (None: none)
# Why the last sweep was refused (None: it was not): kept in the session like the confirmation, so a redraw that a
# starting run causes never takes the message away before it was read.
SWEEP_REFUSED = "sweep-refused"
SEARCH_STARTED = "search-started"  # the process id of the λ search this session started last


FILTERS = ("model", "dataset", "objective")


def filter_choice(table: pd.DataFrame, column: str, container: DeltaGenerator) -> str | None:
    choice = container.selectbox(column.capitalize(), [ALL] + sorted(table[column].unique()), key=f"filter-{column}")
    return None if choice == ALL else choice


def runs_section(table: pd.DataFrame) -> pd.DataFrame:
    """The runs table under its model / dataset / objective filters; returns the filtered table, which the plots
    below draw too."""
    choices = {column: filter_choice(table, column, container) for column, container in zip(FILTERS, st.columns(3))}
    table = tables.filter_runs(table, choices)
    st.dataframe(table, hide_index=True, column_config={
        "accuracy after": st.column_config.NumberColumn(format="%.1f%%"),
        "mean zero-shot Δ": st.column_config.NumberColumn(format="%+.1f"),
        "mean linear-probe Δ": st.column_config.NumberColumn(format="%+.1f"),
        "λ": st.column_config.NumberColumn(format="%g"),
        "message": st.column_config.TextColumn(width="medium", help="Why a run failed, was cancelled or interrupted, or why its files cannot be read."),
    })
    return table


def chart_tabs(points: pd.DataFrame) -> None:
    """The charts of the filtered runs, one tab each: only the open tab is drawn, so a browser opening the page
    parses and draws one figure, not three (20 browsers at once took minutes to draw them all)."""
    if points.empty:
        widgets.empty_state("No finished run matches the filters above.")
        return
    titles = CHART_TABS if any((points["objective"] == o).any() for o in REGULARISED) else CHART_TABS[:2]
    for tab, draw in zip(st.tabs(titles, key=CHART_TAB, on_change="rerun"),
                         (tradeoff_section, objectives_section, lambda_sweep_section)):
        if tab.open:
            with tab:
                draw(points)


def tradeoff_section(points: pd.DataFrame) -> None:
    st.plotly_chart(figure_cache.tradeoff(points))
    st.caption("One panel per fine-tuning task, drawn from the runs the filters above keep. Up is better on the task, "
               "right is less forgetting elsewhere: a good regulariser moves points up and to the right of plain CE. "
               f"The panels share one forgetting axis, and every accuracy axis spans the same number of points (at "
               f"least {plots.MIN_ACCURACY_SPAN:g}), so a gap looks as large as it is. "
               "Runs that land on the same spot are nudged apart on a small ring; the hover gives each run and its "
               "exact numbers.")


def objectives_section(points: pd.DataFrame) -> None:
    st.plotly_chart(figure_cache.objectives_pareto(points, "Per objective: mean ± std over its finished runs (Pareto "
                                                    "front dashed, its markers outlined)"))
    st.caption("Every finished run of an objective on one task is averaged (n in the hover), whatever its λ or "
               "steps: to read it as the science table's Pareto picture (docs/pareto.html), keep runs at each "
               "objective's defaults, several seeds each.")


def sweep_control(label: str, options: list, key: str, container: DeltaGenerator, default=None):
    """A selectbox over `options` that starts at `default` (when given and present): the sweep opens on the
    task with the most λ values, then on its model and step count with the most runs."""
    index = options.index(default) if default in options else 0
    return container.selectbox(label, options, index=index, key=key, format_func=str)


def lambda_sweep_section(points: pd.DataFrame) -> None:
    """Accuracy and forgetting against λ for one regulariser, task, model and step count, from the filtered
    runs (no store reads): CE is λ = 0, runs sharing a λ are averaged (± std, n in the hover)."""
    regularised = [objective for objective in REGULARISED if (points["objective"] == objective).any()]
    if not regularised:
        return
    st.subheader("λ sweep: accuracy and forgetting against λ")
    objective_col, task_col, model_col, steps_col = st.columns(4)
    objective = sweep_control("Regulariser", regularised, "sweep-objective", objective_col, default="ldifs")
    runs = points[points["objective"] == objective]
    task = sweep_control("Task", sorted(runs["dataset"].unique()), "sweep-task", task_col,
                         default=tables.sweep_task(points, objective))
    runs = runs[runs["dataset"] == task]
    model = sweep_control("Model", sorted(runs["model"].unique()), "sweep-model", model_col,
                          default=runs["model"].mode().iloc[0])
    runs = runs[runs["model"] == model]
    steps = sweep_control("Steps", sorted(int(s) for s in runs["steps"].unique()), "sweep-steps", steps_col,
                          default=int(runs["steps"].mode().iloc[0]))
    same = points[(points["dataset"] == task) & (points["model"] == model) & (points["steps"] == steps)]
    sweep = figure_cache.lambda_sweep_table(same, objective)
    st.plotly_chart(figure_cache.lambda_sweep(sweep, f"{objective} on {task}: accuracy and forgetting against λ "
                                              f"({model}, {steps} steps)"), key="sweep-plot")
    ce = "" if (sweep["λ"] == 0).any() else " No CE run matches yet: queue one (λ = 0) to see where plain " \
                                             "fine-tuning sits."
    st.caption(f"Each point is the mean over the finished runs at that λ, with ± one standard deviation over them "
               f"as error bars (n and seeds in the hover); CE (plain `ce` runs and λ = 0) sits apart at the left."
               f"{ce} Queue a sweep in the λ sweep tab below; several seeds give the error bars.")


def sweep_tab(records: list[RunRecord]) -> None:
    st.markdown("Queue one LDIFS run per λ on the same task and seed, then read the trade-off plot. λ values whose "
                "run already finished with the same settings are reused, not trained again.")
    with st.form("sweep"):
        datasets = known_datasets() + launch_checks.stored_folders(records)
        dataset_col, folder_col = st.columns(2)
        dataset = dataset_col.selectbox("Fine-tune on", datasets, index=datasets.index(RunConfig().dataset),
                                        format_func=launch_checks.dataset_label)
        folder = folder_col.text_input("…or an image folder", placeholder="/path/to/images (one sub-folder per class)",
                                       help="Your own images, one sub-folder per class; used instead of the list "
                                            "when given.").strip()
        dataset_slot = st.empty()
        lams = st.multiselect("λ values", widgets.LAMBDAS, default=[0.0, 1.0, 10.0, 100.0],
                              format_func=lambda v: f"{v:g}", accept_new_options=True,
                              help="The paper's grid, or type any λ ≥ 0 and press Enter; λ = 0 is plain cross-entropy.")
        steps_col, seed_col = st.columns(2)
        steps = launch_checks.checked_setting(steps_col, "steps")
        seed = launch_checks.checked_setting(seed_col, "seed")
        ray_address = st.text_input(RAY_FIELD, value=jobs.default_ray_address(), placeholder="empty: this app's worker",
                                    help="Empty: the runs go one after another through this app's worker. "
                                         "`local` starts Ray here; `auto` joins the cluster this machine belongs to; "
                                         "`ray://HOST:10001` a remote one. Default: $LDIFS_RAY_ADDRESS.").strip()
        again = st.checkbox(RUN_AGAIN, help="Train every λ, even those whose identical run already finished.")
        submitted = st.form_submit_button("Queue sweep", type="primary", icon=":material/playlist_add:")
    sent_to_ray = []
    if submitted:
        sent_to_ray = queue_sweep(folder or dataset, lams, steps, seed, ray_address, again, dataset_slot)
    if st.session_state.get(SWEEP_REFUSED):
        st.error(st.session_state[SWEEP_REFUSED], icon=":material/error:")
    if st.session_state.get(SWEEP_REUSED):
        st.info(st.session_state[SWEEP_REUSED], icon=":material/recycling:")
    if st.session_state.get(SWEEP_QUEUED):
        message, icon, follow = st.session_state[SWEEP_QUEUED]
        st.success(message, icon=icon)
        if follow:
            st.page_link("views/launch.py", label=follow, icon=":material/monitoring:")
    if sent_to_ray:  # their cards on this draw only: from the next one they are under "Running and queued"
        widgets.live_runs(sent_to_ray)
    find_lambda_section(records)


def find_lambda_section(records: list[RunRecord]) -> None:
    st.subheader("Find λ for me")
    st.markdown("The LDIFS λ with the least forgetting whose task accuracy stays within a tolerance of CE's: a "
                "bisection of log λ in at most the budget's runs, finished runs reused, hopeless λ stopped early "
                "from their forgetting curve (docs/find-lambda.md). Its runs appear above as they go.")
    with st.form("find-lambda"):
        datasets = known_datasets() + launch_checks.stored_folders(records)
        dataset_col, tolerance_col, budget_col = st.columns(3)
        dataset = dataset_col.selectbox("Fine-tune on", datasets, index=datasets.index(RunConfig().dataset),
                                        format_func=launch_checks.dataset_label, key="find-lambda-dataset")
        tolerance = tolerance_col.number_input("Tolerance (points below CE)", min_value=0.0, value=1.0, step=0.5)
        budget = budget_col.number_input("Budget (runs)", min_value=3, max_value=20, value=8, step=1)
        ray_address = st.text_input(RAY_FIELD, value=jobs.default_ray_address(), key="find-lambda-ray",
                                    placeholder="empty: here, one run after another",
                                    help="Empty: here. Otherwise the trials run on Ray Tune at this address.").strip()
        if st.form_submit_button("Find λ", icon=":material/travel_explore:"):
            pid = lambda_search.start_search(str(results.run_store().root), dataset, tolerance, int(budget),
                                             ray_address)
            st.session_state[SEARCH_STARTED] = pid
    if pid := st.session_state.get(SEARCH_STARTED):
        st.success(f"The λ search started (process {pid}); each λ appears below as its run ends.",
                   icon=":material/travel_explore:")
    searching = any(search_state(search) == "searching" for search in saved_searches(results.run_store())[:3])
    st.fragment(run_every=widgets.POLL_S * 2 if searching else None)(lambda_searches)(searching)


def lambda_searches(was_searching: bool) -> None:
    """The three newest searches; one still going is redrawn as its trials end."""
    searches = saved_searches(results.run_store())[:3]
    for newest, search in enumerate(searches):
        state = search_state(search)
        outcome = {"searching": f" → searching ({len(search['tried']) + 1} runs so far)",
                   "stopped": " → stopped before it finished"}.get(state) or (
            f" → λ = {search['chosen']['lam']:.3g}" if search["chosen"] else " → no λ meets it")
        with st.expander(f"λ search: {search['objective']} on {search['dataset']}, tolerance {search['tolerance']:g}"
                         + outcome, expanded=newest == 0):
            if state == "stopped":
                st.warning("Its process ended before the search did; the runs it finished are in the store and a "
                           "new search reuses them.", icon=":material/warning:")
            elif state == "done" and search["chosen"] is None:
                st.warning("No λ searched keeps the task accuracy within the tolerance of CE's: raise the tolerance, "
                           "or use CE.", icon=":material/warning:")
            st.plotly_chart(plots.lambda_search(search), key=f"search-{newest}")
    if was_searching and not any(search_state(search) == "searching" for search in searches):
        widgets.redraw_page()  # the search ended: its runs are in the tables above


class KeptRefusal:
    """Where a sweep check writes its refusal: the session, drawn under the form until the next sweep."""

    def error(self, message: str, icon: str | None = None) -> None:
        st.session_state[SWEEP_REFUSED] = message


def queue_sweep(dataset: str, lams: list[float | str], steps: int | None, seed: int | None, ray_address: str,
                again: bool, dataset_slot: DeltaGenerator) -> list[str]:
    """Check, then queue the λ values that have no finished identical run (all of them with `again`); returns the
    ids of the runs sent to Ray."""
    st.session_state[SWEEP_QUEUED] = st.session_state[SWEEP_REFUSED] = None
    dataset_ok = launch_checks.passes(dataset_slot, launch_checks.check_dataset, dataset, None, False)
    lams = launch_checks.checked_lambdas(KeptRefusal(), "λ values", lams)
    if not dataset_ok or None in (steps, seed, lams):
        return []
    try:
        if not lams:
            raise BadConfig("Pick at least one λ value for the sweep.")
        configs = [RunConfig(dataset=dataset, objective="ldifs", lam=lam, steps=steps, seed=seed,
                             label=f"sweep λ={lam:g}").validate() for lam in sorted(lams)]
        model_picker.check_loads(model_picker.ModelChoice())
    except LabError as err:
        st.session_state[SWEEP_REFUSED] = str(err)
        return []
    store = results.run_store()
    reused = {} if again else {cfg.lam: run_id for cfg in configs if (run_id := reuse.finished_run(store, cfg))}
    configs = [cfg for cfg in configs if cfg.lam not in reused]
    st.session_state[SWEEP_REUSED] = (
        f"Reused the finished runs of λ = {', '.join(f'{lam:g}' for lam in reused)} (same settings, this version of "
        f"the lab): {', '.join(reused.values())}. Tick “{RUN_AGAIN}” to train them again." if reused else None)
    if not configs:
        return []
    if ray_address:
        run_ids = jobs.job_runner().submit_ray_sweep(configs, ray_address)
        for run_id in run_ids:
            widgets.remember_run(run_id)
        st.session_state[SWEEP_QUEUED] = (
            f"Sent {len(configs)} run{'s' * (len(configs) > 1)} to Ray ({ray_address}); they run side by side as the "
            f"cluster has room and land in this app's run store.", ":material/hub:", None)
        return run_ids
    for cfg in configs:
        widgets.remember_run(jobs.job_runner().submit(cfg))
    st.session_state[SWEEP_QUEUED] = (
        f"Queued {len(configs)} run{'s' * (len(configs) > 1)} (λ = {', '.join(f'{cfg.lam:g}' for cfg in configs)}); "
        f"they run one after another.", ":material/schedule:", "Follow them on the Launch page")
    return []


def wise_ft_tab(finished: list[RunRecord]) -> None:
    with_weights = [record for record in finished if record.config.save_weights]
    if not with_weights:
        widgets.empty_state("No finished run with saved weights yet — start one on the Launch page.")
        return
    st.markdown("WiSE-FT mixes weights: (1 − α)·θ₀ + α·θ. α = 0 is the pre-trained model, α = 1 the fine-tuned "
                f"one. The path α = {ALPHAS_TEXT} is evaluated once by the background worker (queued like a run, "
                "cancellable) and kept with the run, so it is drawn at once next time.")
    run_id = widgets.pick_run(with_weights, key="wise-run")
    state = jobs.job_runner().wise_state(run_id)
    active = state is not None and state.active
    st.fragment(run_every=widgets.POLL_S if active else None)(wise_ft_path)(run_id, active)
    model_stock_section(with_weights)


def model_stock_section(with_weights: list[RunRecord]) -> None:
    """Merge two finished runs of the same settings (other seeds) into a run of its own, queued like a run."""
    st.subheader("Model Stock")
    st.markdown("Model Stock merges two runs of the same settings and different seeds with θ₀, layer by layer: "
                "w = t·(w₁ + w₂)/2 + (1 − t)·θ₀ with t = 2·cos φ / (1 + cos φ), φ the angle between the two runs' "
                "changes of that layer. The merge is evaluated like a run and kept as one (objective model_stock), "
                "so every page shows it; `python -m ldifs_core model-stock RUN_A RUN_B` does the same.")
    mergeable = [record for record in with_weights if record.config.objective != merging.NAME]
    if not mergeable:
        return
    left, right = st.columns(2)
    first = widgets.pick_run(mergeable, "Run A", key="stock-a", container=left)
    others = merging.partners(next(r for r in mergeable if r.run_id == first), mergeable)
    if not others:
        right.info("No other finished run with weights has these settings: run this configuration again with "
                   "another seed to merge the two.", icon=":material/info:")
        return
    second = widgets.pick_run(others, "Run B (same settings, another seed)", key="stock-b", container=right)
    existing = merging.find_model_stock(results.run_store(), first, second)
    if existing:
        st.info(f"These two runs are merged already: run {existing}.", icon=":material/check:")
    elif st.button("Merge with Model Stock", icon=":material/merge:", key=f"stock-{first}-{second}"):
        try:
            run_id = jobs.job_runner().submit_model_stock(first, second)
        except LabError as err:
            st.error(str(err), icon=":material/warning:")
        else:
            widgets.remember_run(run_id)
            st.success(f"Queued the merge as run {run_id}; follow it on the Launch page.", icon=":material/schedule:")


def wise_ft_path(run_id: str, was_active: bool) -> None:
    """The run's WiSE-FT job (queue, progress, Cancel) or the button that queues it, then the path so far."""
    runner = jobs.job_runner()
    state = runner.wise_state(run_id)
    mixes = results.wise_results(run_id)
    missing = [alpha for alpha in ALPHAS if alpha not in mixes]
    if state is not None and state.active:
        position = runner.queue_position(jobs.wise_job_id(run_id))
        ahead = f"{position - 1} job(s) ahead of it" if position and position > 1 else "next in line"
        st.progress(*wise_progress(state, ahead))
        widgets.cancel_control(jobs.wise_job_id(run_id), key=f"cancel-wise-{run_id}", what="WiSE-FT path")
    elif was_active:
        widgets.redraw_page()  # the job just ended: redraw once with every mix and stop polling
    else:
        if state is not None and state.status in ("failed", "cancelled"):
            (st.error if state.status == "failed" else st.warning)(state.message, icon=":material/warning:")
        if missing and st.button(f"Evaluate the WiSE-FT path (α = {ALPHAS_TEXT})", icon=":material/blender:",
                                 key=f"wise-queue-{run_id}"):
            if runner.submit_wise(run_id, ALPHAS):
                st.rerun()
            st.info("The WiSE-FT path of this run is already queued; it appears here once evaluated.",
                    icon=":material/schedule:")
    if mixes:
        wise_ft_results(run_id, mixes)


def wise_progress(state: jobs.WiseState, ahead: str) -> tuple[float, str]:
    """The bar of a queued or running path: the mixes are measured together, dataset by dataset."""
    progress = state.progress
    if state.status == "queued" or progress is None or not progress.images_to_encode:
        return 0.0, f"Queued — {ahead}; jobs go one at a time." if state.status == "queued" else "Loading the run…"
    return (progress.images_encoded / progress.images_to_encode,
            f"Evaluating the mixes together: {progress.where()}.")


def wise_ft_results(run_id: str, mixes: dict[float, dict]) -> None:
    """The α path as a curve; the slider moves along the mixes already computed."""
    full = widgets.run_metrics(run_id)
    if full is None:
        return
    alphas = sorted(mixes)
    alpha = st.select_slider("α", alphas, value=min(alphas, key=lambda a: abs(a - 0.5)),
                             format_func=lambda a: f"{a:g}", key=f"wise-alpha-{run_id}-{len(alphas)}")
    mixed = mixes[alpha]
    acc, zs = st.columns(2)
    if "downstream" in mixed:
        acc.metric("Accuracy on the fine-tuning task", tables.task_accuracy(mixed),
                   display.metric_delta(mixed["downstream"]["accuracy_after"] - full["downstream"]["accuracy_after"],
                                        "points vs the run"))
    else:
        acc.metric("Accuracy on the task", tables.task_accuracy(mixed))
    zs.metric("Mean zero-shot change elsewhere", f"{tables.signed(mixed['mean_zs_delta'])} points",
              display.metric_delta(mixed["mean_zs_delta"] - full["mean_zs_delta"], "points vs the run"))
    zs.caption(widgets.interval_caption(mixed, "zs"))
    st.plotly_chart(plots.wise_ft_path(mixes, chosen=alpha), key=f"wise-path-{run_id}")
    st.plotly_chart(plots.accuracy_change(mixed), key=f"wise-bars-{run_id}")


def compare_tab(finished: list[RunRecord]) -> None:
    if len(finished) < 2:
        widgets.empty_state("Comparing needs two finished runs — start another on the Launch page.")
        return
    left, right = st.columns(2)
    first = widgets.pick_run(finished, "Run A", key="compare-a", container=left)
    others = [record for record in finished if record.run_id != first]
    second = widgets.pick_run(others, "Run B", key="compare-b", container=right, start=others[0].run_id)
    widgets.compare_runs([first, second])
    report_button([first, second], st, key="report-compare")


def report_button(run_ids: list[str], container: DeltaGenerator, key: str) -> None:
    """The runs' HTML report (ldifs_core.report), made only when clicked, on a thread of its own, not the page's."""
    container.download_button(
        "Report (HTML)", partial(report.run_report, results.run_store(), run_ids), key=key,
        file_name=f"ldifs-report-{'-vs-'.join(run_ids)}.html", mime="text/html", on_click="ignore",
        icon=":material/description:",
        help="One self-contained HTML file that opens offline: configuration, timings, the accuracy change per "
             "dataset and the most forgotten concepts with n and 95 % intervals, charts and the flipped images. "
             f"The same as `python -m ldifs_core report {' '.join(run_ids)} -o report.html`.")


def download_tab(finished: list[RunRecord]) -> None:
    if not finished:
        widgets.empty_state()
        return
    run_id = widgets.pick_run(finished, key="download-run")
    metrics = widgets.run_metrics(run_id)
    if metrics is None:
        return
    csv_col, json_col, report_col = st.columns(3)
    csv_col.download_button("Metrics as CSV", export.metrics_csv(metrics), file_name=f"{run_id}-metrics.csv",
                            mime="text/csv", on_click="ignore", icon=":material/table:")
    json_col.download_button("Metrics as JSON", tables.metrics_json(metrics), file_name=f"{run_id}-metrics.json",
                             mime="application/json", on_click="ignore", icon=":material/data_object:")
    report_button([run_id], report_col, key="report-run")
    st.caption("CSV (the same as `python -m ldifs_core export RUN --format csv`): one row per dataset and probe and "
               "one per concept, each with n and its 95 % intervals. JSON: the complete metrics.json, including "
               "per-layer distances. Report: one HTML file to share, with charts and the images of forgotten "
               "concepts (`python -m ldifs_core report RUN -o report.html`; two runs side by side from the Compare "
               "tab).")


st.title("Runs and sweeps")
records = results.run_store().list()
finished = [record for record in records if record.status == "done"]
table = tables.runs_table(records)
if records:
    active = widgets.active_runs(records)
    if active:
        st.subheader("Running and queued")
        widgets.live_runs([record.run_id for record in active])
    chart_tabs(tables.tradeoff_points(runs_section(table)))
else:
    widgets.empty_state("No runs yet — start one on the Launch page.")
# Only the open tab runs (each switch reruns the page), so opening this page costs one tab, not four.
sweep, wise, compare, download = st.tabs(TABS, key="runs-tab", on_change="rerun")
for tab, draw in ((sweep, lambda: sweep_tab(records)), (wise, lambda: wise_ft_tab(finished)),
                  (compare, lambda: compare_tab(finished)), (download, lambda: download_tab(finished))):
    if tab.open:
        with tab:
            draw()
