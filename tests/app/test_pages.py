"""What a user sees on each page, checked headlessly with AppTest against a temporary store and a fake runner."""
from __future__ import annotations

import ast
import json
import os
import re
import socket
from pathlib import Path

import pytest
from streamlit.proto.Metric_pb2 import Metric as MetricProto
from streamlit.testing.v1 import AppTest

from app import display, jobs, results
from app.jobs import WISE_ALPHAS as ALPHAS
from app.jobs import JobRunner
from app.widgets import MY_RUNS, NO_FINISHED_RUNS, OTHER_PROCESS
from ldifs_core import export, models, ownership, stats
from ldifs_core import store as store_module
from ldifs_core.errors import RunUnreadable, TrainingDiverged
from ldifs_core.store import INTERRUPTED_MESSAGE, RunStore
from ldifs_core.wise_records import save_wise, wise_results
from tests.app.conftest import (MAIN, PAGES, FakeWisePath, HeldExecute, fake_execute, open_page, wait_for_status,
                                wait_for_wise)
from tests.app.sample_runs import CHECKED, add_ended_run, add_finished_run, sample_wise
from tests.cli_process import start_cli_like_run

RESULT_PAGES = ("forgetting", "drift")
TITLES = {"learn": "Concept forgetting and LDIFS", "launch": "Launch a fine-tuning run", "forgetting": "Concept forgetting",
          "drift": "Feature drift", "runs": "Runs and sweeps", "continual": "Continual fine-tuning"}


def figures(app: AppTest) -> list[dict]:
    """The Plotly figures on the page, as their JSON specs."""
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def chart_titles(app: AppTest) -> list[str]:
    return [figure["layout"]["title"]["text"] for figure in figures(app)]


def button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def assert_no_exception(app: AppTest) -> None:
    assert not app.exception, texts(app.exception)


@pytest.fixture
def populated(store: RunStore) -> dict[str, str]:
    """A store as after a few sessions: CE and LDIFS runs on MNIST, one failed and one cancelled run."""
    return {
        "ce": add_finished_run(store, objective="ce"),
        "ldifs": add_finished_run(store, objective="ldifs", lam=10.0),
        "failed": add_ended_run(store, "failed", "The loss became nan at step 3: lower the learning rate.", lr=0.5),
        "cancelled": add_ended_run(store, "cancelled", "Cancelled at step 4 of 20."),
    }


def start_run(app: AppTest, steps: int = 5) -> AppTest:
    next(n for n in app.text_input if n.label == "Steps").set_value(str(steps))
    button(app, "Start run").click()
    return app.run()


# -- rendering -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_on_an_empty_store(app, page):
    open_page(app, page)
    assert_no_exception(app)
    assert not app.error


@pytest.mark.parametrize("page", RESULT_PAGES)
def test_result_pages_point_to_launch_when_nothing_has_finished(app, page):
    open_page(app, page)
    assert NO_FINISHED_RUNS in texts(app.info)
    assert not figures(app)


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_with_finished_failed_and_cancelled_runs(app, populated, page):
    open_page(app, page)
    assert_no_exception(app)
    # Launch lists the store's newest runs, the failed one with its reason; no page shows any other error
    failed = ["The loss became nan at step 3: lower the learning rate."]
    assert [error.value for error in app.error] == (failed if page == "launch" else [])


def test_forgetting_page_shows_the_task_gain_beside_the_losses_and_ranks_concepts(app, populated):
    open_page(app, "forgetting")
    labels = [m.label for m in app.metric]
    assert "Accuracy on mnist (fine-tuned)" in labels
    assert "Mean zero-shot change on the others" in labels
    titles = chart_titles(app)
    assert "Accuracy before and after fine-tuning (zero-shot)" in titles
    assert f"Concepts of {CHECKED[0]} ranked by accuracy drop (zero-shot)" in titles


