"""Sequences in the app: queued from Launch, run by the worker stage after stage, followed, cancelled and compared on
the Continual page. The worker's execute is the fast fake (tests/app/conftest.py); sequencing is the real one."""
from __future__ import annotations

import json
import time

from streamlit.testing.v1 import AppTest

from app import display, jobs, plots
from app.jobs import CANCELLED_BEFORE_START
from ldifs_core.config import RunConfig
from ldifs_core.errors import TrainingDiverged
from ldifs_core.sequence import NOT_RUN, SequenceConfig, plan_sequence, run_sequence, sequence_state
from ldifs_core.sequence_records import create_sequence, sequence_ids
from ldifs_core.store import RunStore
from tests.app.conftest import MAIN, fake_execute, open_page, wait_for_status

TASKS = ("mnist", "fashion_mnist")
THREE_TASKS = ("mnist", "fashion_mnist", "animals")
SETTINGS = dict(steps=4, eval_datasets=["animals"])  # animals: never trained on in a sequence of TASKS


def finished_sequence(store: RunStore, objective: str, anchor: str = "previous") -> str:
    sequence_id = plan_sequence(SequenceConfig(TASKS, anchor, RunConfig(objective=objective, **SETTINGS)), store)
    run_sequence(store, sequence_id, execute=fake_execute)
    return sequence_id


def wait_for_sequence(store: RunStore, sequence_id: str, statuses: tuple[str, ...], timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := sequence_state(store, sequence_id).status) not in statuses:
        if time.monotonic() > deadline:
            raise AssertionError(f"sequence {sequence_id} is still {status} after {timeout_s} s")
        time.sleep(0.02)
    return status


def chart_titles(app: AppTest) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in app.get("plotly_chart")]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_launch_queues_a_sequence_that_the_worker_runs_stage_after_stage(app, store):
    open_page(app, "launch")
    app.toggle(key="launch-sequence").set_value(True).run()
    assert app.multiselect[0].value == list(THREE_TASKS)  # the default: every small concept-bank task but quickdraw
    app.multiselect[0].set_value(list(TASKS)).run()
    assert app.multiselect[1].label == "Also check (never trained on)"
    app.multiselect[1].set_value(["animals"]).run()
    next(n for n in app.text_input if n.label == "Steps").set_value("3")
    next(b for b in app.button if b.label == "Start sequence").click().run()
    assert not app.exception and not app.error
    (sequence_id,) = sequence_ids(store)
    assert wait_for_sequence(store, sequence_id, ("done",)) == "done"
    state = sequence_state(store, sequence_id)
    assert [store.get(s.run_id).config.start_from for s in state.stages] == [None, *(s.run_id for s in state.stages[:-1])]
    assert state.config.anchor == "previous" and state.config.base.steps == 3
    assert state.matrix.datasets == (*TASKS, "animals")


def test_the_continual_page_shows_the_matrix_as_a_heatmap_and_as_lines_with_the_derived_numbers(app, store):
    finished_sequence(store, "ldifs")
    open_page(app, "continual")
    assert not app.exception and not app.error
    assert {"Forgetting matrix (zero-shot accuracy, %)", "Accuracy of each dataset across the stages (zero-shot)"} \
        <= set(chart_titles(app))
    assert {"Average accuracy over the tasks seen", "Backward transfer", "Change on datasets never trained on"} \
        <= {m.label for m in app.metric}
    app.radio(key="sequence-probe").set_value("lp").run()
    assert "Forgetting matrix (linear probe accuracy, %)" in chart_titles(app)


def test_two_sequences_side_by_side(app, store):
    ce, ldifs = finished_sequence(store, "ce"), finished_sequence(store, "ldifs")
    open_page(app, "continual")
    app.selectbox(key="sequence-b").set_value(ce if app.selectbox(key="sequence-a").value == ldifs else ldifs).run()
    titles = chart_titles(app)
    assert titles.count("Forgetting matrix (zero-shot accuracy, %)") == 2
    assert "Average accuracy over the tasks seen so far (zero-shot)" in titles


def test_a_failed_stage_stops_the_sequence_and_the_page_says_which(app, store):
    def second_stage_diverges(cfg, store, run_id, hooks):
        if cfg.stage == 2:
            store.set_status(run_id, "running")
            store.fail(run_id, "failed", "The loss became nan at step 3: lower the learning rate.")
            raise TrainingDiverged("The loss became nan at step 3: lower the learning rate.")
        return fake_execute(cfg, store, run_id, hooks)

    three = SequenceConfig(THREE_TASKS, "previous", RunConfig(objective="ce", **{**SETTINGS, "eval_datasets": []}))
    state = run_sequence(store, plan_sequence(three, store), execute=second_stage_diverges)
    assert [s.status for s in state.stages] == ["done", "failed", "cancelled"]
    assert state.stages[2].message == NOT_RUN.format(stage=2, task="fashion_mnist", status="failed")
    open_page(app, "continual")
    assert "Stage 2 (fashion_mnist) failed: The loss became nan" in texts(app.error)
    assert "Forgetting matrix (zero-shot accuracy, %)" in chart_titles(app)  # the finished stage's row


