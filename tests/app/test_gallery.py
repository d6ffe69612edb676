"""The concept gallery on the Forgetting page and the HTML report buttons of the Runs page, checked headlessly:
images of a chosen concept that flipped, captioned with the model's prediction, following the probe toggle; a
note (never an error) for a run made before per-image records existed."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app import display
from ldifs_core import gallery, metrics_tables
from ldifs_core.store import RunStore
from tests.app.conftest import open_page
from tests.app.sample_runs import CHECKED, add_finished_run

DATASET = CHECKED[0]


@pytest.fixture
def runs(store: RunStore) -> dict[str, str]:
    """A run from before per-image records, then a newer CE run (forgets a lot) that has them."""
    return {"old": add_finished_run(store, records="none", objective="ce", seed=1),
            "new": add_finished_run(store, objective="ce", records="matching")}


def gallery_page(app: AppTest, run_id: str) -> AppTest:
    open_page(app, "forgetting")
    app.selectbox[0].set_value(run_id).run()
    return app


def concept_with_flips(store: RunStore, run_id: str, dataset: str, probe: str, direction: str) -> gallery.ConceptFlips:
    """The first concept in the page's order whose images flipped that way, as the library finds them."""
    metrics, arrays = store.metrics(run_id), store.arrays(run_id)
    ranked = (metrics_tables.class_changes if direction == gallery.BECAME_WRONG else metrics_tables.class_gains)(
        metrics, dataset, probe)
    return next(flips for concept in ranked["class_name"]
                if (flips := gallery.flipped_examples(arrays, metrics, dataset, concept, probe, direction, 32)).total)


def shown_images(app: AppTest) -> list[str]:
    """The captions of the gallery's images (one per image)."""
    return [caption for image in app.get("image") for caption in image.captions]


def choose_concept(app: AppTest, dataset: str, probe: str, direction: str, concept: str) -> AppTest:
    return app.selectbox(key=f"gallery-concept-{dataset}-{probe}-{direction}").set_value(concept).run()


def test_the_gallery_shows_a_concepts_lost_images_with_what_the_model_now_predicts(app, store, runs):
    expected = concept_with_flips(store, runs["new"], DATASET, "zs", gallery.BECAME_WRONG)
    gallery_page(app, runs["new"])
    assert app.selectbox(key=f"gallery-concept-{DATASET}-zs-became wrong").value == metrics_tables.class_changes(
        store.metrics(runs["new"]), DATASET, "zs")["class_name"][0]  # the most surely forgotten concept first
    choose_concept(app, DATASET, "zs", gallery.BECAME_WRONG, expected.concept)
    assert not app.exception
    assert shown_images(app) == [f"now: {image.predicted_after}" for image in expected.examples]
    row = expected.row
    assert f"Accuracy on “{expected.concept}” (zero-shot)" in [m.label for m in app.metric]
    assert any(f"n = {row['n']} test images, of which {expected.total} became wrong" in c.value and
               display.interval(row["change_ci"]) in c.value for c in app.caption)


def test_the_gallery_follows_the_probe_toggle(app, store, runs):
    expected = concept_with_flips(store, runs["new"], DATASET, "lp", gallery.BECAME_WRONG)
    gallery_page(app, runs["new"])
    app.get("button_group")[0].set_value("lp").run()
    choose_concept(app, DATASET, "lp", gallery.BECAME_WRONG, expected.concept)
    assert f"Accuracy on “{expected.concept}” (linear probe)" in [m.label for m in app.metric]
    assert shown_images(app) == [f"now: {image.predicted_after}" for image in expected.examples]
    zero_shot = gallery.flipped_examples(store.arrays(runs["new"]), store.metrics(runs["new"]), DATASET,
                                         expected.concept, "zs", gallery.BECAME_WRONG, 32)
    assert [i.position for i in zero_shot.examples] != [i.position for i in expected.examples]


def test_the_task_shows_the_images_that_became_right_by_default(app, store, runs):
    task = store.metrics(runs["new"])["downstream"]["dataset"]
    expected = concept_with_flips(store, runs["new"], task, "zs", gallery.BECAME_RIGHT)
    gallery_page(app, runs["new"])
    next(s for s in app.selectbox if s.label == "Dataset").set_value(task).run()
    assert next(b for b in app.get("button_group") if b.label == "Show the images that").value == gallery.BECAME_RIGHT
    choose_concept(app, task, "zs", gallery.BECAME_RIGHT, expected.concept)
    assert shown_images(app) == [f"was: {image.predicted_before}" for image in expected.examples]
    assert f"Accuracy on “{expected.concept}” (zero-shot before → fine-tuned classifier after)" in [
        m.label for m in app.metric]


def test_a_run_without_records_gets_a_note_instead_of_images(app, runs):
    gallery_page(app, runs["old"])
    assert not app.exception
    assert gallery.NO_RECORDS in [info.value for info in app.info]
    assert not app.get("image")


def test_the_download_and_compare_tabs_offer_the_html_report(app, runs):
    open_page(app, "runs")
    for tab, run_ids in (("Download", None), ("Compare two runs", 2)):
        app.session_state["runs-tab"] = tab
        app.run()
        button = next(b for b in app.get("download_button") if b.label == "Report (HTML)")
        assert "python -m ldifs_core report" in button.proto.help
        if run_ids:
            assert runs["old"] in button.proto.help and runs["new"] in button.proto.help