def test_forgetting_page_gives_every_mean_change_its_interval_and_every_concept_its_n(app, store, populated):
    metrics = store.metrics(populated["ldifs"])
    open_page(app, "forgetting")
    app.selectbox[0].set_value(populated["ldifs"]).run()
    captions = texts(app.caption)
    assert display.interval(metrics["mean_zs_delta_ci"]) in captions
    assert display.interval(metrics["mean_lp_delta_ci"]) in captions
    concepts = app.dataframe[0].value
    ranked = stats.rank_forgotten(metrics["forgetting"][0]["per_class"])
    assert list(concepts["class_name"]) == [row["class_name"] for row in ranked]
    assert list(concepts["n"]) == [row["n"] for row in ranked]


def test_forgetting_page_switches_concepts_to_the_linear_probe_and_drops_concepts_below_the_minimum_n(
        app, store, populated):
    metrics = store.metrics(populated["ldifs"])
    open_page(app, "forgetting")
    app.selectbox[0].set_value(populated["ldifs"]).run()
    app.get("button_group")[0].set_value("lp").run()
    assert f"Concepts of {CHECKED[0]} ranked by accuracy drop (linear probe)" in chart_titles(app)
    assert "Accuracy before and after fine-tuning (linear probe)" in chart_titles(app)
    next(n for n in app.number_input if n.label == "Minimum test images per concept").set_value(20).run()
    concepts = app.dataframe[0].value
    expected = [r["class_name"] for r in stats.rank_forgotten(metrics["forgetting"][0]["per_class_lp"]) if r["n"] >= 20]
    assert list(concepts["class_name"]) == expected and (concepts["n"] >= 20).all()


def test_forgetting_page_opens_on_the_run_chosen_before(app, populated):
    open_page(app, "forgetting")
    app.selectbox[0].set_value(populated["ce"]).run()
    app.switch_page(PAGES["drift"]).run()
    assert app.selectbox[0].value == populated["ce"]


def test_runs_table_lists_every_run_with_status_and_reason(app, populated):
    open_page(app, "runs")
    table = app.dataframe[0].value
    assert sorted(table["status"]) == ["cancelled", "done", "done", "failed"]
    assert "lower the learning rate" in table.set_index("status").loc["failed", "message"]


def open_tab(app: AppTest, label: str) -> AppTest:
    """Click a tab of the Runs page (its tabs are a widget: only the open one runs)."""
    app.session_state["runs-tab"] = label
    return app.run()


def test_the_runs_page_draws_only_the_chart_of_its_open_chart_tab(app, store, populated):
    """Issue 20 "Load": 20 browsers took 155 s to draw the page's three charts; one is drawn until another is asked."""
    open_page(app, "runs")
    assert chart_titles(app) == ["Trade-off: downstream accuracy vs forgetting elsewhere"]
    app.session_state["runs-chart-tab"] = "Per objective"
    assert [title.startswith("Per objective") for title in chart_titles(app.run())] == [True]
    app.session_state["runs-chart-tab"] = "λ against accuracy and forgetting"
    assert [("against λ" in title) for title in chart_titles(app.run())] == [True]


def test_runs_page_plots_the_tradeoff_and_offers_the_one_csv_export_and_the_json(app, store, populated, monkeypatch):
    exported = []
    monkeypatch.setattr(export, "metrics_csv", lambda metrics: exported.append(metrics["run_id"]) or "csv")
    open_page(app, "runs")
    assert "Trade-off: downstream accuracy vs forgetting elsewhere" in chart_titles(app)
    assert not app.get("download_button")  # only the open tab (λ sweep) runs
    open_tab(app, "Download")
    assert {b.label for b in app.get("download_button")} == {"Metrics as CSV", "Metrics as JSON", "Report (HTML)"}
    assert exported == [app.selectbox(key="download-run").value]


def test_interrupted_runs_show_as_interrupted_after_a_restart(app, store, monkeypatch):
    orphan = store.create(store_module.RunConfig(), status="running")
    monkeypatch.setattr(ownership, "owner_alive", lambda *owner: False)
    RunStore(store.root)  # what opening the store after a restart does
    open_page(app, "runs")
    row = app.dataframe[0].value.set_index("run").loc[orphan]
    assert (row["status"], row["message"]) == ("interrupted", INTERRUPTED_MESSAGE)


