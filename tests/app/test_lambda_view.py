"""λ intuition in the app: the Runs page's per-task trade-off and λ sweep follow the table's filters and their
own controls; Learn's λ slider reads the precomputed grid and trains nothing."""
from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import plots, tables
from ldifs_core import lambda_grid as grid
from scripts import lambda_grid as build
from tests.app.conftest import open_page
from tests.app.sample_runs import add_finished_run

TRADEOFF = "Trade-off: downstream accuracy vs forgetting elsewhere"


def figures(app: AppTest) -> dict[str, dict]:
    """The page's Plotly figures by title."""
    specs = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def values(data) -> list:
    """A trace's array as a list, whether the figure JSON holds it as a list or as typed base64 (numpy input)."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).tolist()
    return list(data)


def panel_titles(figure: dict) -> list[str]:
    return [annotation["text"] for annotation in figure["layout"]["annotations"]]


def sweep_figure(app: AppTest) -> dict:
    return next(spec for title, spec in figures(app).items() if "against λ" in title)


@pytest.fixture
def sweeps(store) -> None:
    """CE and an LDIFS sweep on MNIST over two seeds, one LDIFS run on Fashion-MNIST, one L2-SP run, and one LDIFS
    run of a zoo model on MNIST."""
    for seed in (0, 1):
        add_finished_run(store, objective="ce", seed=seed)
        for lam in (1.0, 10.0):
            add_finished_run(store, objective="ldifs", lam=lam, seed=seed)
    add_finished_run(store, objective="ldifs", lam=10.0, dataset="fashion_mnist")
    add_finished_run(store, objective="l2sp", lam=1.0, steps=30)
    add_finished_run(store, objective="ldifs", lam=3.0, model="ViT-B-32", pretrained="openai")


def test_runs_page_draws_one_tradeoff_panel_per_task_and_follows_the_dataset_filter(app, sweeps):
    open_page(app, "runs")
    assert not app.exception
    assert panel_titles(figures(app)[TRADEOFF]) == ["fine-tuned on fashion_mnist", "fine-tuned on mnist"]
    app.selectbox(key="filter-dataset").select("fashion_mnist").run()
    assert panel_titles(figures(app)[TRADEOFF]) == ["fine-tuned on fashion_mnist"]
    assert app.selectbox(key="sweep-task").options == ["fashion_mnist"]


def test_the_lambda_sweep_shows_ce_apart_and_seed_error_bars_for_the_chosen_task(app, sweeps):
    open_page(app, "runs")
    assert app.selectbox(key="sweep-objective").value == "ldifs"
    assert app.selectbox(key="sweep-task").value == "mnist"  # the task with the most runs
    assert app.selectbox(key="sweep-model").value == "embedded"
    figure = sweep_figure(app)
    assert figure["layout"]["title"]["text"].startswith("ldifs on mnist")
    assert figure["layout"]["xaxis"]["ticktext"] == [plots.CE_TICK, "1", "10"]
    accuracy = next(trace for trace in figure["data"] if trace["name"] == "task accuracy")
    assert values(accuracy["x"]) == [1.0, 10.0]
    assert all(std > 0 for std in values(accuracy["error_y"]["array"]))  # two seeds at each λ
    assert any("standard deviation" in caption.value and "n and seeds" in caption.value for caption in app.caption)


def test_the_lambda_sweep_opens_on_the_task_with_the_most_lambda_values(app, store):
    """Three seeds of one λ on fashion_mnist are one point; mnist has CE and two λ: the sweep opens on mnist."""
    for seed in (0, 1, 2):
        add_finished_run(store, objective="ldifs", lam=10.0, dataset="fashion_mnist", seed=seed)
    add_finished_run(store, objective="ce")
    for lam in (1.0, 10.0):
        add_finished_run(store, objective="ldifs", lam=lam)
    open_page(app, "runs")
    assert app.selectbox(key="sweep-task").value == "mnist"


def test_the_sweeps_first_task_breaks_ties_by_runs_then_name():
    points = pd.DataFrame({"objective": ["ldifs", "ldifs", "ldifs", "ldifs", "ldifs"], "λ": [1.0, 3.0, 1.0, 3.0, 3.0],
                           "dataset": ["b", "b", "c", "c", "c"], "run": list("12345")})
    assert tables.sweep_task(points, "ldifs") == "c"  # two λ each; c has more runs
    assert tables.sweep_task(points[points["run"] != "5"], "ldifs") == "b"  # a full tie: by name


def test_the_sweep_follows_its_regulariser_and_step_count_and_hides_without_one(app, sweeps):
    open_page(app, "runs")
    app.selectbox(key="sweep-objective").select("l2sp").run()
    assert app.selectbox(key="sweep-steps").value == 30
    ticks = sweep_figure(app)["layout"]["xaxis"]["ticktext"]
    assert ticks == ["1"]  # the CE runs have 20 steps, not 30: not this sweep's reference
    app.selectbox(key="filter-objective").select("ce").run()
    assert not app.exception and not any("against λ" in title for title in figures(app))
    assert TRADEOFF in figures(app)


# -- Learn: the precomputed λ grid --------------------------------------------------------------------------


def cell(task: str, lam: float, accuracy: float, forgetting: float, seeds=(0, 1, 2)) -> grid.GridCell:
    spread = lambda mean: grid.Spread(mean, 0.4 if len(seeds) > 1 else 0.0, len(seeds))
    concept = grid.ForgottenConcept("animals", "dog", 104, 55.8, 55.8 + forgetting, forgetting, 2.0,
                                    (forgetting - 9, forgetting + 9))
    return grid.GridCell(task, lam, tuple(seeds), tuple(f"run{s}" for s in seeds), 82.2, spread(accuracy),
                         spread(forgetting), spread(forgetting / 5), (concept,))


@pytest.fixture
def grid_file(tmp_path, monkeypatch):
    """A grid with every λ for mnist but only CE and λ = 10 (one seed so far) for fashion_mnist."""
    cells = [cell("mnist", lam, 95.3 - lam / 50, -10.0 / (1 + lam)) for lam in build.GRID_LAMBDAS]
    cells += [cell("fashion_mnist", 0.0, 83.4, -24.7), cell("fashion_mnist", 10.0, 82.3, -6.2, seeds=(0,))]
    missing = [grid.GridGap("fashion_mnist", lam, seed) for lam in (1.0, 3.0, 30.0, 100.0) for seed in (0, 1, 2)]
    path = tmp_path / "lambda_grid.json"
    grid.save_grid(grid.LambdaGrid("LabCLIP (test)", {"steps": 300}, build.GRID_TASKS, build.GRID_LAMBDAS,
                                   build.GRID_SEEDS, tuple(cells), tuple(missing)), path)
    monkeypatch.setattr(grid, "GRID_PATH", path)
    return path


def test_learn_lambda_slider_reads_the_grid_and_compares_with_ce(app, store, grid_file):
    open_page(app, "learn")
    assert not app.exception
    slider = app.select_slider(key="learn-lambda-mnist")
    assert slider.options == ["0 (CE)", "1", "3", "10", "30", "100"]
    slider.set_value(30.0).run()
    metrics = {metric.label: metric for metric in app.metric}
    accuracy = metrics["Accuracy on mnist"]
    assert accuracy.value == "94.7% ± 0.4" and "vs CE" in accuracy.delta
    assert metrics["Mean zero-shot change elsewhere"].value == "−0.3 ± 0.4 points"
    rings = [trace for trace in sweep_figure(app)["data"] if trace["name"] == "chosen λ = 30"]
    assert rings and values(rings[0]["x"]) == [30.0]
    concepts = app.dataframe[0].value
    assert concepts.iloc[0]["concept"] == "dog"
    assert not store.list()  # nothing was trained


def test_learn_lambda_grid_with_missing_lambdas_offers_only_the_finished_ones(app, grid_file):
    open_page(app, "learn")
    app.radio(key="learn-lambda-task").set_value("fashion_mnist").run()
    assert not app.exception
    assert app.select_slider(key="learn-lambda-fashion_mnist").options == ["0 (CE)", "10"]
    assert any("Not in the grid yet: λ = 1, 3, 30, 100" in caption.value for caption in app.caption)
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Accuracy on fashion_mnist"] == "82.3%"  # one seed: no ± to show
    assert any("A single seed (0) so far" in caption.value for caption in app.caption)


def test_learn_without_a_readable_grid_says_how_to_regenerate_it(app, grid_file):
    grid_file.write_text("{}")
    open_page(app, "learn")
    assert not app.exception
    assert any("regenerate it with" in warning.value for warning in app.warning)


def test_the_model_filter_and_the_sweep_model_choice_keep_models_apart(app, sweeps):
    open_page(app, "runs")
    app.selectbox(key="sweep-task").select("mnist").run()
    assert app.selectbox(key="sweep-model").options == ["ViT-B-32 (openai)", "embedded"]
    app.selectbox(key="sweep-model").select("ViT-B-32 (openai)").run()
    assert sweep_figure(app)["layout"]["xaxis"]["ticktext"] == ["3"]  # the embedded model's runs are not in it
    app.selectbox(key="filter-model").select("embedded").run()
    tradeoff = figures(app)[TRADEOFF]
    assert sum(len(values(trace["x"])) for trace in tradeoff["data"]) == 8  # every run but the zoo model's
    assert app.selectbox(key="sweep-model").options == ["embedded"]


def test_learn_with_a_grid_of_no_finished_runs_says_how_to_fill_it(app, grid_file):
    empty = grid.LambdaGrid("LabCLIP (test)", {"steps": 300}, build.GRID_TASKS, build.GRID_LAMBDAS, build.GRID_SEEDS,
                            (), (grid.GridGap("mnist", 0.0, 0),))
    grid.save_grid(empty, grid_file)
    open_page(app, "learn")
    assert not app.exception and not app.get("select_slider")
    assert any("holds no finished runs yet" in warning.value for warning in app.warning)
