"""The Feature drift page, as a reader uses it: a keyed picture whose colours go to the concepts that moved most,
views that share their axes, a test image shown with its thumbnail and predictions, a most-moved table, and the
tapped layers explained. A click on a chart point cannot be simulated by AppTest; the page turns a click into the
picked test image with plots.clicked_position (tested in tests/test_drift_view.py) and otherwise behaves as when the
image is picked in the 'Test image' box, which these tests use."""
from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import display, plots
from ldifs_core import drift_records
from ldifs_core.store import RunStore
from tests.app.conftest import open_page
from tests.app.sample_runs import CHECKED, add_finished_run

DATASET = CHECKED[0]
UMAP_TITLE = "Joint UMAP of image features (open = before, filled = after)"
PCA_TITLE = "Joint PCA of image features (open = before, filled = after)"


@pytest.fixture
def run_id(store: RunStore) -> str:
    return add_finished_run(store, objective="ce")


def drift_map(app: AppTest, title: str = UMAP_TITLE) -> dict:
    charts = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    return next(c for c in charts if c["layout"]["title"]["text"] == title)


def keyed(figure: dict) -> list[str]:
    """The concepts the chart's key names, in its order."""
    return [trace["name"] for trace in figure["data"] if trace.get("showlegend")]


def line_traces(figure: dict) -> list[dict]:
    return [trace for trace in figure["data"] if trace["mode"] == "lines"]


def control(elements, label: str):
    return next(e for e in elements if e.label == label)


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_the_page_shows_a_keyed_picture_its_controls_the_most_moved_table_and_the_taps(app, run_id):
    open_page(app, "drift")
    assert not app.exception
    assert [s.label for s in app.selectbox][1:] == ["Dataset", "Test image"]
    assert control(app.number_input, "Concepts in colour").value == 10  # ten concepts: all in colour
    assert control(app.multiselect, "Draw pre → post trails for").value  # starts on the two most moved
    figure = drift_map(app)
    assert len(keyed(figure)) == 10 and figure["layout"]["showlegend"] is True
    moved = app.dataframe[0].value
    assert moved["class_name"].iloc[0] == "ankle boot"  # the fixture moves its last concept ~3x as far
    assert list(moved["displacement_low"]) == sorted(moved["displacement_low"], reverse=True)  # surest first
    assert "stem" in texts(app.caption) and "tap 1–4" in texts(app.caption)
    assert "2-D distances are only a picture" in texts(app.caption)
    assert "Feature distance per layer (pre-trained vs fine-tuned)" in [
        json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in app.get("plotly_chart")]
    assert app.dataframe[1].value["dataset"].tolist() == list(CHECKED)  # the projection-free numbers


def test_the_k_control_changes_which_concepts_are_coloured(app, run_id):
    open_page(app, "drift")
    control(app.multiselect, "Draw pre → post trails for").set_value([]).run()
    control(app.number_input, "Concepts in colour").set_value(3).run()
    three = keyed(drift_map(app))
    assert three[0] == plots.OTHER_CONCEPTS and len(three) == 4
    assert three[1] == app.dataframe[0].value["class_name"].iloc[0]  # the most moved concept comes first
    control(app.number_input, "Concepts in colour").set_value(5).run()
    five = keyed(drift_map(app))
    assert five[:4] == three and len(five) == 6


def test_trails_wear_their_concepts_colour_and_leave_with_the_before_points(app, run_id):
    open_page(app, "drift")
    figure = drift_map(app)
    trails = line_traces(figure)
    assert trails
    for trail in trails:
        points = next(t for t in figure["data"] if t["name"] == trail["legendgroup"] and t["mode"] == "markers")
        assert trail["line"]["color"] == points["marker"]["color"]
    for view in (plots.SHOW_AFTER, plots.SHOW_SIDE):
        app.get("button_group")[0].set_value(view).run()
        shown = drift_map(app)
        assert line_traces(shown) == []
        assert shown["layout"]["xaxis"]["range"] == figure["layout"]["xaxis"]["range"]
    assert drift_map(app)["layout"]["xaxis2"]["matches"] == "x"


def test_a_picked_test_image_shows_its_thumbnail_concept_and_predictions(app, store, run_id):
    open_page(app, "drift")
    assert not app.image
    picker = control(app.selectbox, "Test image")
    position = picker.options[0]
    picker.set_value(position).run()
    (image,) = app.image
    assert image.captions == [f"test image #{position.split(' · ')[0][1:]}"]
    facts = drift_records.image_facts(store.arrays(run_id), DATASET, int(position.split(" · ")[0][1:]))
    panel = texts(app.markdown)
    assert f"test image #{facts.position} of {display.plain(DATASET)}" in panel
    assert "zero-shot:" in panel and "linear probe:" in panel and "relative displacement" in panel


