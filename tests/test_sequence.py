"""Continual fine-tuning: stages chained through the store, the anchor of LDIFS, the forgetting matrix, cancelling,
resuming, and the `sequence` command. Tiny real runs on the embedded model."""
import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from ldifs_core.cli import main
from ldifs_core.config import RunConfig
from ldifs_core.datasets import load_split
from ldifs_core.errors import RunNotFound, RunUnreadable
from ldifs_core.models import load_model
from ldifs_core.runner import cached_model, execute
from ldifs_core.sequence import (NOT_RUN, ForgettingMatrix, SequenceConfig, find_sequence, plan_sequence,
                                 run_sequence, sequence_state)
from ldifs_core.sequence_records import create_sequence, read_sequence, sequence_ids
from ldifs_core.store import RunStore
from ldifs_core.train import finetune
from tests.recording_hooks import RecordingHooks

TINY = dict(steps=3, batch_size=16, eval_limit=100, probe_limit=10, umap_points=0, train_limit=200,
            eval_datasets=["animals"])
CLI_TINY = ["--steps", "3", "--batch-size", "16", "--eval-datasets", "animals", "--no-umap", "--train-limit", "200",
            "--eval-limit", "100", "--probe-limit", "10"]


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory):
    """mnist → fashion_mnist with LDIFS (anchor previous), animals never trained on."""
    store = RunStore(tmp_path_factory.mktemp("sequence"))
    seq = SequenceConfig(("mnist", "fashion_mnist"), "previous", RunConfig(objective="ldifs", **TINY))
    return store, run_sequence(store, plan_sequence(seq, store))


def visual_weights(store: RunStore, run_id: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(store.weights_path(run_id))).items() if k.startswith("clip.visual.")}


@pytest.mark.slow
def test_each_stage_is_an_ordinary_run_linked_to_its_sequence_and_the_stage_before(two_stages):
    store, state = two_stages
    assert state.status == "done" and [s.status for s in state.stages] == ["done", "done"]
    first, second = (store.get(s.run_id).config for s in state.stages)
    assert (first.dataset, first.stage, first.start_from) == ("mnist", 1, None)
    assert (second.dataset, second.stage, second.start_from) == ("fashion_mnist", 2, state.stages[0].run_id)
    assert first.sequence_id == second.sequence_id == state.sequence_id
    assert second.eval_datasets == ["mnist", "animals"]  # every other column of the matrix
    metrics = store.metrics(state.stages[1].run_id)
    assert {"downstream", "forgetting", "mean_zs_delta", "mean_lp_delta", "timings"} <= set(metrics)
    assert 0 < metrics["timings"]["sequence_s"] < metrics["timings"]["total_s"]  # its own work, timed apart


@pytest.mark.slow
def test_a_stage_starts_from_the_weights_the_stage_before_produced_not_from_theta0(two_stages):
    store, state = two_stages
    previous = state.stages[0].run_id
    # A step so small that the weights stay where the stage started.
    frozen_stage = RunConfig(dataset="fashion_mnist", objective="ce", start_from=previous, lr=1e-12,
                             **{**TINY, "steps": 1})
    started = visual_weights(store, execute(frozen_stage, store))
    before_stage, theta0 = visual_weights(store, previous), cached_model(None, None).clip.state_dict()
    for key, value in started.items():
        torch.testing.assert_close(value, before_stage[key], atol=1e-6, rtol=0)
    moved = sum((started[k].float() - theta0[k[len("clip."):]].float()).abs().max().item() for k in started)
    assert moved > 1e-3


