"""λ intuition on the Runs page and Learn: one trade-off panel per task, the table's filters, marks that never
hide each other, and λ sweeps with CE apart on the left and seed error bars."""
import numpy as np
import pandas as pd
import pytest

from app import plots, tables
from ldifs_core import lambda_grid as grid


def points(*runs) -> pd.DataFrame:
    """Trade-off points as tables.tradeoff_points gives them: (objective, λ, dataset, seed, accuracy, ZS Δ, LP Δ)."""
    rows = [{"run": f"r{k}", "objective": objective, "λ": lam, "dataset": dataset, "model": "embedded",
             "steps": 300, "seed": seed, "accuracy after": acc, "mean zero-shot Δ": zs, "mean linear-probe Δ": lp}
            for k, (objective, lam, dataset, seed, acc, zs, lp) in enumerate(runs)]
    return pd.DataFrame(rows, columns=tables.TRADEOFF_COLUMNS)


SWEEP = points(
    ("ce", 0.0, "mnist", 0, 95.0, -10.0, -2.0), ("ce", 0.0, "mnist", 1, 95.6, -9.0, -1.5),
    ("ldifs", 0.0, "mnist", 2, 95.3, -9.5, -1.8),  # λ = 0 is plain CE too
    ("ldifs", 1.0, "mnist", 0, 95.0, -6.0, -1.0),
    ("ldifs", 10.0, "mnist", 0, 94.5, -2.0, 0.0), ("ldifs", 10.0, "mnist", 1, 94.9, -2.6, 0.2),
    ("ldifs", 10.0, "fashion_mnist", 0, 82.0, -6.0, -1.0), ("l2sp", 1.0, "fashion_mnist", 0, 81.0, -20.0, -3.0),
)


def marker_positions(fig) -> list[tuple[float, float, str, str]]:
    """(x, y, symbol, axis) of every marker drawn."""
    return [(x, y, trace.marker.symbol, trace.xaxis) for trace in fig.data for x, y in zip(trace.x, trace.y)]


def test_the_tradeoff_has_one_panel_per_fine_tuning_task():
    fig = plots.tradeoff(SWEEP)
    assert [a.text for a in fig.layout.annotations] == ["fine-tuned on fashion_mnist", "fine-tuned on mnist"]
    axes = {trace.xaxis for trace in fig.data if trace.name == "ldifs"}
    assert axes == {"x", "x2"}  # ldifs runs of each task sit on their own axes
    fashion = [t for t in fig.data if t.xaxis == "x"]
    assert sorted(t.name for t in fashion) == ["l2sp", "ldifs"] and all(len(t.x) == 1 for t in fashion)
    assert [t.name for t in fig.data if t.showlegend] == ["l2sp", "ldifs", "ce"]  # each objective once


def test_the_tables_filters_decide_what_the_tradeoff_shows():
    table = SWEEP.assign(status="done")
    only_mnist = tables.filter_runs(table, {"model": None, "dataset": "mnist", "objective": None})
    fig = plots.tradeoff(tables.tradeoff_points(only_mnist))
    assert [a.text for a in fig.layout.annotations] == ["fine-tuned on mnist"]
    assert sum(len(t.x) for t in fig.data) == 6
    only_ce = tables.filter_runs(table, {"model": "embedded", "dataset": None, "objective": "ce"})
    assert {t.name for t in plots.tradeoff(tables.tradeoff_points(only_ce)).data} == {"ce"}


def test_coincident_runs_get_distinct_symbols_and_positions_and_say_which_run_they_are():
    same = points(("ce", 0.0, "mnist", 0, 95.0, -10.0, -2.0), ("ldifs", 0.0, "mnist", 0, 95.0, -10.0, -2.0),
                  ("ldifs", 10.0, "mnist", 0, 94.0, -2.0, 0.0))
    fig = plots.tradeoff(same)
    drawn = marker_positions(fig)
    ce, ldifs_zero = drawn[0], drawn[1]
    assert ce[2] != ldifs_zero[2]  # circle vs diamond
    assert (ce[0], ce[1]) != (ldifs_zero[0], ldifs_zero[1])  # nudged apart ...
    assert abs(ce[0] - -10.0) < 0.5 and abs(ldifs_zero[1] - 95.0) < 0.5  # ... only a little
    assert (drawn[2][0], drawn[2][1]) == (-2.0, 94.0)  # a lone point stays where it is
    ce_trace = fig.data[0]
    assert list(ce_trace.customdata[0][[0, 4, 5]]) == ["r0", 95.0, -10.0]  # the hover tells the run and exact numbers
    assert "run %{customdata[0]}" in ce_trace.hovertemplate


def test_spread_keeps_every_member_of_a_pile_apart():
    x, y = plots.spread_coincident([1.0, 1.0, 1.0, 5.0], [2.0, 2.0, 2.0, 2.0], x_span=10.0, y_span=10.0)
    assert len({(round(a, 6), round(b, 6)) for a, b in zip(x, y)}) == 4
    assert np.allclose([np.hypot(a - 1.0, b - 2.0) for a, b in zip(x[:3], y[:3])], 0.2)


def test_a_sweep_summarises_each_lambda_over_its_seeds_with_ce_as_lambda_zero():
    sweep = tables.lambda_sweep(SWEEP[SWEEP["dataset"] == "mnist"]).set_index("λ")
    assert list(sweep.index) == [0.0, 1.0, 10.0]
    ce = sweep.loc[0.0]
    assert (ce["n"], ce["seeds"], round(ce["accuracy"], 2)) == (3, "0, 1, 2", 95.3)
    assert sweep.loc[1.0, "zs_std"] == 0.0  # one run, no spread
    assert round(sweep.loc[10.0, "zs_std"], 3) == 0.424


