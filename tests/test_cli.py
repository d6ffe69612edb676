"""The CLI, called in-process through main(argv): tiny real runs end to end, and every bad input refused with one
line and exit code 2 before any work starts."""
import csv
import io
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from ldifs_core.cli import main
from ldifs_core.config import RunConfig
from ldifs_core.export import COLUMNS
from ldifs_core.store import RunStore
from tests.app.sample_runs import small_metrics

PROJECT = Path(__file__).resolve().parent.parent
TINY = ["--steps", "3", "--batch-size", "16", "--eval-datasets", "animals", "--no-umap", "--train-limit", "200",
        "--eval-limit", "100", "--probe-limit", "10"]


def run_cli(*argv):
    return main(list(argv))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


# -- tiny real runs --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_writes_the_documented_metrics_json_lists_shows_and_exports_it(store_dir, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert run_cli("run", "--dataset", "mnist", "--objective", "ldifs", "--lam", "5", *TINY, "--json", str(out)) == 0
    metrics = json.loads(out.read_text())
    assert metrics["config"]["objective"] == "ldifs" and metrics["config"]["lam"] == 5
    assert metrics["schema_version"] == 2
    assert {"run_id", "status", "downstream", "forgetting", "mean_zs_delta", "mean_lp_delta", "timings"} <= set(metrics)
    assert metrics["run_id"] in capsys.readouterr().out

    assert run_cli("list") == 0
    assert metrics["run_id"] in capsys.readouterr().out
    assert run_cli("show", metrics["run_id"], "--json") == 0
    assert json.loads(capsys.readouterr().out) == metrics

    assert run_cli("export", metrics["run_id"], "--format", "csv") == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == ",".join(COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["role"], r["dataset"]) for r in rows} == {("downstream", "mnist"), ("forgetting", "animals"), ("mean", "")}
    zebra = [r for r in rows if r["class_name"] == "zebra"]
    assert [r["probe"] for r in zebra] == ["zs", "lp"]
    assert all(int(r["n"]) > 0 and float(r["change_ci_low"]) <= float(r["change"]) <= float(r["change_ci_high"])
               for r in zebra)


@pytest.mark.slow
def test_a_sweep_records_a_diverging_run_goes_on_and_reports_every_run(store_dir, tmp_path, capsys):
    """λ = 1e300 overflows to infinity in float32: the loss is not a number at the first step."""
    out = tmp_path / "sweep.json"
    assert run_cli("sweep", "--objectives", "ldifs", "--lams", "1e300,1", *TINY, "--json", str(out)) == 1

    failed, finished = json.loads(out.read_text())
    assert failed["status"] == "failed" and failed["config"]["lam"] == 1e300
    assert "loss" in failed["message"]
    assert finished["status"] == "done" and finished["config"]["lam"] == 1.0 and "downstream" in finished
    table = capsys.readouterr().out.split("Sweep: ")[1]
    assert "2 of 2 runs, 1 done, 1 not done" in table
    assert failed["run_id"] in table and finished["run_id"] in table and failed["message"][:40] in table
    statuses = {r.run_id: r.status for r in RunStore(store_dir).list()}
    assert statuses == {failed["run_id"]: "failed", finished["run_id"]: "done"}