def test_with_anchor_previous_ldifs_compares_to_the_start_of_the_stage_and_with_original_to_theta0():
    model = load_model().private_copy()
    start = copy.deepcopy(model.clip)  # stands for the previous stage's CLIP: moved away from θ₀
    with torch.no_grad():
        for p in start.visual.parameters():
            p.add_(0.02 * torch.randn_like(p))
    digits = load_split("mnist", "train").subset(64, seed=0)

    def first_step_ldifs(anchor: str) -> float:
        hooks = RecordingHooks()
        cfg = RunConfig(objective="ldifs", lam=10.0, anchor=anchor, **{**TINY, "steps": 1})
        finetune(cfg, model, digits, torch.device("cpu"), hooks, start=start)
        return hooks.events[0].parts["ldifs"]

    assert first_step_ldifs("previous") < 1e-9  # the stage starts where its anchor is
    assert first_step_ldifs("original") > 1e-3  # the distance from θ₀ the earlier stages built up


@pytest.mark.slow
def test_the_matrix_diagonal_is_each_stages_own_task_and_the_rest_its_checked_datasets(two_stages):
    store, state = two_stages
    matrix = state.matrix
    assert matrix.datasets == ("mnist", "fashion_mnist", "animals") and matrix.unseen == ["animals"]
    for k, stage in enumerate(state.stages):
        metrics = store.metrics(stage.run_id)
        own = matrix.column(stage.task)
        assert matrix.accuracy["zs"][k][own] == metrics["downstream"]["zero_shot_after"]
        assert matrix.accuracy["lp"][k][own] == metrics["stage_task"]["lp_after"]
        assert matrix.task_accuracy[k] == metrics["downstream"]["accuracy_after"]
        for report in metrics["forgetting"]:
            assert matrix.accuracy["lp"][k][matrix.column(report["dataset"])] == report["lp_after"]
    # every stage measures "before" on θ₀, so both stages agree on it
    second = store.metrics(state.stages[1].run_id)
    assert matrix.before["zs"][0] == second["forgetting"][0]["zs_before"]


def test_derived_numbers_follow_their_definitions():
    matrix = ForgettingMatrix(
        tasks=("a", "b", "c"), datasets=("a", "b", "c", "u"), n=(100,) * 4,
        before={"zs": [50, 50, 50, 80], "lp": [60, 60, 60, 90]},
        accuracy={"zs": [[90, 55, 40, 78], [80, 85, 45, 74], [70, 75, 95, 70]], "lp": [[0] * 4] * 3},
        ci={"zs": [], "lp": []}, task_accuracy=(95, 90, 97))
    assert matrix.avg_accuracy("zs") == [90, (80 + 85) / 2, (70 + 75 + 95) / 3]
    assert matrix.backward_transfer("zs") == ((70 - 90) + (75 - 85)) / 2
    assert matrix.unseen_delta("zs") == [-2, -6, -10]
    assert ForgettingMatrix.from_dict(matrix.to_dict()) == matrix


@pytest.mark.slow
def test_cancelling_mid_sequence_records_the_stages_left_as_cancelled_and_a_resume_reuses_the_finished_ones(
        tmp_path):
    store = RunStore(tmp_path)
    seq = SequenceConfig(("mnist", "fashion_mnist", "animals"), "previous", RunConfig(objective="ce", **TINY))
    sequence_id = plan_sequence(seq, store)
    state = run_sequence(store, sequence_id, hooks=RecordingHooks(stop_when=lambda hooks: len(hooks.stages) >= 2))
    assert [s.status for s in state.stages] == ["done", "cancelled", "cancelled"]
    assert state.stages[2].message == NOT_RUN.format(stage=2, task="fashion_mnist", status="cancelled")
    assert state.status == "cancelled" and state.message.startswith("Stage 2 (fashion_mnist) cancelled")
    assert len(state.matrix.accuracy["zs"]) == 1  # the finished stage's row is kept

    cancelled = state.stages[1].run_id
    resumed = run_sequence(store, sequence_id)
    assert resumed.status == "done"
    assert resumed.stages[0].run_id == state.stages[0].run_id  # reused, not run again
    assert resumed.stages[1].run_id != cancelled and store.get(cancelled).status == "cancelled"
    assert store.get(resumed.stages[2].run_id).config.start_from == resumed.stages[1].run_id
    assert sequence_state(store, sequence_id).matrix.backward_transfer("zs") is not None


