"""Run hooks: one object hears a run's steps and progress and stops it; evaluation reports its progress too."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ldifs_core.cli import main
from ldifs_core.config import RunConfig
from ldifs_core.hooks import Progress, TrainEvent
from ldifs_core.runner import execute
from ldifs_core.store import RunRecord, RunStore
from tests.recording_hooks import RecordingHooks

TINY = dict(steps=3, batch_size=16, eval_limit=100, probe_limit=10, umap_points=0, train_limit=200,
            eval_datasets=["animals"], save_weights=False)
CLI_TINY = ["--steps", "3", "--batch-size", "16", "--eval-datasets", "animals", "--no-umap", "--train-limit", "200",
            "--eval-limit", "100", "--probe-limit", "10"]


def test_the_progress_record_keeps_the_stores_keys_and_leaves_out_what_does_not_apply():
    event = TrainEvent(5, 300, 1.2, {"ce": 1.0, "ldifs": 0.2}, 1e-5, 64.0, 20.0)
    stored = Progress.training(event).to_dict()
    assert stored == {"phase": "training", "step": 5, "total_steps": 300, "loss": 1.2,
                      "parts": {"ce": 1.0, "ldifs": 0.2}, "eta_s": 20.0, "images_per_s": 64.0}
    assert Progress.from_dict({**stored, "from_a_later_version": 1}) == Progress.training(event)
    assert Progress.from_dict({}).phase == "loading"
    assert event.history_row() == {"step": 5, "loss": 1.2, "ce": 1.0, "ldifs": 0.2, "lr": 1e-5, "images_per_s": 64.0}


@pytest.mark.parametrize("step, kept", [(4, False), (5, True), (7, True)])
def test_training_steps_are_recorded_every_few_steps_and_the_last_always(step, kept):
    assert Progress("training", step=step, total_steps=7).worth_recording() is kept
    assert Progress("evaluating").worth_recording() and Progress("loading").worth_recording()


@pytest.mark.slow
def test_a_runs_progress_goes_through_evaluation_dataset_by_dataset_with_images_probes_and_an_eta(store_dir):
    hooks = RecordingHooks()
    store = RunStore()
    run_id = execute(RunConfig(**TINY), store, hooks=hooks)
    assert store.get(run_id).status == "done"
    assert [p.step for p in hooks.progresses if p.phase == "training"] == [1, 2, 3]
    evaluating = [p for p in hooks.progresses if p.phase == "evaluating"]
    assert [p.dataset for p in evaluating][0] == "mnist" and evaluating[-1].dataset == "animals"
    metrics = store.metrics(run_id)
    (animals,) = metrics["forgetting"]
    planned = 2 * metrics["downstream"]["n"] + 2 * (animals["test_images"] + animals["probe_images"])
    assert {(p.images_to_encode, p.datasets_total, p.probes_total) for p in evaluating} == {(planned, 2, 2)}
    encoded = [p.images_encoded for p in evaluating]
    assert encoded == sorted(encoded) and encoded[-1] == planned and 0 < encoded[len(encoded) // 2] < planned
    assert [p.probes_fitted for p in evaluating if p.dataset == "animals"][-1] == 2
    assert all(p.eta_s is not None and p.eta_s >= 0 for p in evaluating if p.images_encoded)
    assert all((p.step, p.total_steps) == (3, 3) for p in evaluating)  # after the last step, as before
    assert store.get(run_id).progress == evaluating[-1].to_dict()  # the store kept the last one


@pytest.mark.slow
def test_the_cli_shows_evaluation_progress_after_training(store_dir, capsys):
    assert main(["run", *CLI_TINY]) == 0
    err = capsys.readouterr().err
    assert "evaluating mnist (1/2)" in err and "evaluating animals (2/2)" in err
    assert "probes 2/2" in err and "img" in err


def test_the_run_card_says_which_dataset_is_measured_how_far_and_how_long_it_has_left():
    from app.widgets import progress_bar

    progress = Progress("evaluating", step=3, total_steps=3, dataset="animals", datasets_done=1, datasets_total=2,
                        images_encoded=300, images_to_encode=1200, probes_fitted=1, probes_total=2, eta_s=95.0)
    card = RunRecord("r", RunConfig(steps=3), "running", "", 0.0, 0.0, progress.to_dict(), {})
    fraction, text = progress_bar(card)
    assert fraction == pytest.approx(0.25)
    assert text.startswith("Measuring forgetting: animals (dataset 2 of 2) · 300 / 1,200 images encoded · "
                           "1 of 2 probes fitted · about ")
    assert "Cancel stops it before the next dataset" in text
    node = progress_bar(replace(card, progress={**progress.to_dict(), "node": "node-a"}))[1]
    assert node.endswith("on node-a")