# -- bad input: refused before any work --------------------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["sweep", "--lams", "1,x"], "--lams: 'x' is not a number"),
    (["sweep", "--lams", "1,inf"], "--lams: 'inf' is not a finite number"),
    (["sweep", "--seeds", "0,y"], "--seeds: 'y' is not a whole number"),
    (["sweep", "--seeds", "0,1.5"], "--seeds: '1.5' is not a whole number"),
    (["sweep", "--seeds", f"0,{2**70}"], f"--seeds: '{2**70}' is outside the seed range 0..4294967295"),
    (["sweep", "--seeds", ""], "--seeds is empty"),
    (["sweep", "--seeds", "0,,1"], "has an empty item"),
    (["sweep", "--objectives", "ce,bogus"], "--objectives: 'bogus' is not an objective"),
    (["sweep", "--objectives", "ce,flyp", "--lams", "1,10"],
     "--lams applies to ldifs, l2sp, lipsum, zscl, fda, spd only"),
    (["sweep", "--eval-datasets", "mnist"], "no dataset is left to check for forgetting"),
    (["run", "--seed", str(2**70)], "seed must be between 0 and 4294967295"),
    (["run", "--seed", "-1"], "seed must be between 0 and 4294967295"),
    (["run", "--eval-datasets", ""], "--eval-datasets is empty"),
    (["run", "--eval-datasets", " , "], "--eval-datasets is empty"),
    (["run", "--dataset", "mnist", "--eval-datasets", "mnist"], "no dataset is left to check for forgetting"),
    (["run", "--objective", "ce", "--lam", "5"], "λ is only used by ldifs and l2sp"),
    (["run", "--objective", "lp", "--lam", "0"], "λ is only used by ldifs and l2sp"),
    (["run", "--objective", "ldifs", "--lam", "nan"], "λ must be at least 0 (or empty for the objective's default)"),
    (["run", "--precompute-frozen", "--augment"], "precomputed frozen features cannot follow random augmentation"),
    (["run", "--batch-size", "500", "--train-limit", "100"], "batch size 500 is larger than the fine-tuning pool"),
    (["run", "--steps", "0"], "steps must be"),
    (["run", "--steps", "x"], "argument --steps: invalid int value: 'x'"),
    (["run", "--train-limit", "lots"], "argument --train-limit: invalid limit value: 'lots'"),
    (["run", "--bn", "sometimes"], "argument --bn: invalid choice"),
    (["run", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["list", "--objective", "bogus"], "argument --objective: invalid choice: 'bogus'"),
    (["wise", "20250101-000000-abcdef", "--alphas", "0,a"], "--alphas: 'a' is not a number"),
    (["wise", "20250101-000000-abcdef", "--alphas", "0,1.5"], "--alphas: '1.5' is outside 0..1"),
    (["wise", "20250101-000000-abcdef", "--alphas", "-0.5"], "--alphas: '-0.5' is outside 0..1"),
    ([], "the following arguments are required"),
])
def test_bad_input_exits_2_with_one_line_before_any_run_is_recorded(store_dir, capsys, argv, words):
    assert run_cli(*argv) == 2
    assert words in one_error_line(capsys)
    assert not store_dir.exists() or RunStore(store_dir).list() == []


@pytest.mark.parametrize("spelling", ["F/", "./F", "absolute"])
def test_the_task_spelt_another_way_is_not_a_dataset_to_check_for_forgetting(store_dir, tmp_path, capsys,
                                                                            monkeypatch, spelling):
    (tmp_path / "F").mkdir()
    monkeypatch.chdir(tmp_path)
    task = str(tmp_path / "F") if spelling == "absolute" else spelling
    assert run_cli("run", "--dataset", "F", "--eval-datasets", task) == 2
    assert "no dataset is left to check for forgetting" in one_error_line(capsys)
    assert not store_dir.exists() or RunStore(store_dir).list() == []


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_output_file_in_a_missing_folder_is_refused_before_training(store_dir, tmp_path, capsys, command):
    assert run_cli(command, "--json", str(tmp_path / "no-such-folder" / "m.json")) == 2
    assert "no-such-folder does not exist; create it first" in one_error_line(capsys)
    assert run_cli(command, "--json", str(tmp_path)) == 2
    assert "is a folder: give a file name" in one_error_line(capsys)
    assert not store_dir.exists() or RunStore(store_dir).list() == []


def test_an_unwritable_output_file_is_refused_before_training(store_dir, tmp_path, capsys, monkeypatch):
    target = tmp_path / "metrics.json"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode))
    assert run_cli("run", "--json", str(target)) == 2
    assert "cannot be written here (permission denied)" in one_error_line(capsys)


@pytest.mark.parametrize("command", [["run"], ["sweep"], ["list"], ["show", "20250101-000000-abcdef"]])
def test_a_store_that_is_a_file_is_refused_with_what_to_do(tmp_path, capsys, command):
    not_a_folder = tmp_path / "runs.txt"
    not_a_folder.write_text("notes")
    assert run_cli(*command, "--store", str(not_a_folder)) == 2
    line = one_error_line(capsys)
    assert "is a file, not a folder" in line and "--store" in line
    assert not_a_folder.read_text() == "notes"


def test_an_index_that_is_not_a_database_is_kept_aside_and_rebuilt_with_a_warning(tmp_path, capsys):
    (tmp_path / "index.sqlite").write_bytes(b"\x00garbage" * 100)
    assert run_cli("list", "--store", str(tmp_path)) == 0
    printed = capsys.readouterr()
    assert printed.err.startswith("warning: ") and "kept as index.sqlite.corrupt-" in printed.err
    assert "No runs yet" in printed.out