@pytest.mark.slow
def test_sequence_command_end_to_end_writes_the_documented_json(store_dir, tmp_path, capsys):
    out = tmp_path / "sequence.json"
    assert main(["sequence", "--tasks", "mnist,fashion_mnist", "--objective", "ldifs", "--lam", "10", "--anchor",
                 "original", "--seed", "0", *CLI_TINY, "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["tasks"] == ["mnist", "fashion_mnist"] and summary["anchor"] == "original"
    assert summary["status"] == "done" and len(summary["stages"]) == 2
    matrix = summary["matrix"]
    assert matrix["datasets"] == ["mnist", "fashion_mnist", "animals"]
    assert [len(row) for row in matrix["zs"]] == [3, 3] and [len(row) for row in matrix["lp"]] == [3, 3]
    assert set(summary["avg_accuracy"]) == {"zs", "lp"} and len(summary["avg_accuracy"]["zs"]) == 2
    assert isinstance(summary["backward_transfer"]["lp"], float)
    assert len(summary["unseen_delta"]["zs"]) == 2
    printed = capsys.readouterr()
    assert summary["sequence_id"] in printed.out and "backward transfer" in printed.out
    assert "stage 2/2" in printed.err  # a progress bar per stage
    stages = RunStore(store_dir).list()
    assert {r.config.anchor for r in stages} == {"original"} and {r.config.lam for r in stages} == {10.0}


@pytest.mark.parametrize("tasks, says", [("mnist,fashion_mnist,mnist", "listed twice"),
                                         ("mnist", "at least two tasks"),
                                         ("mnist,no_such_set", "Unknown dataset 'no_such_set'")])
def test_bad_sequences_are_refused_with_one_line_before_anything_is_recorded(store_dir, capsys, tasks, says):
    assert main(["sequence", "--tasks", tasks, *CLI_TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]
    assert not store_dir.exists() or RunStore(store_dir).list() == []


def test_a_damaged_sequence_record_is_unreadable_and_a_foreign_id_is_not_found(tmp_path):
    store = RunStore(tmp_path)
    sequence_id = create_sequence(store, {"config": {}, "stages": []})
    assert sequence_ids(store) == [sequence_id]
    (tmp_path / "sequences" / f"{sequence_id}.json").write_text('{"config": {"tas')
    with pytest.raises(RunUnreadable, match="unreadable"):
        read_sequence(store, sequence_id)
    for foreign in ("seq-20260101-000000-abcdef", "../index.sqlite"):
        with pytest.raises(RunNotFound):
            read_sequence(store, foreign)


def test_a_recorded_sequence_is_found_again_after_a_default_it_does_not_read_changed(tmp_path):
    """A table resumes from its finished sequences even when, say, LoRA's default scale changed meanwhile."""
    store = RunStore(tmp_path)
    recorded = SequenceConfig(("mnist", "fashion_mnist"), "previous", RunConfig(objective="ldifs", lora_alpha=16.0))
    sequence_id = plan_sequence(recorded, store)
    same = SequenceConfig(("mnist", "fashion_mnist"), "previous", RunConfig(objective="ldifs", lora_alpha=64.0, lam=10))
    assert find_sequence(store, same) == sequence_id
    other = SequenceConfig(("mnist", "fashion_mnist"), "original", RunConfig(objective="ldifs"))
    assert find_sequence(store, other) is None


@pytest.mark.slow
def test_the_continual_tables_rows_name_the_sequence_they_come_from_even_when_just_made(tmp_path):
    from scripts.experiments import run_sequences

    store = RunStore(tmp_path)
    settings = {key: value for key, value in TINY.items() if key != "umap_points"}
    (row,) = run_sequences(store, ["mnist", "fashion_mnist"], [0], ["ce"], **settings)
    assert row["sequence_id"] in sequence_ids(store)
