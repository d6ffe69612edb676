"""The science table's bookkeeping: which stored run counts as a grid point, and how rows become the table."""
import json

from scripts import experiments


def test_table_of_saved_rows_shows_spread_over_seeds_and_a_single_seed_alone(tmp_path, capsys):
    row = lambda seed, method, acc: {"dataset": "mnist", "seed": seed, "method": method, "accuracy_after": acc,
                                     "zero_shot_before": 82.0, "mean_zs_delta": -1.0, "mean_lp_delta": 0.0}
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([row(0, "ce", 95.0), row(1, "ce", 96.0), row(0, "lora", 92.0), row(1, "lora", 99.0)]))
    assert experiments.main(["--table", str(path), "--datasets", "mnist", "--seeds", "0,1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if line.startswith("| ce |")).startswith("| ce | 95.5 ± 0.7 |")
    assert experiments.main(["--table", str(path), "--datasets", "mnist", "--seeds", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if line.startswith("| lora |")).startswith("| lora | 92.0 | -1.0 | 0.0 |")
