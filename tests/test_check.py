"""`check`: a checkpoint fine-tuned elsewhere is evaluated and stored like a run the lab trained, whatever accepted
format it comes in; an identical copy shows no change; every bad input is refused before the store is touched."""
import json
import os
import subprocess
import sys
import time

import open_clip
import pytest
import torch
from open_clip.model import _build_vision_tower
from safetensors.torch import save_file

from ldifs_core.check import IDENTICAL_NOTE, check_config
from ldifs_core.checkpoints import IMAGE_TOWER, WHOLE_MODEL
from ldifs_core.cli import main
from ldifs_core.models import EMBEDDED_MODEL, load_model
from ldifs_core.paths import ASSETS_DIR
from ldifs_core.runner import execute
from ldifs_core.store import RunStore
from tests.conftest import perturbed_clip
from tests.recording_hooks import RecordingHooks

QUICK = ("--task", "mnist", "--datasets", "animals", "--eval-limit", "30", "--probe-limit", "2", "--probe-cap", "20",
         "--no-umap")


@pytest.fixture(scope="module")
def base():
    return load_model()


@pytest.fixture(scope="module")
def tuned_clip(base):
    """The embedded CLIP with its image tower moved far enough to forget (its text tower too, a little)."""
    return perturbed_clip(base.clip, image_tower=0.05, rest=0.01)


def saved(path, content):
    if path.suffix == ".safetensors":
        save_file({key: value.contiguous() for key, value in content.items()}, str(path))
    else:
        torch.save(content, path)
    return str(path)