def test_learn_page_renders_the_ldifs_formula(app):
    open_page(app, "learn")
    formulas = texts(app.latex)
    assert r"\mathrm{LDIFS}(x)" in formulas and r"\lambda \cdot \mathrm{LDIFS}" in formulas


def page_order(node) -> list:
    """The page's elements in the order a reader meets them."""
    return [element for child in getattr(node, "children", {}).values() for element in [child, *page_order(child)]]


def test_learn_opens_on_the_demo_and_the_lambda_slider_with_the_theory_after_them(app):
    open_page(app, "learn")
    kinds = [(element.type, str(getattr(element, "value", getattr(element, "label", "")))) for element in
             page_order(app.main)]
    demo = next(k for k, (kind, text) in enumerate(kinds) if kind == "button" or text == "Run the demo")
    slider = next(k for k, (kind, _) in enumerate(kinds) if kind == "select_slider")
    formula = next(k for k, (kind, _) in enumerate(kinds) if kind == "latex")
    assert demo < formula and slider < formula
    assert sum(kind == "markdown" for kind, _ in kinds[:demo]) <= 2  # a short introduction, not a wall of text


# -- launching -------------------------------------------------------------------------------------------


def test_launching_queues_a_run_that_is_recorded_in_the_store(app, store, runner):
    open_page(app, "launch")
    start_run(app, steps=5)
    assert_no_exception(app)
    (record,) = store.list()
    assert record.config.steps == 5 and record.config.objective == "ldifs"
    assert app.session_state[MY_RUNS] == [record.run_id]
    wait_for_status(store, record.run_id, ("done",))
    app.run()
    assert "See what it forgot" in [link.label for link in app.get("page_link")]
    metrics = store.metrics(record.run_id)
    assert display.interval(metrics["mean_zs_delta_ci"]) in texts(app.caption)


def test_a_missing_checkpoint_is_a_short_error_and_queues_nothing(app, store):
    open_page(app, "launch")
    app.radio[0].set_value("Local checkpoint file").run()
    app.text_input[0].set_value("/nowhere/model.safetensors").run()
    button(app, "Start run").click().run()
    assert_no_exception(app)
    assert "does not exist" in texts(app.error)
    assert store.list() == []


def test_no_dataset_to_check_for_forgetting_is_an_error(app, store):
    open_page(app, "launch")
    app.multiselect[0].set_value([]).run()
    button(app, "Start run").click().run()
    assert "Check forgetting on" in texts(app.error)
    assert store.list() == []


def test_a_running_run_shows_progress_with_eta_and_live_loss_curves(store, held):
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "launch")
    start_run(app)
    wait_for_status(store, store.list()[0].run_id, ("running",))
    app.run()
    assert "Training: step 2/5 · about 42 s left · 64 images/s" in [bar.proto.text for bar in app.get("progress")]
    curves = next(f for f in figures(app) if f["layout"]["title"]["text"] == "Training loss")
    assert [trace["name"] for trace in curves["data"]] == ["total loss", "CE", "λ·LDIFS"]


def test_a_second_start_while_one_runs_is_shown_queued_and_cancel_stops_the_first(store, held):
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "launch")
    start_run(app)
    first = store.list()[0].run_id
    wait_for_status(store, first, ("running",))
    start_run(app)
    second = store.list()[0].run_id
    assert store.get(second).status == "queued"
    assert "— queued" in texts(app.markdown)
    next(b for b in app.button if b.key == f"cancel-{first}").click().run()
    assert wait_for_status(store, first, ("cancelled",)) == "cancelled"
    held.release.set()
    assert wait_for_status(store, second, ("done",)) == "done"


def test_two_sessions_keep_their_own_runs(store, runner):
    alice, bob = (open_page(AppTest.from_file(MAIN, default_timeout=60), "launch") for _ in range(2))
    start_run(alice)
    start_run(bob, steps=6)  # the same settings would be offered alice's finished run instead
    assert len(alice.session_state[MY_RUNS]) == len(bob.session_state[MY_RUNS]) == 1
    assert alice.session_state[MY_RUNS] != bob.session_state[MY_RUNS]
    open_page(alice, "runs")
    assert len(alice.dataframe[0].value) == 2


