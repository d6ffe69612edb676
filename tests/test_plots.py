"""Every chart of the app draws the traces a reader relies on: names, counts, values and hover data."""
from __future__ import annotations

import pytest

from app import plots, tables
from ldifs_core.config import RunConfig
from tests.app.sample_runs import CHECKED, sample_history, sample_metrics


@pytest.fixture
def ldifs_metrics() -> dict:
    return sample_metrics(RunConfig(objective="ldifs", lam=1.0, eval_datasets=list(CHECKED)), "20260101-000000-aaaaaa")


def trace_names(fig) -> list[str]:
    return [trace.name for trace in fig.data]


def test_accuracy_change_pairs_before_and_after_with_the_task_first_and_labelled_changes(ldifs_metrics):
    fig = plots.accuracy_change(ldifs_metrics, "zs")
    before, after = fig.data
    assert trace_names(fig) == ["before fine-tuning", "after fine-tuning"]
    assert list(after.x) == [f"mnist<br>({tables.FINE_TUNED})"] + [f"{d}<br>({tables.CHECKED})" for d in CHECKED]
    downstream = ldifs_metrics["downstream"]
    assert (before.y[0], after.y[0]) == (downstream["zero_shot_before"], downstream["accuracy_after"])
    first = ldifs_metrics["forgetting"][0]
    assert after.text[1] == tables.signed(first["zs_delta"])
    assert (after.textfont.color[0], after.textfont.color[1]) == (plots.GAIN_COLOR, plots.LOSS_COLOR)


def test_accuracy_bars_carry_their_95_percent_intervals_and_n(ldifs_metrics):
    before, after = plots.accuracy_change(ldifs_metrics, "zs").data
    first = ldifs_metrics["forgetting"][0]
    low, high = first["zs_after_ci"]
    assert (after.error_y.array[1], after.error_y.arrayminus[1]) == pytest.approx((high - first["zs_after"],
                                                                                  first["zs_after"] - low))
    low, high = first["zs_before_ci"]
    assert (before.error_y.array[1], before.error_y.arrayminus[1]) == pytest.approx((high - first["zs_before"],
                                                                                    first["zs_before"] - low))
    assert "n = %{customdata[0]}" in after.hovertemplate and after.customdata[1][0] == first["n"]


def test_accuracy_change_can_show_the_linear_probe(ldifs_metrics):
    after = plots.accuracy_change(ldifs_metrics, "lp").data[1]
    assert list(after.y[1:]) == [r["lp_after"] for r in ldifs_metrics["forgetting"]]
    assert "linear probe" in plots.accuracy_change(ldifs_metrics, "lp").layout.title.text


def test_class_drops_ranks_concepts_most_surely_forgotten_first_with_n_and_interval(ldifs_metrics):
    fig = plots.class_drops(ldifs_metrics, CHECKED[0], limit=4)
    (bars,) = fig.data
    changes = tables.class_changes(ldifs_metrics, CHECKED[0])
    assert len(bars.y) == 4
    top = changes.loc[0]
    assert bars.y[-1] == f"{top['class_name']} (n={top['n']})"  # horizontal bars: the last drawn sits on top
    assert list(bars.x) == list(changes["change"][:4][::-1])
    assert (bars.error_x.array[-1], bars.error_x.arrayminus[-1]) == pytest.approx(
        (top["change_ci_high"] - top["change"], top["change"] - top["change_ci_low"]))
    name, n, before, after, low, high = bars.customdata[-1]
    assert (name, n, before, after, low, high) == tuple(top[["class_name", "n", "before", "after", "change_ci_low",
                                                              "change_ci_high"]])
    assert "95 % CI" in bars.hovertemplate and "n =" in bars.hovertemplate


def test_class_drops_follow_the_probe_and_the_minimum_n(ldifs_metrics):
    (bars,) = plots.class_drops(ldifs_metrics, CHECKED[0], limit=60, probe="lp", min_n=20).data
    expected = tables.class_changes(ldifs_metrics, CHECKED[0], probe="lp", min_n=20)
    assert list(bars.x) == list(expected["change"][::-1])
    assert "linear probe" in plots.class_drops(ldifs_metrics, CHECKED[0], probe="lp").layout.title.text