FORMATS = {  # name: (file name, what is saved, what the run record says was found)
    "whole CLIP state dict": ("whole.pt", lambda clip: clip.state_dict(), WHOLE_MODEL),
    "image tower state dict": ("tower.pt", lambda clip: clip.visual.state_dict(), IMAGE_TOWER),
    "open_clip training checkpoint": ("epoch_3.pt", lambda clip: {
        "epoch": 3, "name": "my-finetune", "state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}},
        WHOLE_MODEL),
    "safetensors": ("tuned.safetensors", lambda clip: clip.state_dict(), WHOLE_MODEL),
}


def check(*argv) -> int:
    return main(["check", *argv])


def only_metrics(store_dir) -> dict:
    [record] = RunStore(store_dir).list()
    return RunStore(store_dir).metrics(record.run_id)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_perturbed_copy_in_every_accepted_format_shows_forgetting(fmt, tuned_clip, store_dir, tmp_path):
    name, content, found = FORMATS[fmt]
    assert check("--tuned", saved(tmp_path / name, content(tuned_clip)), *QUICK) == 0
    metrics = only_metrics(store_dir)
    assert metrics["config"]["objective"] == "checked"
    assert metrics["config"]["tuned"].endswith(name) and len(metrics["config"]["tuned_sha256"]) == 64
    assert metrics["checked"]["found"] == found and metrics["checked"]["identical"] is False
    assert metrics["checked"]["note"] == ""
    assert metrics["mean_zs_delta"] < 0 and metrics["mean_zs_delta_ci"][1] < 0  # surely forgotten
    assert metrics["timings"]["train_s"] == 0
    assert {"downstream", "forgetting", "stage_task"} <= metrics.keys()


def test_an_identical_copy_shows_every_change_0_with_intervals_around_it_and_a_note(base, store_dir, tmp_path,
                                                                                  capsys):
    assert check("--tuned", saved(tmp_path / "same.safetensors", base.clip.state_dict()), *QUICK,
                 "--datasets", "animals,fashion_mnist") == 0
    metrics = only_metrics(store_dir)
    assert metrics["checked"]["identical"] is True and metrics["checked"]["note"] == IDENTICAL_NOTE
    reports = [*metrics["forgetting"], metrics["stage_task"]]
    changes = [(r[f"{p}_delta"], r[f"{p}_delta_ci"]) for r in reports for p in ("zs", "lp")]
    changes += [(row["change"], row["change_ci"]) for r in reports for row in r["per_class"] + r["per_class_lp"]]
    changes += [(metrics[f"mean_{p}_delta"], metrics[f"mean_{p}_delta_ci"]) for p in ("zs", "lp")]
    changes.append((metrics["downstream"]["change"], metrics["downstream"]["change_ci"]))
    assert all(change == 0 and low <= 0 <= high for change, (low, high) in changes)
    assert all(distance == 0 for r in reports for distance in r["layer_distance"])

    capsys.readouterr()
    assert main(["show", metrics["run_id"]]) == 0
    assert IDENTICAL_NOTE in capsys.readouterr().out
    assert main(["export", metrics["run_id"], "--format", "csv"]) == 0
    assert main(["wise", metrics["run_id"], "--alphas", "0,1"]) == 0  # between the base and the tuned weights
    assert "α=1.00" in capsys.readouterr().out


def test_the_users_head_classifies_the_task_and_a_head_of_another_task_is_refused(tuned_clip, base, store_dir,
                                                                                  tmp_path, capsys):
    tuned = saved(tmp_path / "tuned.pt", tuned_clip.visual.state_dict())
    width = base.clip.visual.output_dim
    wrong = saved(tmp_path / "head5.pt", {"weight": torch.randn(5, width), "bias": torch.zeros(5)})
    assert check("--tuned", tuned, "--task", "mnist", "--head", wrong, *QUICK) == 2
    assert "has 5 classes, the task mnist has 10" in capsys.readouterr().err
    assert not RunStore(store_dir).list()

    head = saved(tmp_path / "head.pt", {"classifier.weight": torch.randn(10, width)})  # a bias is optional
    assert check("--tuned", tuned, "--task", "mnist", "--head", head, *QUICK) == 0
    metrics = only_metrics(store_dir)
    assert metrics["checked"]["head"].endswith("head.pt") and len(metrics["config"]["tuned_head_sha256"]) == 64
    assert metrics["downstream"]["accuracy_after"] != metrics["downstream"]["zero_shot_after"]  # its own head
    assert "with its head" in capsys.readouterr().out or main(["show", metrics["run_id"]]) == 0


def other_architecture(tmp_path, clip):
    """An image tower twice as wide as the embedded model's."""
    config = json.loads((ASSETS_DIR / "model" / f"{EMBEDDED_MODEL}.json").read_text())
    tower = _build_vision_tower(config["embed_dim"], {**config["vision_cfg"], "width": 64})
    return saved(tmp_path / "wide.pt", tower.state_dict())


def truncated(tmp_path, tuned_clip):
    path = tmp_path / "cut.pt"
    torch.save(tuned_clip.visual.state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    return str(path)


class Code:  # pickled as code: never run
    pass


BAD = {
    "another architecture": (other_architecture, "another architecture than"),
    "a truncated file": (truncated, "truncated or corrupt"),
    "pickled code": (lambda tmp_path, clip: saved(tmp_path / "code.pt", {"model": Code()}), "pickled objects"),
    "a text file": (lambda tmp_path, clip: (tmp_path / "notes.pt").write_text("hello") and str(tmp_path / "notes.pt"),
                    "not a checkpoint"),
    "a missing file": (lambda tmp_path, clip: str(tmp_path / "nowhere.pt"), "does not exist"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_tuned_files_are_refused_in_one_line_before_the_store_is_touched(case, tuned_clip, store_dir, tmp_path,
                                                                             capsys):
    make, words = BAD[case]
    path = make(tmp_path, tuned_clip)
    assert check("--tuned", path, *QUICK) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert not store_dir.exists() or not RunStore(store_dir).list()


def test_a_missing_head_file_is_refused(tuned_clip, store_dir, tmp_path, capsys):
    tuned = saved(tmp_path / "tuned.pt", tuned_clip.visual.state_dict())
    assert check("--tuned", tuned, "--head", str(tmp_path / "nohead.pt"), *QUICK) == 2
    assert "head file" in capsys.readouterr().err and not store_dir.exists()


@pytest.mark.slow
def test_a_check_of_vit_b_32_with_random_weights_at_224_px(tmp_path):
    """End to end in a fresh interpreter, as a user runs it: a ViT-B-32 base and a perturbed copy."""
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32")
    base = saved(tmp_path / "base.pt", clip.state_dict())
    with torch.no_grad():
        for parameter in clip.visual.parameters():
            parameter.add_(0.05 * parameter.std().nan_to_num(0) * torch.randn_like(parameter))
    tuned = saved(tmp_path / "tuned.safetensors", clip.state_dict())
    env = {**os.environ, "LDIFS_STORE": str(tmp_path / "runs")}
    started = time.perf_counter()
    ran = subprocess.run([sys.executable, "-m", "ldifs_core", "check", "--model", "ViT-B-32", "--base", base,
                          "--tuned", tuned, "--datasets", "animals", "--eval-limit", "50", "--probe-limit", "5", "--no-umap",
                          "--json", str(tmp_path / "m.json")], env=env, capture_output=True, text=True, timeout=1800)
    assert ran.returncode == 0, ran.stderr[-2000:]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["checked"]["found"] == WHOLE_MODEL and metrics["model"].startswith("ViT-B-32")
    print(f"check of ViT-B-32 (224 px, 50 test images, 5 per class): {time.perf_counter() - started:.0f} s")


def test_a_checks_evaluation_progress_knows_its_whole_work_from_its_first_record(tuned_clip, store_dir, tmp_path):
    """A check measures its task again as a checked dataset, last. That work is planned from the start, so the
    totals and the ETA hold still (a ViT-B-32 check's total grew from 21,660 to 25,660 images near its end)."""
    hooks = RecordingHooks()
    cfg = check_config(None, None, saved(tmp_path / "whole.pt", tuned_clip.state_dict()), "mnist", ["animals"],
                       eval_limit=30, probe_limit=2, probe_cap=20, umap_points=0)
    execute(cfg, RunStore(), hooks=hooks)
    evaluating = [p for p in hooks.progresses if p.phase == "evaluating"]
    assert {(p.images_to_encode, p.datasets_total, p.probes_total) for p in evaluating} == {
        (evaluating[-1].images_encoded, 3, evaluating[-1].probes_fitted)}
    assert [p.dataset for p in evaluating if p.datasets_done == 0][0] == "mnist" and evaluating[-1].datasets_done == 3


def test_a_check_without_a_task_has_no_task_row_and_checks_every_dataset_named(tuned_clip, store_dir, tmp_path,
                                                                               capsys):
    """The task is optional: left out, no dataset stands in for it, and every command reads the run."""
    tuned = saved(tmp_path / "whole.pt", tuned_clip.state_dict())
    assert check("--tuned", tuned, *QUICK[4:], "--datasets", "animals,mnist") == 0
    metrics = only_metrics(store_dir)
    assert metrics["config"]["dataset"] is None
    assert "downstream" not in metrics and "stage_task" not in metrics
    assert [report["dataset"] for report in metrics["forgetting"]] == ["animals", "mnist"]
    assert metrics["mean_zs_delta"] < 0
    run_id = metrics["run_id"]
    capsys.readouterr()
    for command in (["show", run_id], ["list"], ["export", run_id, "--format", "csv"],
                    ["report", run_id, "-o", str(tmp_path / "report.html")], ["wise", run_id, "--alphas", "0,1"]):
        assert main(command) == 0, command
    out = capsys.readouterr().out
    assert "no task" in out and "α=1.00" in out
    assert "mnist" in (tmp_path / "report.html").read_text()
