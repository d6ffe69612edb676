"""The CLI end to end on a tiny run, called in-process through main(argv)."""
import csv
import io
import json

import pytest

from ldifs_core.cli import main

TINY = ["--steps", "3", "--batch-size", "16", "--eval-datasets", "animals", "--no-umap", "--train-limit", "200",
        "--eval-limit", "100", "--probe-limit", "100"]


def run_cli(*argv):
    return main(list(argv))


def test_run_writes_the_documented_metrics_json_and_lists_it(store_dir, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert run_cli("run", "--dataset", "mnist", "--objective", "ldifs", "--lam", "5", *TINY, "--json", str(out)) == 0
    metrics = json.loads(out.read_text())
    assert metrics["config"]["objective"] == "ldifs" and metrics["config"]["lam"] == 5
    assert {"run_id", "status", "downstream", "forgetting", "mean_zs_delta", "mean_lp_delta", "timings"} <= set(metrics)
    assert metrics["run_id"] in capsys.readouterr().out

    assert run_cli("list") == 0
    assert metrics["run_id"] in capsys.readouterr().out
    assert run_cli("show", metrics["run_id"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == metrics["run_id"]

    assert run_cli("export", metrics["run_id"], "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["dataset"] for r in rows} == {"mnist", "animals"}
    assert any(r["class_name"] == "zebra" for r in rows)


def test_sweep_runs_every_objective_and_lambda(store_dir, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    assert run_cli("sweep", "--objectives", "ce,ldifs", "--lams", "1,10", *TINY, "--json", str(out)) == 0
    results = json.loads(out.read_text())
    assert sorted((r["config"]["objective"], r["config"]["lam"]) for r in results) == [
        ("ce", None), ("ldifs", 1.0), ("ldifs", 10.0)]


@pytest.mark.parametrize("argv, words", [
    (["run", "--dataset", "nope"], "Unknown dataset 'nope'"),
    (["run", "--steps", "0"], "steps must be"),
    (["run", "--model", "ViT-Nope", "--pretrained", "x"], "Unknown open_clip model"),
    (["run", "--pretrained", "/no/such/file.pt", "--model", "LabCLIP-ViT-28-p7"], "does not exist"),
    (["show", "20990101-000000-abcdef"], "No run"),
])
def test_bad_input_exits_nonzero_with_a_one_line_reason(store_dir, capsys, argv, words):
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and words in err[-1]
