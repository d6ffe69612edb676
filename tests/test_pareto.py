"""The per-objective Pareto picture: averages with n and spread, and the front of objectives no other one beats."""
import pandas as pd

from app import plots, tables


def points(rows):
    return pd.DataFrame(rows, columns=["run", "objective", "λ", "dataset", "accuracy after", "mean zero-shot Δ"])


RUNS = points([
    ("a", "ce", 0.0, "mnist", 95.0, -10.0), ("b", "ce", 0.0, "mnist", 95.4, -9.0),
    ("c", "ldifs", 10.0, "mnist", 94.8, -2.0),
    ("d", "l2sp", 1.0, "mnist", 88.0, -2.5),  # beaten by ldifs on both axes
    ("e", "lp", 0.0, "mnist", 88.0, 0.0),
    ("f", "ce", 0.0, "fashion_mnist", 83.0, -25.0), ("g", "lp", 0.0, "fashion_mnist", 77.0, 0.0),
])


def test_summary_averages_each_objective_per_task_with_n_and_spread():
    summary = tables.objective_summary(RUNS).set_index(["objective", "dataset"])
    ce = summary.loc[("ce", "mnist")]
    assert (ce["n"], ce["accuracy"], ce["forgetting"]) == (2, 95.2, -9.5)
    assert round(ce["forgetting_std"], 3) == 0.707
    assert summary.loc[("ldifs", "mnist"), "accuracy_std"] == 0.0  # a single run has no spread


def test_pareto_front_holds_the_objectives_no_other_beats_on_both_axes_within_a_task():
    summary = tables.objective_summary(RUNS)
    front = {(r.objective, r.dataset) for r in summary.itertuples() if r.pareto}
    assert front == {("ce", "mnist"), ("ldifs", "mnist"), ("lp", "mnist"), ("ce", "fashion_mnist"),
                     ("lp", "fashion_mnist")}


def test_pareto_figure_draws_one_marker_per_objective_and_task_and_one_front_per_task():
    fig = plots.objectives_pareto(RUNS)
    markers = [t for t in fig.data if t.mode == "markers+text"]
    assert sorted(t.name for t in markers) == sorted(
        ["ce · mnist", "ldifs · mnist", "l2sp · mnist", "lp · mnist", "ce · fashion_mnist", "lp · fashion_mnist"])
    fronts = {t.name: list(t.x) for t in fig.data if t.mode == "lines"}
    assert fronts == {"Pareto front · mnist": [-9.5, -2.0, 0.0], "Pareto front · fashion_mnist": [-25.0, 0.0]}
    assert all("n = " in t.hovertemplate for t in markers)
    assert {t.marker.color for t in markers} >= {plots.OBJECTIVE_COLORS["ldifs"], plots.OBJECTIVE_COLORS["lp"]}


def test_layer_axis_names_follow_the_chosen_taps():
    assert plots.tap_names(5) == ["stem", "tap 1", "tap 2", "tap 3", "tap 4"]
    assert plots.tap_names(1, "last") == ["last block"]
    assert plots.tap_names(6, "stem+blocks+embedding") == ["stem", "block 1", "block 2", "block 3", "block 4",
                                                          "embedding"]


def test_science_rows_become_one_point_per_dataset_seed_and_method():
    from app.science_figure import science_points

    rows = [{"dataset": "mnist", "seed": s, "method": m, "accuracy_after": a, "zero_shot_before": 82.0,
             "mean_zs_delta": z, "mean_lp_delta": 0.0}
            for s, m, a, z in ((0, "ce", 95.0, -9.0), (1, "ce", 95.5, -10.0), (0, "lipsum", 94.0, -3.0))]
    summary = tables.objective_summary(science_points(rows)).set_index("objective")
    assert summary.loc["ce", "n"] == 2 and summary.loc["ce", "accuracy"] == 95.25
    assert summary.loc["lipsum", "forgetting"] == -3.0