@pytest.mark.parametrize("argv", [
    ["run", "--dataset", "nope"],
    ["run", "--eval-datasets", "animals,nope"],
    ["sweep", "--objectives", "ce", "--eval-datasets", "nope"],
])
def test_an_unknown_dataset_is_refused_before_any_run_is_recorded(store_dir, capsys, argv):
    assert run_cli(*argv) == 2
    assert "Unknown dataset 'nope'" in one_error_line(capsys)
    assert RunStore(store_dir).list() == []


def write_images(folder: Path, count: int, suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for i in range(count):
        from PIL import Image

        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}{suffix}")


def bad_folder(tmp_path: Path, kind: str) -> str:
    """A folder the lab cannot use, made in tmp_path."""
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "flat":
        write_images(folder, 5)
    elif kind == "one-class":
        write_images(folder / "cat", 40)
    elif kind == "not-images":
        for cls in ("cat", "dog"):
            (folder / cls).mkdir()
            (folder / cls / "notes.txt").write_text("not a picture")
    elif kind == "corrupt":
        for cls in ("cat", "dog"):
            (folder / cls).mkdir()
            for i in range(40):
                (folder / cls / f"{i}.png").write_bytes(b"\x89PNG broken" + bytes(i))
    elif kind == "train-only":
        for cls in ("cat", "dog"):
            write_images(folder / "train" / cls, 40)
    elif kind == "too-small":
        for cls in ("cat", "dog"):
            write_images(folder / cls, 4)
    return str(folder)


def bad_checkpoint(tmp_path: Path, kind: str) -> str:
    from ldifs_core.models import EMBEDDED_CHECKPOINT

    path = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        path = tmp_path / "truncated.safetensors"
        data = EMBEDDED_CHECKPOINT.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "truncated-zip":
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "pickled":
        torch.save({"w": torch.zeros(2), "code": multiprocessing.Queue}, path)
    elif kind == "image":
        write_images(tmp_path / "pics", 1)
        path = tmp_path / "pics" / "0.png"
    elif kind == "folder":
        path = tmp_path / "weights"
        path.mkdir()
    return str(path)


