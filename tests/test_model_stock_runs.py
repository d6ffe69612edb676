"""Model Stock as a run (ldifs_core/merging.py): two finished runs of the same settings merged, evaluated like a
trained run and stored as one, offered by `python -m ldifs_core model-stock RUN_A RUN_B`; bad input is refused with
a message that says what to pick instead, before anything is recorded."""
import json

import pytest
from safetensors.torch import load_file

from ldifs_core import cli
from ldifs_core.config import RunConfig
from ldifs_core.merging import RATIOS_FILE, partners
from ldifs_core.runner import execute
from ldifs_core.store import RunStore

TINY = dict(steps=2, batch_size=16, eval_limit=100, probe_limit=10, umap_points=0, train_limit=200,
            eval_datasets=["animals"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same ce run twice (seed 0), one with another learning rate, and one that kept no weights."""
    store = RunStore(tmp_path_factory.mktemp("merging") / "runs")
    ids = {name: execute(RunConfig(objective="ce", **{**TINY, **extra}), store) for name, extra in (
        ("first", {}), ("again", {}), ("other_lr", {"lr": 1e-3, "seed": 1}),
        ("no_weights", {"save_weights": False, "seed": 2}))}
    return store, ids


def model_stock(store: RunStore, *run_ids: str) -> tuple[int, str]:
    return cli.main(["model-stock", *run_ids, "--store", str(store.root)])


def test_model_stock_of_two_identical_runs_is_that_run_stored_as_a_run_of_its_own(runs, capsys):
    store, ids = runs
    assert model_stock(store, ids["first"], ids["again"]) == 0
    (merged,) = [record for record in store.list() if record.config.objective == "model_stock"]
    assert merged.status == "done" and f"run {merged.run_id}" in capsys.readouterr().out
    assert merged.config.model_stock_runs == f"{ids['first']},{ids['again']}"
    ours, theirs = store.metrics(merged.run_id), store.metrics(ids["first"])
    for key in ("downstream", "forgetting", "mean_zs_delta", "mean_lp_delta"):
        assert ours[key] == theirs[key], key
    assert load_file(str(store.weights_path(merged.run_id))).keys() == load_file(
        str(store.weights_path(ids["first"]))).keys()
    ratios = json.loads((store.run_folder(merged.run_id) / RATIOS_FILE).read_text())
    assert ratios["runs"] == [ids["first"], ids["again"]]
    assert all(t == pytest.approx(1.0, abs=1e-12) for t in ratios["t"].values())

    assert model_stock(store, ids["again"], ids["first"]) == 0  # the same merge is found, not made again
    assert sum(record.config.objective == "model_stock" for record in store.list()) == 1
    assert cli.main(["show", merged.run_id, "--store", str(store.root)]) == 0
    assert "model_stock" in capsys.readouterr().out


def test_the_runs_page_offers_as_partners_only_finished_runs_of_the_same_settings_with_weights(runs):
    store, ids = runs
    finished = [record for record in store.list() if record.status == "done"]
    first = store.get(ids["first"])
    assert [record.run_id for record in partners(first, finished)] == [ids["again"]]


@pytest.mark.parametrize("pick, says", [
    (("first", "first"), "was given twice"),
    (("first", "other_lr"), "differ in more than the seed (lr 0.0005 vs 0.001)"),
    (("first", "no_weights"), "kept no weights"),
    (("first", "queued"), "is queued"),
    (("first", "nowhere"), "nowhere"),
])
def test_bad_pairs_are_refused_with_one_line_before_anything_is_recorded(runs, capsys, pick, says):
    store, ids = runs
    ids = {**ids, "queued": ids.get("queued") or store.create(RunConfig(objective="ce", **TINY)), "nowhere": "nowhere"}
    runs[1]["queued"] = ids["queued"]
    before = len(store.list())
    assert model_stock(store, *(ids[name] for name in pick)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1
    assert len(store.list()) == before