def test_the_sweep_plot_draws_ce_left_of_the_smallest_lambda_with_error_bars_where_seeds_repeat():
    fig = plots.lambda_sweep(tables.lambda_sweep(SWEEP[SWEEP["dataset"] == "mnist"]), "mnist")
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.ticktext[0] == plots.CE_TICK
    accuracy = next(t for t in fig.data if t.name == "task accuracy")
    ce = next(t for t in fig.data if t.name == "CE · task accuracy")
    assert list(accuracy.x) == [1.0, 10.0] and ce.x[0] < 1.0 and ce.marker.symbol != accuracy.marker.symbol
    assert accuracy.error_y.visible and accuracy.error_y.array[1] == pytest.approx(0.2828, abs=1e-3)
    assert ce.error_y.array[0] > 0  # three CE runs: a spread
    assert "n = %{customdata[0]}" in accuracy.hovertemplate and list(accuracy.customdata[1][:2]) == [2, "0, 1"]
    assert {t.name for t in fig.data} >= {"mean zero-shot Δ", "mean linear-probe Δ", "CE · mean zero-shot Δ"}


def test_the_chosen_lambda_is_ringed_on_every_curve_and_ce_is_ringed_at_its_own_place():
    sweep = tables.lambda_sweep(SWEEP[SWEEP["dataset"] == "mnist"])
    rings = [t for t in plots.lambda_sweep(sweep, "mnist", chosen=10.0).data if t.name == "chosen λ = 10"]
    assert [r.x[0] for r in rings] == [10.0] * 3
    assert rings[1].y[0] == sweep.set_index("λ").loc[10.0, "zs"]
    ce_rings = [t for t in plots.lambda_sweep(sweep, "mnist", chosen=0.0).data if t.name == "chosen λ = 0"]
    assert ce_rings[0].x[0] == plots.ce_position([1.0, 10.0])


def grid_cell(lam: float, accuracy: float, seeds=(0, 1, 2)) -> grid.GridCell:
    spread = lambda mean: grid.Spread(mean, 0.5 if len(seeds) > 1 else 0.0, len(seeds))
    concept = grid.ForgottenConcept("animals", "dog", 104, 55.8, 30.0, -25.8, 2.0, (-35.0, -16.0))
    return grid.GridCell("mnist", lam, tuple(seeds), tuple(f"r{s}" for s in seeds), 82.2, spread(accuracy),
                         spread(-10.0 / (1 + lam)), spread(-2.0 / (1 + lam)), (concept,))


def test_the_grid_feeds_the_same_sweep_plot_and_its_concept_table():
    cells = (grid_cell(0.0, 95.3), grid_cell(10.0, 94.8, seeds=(0,)))
    sweep = tables.grid_sweep(cells)
    assert list(sweep.columns) == tables.SWEEP_COLUMNS
    assert list(sweep["n"]) == [3, 1] and list(sweep["seeds"]) == ["0, 1, 2", "0"]
    fig = plots.lambda_sweep(sweep, "grid", chosen=10.0)
    assert next(t for t in fig.data if t.name == "CE · task accuracy").y[0] == 95.3
    concepts = tables.forgotten_concepts(cells[0])
    assert concepts.iloc[0][["checked dataset", "concept", "n images", "change"]].tolist() == ["animals", "dog", 104,
                                                                                               -25.8]


def test_seeds_of_one_lambda_share_one_label_on_their_most_accurate_run():
    fig = plots.tradeoff(SWEEP[SWEEP["dataset"] == "mnist"])
    ldifs = next(t for t in fig.data if t.name == "ldifs")
    assert list(ldifs.text) == ["λ=0", "λ=1", "", "λ=10"]  # λ = 10: seed 1 (94.9 %) carries the label
    assert next(t for t in fig.data if t.name == "ce").text is None


FOUR_TASKS = points(*[(objective, lam, task, 0, base + shift, zs, 0.0)
                      for task, base in (("a", 95.0), ("b", 60.0), ("c", 80.0), ("d", 40.0))
                      for objective, lam, shift, zs in (("ce", 0.0, 0.6, -12.0), ("ldifs", 10.0, -0.4, -2.0))])


def panel_axes(fig, letter: str) -> list:
    return [fig.layout[name] for name in sorted(fig.layout, key=lambda n: (len(n), n))
            if name.startswith(f"{letter}axis")]


def test_the_tradeoff_panels_share_one_scale_so_a_one_point_gap_never_fills_a_panel():
    """Accuracies of different tasks do not compare, but one point of accuracy (or of forgetting) is the same
    length in every panel, and no panel stretches a 1-point spread over its whole height."""
    fig = plots.tradeoff(FOUR_TASKS)
    x_ranges = {tuple(axis.range) for axis in panel_axes(fig, "x")}
    assert len(x_ranges) == 1
    (low, high), = x_ranges
    assert low < -12.0 and high >= 0.0  # every run's forgetting and "none" (0) on the shared axis
    spans = {round(axis.range[1] - axis.range[0], 6) for axis in panel_axes(fig, "y")}
    assert len(spans) == 1 and spans.pop() >= plots.MIN_ACCURACY_SPAN
    for axis, (task, base) in zip(panel_axes(fig, "y"), (("a", 95.0), ("b", 60.0), ("c", 80.0), ("d", 40.0))):
        assert axis.range[0] < base - 0.4 and axis.range[1] > base + 0.6  # each panel still shows its runs


def test_a_panel_title_sits_clear_of_the_axis_title_of_the_panel_above():
    fig = plots.tradeoff(FOUR_TASKS)
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    upper, lower = fig.layout.yaxis.domain, fig.layout.yaxis3.domain
    assert round((upper[0] - lower[1]) * plot_height, 6) >= plots.ROW_GAP_PX >= 110  # tick labels, axis title, panel title