def test_cancel_stops_the_whole_sequence_from_the_continual_page(store, held):
    runner = jobs.job_runner()
    sequence_id = runner.submit_sequence(SequenceConfig(TASKS, "previous", RunConfig(objective="ldifs", **SETTINGS)))
    first = sequence_state(store, sequence_id).stages[0].run_id
    wait_for_status(store, first, ("running",))
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "continual")
    assert "Stage 1 of 2 (mnist) is running" in " ".join(bar.proto.text for bar in app.get("progress"))
    app.button(key=f"cancel-a-{sequence_id}").click().run()
    assert wait_for_sequence(store, sequence_id, ("cancelled",)) == "cancelled"
    later = sequence_state(store, sequence_id).stages[1].run_id
    wait_for_status(store, later, ("cancelled",))  # recorded by the worker just after the first stage stops
    assert [s.status for s in sequence_state(store, sequence_id).stages] == ["cancelled"] * 2


def test_cancelling_a_queued_sequence_or_any_of_its_stages_records_every_stage_cancelled(store, held):
    runner = jobs.job_runner()
    busy = runner.submit(RunConfig(steps=3))
    wait_for_status(store, busy, ("running",))
    waiting = runner.submit_sequence(SequenceConfig(TASKS, "original", RunConfig(objective="ce", **SETTINGS)))
    stages = [s.run_id for s in sequence_state(store, waiting).stages]
    assert runner.owns(stages[1]) and runner.queue_position(stages[1]) == 1
    runner.cancel(stages[1])  # a stage's Cancel (sidebar, run card) cancels its sequence
    assert [(store.get(r).status, store.get(r).message) for r in stages] == \
        [("cancelled", CANCELLED_BEFORE_START)] * 2
    held.release.set()
    wait_for_status(store, busy, ("done",))
    assert held.started == [busy]


def test_a_damaged_sequence_record_is_named_and_the_other_sequences_still_show(app, store):
    good = finished_sequence(store, "ldifs")
    damaged = create_sequence(store, {"config": {}, "stages": []})
    (store.root / "sequences" / f"{damaged}.json").write_text("{cut short")
    open_page(app, "continual")
    assert not app.exception
    assert f"the record of sequence {damaged} cannot be read" in texts(app.error)
    assert app.selectbox(key="sequence-a").value == good
    assert "Forgetting matrix (zero-shot accuracy, %)" in chart_titles(app)


def test_matrix_plots_draw_every_cell_and_one_line_per_dataset(store):
    summary = sequence_state(store, finished_sequence(store, "ldifs")).to_dict()
    heatmap = plots.forgetting_heatmap(summary, "lp").data[0]
    assert [list(row) for row in heatmap.z] == [summary["matrix"]["before"]["lp"], *summary["matrix"]["lp"]]
    assert list(heatmap.y) == ["θ₀ (before)", "after 1. mnist", "after 2. fashion_mnist"]
    lines = plots.matrix_lines(summary, "zs").data
    assert [line.name for line in lines] == ["mnist (task 1)", "fashion_mnist (task 2)", "animals (never trained)"]
    assert [line.line.dash for line in lines] == ["solid", "solid", "dash"]


def test_the_heatmap_gives_its_colour_bar_room_even_for_two_stages(store):
    summary = sequence_state(store, finished_sequence(store, "ldifs")).to_dict()
    fig = plots.forgetting_heatmap(summary)
    assert fig.layout.height >= plots.MIN_HEATMAP_HEIGHT >= 300
    colorbar = fig.data[0].colorbar
    assert colorbar.len == 1 and colorbar.thickness >= 12


def test_the_matrix_caption_says_n_once_when_every_dataset_has_the_same_n(app, store):
    assert display.sample_sizes([300, 300, 300]) == "n = 300"
    assert display.sample_sizes([140, 209, 155]) == "n = 140–209"
    sequence_id = finished_sequence(store, "ldifs")
    open_page(app, "continual")
    counts = sequence_state(store, sequence_id).to_dict()["matrix"]["n"]
    assert f"{display.sample_sizes(counts)} test images per dataset" in texts(app.caption)


def test_only_the_first_stage_of_a_waiting_sequence_is_next_in_line(store, held):
    runner = jobs.job_runner()
    busy = runner.submit(RunConfig(steps=3))
    wait_for_status(store, busy, ("running",))
    runner.submit_sequence(SequenceConfig(TASKS, "original", RunConfig(objective="ce", **SETTINGS)))
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "runs")
    bars = [bar.proto.text for bar in app.get("progress")]
    assert sum("next in line" in text for text in bars) == 1
    assert any("waits for stage 1 of its sequence" in text for text in bars), bars