EMBEDDED = ["--model", "LabCLIP-ViT-28-p7"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("argv, words", [
    (["run", "--dataset", "{empty}"], "has no class sub-folders with images"),
    (["run", "--dataset", "{flat}"], "5 images directly, not in class sub-folders"),
    (["run", "--dataset", "{one-class}"], "only one class (“cat”)"),
    (["run", "--dataset", "{not-images}"], "has no class sub-folders with images"),
    (["run", "--dataset", "{corrupt}"], "could be read as an image"),
    (["run", "--dataset", "{train-only}"], "has a train/ folder but no test/ folder"),
    (["run", "--dataset", "{too-small}"], "fewer than the batch size 64"),
    (["run", "--eval-datasets", "animals,{one-class}"], "only one class (“cat”)"),
    (["run", "--eval-datasets", "{corrupt}"], "could be read as an image"),
    (["sweep", "--objectives", "ce", "--dataset", "{flat}"], "not in class sub-folders"),
    (["sequence", "--tasks", "mnist,{one-class}"], "only one class (“cat”)"),
    (["sequence", "--tasks", "mnist,fashion_mnist", "--eval-datasets", "{corrupt}"], "could be read as an image"),
    (["run", "--dataset", "cifar10", "--data-root", "{empty}"], "CIFAR-10 has no files in"),
    (["run", "--eval-datasets", "svhn", "--data-root", "{empty}"], "--download"),
    pytest.param(["run", "--device", "cuda"], "no CUDA GPU is visible here", marks=NO_CUDA),
    (["run", "--device", "tpu"], "Unknown device 'tpu'. Use auto, cpu, cuda or mps"),
    (["sweep", "--device", "tpu"], "Unknown device 'tpu'"),
    (["run", "--model", "NoSuchModel"], "Unknown open_clip model 'NoSuchModel'"),
    (["run", "--model", "ViT-B-33", "--pretrained", "openai"], "Did you mean ViT-B-32"),
    (["run", "--model", "vit-b-32"], "Did you mean ViT-B-32"),
    (["run", "--model", "ViT-B-32", "--pretrained", "no_such_tag"], "unknown tag 'no_such_tag' of ViT-B-32"),
    (["run", "--model", "ViT-B-32", "--pretrained", "no_such_tag"], "Known tags: openai"),
    (["run", "--model", "ViT-B-32"], "Known tags: openai"),
    (["run", *EMBEDDED, "--pretrained", "/no/such/file.pt"], "Checkpoint file '/no/such/file.pt' does not exist"),
    (["run", *EMBEDDED, "--pretrained", "[folder]"], "is a folder. Give the checkpoint file inside it"),
    (["run", *EMBEDDED, "--pretrained", "[truncated]"], "looks truncated or corrupt"),
    (["run", *EMBEDDED, "--pretrained", "[truncated-zip]"], "looks truncated or corrupt"),
    (["run", *EMBEDDED, "--pretrained", "[pickled]"], "holds pickled objects"),
    (["run", *EMBEDDED, "--pretrained", "[image]"], "is not a checkpoint: it is a PNG image"),
    (["sequence", "--tasks", "mnist,animals", *EMBEDDED, "--pretrained", "[pickled]"], "holds pickled objects"),
    (["run", "--ldifs-taps", "99"], "ldifs_taps 99 is more than the 4 blocks"),
    (["sweep", "--ldifs-taps", "4,99"], "ldifs_taps 99 is more than the 4 blocks"),
    (["run", "--dataset", ""], "The dataset name is empty"),
    (["run", "--weight-decay", "nan"], "weight_decay must be at least 0"),
    (["run", "--weight-decay", "inf"], "weight_decay must be at least 0"),
    (["run", "--grad-clip", "nan"], "grad_clip must be above 0"),
    (["run", "--grad-clip", "inf"], "grad_clip must be above 0"),
])
def test_input_that_cannot_run_is_refused_with_what_to_do_before_anything_is_stored(store_dir, tmp_path, capsys,
                                                                                  argv, words):
    """Folders, devices, models and checkpoints are checked before the store is touched (issue 20 items 5, 18, 19):
    what used to become a failed run after seconds of loading is now one line and exit code 2."""
    made = lambda match: (bad_folder if match[0][0] == "{" else bad_checkpoint)(tmp_path, match[1])
    argv = [re.sub(r"[{\[]([a-z-]+)[}\]]", made, item) for item in argv]
    assert run_cli(*argv) == 2
    assert words in one_error_line(capsys)
    assert not store_dir.exists() or (RunStore(store_dir).list() == [] and not (store_dir / "sequences").exists())


def test_export_of_an_unknown_sequence_says_where_sequence_ids_come_from(store_dir, capsys):
    assert run_cli("export", "seq-20250101-000000-abcdef") == 2
    line = one_error_line(capsys)
    assert "No sequence 'seq-20250101-000000-abcdef'" in line
    assert "`python -m ldifs_core sequence` prints the id of each sequence it runs" in line


def test_a_tap_count_beyond_the_tower_is_refused_where_taps_are_chosen(small_vit):
    from ldifs_core.ldifs import tap_modules

    with pytest.raises(ValueError, match="ldifs_taps 5 is more than the 4 blocks"):
        tap_modules(small_vit, 5)


# -- runs that cannot be read, and runs that cannot be mixed -------------------------------------------------


def finished_run(store: RunStore, weights: bool = True) -> str:
    run_id = store.create(RunConfig(objective="ce"))
    store.finish(run_id, small_metrics(run_id=run_id), history=[{"step": 1, "loss": 1.0}],
                 weights={"head.weight": torch.zeros(2, 4), "head.bias": torch.zeros(2)} if weights else None)
    return run_id


@pytest.fixture
def store(store_dir) -> RunStore:
    return RunStore(store_dir)


def test_list_show_and_export_say_which_run_is_unreadable_and_keep_the_others(store, capsys):
    good, bad = finished_run(store), finished_run(store)
    (store.root / bad / "metrics.json").write_text("{truncated")

    assert run_cli("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(good in line and "done" in line for line in lines)
    (bad_line,) = [line for line in lines if bad in line]
    assert "unreadable: metrics.json is corrupt" in bad_line

    assert run_cli("show", bad) == 0
    assert capsys.readouterr().out.startswith(f"Run {bad}: unreadable: metrics.json is corrupt")
    assert run_cli("show", bad, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "unreadable" and shown["message"].startswith("unreadable: metrics.json is corrupt")

    assert run_cli("export", bad, "--format", "csv") == 2
    assert one_error_line(capsys).startswith("error: unreadable: metrics.json is corrupt")
    assert run_cli("export", good, "--format", "csv") == 0
    assert capsys.readouterr().out.startswith(",".join(COLUMNS))


WRONG_SHAPES = {"downstream": {}, "forgetting": [1, "x"], "config": "str"}


@pytest.mark.parametrize("key", list(WRONG_SHAPES))
def test_a_metrics_json_of_the_wrong_shape_is_listed_as_unreadable_and_refused_in_one_line(store, tmp_path, capsys,
                                                                                          key):
    """Valid JSON, wrong shape (issue 20 item 20): never a traceback, and the other runs stay usable."""
    good, bad = finished_run(store), finished_run(store)
    path = store.root / bad / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), key: WRONG_SHAPES[key]}))

    assert run_cli("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(good in line and "done" in line for line in lines)
    (bad_line,) = [line for line in lines if bad in line]
    assert "unreadable: metrics.json" in bad_line and key in bad_line

    assert run_cli("export", bad, "--format", "csv") == 2
    assert one_error_line(capsys).startswith("error: unreadable: metrics.json")
    assert run_cli("report", bad, "-o", str(tmp_path / "r.html")) == 2
    assert key in one_error_line(capsys) and not (tmp_path / "r.html").exists()
    assert run_cli("report", good, bad, "-o", str(tmp_path / "r.html")) == 2
    assert one_error_line(capsys).startswith("error: unreadable: metrics.json")
    assert run_cli("export", good, "--format", "csv") == 0
    assert capsys.readouterr().out.startswith(",".join(COLUMNS))


def test_list_says_when_no_run_matches_a_filter(store, capsys):
    assert run_cli("list") == 0
    assert capsys.readouterr().out.startswith("No runs yet.")
    finished_run(store)
    assert run_cli("list", "--dataset", "svhn") == 0
    assert capsys.readouterr().out.strip() == "No runs match --dataset svhn."
    assert run_cli("list", "--objective", "ldifs", "--status", "done") == 0
    assert capsys.readouterr().out.strip() == "No runs match --objective ldifs --status done."


@pytest.mark.parametrize("argv", [["list"], ["show", "RUN"], ["show", "RUN", "--json"]])
def test_list_and_show_into_a_pipe_closed_early_exit_quietly(store, argv):
    """`list | head`: the reader stops reading; the lab stops writing, with no traceback."""
    for _ in range(3):
        run_id = finished_run(store)
    command = [sys.executable, "-m", "ldifs_core", *(run_id if arg == "RUN" else arg for arg in argv)]
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before it writes a line: a reader that has read enough
    err = process.stderr.read().decode()
    assert (process.wait(timeout=120), err) == (141, "")  # 128 + SIGPIPE, as a shell reports a stopped writer


def test_show_prints_a_readable_summary_and_the_full_metrics_with_json(store, capsys):
    run_id = finished_run(store)
    metrics = store.metrics(run_id)
    assert run_cli("show", run_id) == 0
    out = capsys.readouterr().out
    assert len(out) < 2000 and not out.lstrip().startswith("{")
    lines = out.splitlines()
    assert lines[0] == f"Run {run_id}: done"
    assert RunConfig(objective="ce").describe() in lines[1]
    down = metrics["downstream"]
    (task,) = [line for line in lines if line.startswith("Task mnist")]
    assert f"n = {down['n']}" in task and f"{down['zero_shot_before']:.1f} %" in task
    assert f"{down['accuracy_after']:.1f} %" in task and f"{down['change']:+.1f}" in task
    (animals,) = [line for line in lines if line.split()[:1] == ["animals"]]
    forgetting = metrics["forgetting"][0]
    assert animals.split()[1] == "40"
    for probe in ("zs", "lp"):
        low, high = forgetting[f"{probe}_delta_ci"]
        assert f"{forgetting[f'{probe}_delta']:+.1f} [{low:+.1f}, {high:+.1f}]" in animals
    assert any(line.split()[:1] == ["mean"] for line in lines)
    assert f"{store.root / run_id}" in out and "weights.safetensors" in out
    assert f"show {run_id} --json" in out

    assert run_cli("show", run_id, "--json") == 0
    assert json.loads(capsys.readouterr().out) == metrics


def test_show_of_a_run_without_results_says_its_status_and_why(store, capsys):
    run_id = store.create(RunConfig(objective="ce", dataset="svhn"))
    store.set_status(run_id, "failed", "the data folder is empty")
    assert run_cli("show", run_id) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Run {run_id}: failed: the data folder is empty"
    assert RunConfig(objective="ce", dataset="svhn").describe() in lines[1]
    assert run_cli("show", run_id, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["message"]) == ("failed", "the data folder is empty")


def test_export_writes_the_file_it_is_given(store, tmp_path, capsys):
    run_id = finished_run(store)
    assert run_cli("export", run_id, "--format", "csv", "--out", str(tmp_path / "m.csv")) == 0
    assert (tmp_path / "m.csv").read_text().startswith(",".join(COLUMNS))
    assert run_cli("export", run_id, "--out", str(tmp_path / "missing" / "m.json")) == 2
    assert "missing does not exist" in one_error_line(capsys)


def test_wise_of_a_run_that_did_not_finish_says_so(store, capsys):
    failed = store.create(RunConfig())
    store.fail(failed, "failed", "Out of memory.")
    running = store.create(RunConfig(), status="running")
    assert run_cli("wise", failed) == 2
    line = one_error_line(capsys)
    assert f"Run {failed} is failed (Out of memory.)" in line and "save_weights" not in line
    assert run_cli("wise", running) == 2
    assert f"Run {running} is running" in one_error_line(capsys)


def test_wise_of_a_run_without_weights_or_with_a_replaced_weights_file_says_so(store, capsys):
    no_weights = finished_run(store, weights=False)
    assert run_cli("wise", no_weights) == 2
    assert "kept no weights" in one_error_line(capsys)

    replaced = finished_run(store)
    (store.root / replaced / "weights.safetensors").write_text("not the weights")
    assert run_cli("wise", replaced) == 2
    assert one_error_line(capsys).startswith("error: unreadable: weights.safetensors is corrupt")

    unreadable = finished_run(store)
    (store.root / unreadable / "metrics.json").unlink()
    assert run_cli("wise", unreadable) == 2
    assert one_error_line(capsys).startswith("error: unreadable: metrics.json is missing")


def test_settings_from_another_version_are_a_one_line_warning(store, capsys):
    import sqlite3
    from contextlib import closing

    run_id = finished_run(store)
    with closing(sqlite3.connect(store.root / "index.sqlite")) as db, db:
        db.execute("UPDATE runs SET config = ? WHERE run_id = ?",
                   (json.dumps({**RunConfig(objective="ce").to_dict(), "future_knob": 1}), run_id))
    assert run_cli("list") == 0
    captured = capsys.readouterr()
    assert run_id in captured.out
    assert captured.err.strip() == f"warning: Run {run_id} has settings from another version, ignored here: future_knob."


# -- a store this user may only read -----------------------------------------------------------------------


@pytest.fixture
def read_only_store():
    """A finished run in a store that the CLI process may not write (run as nobody when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="ldifs-cli-"))
    folder.chmod(0o755)
    root = folder / "runs"
    store = RunStore(root)
    run_id = finished_run(store)
    for path in (root, *root.rglob("*")):
        path.chmod(0o555 if path.is_dir() else 0o444)
    yield root, run_id
    for path in (folder, *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(folder)


def cli_as_reader(*argv: str) -> tuple[int, str, str]:
    """main(argv) as a user who may not write the store: as nobody in a forked child when the tests run as root
    (root may write anything); returns (exit code, stdout, stderr)."""
    if os.geteuid() != 0:
        return _captured_main(argv)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_main_as_nobody, args=(argv, queue))
    child.start()
    result = queue.get(timeout=120)
    child.join(timeout=60)
    return result


def _main_as_nobody(argv, queue) -> None:
    os.setgid(65534)
    os.setuid(65534)
    queue.put(_captured_main(argv))


def _captured_main(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_a_read_only_store_can_be_listed_shown_and_exported(read_only_store, tmp_path):
    root, run_id = read_only_store
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}

    code, out, err = cli_as_reader("list", "--store", str(root))
    assert (code, err) == (0, "") and run_id in out and "done" in out
    code, out, err = cli_as_reader("show", run_id, "--json", "--store", str(root))
    assert (code, err) == (0, "") and json.loads(out)["run_id"] == run_id
    code, out, err = cli_as_reader("export", run_id, "--format", "csv", "--store", str(root))
    assert (code, err) == (0, "") and out.startswith(",".join(COLUMNS))
    code, out, err = cli_as_reader("run", "--store", str(root))
    assert code == 2 and err.startswith(f"error: The run store {root} is read-only here") and err.count("\n") == 1

    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before