def test_the_guided_demo_queues_ce_and_ldifs_and_shows_them_side_by_side(app, store, runner):
    open_page(app, "learn")
    button(app, "Run the demo").click().run()
    demo = [record.run_id for record in reversed(store.list())]
    assert [store.get(run_id).config.objective for run_id in demo] == ["ce", "ldifs"]
    for run_id in demo:
        wait_for_status(store, run_id, ("done",), timeout_s=30)
    app.run()
    assert "Accuracy change per dataset (fine-tuning task first)" in chart_titles(app)


def test_a_lambda_sweep_queues_one_ldifs_run_per_lambda(app, store, runner):
    open_page(app, "runs")
    sweep = next(m for m in app.multiselect if m.label == "λ values")
    sweep.set_value([0.1, 1.0, 10.0])
    next(b for b in app.button if b.label == "Queue sweep").click().run()
    assert sorted(r.config.lam for r in store.list()) == [0.1, 1.0, 10.0]
    assert {r.config.objective for r in store.list()} == {"ldifs"}


@pytest.fixture
def offline(monkeypatch):
    """No network, even where one exists: the weights host is unreachable and any connection attempt fails."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(models, "weights_host_reachable", lambda *args, **kwargs: False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_an_open_clip_model_without_weights_here_is_a_short_error(app, store, offline):
    open_page(app, "launch")
    app.radio[0].set_value("open_clip zoo").run()
    model = app.selectbox[0]
    missing = next(option for option in model.options if "needs a download" in option)
    model.select_index(model.options.index(missing)).run()
    button(app, "Start run").click().run()
    assert_no_exception(app)
    assert "not on this machine" in texts(app.error)
    assert store.list() == []


def test_an_image_folder_path_that_is_no_folder_is_an_error_before_queuing(app, store):
    open_page(app, "launch")
    app.selectbox[0].set_value("ImageFolder directory…").run()
    next(t for t in app.text_input if t.label == "ImageFolder path").set_value("/nowhere/images").run()
    button(app, "Start run").click().run()
    assert "is not a folder" in texts(app.error)
    assert store.list() == []


@pytest.mark.slow
def test_a_run_that_fails_in_the_worker_shows_its_reason_on_its_card(store, monkeypatch):
    """What only the run finds out (checks before queuing catch bad folders now): here the loss diverges."""
    from ldifs_core import runner

    real_runner = JobRunner(store)  # the real worker runs the real runner; only the training is made to diverge
    monkeypatch.setattr(jobs, "job_runner", lambda: real_runner)

    def diverging(*args, **kwargs):
        raise TrainingDiverged("the loss became nan at step 3: lower the learning rate")

    monkeypatch.setattr(runner, "finetune", diverging)
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "launch")
    start_run(app)
    (record,) = store.list()
    wait_for_status(store, record.run_id, ("failed",), timeout_s=120)
    app.run()
    assert_no_exception(app)
    assert "lower the learning rate" in texts(app.error)


def test_lambda_is_typed_on_the_launch_page_from_the_objectives_default_and_only_for_regularised_objectives(app):
    open_page(app, "launch")
    lam = next(t for t in app.text_input if t.label == "λ (regulariser weight)")
    assert (lam.value, lam.disabled) == ("10", False)
    assert "0.01" in lam.help and "100" in lam.help  # the paper's grid, as a hint
    next(s for s in app.selectbox if s.label == "Objective").set_value("ce").run()
    assert next(t for t in app.text_input if t.label == "λ (regulariser weight)").disabled


# -- navigation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", [name for name in PAGES if name != "learn"])
def test_a_deep_link_opened_first_runs_the_navigation_and_the_sidebar(runner, page):
    """After a restart the first request may be /runs: main.py must still set up the navigation and the Jobs
    panel (a `pages/` folder beside main.py made Streamlit run the page file alone, as an old-style MPA)."""
    app = AppTest.from_file(MAIN, default_timeout=60)
    app.switch_page(PAGES[page]).run()  # before any run: what a fresh server does with a deep link
    assert_no_exception(app)
    assert "Jobs" in [header.value for header in app.sidebar.subheader]
    assert app.title[0].value == TITLES[page]


# -- a broken run breaks nothing else -----------------------------------------------------------------------


@pytest.fixture
def corrupt_newest(store, populated) -> str:
    """A finished run, the newest, whose metrics.json was cut short (a crash mid-copy, a full disk elsewhere)."""
    run_id = add_finished_run(store, objective="ldifs", lam=1.0)
    (store.root / run_id / "metrics.json").write_text('{"run_id": "cut sh')
    return run_id


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_when_the_newest_run_is_unreadable_and_says_why(app, corrupt_newest, page):
    open_page(app, page)
    assert_no_exception(app)
    shown = texts(app.warning) + texts(app.sidebar.warning)
    assert corrupt_newest in shown and "unreadable: metrics.json is corrupt" in shown


@pytest.mark.parametrize("page", RESULT_PAGES)
def test_result_pages_still_show_the_readable_runs_beside_an_unreadable_newest_one(app, populated, corrupt_newest,
                                                                                     page):
    open_page(app, page)
    assert app.selectbox[0].options and corrupt_newest not in app.selectbox[0].options
    assert app.selectbox[0].value in (populated["ce"], populated["ldifs"])
    assert figures(app)


def test_the_runs_table_lists_an_unreadable_run_with_its_reason(app, corrupt_newest):
    open_page(app, "runs")
    row = app.dataframe[0].value.set_index("run").loc[corrupt_newest]
    assert row["status"] == "unreadable" and row["message"].startswith("unreadable: metrics.json is corrupt")


@pytest.mark.parametrize("tab", ["WiSE-FT", "Compare two runs", "Download"])
def test_a_run_that_turns_unreadable_after_it_was_listed_shows_its_reason_in_every_tab(app, store, populated,
                                                                                      monkeypatch, tab):
    def unreadable(run_id):
        raise RunUnreadable(f"unreadable: metrics.json is missing (run {run_id}).")

    for run_id in (populated["ce"], populated["ldifs"]):  # a WiSE-FT path to show, read against the run's metrics
        save_wise(store, run_id, 0.5, sample_wise(store.metrics(run_id), 0.5))
    open_page(app, "runs")
    monkeypatch.setattr(results, "metrics", unreadable)
    open_tab(app, tab)
    assert_no_exception(app)
    assert "unreadable: metrics.json is missing" in texts(app.error)


# -- WiSE-FT through the worker ----------------------------------------------------------------------------


def evaluate_button(app: AppTest):
    return next(b for b in app.button if b.label.startswith("Evaluate the WiSE-FT path"))


def wise_runner(store, monkeypatch, execute=fake_execute, held_wise: bool = False) -> tuple[JobRunner, FakeWisePath]:
    wise = FakeWisePath(held=held_wise)
    runner = JobRunner(store, execute=execute, wise_path=wise)
    monkeypatch.setattr(jobs, "job_runner", lambda: runner)
    return runner, wise


def test_the_wise_ft_tab_queues_the_path_in_the_worker_and_draws_it_from_the_store(store, populated, monkeypatch):
    runner, wise = wise_runner(store, monkeypatch)
    app = open_tab(open_page(AppTest.from_file(MAIN, default_timeout=60), "runs"), "WiSE-FT")
    run_id = app.selectbox(key="wise-run").value
    evaluate_button(app).click().run()
    wait_for_wise(runner, run_id, ("done",))
    assert wise.threads == ["ldifs-job-worker"]  # evaluated by the worker, never in the page's thread
    app.run()
    assert_no_exception(app)
    mixes = wise_results(store, run_id)
    path = next(f for f in figures(app) if f["layout"]["title"]["text"].startswith("WiSE-FT"))
    assert path["data"][0]["text"] == [f"α={a:g}" for a in ALPHAS]
    slider = app.select_slider[0]
    assert [float(option) for option in slider.options] == list(ALPHAS)
    slider.set_value(0.3).run()
    accuracy = next(m for m in app.metric if m.label == "Accuracy on the fine-tuning task")
    assert accuracy.value == f"{mixes[0.3]['downstream']['accuracy_after']:.1f}%"
    assert not [b for b in app.button if b.label.startswith("Evaluate the WiSE-FT path")]  # all cached now


def test_a_second_click_on_wise_ft_while_the_path_waits_is_ignored_and_says_it_is_queued(store, populated, monkeypatch):
    held = HeldExecute()
    runner, wise = wise_runner(store, monkeypatch, execute=held)
    running = runner.submit(store_module.RunConfig(steps=5))
    wait_for_status(store, running, ("running",))
    alice, bob = (open_tab(open_page(AppTest.from_file(MAIN, default_timeout=60), "runs"), "WiSE-FT")
                  for _ in range(2))
    run_id = alice.selectbox(key="wise-run").value
    evaluate_button(alice).click().run()
    evaluate_button(bob).click().run()  # bob's page still showed the button: his click is ignored
    assert runner.queue_position(jobs.wise_job_id(run_id)) == 1 and len(runner.active_wise()) == 1
    for session in (alice, bob):  # and both pages say it is queued, with its Cancel
        assert "Queued — next in line; jobs go one at a time." in [bar.proto.text for bar in session.get("progress")]
        assert session.button(key=f"cancel-wise-{run_id}")
    assert wise.calls == []  # nothing evaluates beside the running run
    held.release.set()
    wait_for_wise(runner, run_id, ("done",))
    assert wise.calls == [run_id]


def test_a_queued_wise_ft_path_shows_in_the_sidebar_and_any_session_can_cancel_it(store, populated, monkeypatch):
    held = HeldExecute()
    runner, wise = wise_runner(store, monkeypatch, execute=held)
    wait_for_status(store, runner.submit(store_module.RunConfig(steps=5)), ("running",))
    alice = open_tab(open_page(AppTest.from_file(MAIN, default_timeout=60), "runs"), "WiSE-FT")
    run_id = alice.selectbox(key="wise-run").value
    evaluate_button(alice).click().run()
    bob = open_page(AppTest.from_file(MAIN, default_timeout=60), "learn")
    assert f"WiSE-FT path of run {run_id}" in texts(bob.sidebar.caption)
    bob.sidebar.button(key=f"sidebar-cancel-{jobs.wise_job_id(run_id)}").click().run()
    assert runner.wise_state(run_id).status == "cancelled"
    held.release.set()
    alice.run()
    assert_no_exception(alice)
    assert jobs.CANCELLED_BEFORE_START in texts(alice.warning)
    assert wise.calls == []


# -- Cancel from anywhere -----------------------------------------------------------------------------------


def test_any_session_can_cancel_a_run_from_the_sidebar_and_the_runs_page(store, held):
    alice = open_page(AppTest.from_file(MAIN, default_timeout=60), "launch")
    start_run(alice)
    first = store.list()[0].run_id
    wait_for_status(store, first, ("running",))
    start_run(alice)
    second = store.list()[0].run_id
    bob = open_page(AppTest.from_file(MAIN, default_timeout=60), "runs")  # another tab: none of these are its runs
    assert {b.key for b in bob.sidebar.button} == {f"sidebar-cancel-{first}", f"sidebar-cancel-{second}"}
    assert {f"cancel-{first}", f"cancel-{second}"} <= {b.key for b in bob.main.button}  # the Runs page's cards
    bob.button(key=f"cancel-{second}").click().run()
    assert store.get(second).status == "cancelled"
    bob.sidebar.button(key=f"sidebar-cancel-{first}").click().run()
    assert wait_for_status(store, first, ("cancelled",)) == "cancelled"


def test_a_run_can_be_cancelled_while_it_measures_forgetting(store, held):
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "launch")
    start_run(app)
    run_id = store.list()[0].run_id
    wait_for_status(store, run_id, ("running",))
    store.update_progress(run_id, {"phase": "evaluating", "step": 5, "total_steps": 5})
    app.run()
    assert any("Cancel stops it before the next dataset" in bar.proto.text for bar in app.get("progress"))
    app.button(key=f"cancel-{run_id}").click().run()
    assert wait_for_status(store, run_id, ("cancelled",)) == "cancelled"


def test_a_run_of_another_process_shows_who_runs_it_and_no_cancel(app, store):
    run_id = store.create(store_module.RunConfig(), status="queued")
    store.set_status(run_id, "running")  # as the CLI records a run it executes (not this app's worker)
    open_page(app, "runs")
    assert_no_exception(app)
    assert not [b for b in app.button if b.key and run_id in b.key]
    assert OTHER_PROCESS in texts(app.sidebar.caption) and OTHER_PROCESS in texts(app.main.caption)
    assert f"Run by process {os.getpid()} on {socket.gethostname()}" in texts(app.main.caption)


def test_a_cli_run_killed_with_sigkill_stops_showing_as_queued_or_running_in_the_app(app, store):
    """Issue 20 item 24: the sidebar said "Run by process N" forever, with no Cancel."""
    process, running, queued = start_cli_like_run(store.root)
    try:
        open_page(app, "runs")
        assert sum("Run by process" in caption.value for caption in app.sidebar.caption) == 2
    finally:
        process.kill()
        process.wait()
    app.run()
    captions = [caption.value for caption in app.sidebar.caption]
    assert not any("Run by process" in caption for caption in captions)
    assert any(caption.startswith("No jobs active") for caption in captions)
    assert [store.get(run_id).status for run_id in (running, queued)] == ["interrupted", "interrupted"]


def test_the_drift_page_keeps_its_numbers_when_a_runs_umap_file_is_corrupt(app, store, populated):
    (store.root / populated["ldifs"] / "arrays.npz").write_bytes(b"not a zip file")
    open_page(app, "drift")
    app.selectbox[0].set_value(populated["ldifs"]).run()
    assert_no_exception(app)
    assert "arrays.npz is corrupt" in texts(app.error)
    assert "Feature distance per layer (pre-trained vs fine-tuned)" in chart_titles(app)


def test_the_advanced_launch_settings_reach_the_run(app, store):
    open_page(app, "launch")
    next(n for n in app.text_input if n.label == "Train images per class for linear probes").set_value("30")
    next(n for n in app.text_input if n.label.startswith("At most this many linear-probe")).set_value("2000")
    next(r for r in app.radio if r.label.startswith("BatchNorm")).set_value("frozen")
    start_run(app)
    (record,) = store.list()
    assert (record.config.probe_limit, record.config.probe_cap, record.config.bn) == (30, 2000, "frozen")


def test_only_the_launch_page_asks_the_worker_to_warm_up(app, runner, monkeypatch):
    asked = []
    monkeypatch.setattr(runner, "request_warm_up", lambda: asked.append(True))
    for page in ("learn", "runs", "forgetting", "drift"):
        open_page(app, page)
    assert asked == []
    open_page(app, "launch")
    assert asked


# -- deltas: a loss reads as a loss everywhere -----------------------------------------------------------

SIGNED_NUMBER = re.compile(r"[+\-−]\d+(?:\.\d+)?")


def metric_deltas(app: AppTest) -> list[tuple[str, float, int, int]]:
    """(delta text, its number, arrow, colour) of every metric on the page that shows a delta."""
    return [(m.proto.delta, float(SIGNED_NUMBER.search(m.proto.delta).group().replace("−", "-")), m.proto.direction,
             m.proto.color) for m in app.metric if m.proto.delta]


def assert_deltas_follow_their_sign(app: AppTest) -> int:
    """A loss is a red ↓, a gain a green ↑; returns how many deltas were checked."""
    deltas = metric_deltas(app)
    for text, number, direction, color in deltas:
        loss = number < 0
        assert direction == (MetricProto.MetricDirection.DOWN if loss else MetricProto.MetricDirection.UP), text
        assert color == (MetricProto.MetricColor.RED if loss else MetricProto.MetricColor.GREEN), text
    return len(deltas)


def test_every_metric_delta_of_the_forgetting_page_and_its_gallery_reads_its_sign(app, store):
    run_id = add_finished_run(store, objective="ce", records="matching")  # a CE run: its concepts lost a lot
    open_page(app, "forgetting")
    app.selectbox[0].set_value(run_id).run()
    assert_no_exception(app)
    assert any(number < 0 for _, number, _, _ in metric_deltas(app))  # the gallery's concept lost accuracy
    assert assert_deltas_follow_their_sign(app) >= 2


def test_the_wise_ft_deltas_against_the_run_read_their_sign(store, populated, monkeypatch):
    runner, _ = wise_runner(store, monkeypatch)
    app = open_tab(open_page(AppTest.from_file(MAIN, default_timeout=60), "runs"), "WiSE-FT")
    evaluate_button(app).click().run()
    wait_for_wise(runner, app.selectbox(key="wise-run").value, ("done",))
    app.run()
    assert {number < 0 for _, number, _, _ in metric_deltas(app)} == {True, False}  # a loss and a gain
    assert assert_deltas_follow_their_sign(app) == 2


def test_every_metric_with_a_delta_writes_it_with_the_one_delta_helper():
    """A source check over the app: st.metric's arrow follows an ASCII sign only, so every delta is made by
    display.metric_delta (directly or by a function of the same module that calls it)."""
    app_dir = Path(__file__).resolve().parents[2] / "app"
    for path in app_dir.rglob("*.py"):
        source = path.read_text()
        tree = ast.parse(source)
        helpers = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                   and "metric_delta" in ast.unparse(node)}
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "metric"):
                continue
            delta = call.args[2] if len(call.args) > 2 else next((k.value for k in call.keywords if k.arg == "delta"),
                                                                   None)
            if delta is None:
                continue
            called = {node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                      for node in ast.walk(delta) if isinstance(node, ast.Call)}
            assert called & ({"metric_delta"} | helpers), f"{path.name}:{call.lineno}: {ast.unparse(delta)}"


@pytest.mark.parametrize("page", ["forgetting", "launch"])
def test_a_headline_number_is_printed_once_its_caption_adds_only_the_interval(app, store, page):
    run_id = add_finished_run(store, objective="ce", records="matching")
    open_page(app, page)
    if page == "forgetting":
        app.selectbox[0].set_value(run_id).run()
    captions = texts(app.caption)
    assert "95 % CI" in captions
    shown = [m.value for m in app.metric if m.value.endswith(("points", "%"))]
    assert shown and not [value for value in shown if value in captions]


# -- what users named is shown as text ---------------------------------------------------------------------

LINK_LABEL = "[Open the results](https://example.com/phish)"
ODD_FOLDER = "/data/[click](javascript:alert(1))/**bold**"
UNESCAPED_LINK = re.compile(r"(?<!\\)\]\(")


def markdown_shown(app: AppTest) -> list[str]:
    """Every text on the page that Streamlit renders as markdown."""
    elements = [*app.markdown, *app.caption, *app.sidebar.caption, *app.info, *app.warning, *app.error]
    return ([str(e.value) for e in elements] + [m.label for m in app.metric]
            + [bar.proto.text for bar in app.get("progress")])


def test_plain_escapes_every_markdown_meaning():
    assert display.plain(LINK_LABEL) == r"\[Open the results\](https\://example.com/phish)"
    assert not UNESCAPED_LINK.search(display.plain(ODD_FOLDER)) and "**" not in display.plain(ODD_FOLDER)


def test_a_run_label_or_folder_with_markdown_is_shown_as_typed_never_as_a_link(app, store, held):
    add_finished_run(store, label=LINK_LABEL)
    add_ended_run(store, "failed", "It failed.", label=LINK_LABEL, dataset=ODD_FOLDER)
    jobs.job_runner().submit(store_module.RunConfig(steps=5, label=LINK_LABEL, dataset=ODD_FOLDER))
    for page in ("launch", "runs", "forgetting"):
        open_page(app, page)
        assert_no_exception(app)
        shown = markdown_shown(app)
        assert not [text for text in shown if UNESCAPED_LINK.search(text) or "**bold**" in text], page
        if page == "launch":
            assert any(display.plain(LINK_LABEL) in text for text in shown)
            assert any(display.plain(ODD_FOLDER) in text for text in shown)
