"""Forgetting over training: the curve a run measures while it trains, and that it never changes the run."""
import json

import open_clip
import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from app import plots
from ldifs_core.cli import main
from ldifs_core.config import RunConfig
from ldifs_core.curve import CurveMeter, curve_every
from ldifs_core.curve_records import Curve, CurvePoint, joined
from ldifs_core.datasets import load_split
from ldifs_core.metrics import RunMetrics
from ldifs_core.models import FoundationModel
from ldifs_core.report import run_report
from ldifs_core.runner import execute
from ldifs_core.store import RunStore
from ldifs_core.train import finetune
from tests.recording_hooks import RecordingHooks

TINY = dict(steps=4, batch_size=16, eval_limit=120, probe_limit=12, umap_points=0, train_limit=200,
            eval_datasets=["animals"])


@pytest.mark.slow
def test_a_run_measures_the_task_and_each_checked_dataset_every_k_steps_on_n_images(store_dir, capsys):
    """... and `show`, the HTML report and the app's figure draw it."""
    hooks = RecordingHooks()
    run_id = execute(RunConfig(objective="ce", curve_points=2, curve_images=30, **TINY), RunStore(), hooks=hooks)
    metrics = RunStore().metrics(run_id)
    curve = RunMetrics.from_json(metrics).curve
    assert (curve.task, curve.every, curve.n) == ("mnist", 2, {"mnist": 30, "animals": 30})
    assert [point.step for point in curve.points] == [0, 2, 4]
    assert all(set(point.accuracy) == {"mnist", "animals"} for point in curve.points)
    assert [len(heard.points) for heard in hooks.curves] == [1, 2, 3]  # heard live, after each point
    assert hooks.curves[-1] == curve
    json.dumps(metrics)
    assert main(["show", run_id]) == 0
    shown = capsys.readouterr().out
    assert "Forgetting over training" in shown and "mnist (task) n=30" in shown and "animals n=30" in shown
    assert "Forgetting over training" in run_report(RunStore(), [run_id])


def test_the_figure_draws_a_line_per_dataset_with_n_the_task_highlighted_and_stage_boundaries():
    curve = Curve("animals", 5, {"mnist": 10, "animals": 20},
                  [CurvePoint(0, {"mnist": 10.0, "animals": 50.0}), CurvePoint(10, {"mnist": 90.0, "animals": 40.0}),
                   CurvePoint(20, {"mnist": 60.0, "animals": 80.0})], stage_starts=[10])
    fig = plots.forgetting_curve(curve)
    mnist, animals = fig.data
    assert (mnist.name, animals.name) == ("mnist, n = 10", "animals (task), n = 20")
    assert list(animals.x) == [0, 10, 20] and list(animals.y) == [50.0, 40.0, 80.0]
    assert animals.line.width > mnist.line.width
    assert [shape.x0 for shape in fig.layout.shapes] == [10]


@pytest.mark.slow
def test_the_curve_never_changes_the_final_metrics(store_dir):
    """Same seed with the curve on or off: the same numbers (augmentation draws from the training generator)."""
    store = RunStore()
    settings = dict(TINY, objective="ldifs", augment=True)
    on = store.metrics(execute(RunConfig(curve_points=4, curve_images=20, **settings), store))
    off = store.metrics(execute(RunConfig(curve_points=0, **settings), store))
    assert "curve" in on and "curve" not in off
    for key in ("downstream", "forgetting", "mean_zs_delta", "mean_lp_delta"):
        assert on[key] == off[key]


@pytest.mark.slow
def test_measuring_a_batchnorm_tower_keeps_its_statistics_and_its_training_mode():
    """A ModifiedResNet tuned with bn="train": the curve's evaluation (eval mode) must not move the running
    statistics, so the tuned weights are exactly those of a run without the curve."""
    torch.manual_seed(0)
    clip = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=(1, 1, 1, 1), width=8, image_size=64, head_width=8),
                text_cfg=CLIPTextCfg(width=16, heads=2, layers=1))
    base = FoundationModel(clip.eval().requires_grad_(False), open_clip.get_tokenizer("RN50"), "RN-tiny", "random",
                           64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    train = load_split("mnist", "train").subset(64, seed=0)
    cfg = RunConfig(objective="ce", bn="train", curve_points=3, curve_images=16, **dict(TINY, steps=3))
    checked = {"animals": load_split("animals", "test").subset(40, seed=0)}
    modes = []

    class ModeWatch(RecordingHooks):
        def weights(self, step, clip):
            modes.append(clip.visual.training)

    meter = CurveMeter(cfg, base, load_split("mnist", "test").subset(40, seed=0), checked, ModeWatch())
    measured = finetune(cfg, base, train, torch.device("cpu"), meter).clip.visual.state_dict()
    plain = finetune(cfg, base, train, torch.device("cpu")).clip.visual.state_dict()
    assert all(torch.equal(measured[key], plain[key]) for key in plain)
    assert modes == [True] * 4 and len(meter.measured.points) == 4


def test_points_come_every_steps_over_points_steps_and_at_the_last():
    assert curve_every(300, 20) == 15 and curve_every(10, 20) == 1 and curve_every(7, 2) == 4


def test_a_run_stored_without_a_curve_reads_as_having_none(tmp_path):
    from pathlib import Path

    stored = json.loads((Path(__file__).parent / "fixtures" / "metrics_v2.json").read_text())
    stored.pop("curve", None)
    assert RunMetrics.from_json(stored).curve is None
    curve = Curve("mnist", 2, {"mnist": 30}, [CurvePoint(0, {"mnist": 50.0})])
    assert RunMetrics.from_json({**stored, "curve": curve.to_json()}).curve == curve


def test_a_sequence_curve_runs_across_its_stages_with_their_boundaries():
    first = Curve("mnist", 5, {"mnist": 10, "animals": 10},
                  [CurvePoint(0, {"mnist": 10.0, "animals": 50.0}), CurvePoint(10, {"mnist": 90.0, "animals": 40.0})])
    second = Curve("animals", 5, {"animals": 10, "mnist": 10},
                   [CurvePoint(0, {"animals": 40.0, "mnist": 90.0}), CurvePoint(10, {"animals": 80.0, "mnist": 60.0})])
    curve = joined([first, None, second])
    assert [point.step for point in curve.points] == [0, 10, 10, 20] and curve.stage_starts == [10]
    assert curve.line("mnist") == ([0, 10, 10, 20], [10.0, 90.0, 90.0, 60.0]) and curve.task == "animals"
    assert joined([None]) is None


def test_the_compact_table_names_n_and_marks_the_task():
    curve = Curve("mnist", 1, {"mnist": 200, "animals": 150},
                  [CurvePoint(step, {"mnist": float(step), "animals": 50.0}) for step in range(20)])
    header, *rows = curve.table(width=5)
    assert header == ["step", "mnist (task) n=200", "animals n=150"]
    assert [row[0] for row in rows] == ["0", "5", "10", "14", "19"]
