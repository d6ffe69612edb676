"""The CSV export: one row per dataset and probe and one per concept, each number with its n and 95 % interval."""
import csv
import io
from dataclasses import replace

import numpy as np
import pytest

from ldifs_core import stats
from ldifs_core.export import COLUMNS, metrics_csv, metrics_rows
from ldifs_core.metrics import ClassRow, RunMetrics, TaskReport
from tests.app.sample_runs import small_metrics

RNG = np.random.default_rng(0)


def flags(n: int, p: float) -> np.ndarray:
    return RNG.random(n) < p


def class_rows(spec: dict[str, tuple[int, float, float]]) -> list[ClassRow]:
    """Concept rows as the report builds them: name -> (test images, accuracy before, after)."""
    before, after, labels = [], [], []
    for label, (n, p_before, p_after) in enumerate(spec.values()):
        before.append(flags(n, p_before))
        after.append(flags(n, p_after))
        labels.append(np.full(n, label))
    rows = stats.class_rows(np.concatenate(before), np.concatenate(after), np.concatenate(labels), list(spec))
    return [ClassRow(**row) for row in rows]


def dataset_numbers(prefix: str, rows: list[ClassRow]) -> dict:
    """The dataset-level fields of one probe, from the same images as its class rows."""
    n = sum(r.n for r in rows)
    before = sum(r.before * r.n for r in rows) / n
    after = sum(r.after * r.n for r in rows) / n
    return {f"{prefix}_before": before, f"{prefix}_before_ci": [before - 3.004, before + 2.996],
            f"{prefix}_after": after, f"{prefix}_after_ci": [after - 2.5, after + 2.5],
            f"{prefix}_delta": after - before, f"{prefix}_delta_ci": [after - before - 4.0, after - before + 4.0]}


@pytest.fixture(scope="module")
def metrics() -> dict:
    task_rows = class_rows({"zero": (80, 0.5, 0.99), "one": (90, 0.4, 0.97)})
    zs_rows = class_rows({
        "cat": (1, 1.0, 0.0),  # -100 points on one image: a wide interval
        "dog": (200, 0.9, 0.3),  # -60 points on 200 images: surely forgotten
        "owl": (150, 0.6, 0.62),
    })
    lp_rows = class_rows({"cat": (1, 1.0, 1.0), "dog": (200, 0.95, 0.9), "owl": (150, 0.7, 0.7)})
    record = RunMetrics.from_json(small_metrics(run_id="20250101-000000-abcdef"))
    checked = replace(record.forgetting[0], dataset="animals", n=351, test_images=351, probe_images=1000,
                      **dataset_numbers("zs", zs_rows), **dataset_numbers("lp", lp_rows), per_class=zs_rows,
                      per_class_lp=lp_rows)
    task = TaskReport(dataset="mnist", n=170, zero_shot_before=44.7059, zero_shot_before_ci=[37.42, 52.2],
                      accuracy_after=98.2353, accuracy_after_ci=[94.95, 99.4], change=53.5294, change_ci=[45.8, 60.9],
                      zero_shot_after=20.0, zero_shot_after_ci=[14.7, 26.6], per_class=task_rows)
    return replace(record, downstream=task, forgetting=[checked], mean_zs_delta=-35.123,
                   mean_zs_delta_ci=[-40.0, -30.004], mean_lp_delta=-2.5, mean_lp_delta_ci=[-4.2, -0.8]).to_json()


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_has_the_documented_columns_and_one_row_per_dataset_probe_and_concept(metrics):
    text = metrics_csv(metrics)
    assert text.splitlines()[0] == ",".join(COLUMNS)
    assert COLUMNS == ["run_id", "role", "dataset", "probe", "class_name", "label", "n",
                       "before", "before_ci_low", "before_ci_high", "after", "after_ci_low", "after_ci_high",
                       "change", "change_ci_low", "change_ci_high"]
    rows = read_csv(text)
    blocks = [(r["role"], r["dataset"], r["probe"], r["class_name"] != "") for r in rows]
    assert blocks == [
        ("downstream", "mnist", "tuned", False), ("downstream", "mnist", "tuned", True),
        ("downstream", "mnist", "tuned", True), ("downstream", "mnist", "zs", False),
        ("forgetting", "animals", "zs", False), *[("forgetting", "animals", "zs", True)] * 3,
        ("forgetting", "animals", "lp", False), *[("forgetting", "animals", "lp", True)] * 3,
        ("mean", "", "zs", False), ("mean", "", "lp", False),
    ]
    assert {r["run_id"] for r in rows} == {metrics["run_id"]}