def test_class_drops_say_so_when_no_concept_has_enough_images(ldifs_metrics):
    fig = plots.class_drops(ldifs_metrics, CHECKED[0], min_n=10_000)
    assert len(fig.data[0].y) == 0 and "no concept has at least 10000 test images" in fig.layout.title.text


def test_training_curves_split_the_total_loss_into_ce_and_the_weighted_regulariser():
    history = sample_history(RunConfig(objective="ldifs", lam=10.0, steps=6))
    fig = plots.training_curves(history)
    assert trace_names(fig) == ["total loss", "CE", "λ·LDIFS"]
    assert list(fig.data[0].x) == [1, 2, 3, 4, 5, 6]
    assert trace_names(plots.training_curves(sample_history(RunConfig(objective="ce", steps=3)))) == ["total loss", "CE"]


def test_layer_distances_draws_one_line_per_dataset_from_the_stem_up(ldifs_metrics):
    fig = plots.layer_distances(ldifs_metrics)
    assert trace_names(fig) == list(CHECKED)
    assert list(fig.data[0].x) == ["stem", "tap 1", "tap 2", "tap 3", "tap 4"]
    assert list(fig.data[0].y) == ldifs_metrics["forgetting"][0]["layer_distance"]


def test_tradeoff_colours_by_objective_and_labels_each_point_with_its_lambda():
    points = tables.tradeoff_points(tables.runs_table([]))
    for objective, lam, acc, delta in (("ce", 0.0, 97.0, -12.0), ("ldifs", 1.0, 96.0, -6.0), ("ldifs", 10.0, 95.0, -2.0)):
        points.loc[len(points)] = {"run": f"r-{lam}", "objective": objective, "λ": lam, "dataset": "mnist",
                                   "accuracy after": acc, "mean zero-shot Δ": delta}
    fig = plots.tradeoff(points)
    assert trace_names(fig) == ["ce", "ldifs"]
    ldifs = fig.data[1]
    assert list(ldifs.text) == ["λ=1", "λ=10"] and list(ldifs.x) == [-6.0, -2.0]
    assert ldifs.marker.color == plots.OBJECTIVE_COLORS["ldifs"]
    assert "run %{customdata[0]}" in ldifs.hovertemplate


def test_run_comparison_puts_one_bar_series_per_run(ldifs_metrics):
    ce = sample_metrics(RunConfig(objective="ce", eval_datasets=list(CHECKED)), "20260101-000000-bbbbbb")
    fig = plots.run_comparison({"A · ce": ce, "B · ldifs": ldifs_metrics})
    assert trace_names(fig) == ["A · ce", "B · ldifs"]
    assert list(fig.data[0].x) == ["mnist", *CHECKED]
    assert fig.data[0].y[1] < fig.data[1].y[1]  # the sample CE run forgets more than LDIFS


def test_wise_ft_path_orders_the_mixes_by_alpha_and_marks_the_chosen_one(ldifs_metrics):
    mixes = {alpha: {**ldifs_metrics, "alpha": alpha, "mean_zs_delta": -alpha} for alpha in (1.0, 0.0, 0.5)}
    path, chosen = plots.wise_ft_path(mixes, chosen=0.5).data
    assert list(path.text) == ["α=0", "α=0.5", "α=1"]
    assert list(path.x) == [0.0, -0.5, -1.0]
    assert (chosen.name, list(chosen.x), list(chosen.y)) == ("α = 0.5", [-0.5], [ldifs_metrics["downstream"]["accuracy_after"]])


def test_the_shared_figures_make_room_for_long_labels_whatever_template_draws_them(ldifs_metrics):
    """Concept and dataset names are never cut off, in the app or in a report (the figures carry automargin)."""
    for fig in (plots.accuracy_change(ldifs_metrics), plots.class_drops(ldifs_metrics, CHECKED[0]),
                plots.run_comparison({"A": ldifs_metrics, "B": ldifs_metrics})):
        assert fig.layout.xaxis.automargin and fig.layout.yaxis.automargin, fig.layout.title.text
