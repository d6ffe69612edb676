"""What a user sees on each page, checked headlessly with AppTest against a temporary store and a fake runner."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from app import jobs
from app.jobs import JobRunner
from app.widgets import MY_RUNS, NO_FINISHED_RUNS
from ldifs_core import store as store_module
from ldifs_core.store import INTERRUPTED_MESSAGE, RunStore
from tests.app.conftest import MAIN, PAGES, HeldExecute, open_page, wait_for_status
from tests.app.sample_runs import CHECKED, add_ended_run, add_finished_run

RESULT_PAGES = ("forgetting", "drift")
TITLES = {"learn": "Concept forgetting and LDIFS", "launch": "Launch a fine-tuning run", "forgetting": "Concept forgetting",
          "drift": "Feature drift", "runs": "Runs and sweeps"}


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
    next(n for n in app.number_input if n.label == "Steps").set_value(steps)
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
    assert not app.error


def test_forgetting_page_shows_the_task_gain_beside_the_losses_and_ranks_concepts(app, populated):
    open_page(app, "forgetting")
    labels = [m.label for m in app.metric]
    assert "Accuracy on mnist (fine-tuned)" in labels
    assert "Mean zero-shot change on the others" in labels
    titles = chart_titles(app)
    assert "Accuracy before and after fine-tuning (zero-shot)" in titles
    assert f"Concepts of {CHECKED[0]} ranked by accuracy drop" in titles


def test_forgetting_page_opens_on_the_run_chosen_before(app, populated):
    open_page(app, "forgetting")
    app.selectbox[0].set_value(populated["ce"]).run()
    app.switch_page(PAGES["drift"]).run()
    assert app.selectbox[0].value == populated["ce"]


def test_drift_page_draws_the_joint_umap_with_trails_and_the_caveat(app, populated):
    open_page(app, "drift")
    umap = next(f for f in figures(app) if f["layout"]["title"]["text"].startswith("Joint UMAP"))
    assert [trace["name"] for trace in umap["data"]] == ["pre → post trails", "before fine-tuning", "after fine-tuning"]
    assert "Feature distance per layer (pre-trained vs fine-tuned)" in chart_titles(app)
    assert "2-D distances are only a picture" in texts(app.caption)
    assert app.dataframe[0].value["dataset"].tolist() == list(CHECKED)


def test_runs_table_lists_every_run_with_status_and_reason(app, populated):
    open_page(app, "runs")
    table = app.dataframe[0].value
    assert sorted(table["status"]) == ["cancelled", "done", "done", "failed"]
    assert "lower the learning rate" in table.set_index("status").loc["failed", "message"]


def test_runs_page_plots_the_tradeoff_and_offers_downloads(app, populated):
    open_page(app, "runs")
    assert "Trade-off: downstream accuracy vs forgetting elsewhere" in chart_titles(app)
    assert {b.label for b in app.get("download_button")} == {"Metrics as CSV", "Metrics as JSON"}


def test_interrupted_runs_show_as_interrupted_after_a_restart(app, store, monkeypatch):
    orphan = store.create(store_module.RunConfig(), status="running")
    monkeypatch.setattr(store_module, "_owner_alive", lambda *owner: False)
    RunStore(store.root)  # what opening the store after a restart does
    open_page(app, "runs")
    row = app.dataframe[0].value.set_index("run").loc[orphan]
    assert (row["status"], row["message"]) == ("interrupted", INTERRUPTED_MESSAGE)


def test_learn_page_renders_the_ldifs_formula(app):
    open_page(app, "learn")
    formulas = texts(app.latex)
    assert r"\mathrm{LDIFS}(x)" in formulas and r"\lambda \cdot \mathrm{LDIFS}" in formulas


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


@pytest.fixture
def held(store, monkeypatch) -> HeldExecute:
    execute = HeldExecute()
    held_runner = JobRunner(store, execute=execute)
    monkeypatch.setattr(jobs, "job_runner", lambda: held_runner)
    yield execute
    execute.release.set()


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
    start_run(bob)
    assert len(alice.session_state[MY_RUNS]) == len(bob.session_state[MY_RUNS]) == 1
    assert alice.session_state[MY_RUNS] != bob.session_state[MY_RUNS]
    open_page(alice, "runs")
    assert len(alice.dataframe[0].value) == 2


def test_the_guided_demo_queues_ce_and_ldifs_and_shows_them_side_by_side(app, store, runner):
    open_page(app, "learn")
    button(app, "Run the demo").click().run()
    demo = app.session_state["demo_runs"]
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


def test_an_open_clip_model_without_weights_here_is_a_short_error(app, store):
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
def test_a_run_that_fails_in_the_worker_shows_its_reason_on_its_card(store, tmp_path, monkeypatch):
    real_runner = JobRunner(store)  # the real runner: the empty folder is only found out when the run loads data
    monkeypatch.setattr(jobs, "job_runner", lambda: real_runner)
    (tmp_path / "empty").mkdir()
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "launch")
    app.selectbox[0].set_value("ImageFolder directory…").run()
    next(t for t in app.text_input if t.label == "ImageFolder path").set_value(str(tmp_path / "empty")).run()
    start_run(app)
    (record,) = store.list()
    wait_for_status(store, record.run_id, ("failed",), timeout_s=120)
    app.run()
    assert_no_exception(app)
    assert "has no class sub-folders with images" in texts(app.error)


def test_lambda_is_picked_on_a_log_scale_with_zero_and_only_for_regularised_objectives(app):
    open_page(app, "launch")
    lam = app.select_slider[0]
    assert lam.options[0] == "0" and {"0.01", "1", "100"} <= set(lam.options)
    assert (lam.value, lam.disabled) == (10.0, False)
    next(s for s in app.selectbox if s.label == "Objective").set_value("ce").run()
    assert app.select_slider[0].disabled


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