def test_a_run_without_per_image_records_still_draws_its_picture_and_says_what_is_missing(app, store, run_id):
    arrays = store.arrays(run_id)
    np.savez_compressed(store.root / run_id / "arrays.npz",
                        **{key: value for key, value in arrays.items() if key.startswith("umap_")})
    open_page(app, "drift")
    assert not app.exception
    assert keyed(drift_map(app))
    assert "made before per-image drift records" in texts(app.caption)
    assert [d.value.columns[0] for d in app.dataframe] == ["dataset"]  # only the drift numbers, no ranking
    picker = control(app.selectbox, "Test image")
    picker.set_value(picker.options[0]).run()
    assert not app.image
    assert "No thumbnail stored" in texts(app.caption)


def test_a_345_concept_dataset_colours_eight_most_moved_concepts_and_greys_the_rest(app, store):
    add_finished_run(store, objective="ce", eval_datasets=["quickdraw"])
    open_page(app, "drift")
    assert control(app.number_input, "Concepts in colour").value == 8
    control(app.multiselect, "Draw pre → post trails for").set_value([]).run()
    figure = drift_map(app)
    assert keyed(figure)[0] == plots.OTHER_CONCEPTS and len(keyed(figure)) == 9
    grey = next(t for t in figure["data"] if t["name"] == plots.OTHER_CONCEPTS)
    assert grey["marker"]["color"] == plots.OTHER_COLOR


def test_a_picked_image_names_predictions_of_concepts_absent_from_the_picture(app, store):
    run_id = add_finished_run(store, objective="ce", eval_datasets=["quickdraw"])
    arrays = store.arrays(run_id)
    last = int(np.argmax(arrays["umap_labels/quickdraw"]))  # its predictions name concepts with higher labels
    open_page(app, "drift")
    picker = control(app.selectbox, "Test image")
    picker.set_value(next(o for o in picker.options if o.startswith(f"#{arrays['umap_ids/quickdraw'][last]} "))).run()
    assert not app.exception
    assert "zero-shot:" in texts(app.markdown)


def picked_position(app: AppTest) -> int:
    picker = control(app.selectbox, "Test image")
    picker.set_value(picker.options[0]).run()
    return int(picker.options[0].split(" · ")[0][1:])


def neighbour_tables(app: AppTest) -> list:
    return [frame.value for frame in app.dataframe if "cosine" in frame.value.columns]


def test_the_page_offers_pca_and_lists_a_picked_images_neighbours_before_and_after(app, store, run_id):
    open_page(app, "drift")
    reduction = control(app.radio, "Reduction")
    assert reduction.value == drift_records.UMAP
    reduction.set_value(drift_records.PCA).run()
    assert not app.exception
    arrays = store.arrays(run_id)
    pca = np.concatenate(drift_records.joint_pca(arrays[f"features_pre/{DATASET}"],
                                                 arrays[f"features_post/{DATASET}"]))
    picture = drift_map(app, PCA_TITLE)  # drawn where the kept features' PCA puts them
    assert picture["layout"]["xaxis"]["range"] == pytest.approx(plots.padded_range(pca[:, 0]))
    assert picture["layout"]["yaxis"]["range"] == pytest.approx(plots.padded_range(pca[:, 1]))
    assert "PCA keeps the two directions" in texts(app.caption)
    position = picked_position(app)
    before, after = neighbour_tables(app)
    expected = drift_records.neighbours(arrays, DATASET, position, 5)
    names = [display.plain(name) for name in arrays[f"class_names/{DATASET}"]]
    for table, when in ((before, "before"), (after, "after")):
        assert table["test image"].tolist() == [f"#{n.position}" for n in expected[when]]
        assert table["concept"].tolist() == [names[n.label] for n in expected[when]]
        assert table["image"].str.startswith("data:image/png;base64,").all()
    assert "before fine-tuning (θ₀): among" in texts(app.caption)


def test_a_run_without_kept_features_draws_its_umap_and_says_neighbours_need_this_version(app, store, run_id):
    arrays = store.arrays(run_id)
    np.savez_compressed(store.root / run_id / "arrays.npz",
                        **{key: value for key, value in arrays.items() if not key.startswith("features_")})
    open_page(app, "drift")
    control(app.radio, "Reduction").set_value(drift_records.PCA).run()
    assert not app.exception
    assert "PCA needs a run made by this version" in texts(app.info)
    assert keyed(drift_map(app))
    picked_position(app)
    assert neighbour_tables(app) == []
    assert "Neighbours need a run made by this version" in texts(app.caption)
