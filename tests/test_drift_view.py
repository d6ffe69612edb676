"""The feature drift picture can be read: a key names every coloured concept, trails wear their concept's colour,
many-class datasets colour only the most moved concepts, views share their axes and never draw a trail to a point
they hide, and the concepts that moved most are ranked by a displacement measured in the run's own features."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app import plots, tables
from ldifs_core import drift, drift_records
from ldifs_core.config import RunConfig
from ldifs_core.runner import execute
from ldifs_core.store import RunStore
from tests.app.sample_runs import CHECKED, class_names, sample_arrays, sample_metrics

DATASET = CHECKED[0]
NAMES = class_names(DATASET)


@pytest.fixture
def arrays() -> dict:
    return sample_arrays(RunConfig(eval_datasets=[DATASET]))


def draw(arrays: dict, show: str = plots.SHOW_BOTH, colored=(), trails=()):
    return plots.feature_map(arrays[f"umap_pre/{DATASET}"], arrays[f"umap_post/{DATASET}"],
                             arrays[f"umap_labels/{DATASET}"], NAMES, arrays[f"umap_ids/{DATASET}"], show,
                             plots.concept_colors(list(colored), NAMES), trails)


def concepts_drawn(arrays: dict) -> list[str]:
    return sorted({NAMES[int(label)] for label in arrays[f"umap_labels/{DATASET}"]})


def markers(fig) -> list:
    return [trace for trace in fig.data if trace.mode == "markers"]


def trails(fig) -> list:
    return [trace for trace in fig.data if trace.mode == "lines"]


def test_the_key_names_each_coloured_concept_once_and_the_grey_rest(arrays):
    colored = concepts_drawn(arrays)[:3]
    fig = draw(arrays, colored=colored)
    keyed = [trace.name for trace in fig.data if trace.showlegend]
    assert keyed == [plots.OTHER_CONCEPTS] + colored
    assert fig.layout.showlegend is True  # even with a single concept drawn
    only_one = draw(arrays, plots.SHOW_AFTER, colored=concepts_drawn(arrays)[:1])
    assert only_one.layout.showlegend is True


def test_a_concept_keeps_its_colour_across_runs_whatever_its_rank(arrays):
    """Colours follow the concept's class in the dataset, so sneaker is the same colour in every run's picture."""
    ranked = concepts_drawn(arrays)
    one_run = plots.concept_colors(ranked[:3], NAMES)
    other_run = plots.concept_colors(ranked[::-1], NAMES)  # the same concepts ranked the other way round
    assert all(other_run[concept] == one_run[concept] for concept in ranked[:3])
    assert one_run[ranked[1]] == plots.CLASS_PALETTE[NAMES.index(ranked[1])]
    assert list(one_run) == ranked[:3]  # the key lists them in the order given


def test_coloured_concepts_of_a_many_class_dataset_never_share_a_colour():
    names = [f"class {i}" for i in range(300)]
    chosen = ["class 0", "class 48", "class 96", "class 5"]  # class 0, 48 and 96 fall on the same palette colour
    colors = plots.concept_colors(chosen, names)
    assert colors["class 0"] == plots.CLASS_PALETTE[0] and len(set(colors.values())) == len(chosen)
    assert len(plots.concept_colors(names, names)) == plots.MAX_COLOURED


def test_the_uncoloured_concepts_are_grey(arrays):
    ranked = concepts_drawn(arrays)
    fig = draw(arrays, plots.SHOW_AFTER, colored=ranked[:2])
    labels = arrays[f"umap_labels/{DATASET}"]
    grey = next(trace for trace in fig.data if trace.name == plots.OTHER_CONCEPTS)
    assert grey.marker.color == plots.OTHER_COLOR
    assert len(grey.x) == sum(NAMES[int(label)] not in ranked[:2] for label in labels)
    for concept in ranked[:2]:
        (trace,) = [t for t in fig.data if t.name == concept]
        assert trace.marker.color == plots.CLASS_PALETTE[NAMES.index(concept)]
        assert len(trace.x) == sum(NAMES[int(label)] == concept for label in labels)


def test_trails_wear_their_concepts_colour_and_hide_with_it(arrays):
    chosen = concepts_drawn(arrays)[0]
    fig = draw(arrays, colored=[chosen], trails=[chosen])
    (trail,) = trails(fig)
    points = [t for t in markers(fig) if t.name == chosen]
    assert trail.line.color == points[0].marker.color == plots.CLASS_PALETTE[NAMES.index(chosen)]
    assert trail.legendgroup == chosen == points[0].legendgroup  # clicking the key hides points and trails
    members = np.flatnonzero([NAMES[int(label)] == chosen for label in arrays[f"umap_labels/{DATASET}"]])
    assert len(trail.x) == 3 * len(members)  # start, end, gap per image
    first = members[0]
    pre, post = arrays[f"umap_pre/{DATASET}"], arrays[f"umap_post/{DATASET}"]
    assert (trail.x[0], trail.x[1]) == (pre[first, 0], post[first, 0])
    assert math.isnan(trail.x[2])


@pytest.mark.parametrize("show", [plots.SHOW_BEFORE, plots.SHOW_AFTER, plots.SHOW_SIDE])
def test_views_that_hide_one_end_of_a_trail_draw_no_trails(arrays, show):
    chosen = concepts_drawn(arrays)[:2]
    fig = draw(arrays, show, colored=chosen, trails=chosen)
    assert trails(fig) == []
    if show == plots.SHOW_AFTER:
        drawn = np.concatenate([trace.x for trace in markers(fig)])
        assert sorted(drawn) == sorted(arrays[f"umap_post/{DATASET}"][:, 0])


def test_overlay_draws_each_concept_once_with_open_before_and_filled_after_markers(arrays):
    chosen = concepts_drawn(arrays)[0]
    (trace,) = [t for t in markers(draw(arrays, colored=[chosen])) if t.name == chosen]
    count = sum(NAMES[int(label)] == chosen for label in arrays[f"umap_labels/{DATASET}"])
    assert list(trace.marker.symbol) == ["circle"] * count + ["circle-open"] * count  # after first: a filled key
    assert [when for _, _, when in trace.customdata] == ["after"] * count + ["before"] * count


def test_every_view_has_the_same_axes_and_before_after_sit_side_by_side(arrays):
    ranges = set()
    for show in (plots.SHOW_BEFORE, plots.SHOW_AFTER, plots.SHOW_BOTH, plots.SHOW_SIDE):
        layout = draw(arrays, show).layout
        ranges.add((tuple(layout.xaxis.range), tuple(layout.yaxis.range)))
    assert len(ranges) == 1
    side = draw(arrays, plots.SHOW_SIDE, colored=concepts_drawn(arrays)[:1])
    assert tuple(side.layout.xaxis2.range) == tuple(side.layout.xaxis.range) and side.layout.xaxis2.matches == "x"
    panels = {trace.xaxis for trace in side.data}
    assert panels == {"x", "x2"}
    before = [t for t in side.data if t.xaxis == "x"]
    assert {symbol for t in before for symbol in t.marker.symbol} == {"circle-open"}
    assert {when for t in before for _, _, when in t.customdata} == {"before"}


def test_a_click_on_a_point_gives_its_test_image_position(arrays):
    fig = draw(arrays, plots.SHOW_AFTER, colored=concepts_drawn(arrays)[:1])
    trace = markers(fig)[0]
    concept, position, when = trace.customdata[0]
    assert concept == trace.name or trace.name == plots.OTHER_CONCEPTS
    assert when == "after" and "test image #%{customdata[1]}" in trace.hovertemplate
    event = {"selection": {"points": [{"curve_number": 0, "point_index": 0, "customdata": [concept, position, when]}],
                           "point_indices": [0], "box": [], "lasso": []}}
    assert plots.clicked_position(event) == position
    assert plots.clicked_position({"selection": {"points": [], "point_indices": [], "box": [], "lasso": []}}) is None
    assert plots.clicked_position(None) is None


def clustered_features(moving_class: int, classes: int = 4, per_class: int = 30, seed: int = 0):
    """Unit features in tight clusters per class; fine-tuning moves every image a little and `moving_class`'s images
    a lot."""
    rng = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, 32, generator=rng)
    labels = torch.arange(classes).repeat_interleave(per_class)
    pre = F.normalize(centres[labels] + 0.3 * torch.randn(len(labels), 32, generator=rng), dim=1)
    shift = 0.05 * torch.randn(len(labels), 32, generator=rng)
    shift[labels == moving_class] += 1.5 * torch.randn(32, generator=rng)
    return pre, F.normalize(pre + shift, dim=1), labels


def test_relative_displacement_is_zero_for_unmoved_images_and_scales_with_the_neighbourhood():
    pre, post, _ = clustered_features(moving_class=2)
    assert torch.allclose(drift.relative_displacement(pre, pre), torch.zeros(len(pre)))
    one = drift.relative_displacement(pre, post)
    assert one.shape == (len(pre),) and bool((one >= 0).all())


def test_the_concept_that_moved_far_is_ranked_first(tmp_path):
    pre, post, labels = clustered_features(moving_class=2)
    names = ["ant", "bee", "cat", "dog"]
    arrays = {f"eval_labels/{DATASET}": labels.numpy().astype(np.int32),
              drift_records.displacement_key(DATASET): drift.relative_displacement(pre, post).numpy()}
    ranked = drift_records.most_moved(arrays, DATASET, names)
    assert [c.class_name for c in ranked][0] == "cat"
    assert ranked[0].displacement > 2 * ranked[1].displacement
    assert all(c.n == 30 and c.low < c.displacement < c.high for c in ranked)
    assert drift_records.most_moved({}, DATASET, names) is None  # a run from before these records


def test_a_concept_resting_on_one_or_two_images_does_not_top_the_ranking():
    labels = np.array([0] * 30 + [1] * 2 + [2])
    displacement = np.concatenate([np.linspace(1.8, 2.2, 30), [1.0, 5.0], [9.0]]).astype(np.float32)
    arrays = {f"eval_labels/{DATASET}": labels, drift_records.displacement_key(DATASET): displacement}
    ranked = drift_records.most_moved(arrays, DATASET, ["many", "two", "one"])
    assert [c.class_name for c in ranked] == ["many", "two", "one"]
    many = displacement[:30].astype(np.float64)
    half = drift_records.t975(29) * many.std(ddof=1) / math.sqrt(30)
    assert (ranked[0].displacement, ranked[0].low, ranked[0].high) == pytest.approx(
        (many.mean(), many.mean() - half, many.mean() + half))
    assert ranked[1].displacement > ranked[0].displacement and ranked[1].low == 0.0  # wide interval, clipped at 0
    assert math.isnan(ranked[2].low) and math.isnan(ranked[2].high)
    assert drift_records.t975(1) == 12.706 and abs(drift_records.t975(60) - 2.000) < 0.005


def test_the_most_moved_table_sits_beside_each_concepts_accuracy_change(arrays):
    metrics = sample_metrics(RunConfig(eval_datasets=[DATASET]), "20260101-000000-aaaaaa")
    moved = drift_records.most_moved(arrays, DATASET, NAMES)
    table = tables.most_moved(metrics, DATASET, moved)
    assert list(table["class_name"]) == [c.class_name for c in moved]
    assert list(table["displacement_low"]) == [c.low for c in moved]
    change = {row["class_name"]: row["change"] for row in metrics["forgetting"][0]["per_class"]}
    assert table["zero-shot change"].iloc[0] == change[moved[0].class_name]


def test_colours_go_to_the_most_moved_concepts_or_without_records_to_the_most_forgotten(arrays):
    metrics = sample_metrics(RunConfig(eval_datasets=[DATASET]), "20260101-000000-aaaaaa")
    drawn = concepts_drawn(arrays)
    moved = drift_records.most_moved(arrays, DATASET, NAMES)
    order = tables.colour_order(metrics, DATASET, moved, drawn)
    assert sorted(order) == drawn and order == [c.class_name for c in moved if c.class_name in drawn]
    forgotten = [name for name in tables.class_changes(metrics, DATASET)["class_name"] if name in drawn]
    assert tables.colour_order(metrics, DATASET, None, drawn)[:len(forgotten)] == forgotten


def test_image_facts_read_the_records_and_say_none_without_them(arrays):
    position = int(arrays[f"umap_ids/{DATASET}"][0])
    facts = drift_records.image_facts(arrays, DATASET, position)
    assert facts.label == arrays[f"eval_labels/{DATASET}"][position] == arrays[f"umap_labels/{DATASET}"][0]
    assert set(facts.predictions) == {"zs", "lp"}
    assert facts.predictions["zs"] == (arrays[f"pred_zs_before/{DATASET}"][position],
                                       arrays[f"pred_zs_after/{DATASET}"][position])
    assert facts.thumbnail.shape == (8, 8, 3) and facts.displacement == pytest.approx(
        arrays[drift_records.displacement_key(DATASET)][position])
    bare = drift_records.image_facts({key: value for key, value in arrays.items() if key.startswith("umap")},
                                     DATASET, position)
    assert (bare.label, bare.predictions, bare.thumbnail, bare.displacement) == (None, {}, None, None)


@pytest.mark.slow
def test_a_real_run_stores_every_checked_images_relative_displacement(tmp_path):
    store = RunStore(tmp_path)
    cfg = RunConfig(objective="ce", steps=2, batch_size=16, eval_limit=60, probe_limit=6, train_limit=80,
                    umap_points=0, eval_datasets=["fashion_mnist"])
    arrays = store.arrays(execute(cfg, store))
    displacement = arrays[drift_records.displacement_key("fashion_mnist")]
    assert displacement.shape == arrays["eval_labels/fashion_mnist"].shape
    assert np.isfinite(displacement).all() and (displacement > 0).all()
    assert drift_records.displacement_key("mnist") not in arrays  # the fine-tuning task is not a drift dataset


def test_recorded_labels_cover_predictions_beyond_the_pictures_concepts(arrays):
    recorded = set(drift_records.recorded_labels(arrays, DATASET).tolist())
    assert set(arrays[f"umap_labels/{DATASET}"].tolist()) <= recorded
    assert set(arrays[f"pred_lp_after/{DATASET}"].tolist()) <= recorded
    assert drift_records.recorded_labels({}, DATASET).tolist() == []
