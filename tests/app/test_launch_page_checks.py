"""Checks before queuing, reuse of finished identical runs, own data and the store-backed demo, as a user meets
them on the Launch, Learn and Runs & sweeps pages."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from app import demo, results
from app.launch_checks import DOWNLOAD_HINT
from ldifs_core.datasets import available_bank
from tests.app.conftest import MAIN, open_page, wait_for_status
from tests.app.sample_runs import add_finished_run

IMAGE_FOLDER = "ImageFolder directory…"  # the dataset choice that opens the folder field

DEFAULT_CHECKS = [name for name in available_bank() if name != "mnist"]  # what Launch checks by default


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def number(app: AppTest, label: str):
    """A number field: text, so that what was typed stays what the user sees (launch_checks.checked_number)."""
    return next(n for n in app.text_input if n.label == label)


def column_with(app: AppTest, label: str):
    """The innermost page column that holds the number field `label` (where its message belongs)."""
    return [c for c in app.main.columns if any(n.label == label for n in c.text_input)][-1]


def write_images(folder, count: int, size=(40, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture
def folder(tmp_path):
    """An image folder of three classes, 6, 4 and 5 images."""
    for name, count in (("cat", 6), ("dog", 4), ("owl", 5)):
        write_images(tmp_path / "pets" / name, count)
    return tmp_path / "pets"


# -- numbers --------------------------------------------------------------------------------------------


def test_negative_steps_are_refused_next_to_the_field_kept_as_typed_and_nothing_is_queued(app, store):
    open_page(app, "launch")
    number(app, "Steps").set_value("-5").run()
    button(app, "Start run").click().run()
    assert number(app, "Steps").value == "-5"
    assert "Steps must be a whole number between 1 and 1,000,000; it is -5." in texts(column_with(app, "Steps").error)
    assert store.list() == []


def test_an_advanced_number_out_of_range_is_refused_under_its_own_field(app, store):
    open_page(app, "launch")
    number(app, "Test images per dataset").set_value("3").run()
    button(app, "Start run").click().run()
    assert "Test images per dataset must be a whole number at least 10; it is 3." in texts(
        column_with(app, "Test images per dataset").error)
    assert store.list() == []


def test_text_in_steps_is_not_put_back_to_300_but_refused_under_the_field_and_nothing_is_queued(app, store):
    """Issue 20 item 11: st.number_input put back 300 when "abc" was typed, and said nothing."""
    open_page(app, "launch")
    number(app, "Steps").set_value("abc").run()
    button(app, "Start run").click().run()
    assert number(app, "Steps").value == "abc"
    assert "Steps must be a whole number between 1 and 1,000,000; “abc” is not a number." in texts(
        column_with(app, "Steps").error)
    assert store.list() == []


def test_a_fraction_in_a_whole_number_field_and_an_empty_field_are_refused(app, store):
    open_page(app, "launch")
    number(app, "Batch size").set_value("2.5")
    number(app, "Seed").set_value(" ").run()
    button(app, "Start run").click().run()
    assert "Batch size must be a whole number between 2 and 65,536; “2.5” is not a whole number." in texts(
        column_with(app, "Batch size").error)
    assert "Seed must be a whole number between 0 and" in texts(column_with(app, "Seed").error)
    assert "it is empty." in texts(column_with(app, "Seed").error)
    assert store.list() == []


def test_any_lambda_can_be_typed_and_reaches_the_queued_run(app, store):
    """Issue 20 item 11: λ was one of 10 fixed values; λ = 5 could not be chosen."""
    open_page(app, "launch")
    assert number(app, "λ (regulariser weight)").value == "10"  # ldifs's default λ
    number(app, "λ (regulariser weight)").set_value("5")
    number(app, "Steps").set_value("5")
    button(app, "Start run").click().run()
    (record,) = store.list()
    assert (record.config.objective, record.config.lam) == ("ldifs", 5.0)


def test_any_learning_rate_can_be_typed_and_reaches_the_queued_run(app, store):
    """Like λ, the learning rate was one of a few fixed values; 2e-4 could not be chosen."""
    open_page(app, "launch")
    number(app, "Learning rate").set_value("2e-4")
    number(app, "Steps").set_value("5")
    button(app, "Start run").click().run()
    (record,) = store.list()
    assert record.config.lr == 2e-4


def test_a_negative_lambda_is_refused_under_its_field(app, store):
    open_page(app, "launch")
    number(app, "λ (regulariser weight)").set_value("-1").run()
    button(app, "Start run").click().run()
    assert "λ (regulariser weight) must be a number at least 0; it is -1." in texts(
        column_with(app, "λ (regulariser weight)").error)
    assert store.list() == []


def test_lambda_starts_at_each_objectives_default_and_is_off_for_objectives_without_one(app):
    open_page(app, "launch")
    objective = lambda: next(s for s in app.selectbox if s.label == "Objective")
    objective().set_value("lipsum").run()
    assert (number(app, "λ (regulariser weight)").value, number(app, "λ (regulariser weight)").disabled) == (
        "0.3", False)
    objective().set_value("ce").run()
    assert number(app, "λ (regulariser weight)").disabled


# -- reuse ------------------------------------------------------------------------------------------------


def test_a_finished_identical_run_is_offered_instead_of_retraining_and_run_again_anyway_queues(app, store):
    finished = add_finished_run(store, steps=5, eval_datasets=DEFAULT_CHECKS)
    open_page(app, "launch")
    number(app, "Steps").set_value("5")
    button(app, "Start run").click().run()
    assert [record.run_id for record in store.list()] == [finished]  # nothing queued
    assert "An identical run finished" in texts(app.info)
    assert "See what it forgot" in [link.label for link in app.get("page_link")]
    button(app, "Run again anyway").click().run()
    again = store.list()[0]
    assert again.run_id != finished and again.config.steps == 5
    wait_for_status(store, again.run_id, ("done",))
    app.run()
    assert "An identical run finished" not in texts(app.info)


def test_other_settings_than_the_finished_run_queue_a_new_run(app, store):
    add_finished_run(store, steps=5, eval_datasets=DEFAULT_CHECKS)
    open_page(app, "launch")
    number(app, "Steps").set_value("6")
    button(app, "Start run").click().run()
    assert len(store.list()) == 2 and store.list()[0].config.steps == 6


def test_the_sweep_queues_only_the_missing_lambdas_and_says_which_it_reused(app, store):
    reused = add_finished_run(store, lam=10.0, steps=300, eval_datasets=None)
    open_page(app, "runs")
    next(m for m in app.multiselect if m.label == "λ values").set_value([1.0, 10.0])
    button(app, "Queue sweep").click().run()
    assert sorted(r.config.lam for r in store.list() if r.run_id != reused) == [1.0]
    assert "Reused the finished runs of λ = 10" in texts(app.info) and reused in texts(app.info)
    next(c for c in app.checkbox if c.label == "Run again anyway").check()
    button(app, "Queue sweep").click().run()
    assert sorted(r.config.lam for r in store.list() if r.run_id != reused) == [1.0, 1.0, 10.0]


def test_a_sweep_click_is_kept_when_a_listed_run_ends_while_the_page_draws(app, store, monkeypatch):
    """The run cards redraw the page when their last run ends; a redraw in the middle of a click's own script run
    would throw the click away (the sweep tests lost clicks that way when the worker finished a run mid-draw)."""
    running = add_finished_run(store, lam=10.0, steps=300, eval_datasets=None)
    store.set_status(running, "running")
    open_page(app, "runs")
    looked, looks = results.records, []

    def ending_now(run_ids):  # the run ends between the cards' first look at the store and their second
        looks.append(run_ids)
        if len(looks) == 2:
            store.set_status(running, "done")
        return looked(run_ids)

    monkeypatch.setattr(results, "records", ending_now)
    next(m for m in app.multiselect if m.label == "λ values").set_value([1.0])
    button(app, "Queue sweep").click().run()
    assert [r.config.lam for r in store.list() if r.run_id != running] == [1.0]


def test_the_sweep_takes_a_typed_lambda_beside_the_grid_values_and_refuses_one_that_is_not_a_number(app, store):
    open_page(app, "runs")
    lams = lambda: next(m for m in app.multiselect if m.label == "λ values")
    lams().set_value([1.0, "5"])
    button(app, "Queue sweep").click().run()
    assert sorted(r.config.lam for r in store.list()) == [1.0, 5.0]
    lams().set_value(["abc"])
    button(app, "Queue sweep").click().run()
    assert "λ values: “abc” is not a number" in texts(app.error)
    assert len(store.list()) == 2


# -- the demo remembers -----------------------------------------------------------------------------------


def test_the_demo_comparison_shows_in_a_fresh_session_when_its_runs_are_in_the_store(store, runner):
    for cfg in demo.demo_configs():
        add_finished_run(store, objective=cfg.objective, label=cfg.label, steps=cfg.steps, eval_datasets=None)
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "learn")  # a new tab: nothing in its session
    titles = [chart.proto.spec for chart in app.get("plotly_chart")]
    assert any("Accuracy change per dataset (fine-tuning task first)" in spec for spec in titles)
    button(app, "Run the demo").click().run()
    assert len(store.list()) == 2  # nothing retrained
    assert "already in the run store" in texts(app.info)
    button(app, demo.RUN_AGAIN).click().run()
    assert len(store.list()) == 4


# -- datasets -------------------------------------------------------------------------------------------


def test_torchvision_datasets_are_badged_and_one_without_files_is_refused_next_to_the_field(app, store, tmp_path,
                                                                                             monkeypatch):
    monkeypatch.setenv("LDIFS_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    open_page(app, "launch")
    task = next(s for s in app.selectbox if s.label == "Fine-tune on")
    assert {"cifar10 — files here", "svhn — needs download"} <= set(task.options)
    task.set_value("svhn").run()
    button(app, "Start run").click().run()
    task_column = next(c for c in app.main.columns if any(s.label == "Fine-tune on" for s in c.selectbox))
    assert "SVHN has no files in" in texts(task_column.error) and DOWNLOAD_HINT in texts(task_column.error)
    assert store.list() == []


def test_a_flat_folder_is_refused_before_queuing_with_the_layout_it_needs(app, store, tmp_path):
    write_images(tmp_path / "flat", 3)
    open_page(app, "launch")
    next(s for s in app.selectbox if s.label == "Fine-tune on").set_value(IMAGE_FOLDER).run()
    next(t for t in app.text_input if t.label == "ImageFolder path").set_value(str(tmp_path / "flat")).run()
    button(app, "Start run").click().run()
    assert "holds 3 images directly, not in class sub-folders" in texts(app.error)
    assert store.list() == []


def test_a_folder_too_small_for_the_batch_is_refused_before_queuing_as_the_cli_refuses_it(app, store, folder):
    """The Launch page and the CLI share ldifs_core.preflight: what one refuses, the other does (issue 20 item 18)."""
    open_page(app, "launch")
    next(s for s in app.selectbox if s.label == "Fine-tune on").set_value(IMAGE_FOLDER).run()
    next(t for t in app.text_input if t.label == "ImageFolder path").set_value(str(folder)).run()
    button(app, "Start run").click().run()
    assert "has only 12 training images, fewer than the batch size 64" in texts(app.error)
    assert store.list() == []


def test_a_folder_of_corrupt_images_is_refused_under_check_forgetting_on(app, store, tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "broken" / name).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "broken" / name / f"{i}.png").write_bytes(b"\x89PNG not really")
    open_page(app, "launch")
    next(t for t in app.text_input if t.label == "Add an image folder to check").input(str(tmp_path / "broken")).run()
    button(app, "Start run").click().run()
    assert "could be read as an image" in texts(app.error)
    assert store.list() == []


def test_a_folder_preview_shows_classes_counts_and_samples_at_the_models_resolution(app, folder):
    open_page(app, "launch")
    next(s for s in app.selectbox if s.label == "Fine-tune on").set_value(IMAGE_FOLDER).run()
    next(t for t in app.text_input if t.label == "ImageFolder path").set_value(str(folder)).run()
    (preview,) = [e for e in app.expander if e.label.startswith("What the lab found in")]
    assert "**3 classes, 15 images** (12 to train on, 3 held out to test)" in texts(preview.markdown)
    assert "28×28 pixels" in texts(preview.caption)  # the embedded model's input
    assert len(preview.get("vega_lite_chart")) == 1  # images per class
    captions = [caption for image in preview.get("image") for caption in image.captions]
    assert len(captions) == 12 and set(captions) == {"cat", "dog", "owl"}  # every training image: 5 + 3 + 4


def test_an_own_folder_can_be_added_under_check_forgetting_on_and_reaches_the_run(app, store, folder, tmp_path):
    write_images(tmp_path / "flat", 2)
    open_page(app, "launch")
    field = next(t for t in app.text_input if t.label == "Add an image folder to check")
    field.input(str(tmp_path / "flat")).run()
    assert "not in class sub-folders" in texts(app.error)
    next(t for t in app.text_input if t.label == "Add an image folder to check").input(str(folder)).run()
    checks = next(m for m in app.multiselect if m.label == "Check forgetting on")
    assert str(folder) in checks.value
    number(app, "Steps").set_value("3")
    button(app, "Start run").click().run()
    (record,) = store.list()
    assert record.config.eval_datasets == [*DEFAULT_CHECKS, str(folder)]


def test_the_sweep_form_takes_an_image_folder(app, store, folder):
    open_page(app, "runs")
    next(t for t in app.text_input if t.label == "…or an image folder").input(str(folder))
    next(m for m in app.multiselect if m.label == "λ values").set_value([1.0])
    button(app, "Queue sweep").click().run()
    (record,) = store.list()
    assert record.config.dataset == str(folder)


# -- models ---------------------------------------------------------------------------------------------


def test_a_png_as_checkpoint_and_an_empty_checkpoint_path_say_what_is_wrong(app, store, folder):
    open_page(app, "launch")
    app.radio[0].set_value("Local checkpoint file").run()
    button(app, "Start run").click().run()
    assert "Give the path of a checkpoint file" in texts(app.error)
    app.text_input[0].set_value(str(folder / "cat" / "0.png")).run()
    button(app, "Start run").click().run()
    assert "is not a checkpoint: it is a PNG image" in texts(app.error)
    assert "pickled" not in texts(app.error) and "Known tags" not in texts(app.error)
    assert store.list() == []


# -- the sidebar ------------------------------------------------------------------------------------------


def test_the_sidebar_lists_a_run_in_the_same_script_run_that_started_it(store, held):
    app = open_page(AppTest.from_file(MAIN, default_timeout=60), "launch")
    number(app, "Steps").set_value("5")
    button(app, "Start run").click().run()  # one script run: no further click
    (record,) = store.list()
    assert f"sidebar-cancel-{record.run_id}" in {b.key for b in app.sidebar.button}
    assert "No jobs active" not in texts(app.sidebar.caption)


def test_an_objectives_own_number_is_refused_not_replaced(app, store):
    open_page(app, "launch")
    next(s for s in app.selectbox if s.label == "Objective").set_value("lora").run()
    number(app, "LoRA α (scale α / r)").set_value("0").run()
    button(app, "Start run").click().run()
    assert number(app, "LoRA α (scale α / r)").value == "0"
    assert "LoRA α (scale α / r) must be a number above 0; it is 0." in texts(app.error)
    assert store.list() == []


def test_learn_and_launch_claim_no_time_the_machine_has_not_measured(app, store):
    """Issue 20 item 4: no fixed "about a minute"; an estimate from this machine's finished runs, or that there is
    none yet."""
    from ldifs_core.estimate import NO_ESTIMATE

    for page in ("learn", "launch"):
        open_page(app, page)
        shown = texts(app.markdown) + texts(app.caption)
        assert "one to three minutes" not in shown and "about a minute" not in shown
        assert NO_ESTIMATE in shown
    add_finished_run(store, steps=5)
    for page in ("learn", "launch"):
        open_page(app, page)
        assert "on this machine (measured from its last 1 finished run)" in texts(app.markdown) + texts(app.caption)


def test_the_demo_refuses_to_start_when_a_concept_bank_file_is_missing(app, store, monkeypatch):
    from ldifs_core import availability

    monkeypatch.setattr(availability, "available_bank", lambda: ["mnist", "fashion_mnist", "animals"])
    open_page(app, "learn")
    button(app, "Run the demo").click().run()
    assert "The concept-bank file of quickdraw is missing" in texts(app.error)
    assert store.list() == []