def test_dataset_rows_carry_n_the_accuracies_and_their_intervals_rounded_to_2_decimals(metrics):
    rows = read_csv(metrics_csv(metrics))
    task = rows[0]
    assert task["n"] == "170"
    assert (task["before"], task["before_ci_low"], task["before_ci_high"]) == ("44.71", "37.42", "52.2")
    assert (task["after"], task["after_ci_low"], task["after_ci_high"]) == ("98.24", "94.95", "99.4")
    assert (task["change"], task["change_ci_low"], task["change_ci_high"]) == ("53.53", "45.8", "60.9")
    task_zero_shot = rows[3]
    assert (task_zero_shot["before"], task_zero_shot["after"], task_zero_shot["after_ci_high"]) == ("44.71", "20.0",
                                                                                                   "26.6")
    assert task_zero_shot["change"] == "-24.71" and task_zero_shot["change_ci_low"] == ""  # no paired interval stored

    report = metrics["forgetting"][0]
    zs = next(r for r in rows if r["role"] == "forgetting" and r["probe"] == "zs" and not r["class_name"])
    assert zs["n"] == "351"
    assert float(zs["before"]) == round(report["zs_before"], 2)
    assert float(zs["before_ci_low"]) == round(report["zs_before_ci"][0], 2)
    assert float(zs["change"]) == round(report["zs_delta"], 2)
    assert float(zs["change_ci_high"]) == round(report["zs_delta_ci"][1], 2)

    mean_zs = rows[-2]
    assert (mean_zs["before"], mean_zs["n"]) == ("", "")
    assert (mean_zs["change"], mean_zs["change_ci_low"], mean_zs["change_ci_high"]) == ("-35.12", "-40.0", "-30.0")


def test_concept_rows_come_in_the_forgotten_ranking_which_accounts_for_n(metrics):
    rows = read_csv(metrics_csv(metrics))
    zs = [r for r in rows if r["probe"] == "zs" and r["dataset"] == "animals" and r["class_name"]]
    ranked = stats.rank_forgotten(metrics["forgetting"][0]["per_class"])
    assert [r["class_name"] for r in zs] == [r["class_name"] for r in ranked]
    assert [r["class_name"] for r in zs][:2] == ["dog", "cat"]  # 200 images at -60 before 1 image at -100
    cat = next(r for r in zs if r["class_name"] == "cat")
    assert (cat["n"], cat["label"], cat["before"], cat["after"], cat["change"]) == ("1", "0", "100.0", "0.0", "-100.0")
    assert float(cat["change_ci_high"]) > 0 > float(next(r for r in zs if r["class_name"] == "dog")["change_ci_high"])


def test_every_class_row_matches_its_json_row(metrics):
    rows = metrics_rows(metrics)
    sources = {("downstream", "tuned"): metrics["downstream"]["per_class"],
               ("forgetting", "zs"): metrics["forgetting"][0]["per_class"],
               ("forgetting", "lp"): metrics["forgetting"][0]["per_class_lp"]}
    for (role, probe), json_rows in sources.items():
        by_name = {r["class_name"]: r for r in json_rows}
        exported = [r for r in rows if (r["role"], r["probe"]) == (role, probe) and r["class_name"]]
        assert len(exported) == len(json_rows)
        for row in exported:
            source = by_name[row["class_name"]]
            assert row["n"] == source["n"] and row["label"] == source["label"]
            for key in ("before", "after", "change"):
                assert row[key] == round(source[key], 2)
                assert [row[f"{key}_ci_low"], row[f"{key}_ci_high"]] == [round(x, 2) for x in source[f"{key}_ci"]]


def test_not_a_number_is_written_as_an_empty_cell(metrics):
    odd = {**metrics, "mean_lp_delta": float("nan"), "mean_lp_delta_ci": [float("nan"), float("nan")]}
    assert read_csv(metrics_csv(odd))[-1]["change"] == ""
