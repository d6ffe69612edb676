"""The Learn page's precomputed λ grid: which stored runs fill a cell, how seeds are summarised, which concepts
count as most forgotten, and a file that says how to regenerate it when it cannot be read."""
import json
from dataclasses import replace

import pytest

from ldifs_core import lambda_grid as grid
from ldifs_core.errors import LambdaGridUnreadable
from ldifs_core.store import RunStore
from scripts import experiments
from scripts import lambda_grid as build
from tests.app.sample_runs import sample_metrics

BANK = ("mnist", "fashion_mnist", "animals")
TINY = dict(steps=2, batch_size=16, train_limit=64, eval_limit=20, probe_limit=2, probe_cap=20, save_weights=False,
            eval_datasets=["animals"])


def add_grid_run(store: RunStore, task: str, lam: float, seed: int, **settings) -> str:
    """A finished run with exactly the grid's settings (fabricated metrics: CE forgets more, λ helps)."""
    cfg = build.grid_config(task, lam, seed, **settings)
    run_id = store.create(cfg, status="running")
    checked = replace(cfg, eval_datasets=[d for d in BANK if d != task])
    store.finish(run_id, sample_metrics(checked, run_id))
    return run_id


@pytest.fixture
def store(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "runs")
    for seed in (0, 1, 2):
        add_grid_run(store, "mnist", 0.0, seed)
        add_grid_run(store, "mnist", 10.0, seed)
    add_grid_run(store, "fashion_mnist", 10.0, 0)
    add_grid_run(store, "mnist", 3.0, 0, steps=20)  # other settings: not a grid run
    return store


def test_without_training_the_grid_holds_the_finished_cells_and_lists_the_missing_ones(store):
    result = build.build_grid(store, ["mnist", "fashion_mnist"], [0.0, 3.0, 10.0], [0, 1, 2], train=False)
    assert [(c.task, c.lam, c.seeds) for c in result.cells] == [
        ("mnist", 0.0, (0, 1, 2)), ("mnist", 10.0, (0, 1, 2)), ("fashion_mnist", 10.0, (0,))]
    assert {(g.task, g.lam) for g in result.missing} == {("mnist", 3.0), ("fashion_mnist", 0.0),
                                                         ("fashion_mnist", 3.0), ("fashion_mnist", 10.0)}
    assert len(result.missing) == 3 + 3 + 3 + 2
    assert result.missing_lambdas("fashion_mnist") == (0.0, 3.0)
    assert len(store.list()) == 8  # nothing was trained


def test_a_cell_is_the_mean_and_std_over_its_seeds_and_ce_is_lambda_zero(store):
    result = build.build_grid(store, ["mnist"], [0.0, 10.0], [0, 1, 2], train=False)
    ce, ldifs = result.cells_for("mnist")
    assert ce.is_ce and not ldifs.is_ce
    assert {store.get(run_id).config.objective for run_id in ce.run_ids} == {"ce"}
    zs = [store.metrics(run_id)["mean_zs_delta"] for run_id in ce.run_ids]
    assert ce.zs_delta == grid.Spread.of(zs) and ce.zs_delta.n == 3 and ce.zs_delta.std > 0
    assert ldifs.zs_delta.mean > ce.zs_delta.mean  # the sample runs forget less with λ = 10
    assert grid.Spread.of([4.0]) == grid.Spread(4.0, 0.0, 1)  # a single seed has no spread


def test_most_forgotten_concepts_lost_accuracy_on_average_and_are_ranked_by_how_sure_the_loss_is():
    row = lambda name, n, before, after, high: {"class_name": name, "n": n, "before": before, "after": after,
                                                "change": after - before, "change_ci": [after - before - 10, high]}
    run = lambda rows: {"forgetting": [{"dataset": "animals", "per_class": rows}]}
    runs = [run([row("dog", 100, 60.0, 30.0, -20.0), row("cat", 2, 100.0, 0.0, 5.0), row("cow", 90, 70.0, 75.0, 12.0)]),
            run([row("dog", 100, 60.0, 40.0, -10.0), row("cat", 2, 100.0, 50.0, 20.0), row("cow", 90, 70.0, 72.0, 9.)])]
    dog, cat = build.most_forgotten("animals", runs, top=5)
    assert (dog.class_name, dog.n, dog.before, dog.after, dog.change, dog.change_ci[1]) == ("dog", 100, 60.0, 35.0,
                                                                                           -25.0, -15.0)
    assert round(dog.change_std, 3) == 7.071
    assert cat.class_name == "cat" and cat.change == -75.0  # a bigger fall on 2 images, but far less sure


def test_the_grid_file_round_trips_and_a_foreign_file_says_how_to_regenerate_it(store, tmp_path):
    path = tmp_path / "grid.json"
    assert experiments.main(["--lambda-grid", "--no-train", "--store", str(store.root), "--datasets", "mnist",
                             "--lambdas", "0,10", "--out", str(path)]) == 0
    loaded = grid.load_grid(path)
    assert [c.lam for c in loaded.cells_for("mnist")] == [0.0, 10.0] and loaded.settings["steps"] == 300
    assert loaded.settings == build.shared_settings(build.grid_config("mnist", 0.0, 0))  # exact: lr 5e-4, not 0.001
    assert loaded.cells_for("mnist")[0].forgotten  # the sample CE runs lose concepts
    data = json.loads(path.read_text())
    for broken in ({**data, "version": 99}, {**data, "cells": [{**data["cells"][0], "seeds": [0]}]}, ["not a grid"]):
        path.write_text(json.dumps(broken))
        with pytest.raises(LambdaGridUnreadable, match="regenerate it with `python -m scripts.experiments"):
            grid.load_grid(path)
    with pytest.raises(LambdaGridUnreadable, match="No λ grid"):
        grid.load_grid(tmp_path / "absent.json")


def test_bad_lambdas_on_the_command_line_are_refused_in_one_line(store, capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiments.main(["--lambda-grid", "--store", str(store.root), "--lambdas", "0,-1"])
    assert exit_info.value.code == 2 and "give λ values >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_with_training_the_missing_runs_are_trained_and_the_finished_ones_reused(tmp_path):
    store = RunStore(tmp_path / "runs")
    reused = add_grid_run(store, "mnist", 0.0, 0, **TINY)
    result = build.build_grid(store, ["mnist"], [0.0, 1.0], [0], **TINY)
    ce, ldifs = result.cells_for("mnist")
    assert ce.run_ids == (reused,) and not result.missing
    trained = store.get(ldifs.run_ids[0])
    assert (trained.status, trained.config.objective, trained.config.lam) == ("done", "ldifs", 1.0)


def test_the_shipped_grid_loads_and_holds_ce_for_both_science_tasks():
    shipped = grid.load_grid()
    assert shipped.tasks == build.GRID_TASKS and shipped.lambdas == build.GRID_LAMBDAS
    for task in build.GRID_TASKS:
        assert shipped.cells_for(task)[0].is_ce
