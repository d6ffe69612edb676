"""The concept gallery shows exactly the images a concept lost (or gained), with the stored predictions; the HTML
report is one self-contained file (plotly.js once, inline; figures' data; thumbnails as PNG data URIs) that the
CLI writes for finished runs and refuses, in one line, for anything else."""
import base64
import gzip
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from plotly.offline import get_plotlyjs

from ldifs_core import gallery, metrics_tables
from ldifs_core.cli import main
from ldifs_core.config import RunConfig
from ldifs_core.image_records import thumbnail_of
from ldifs_core.report import html_report, load_runs, run_report
from ldifs_core.store import RunStore
from tests.app.sample_runs import add_finished_run

TINY = dict(steps=6, batch_size=16, lr=2e-3, eval_limit=120, probe_limit=12, umap_points=0, train_limit=200,
            eval_datasets=["fashion_mnist"])
CHECKED = "fashion_mnist"
TASK = "mnist"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from ldifs_core.runner import execute

    store = RunStore(tmp_path_factory.mktemp("store"))
    execute(RunConfig(objective="ce", **TINY), store)
    add_finished_run(store, records="none")  # a run made before per-image records existed (sample_runs.py)
    return store


@pytest.fixture(scope="module")
def real(store):
    run_id = next(record.run_id for record in store.list() if "eval_labels/mnist" in store.arrays(record.run_id))
    return run_id, store.metrics(run_id), store.arrays(run_id)


@pytest.fixture(scope="module")
def old(store):
    return next(record.run_id for record in store.list() if "eval_labels/mnist" not in store.arrays(record.run_id))


def flips_by_concept(metrics, arrays, dataset, probe, direction):
    return {concept: gallery.flipped_examples(arrays, metrics, dataset, concept, probe, direction, limit=1000)
            for concept in metrics_tables.class_changes(metrics, dataset, probe)["class_name"]}


@pytest.mark.slow
@pytest.mark.parametrize("probe", ["zs", "lp"])
def test_became_wrong_is_every_image_of_the_concept_right_before_and_wrong_after(real, probe):
    _, metrics, arrays = real
    labels = arrays[f"eval_labels/{CHECKED}"]
    before, after = arrays[f"pred_{probe}_before/{CHECKED}"], arrays[f"pred_{probe}_after/{CHECKED}"]
    names = arrays[f"class_names/{CHECKED}"]
    flips = flips_by_concept(metrics, arrays, CHECKED, probe, gallery.BECAME_WRONG)
    assert sum(f.total for f in flips.values()) > 0, "the tiny run should lose some images (lr is high on purpose)"
    for concept, found in flips.items():
        label = found.row["label"]
        expected = np.flatnonzero((labels == label) & (before == label) & (after != label))
        assert [image.position for image in found.examples] == expected.tolist() and found.total == len(expected)
        for image in found.examples:
            assert image.true_class == concept == names[label]
            assert image.predicted_before == concept and image.predicted_after == names[after[image.position]]
            assert np.array_equal(image.thumbnail, thumbnail_of(arrays, CHECKED, image.position))


@pytest.mark.slow
def test_lost_minus_gained_images_is_the_concepts_reported_change(real):
    _, metrics, arrays = real
    lost = flips_by_concept(metrics, arrays, CHECKED, "zs", gallery.BECAME_WRONG)
    gained = flips_by_concept(metrics, arrays, CHECKED, "zs", gallery.BECAME_RIGHT)
    for concept, row in ((c, f.row) for c, f in lost.items()):
        assert gained[concept].total - lost[concept].total == round(row["change"] * row["n"] / 100)


@pytest.mark.slow
def test_the_tasks_zero_shot_choice_reads_the_tuned_classifier(real):
    _, metrics, arrays = real
    gained = flips_by_concept(metrics, arrays, TASK, "zs", gallery.BECAME_RIGHT)
    labels, tuned = arrays[f"eval_labels/{TASK}"], arrays[f"pred_tuned_after/{TASK}"]
    assert sum(f.total for f in gained.values()) > 0
    for found in gained.values():
        for image in found.examples:
            assert tuned[image.position] == labels[image.position] != arrays[f"pred_tuned_before/{TASK}"][image.position]
    with pytest.raises(ValueError, match="no linear probe records"):
        gallery.record_probe(metrics, TASK, "lp")


@pytest.mark.slow
def test_a_run_without_records_has_no_gallery(store, old):
    arrays = store.arrays(old)
    assert not gallery.has_image_records(arrays, CHECKED)


def test_crisp_scales_by_a_whole_factor_with_nearest_neighbours():
    small = np.arange(28 * 28 * 3, dtype=np.uint8).reshape(28, 28, 3)
    big = gallery.crisp(small)
    assert big.shape == (84, 84, 3)
    assert np.array_equal(big[::3, ::3], small) and np.array_equal(big[2::3, 1::3], small)
    assert gallery.crisp(np.zeros((48, 48, 3), np.uint8)).shape == (96, 96, 3)


# -- the HTML report ----------------------------------------------------------------------------------------


def figure_data(page: str) -> list[dict]:
    return [json.loads(text.replace("<\\/", "</")) for text in
            re.findall(r"<script type='application/json' id='figure-\d+-data'>(.*?)</script>", page, re.S)]


def data_uri_images(page: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
            for data in re.findall(r"<img src=['\"]data:image/png;base64,([A-Za-z0-9+/=]+)['\"]", page)]


@pytest.fixture(scope="module")
def comparison(store, real, old):
    return run_report(store, [real[0], old])


@pytest.mark.slow
def test_the_report_is_one_file_with_plotly_once_inline_and_nothing_fetched(comparison):
    packed = re.findall(r"<script type='application/octet-stream' id='plotly-js-gzip'>(.*?)</script>", comparison, re.S)
    assert len(packed) == 1
    assert gzip.decompress(base64.b64decode(packed[0])).decode() == get_plotlyjs()
    assert not re.search(r"<script[^>]*\ssrc=", comparison)
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", comparison)


@pytest.mark.slow
def test_the_report_holds_its_figures_data_and_the_flipped_images(comparison, store, real, old):
    run_id, metrics, arrays = real
    figures = figure_data(comparison)
    titles = [figure["layout"]["title"]["text"] for figure in figures]
    assert titles[0] == "Accuracy change per dataset (fine-tuning task first)"  # the comparison comes first
    assert [trace["name"] for trace in figures[0]["data"]] == [f"A · {store.get(run_id).config.describe()}",
                                                               f"B · {store.get(old).config.describe()}"]
    drops = next(f for f, t in zip(figures, titles) if t.startswith(f"Concepts of {CHECKED}"))
    top = metrics_tables.class_changes(metrics, CHECKED, "zs")["class_name"][0]
    assert any(label.startswith(f"{top} (n=") for label in drops["data"][0]["y"])
    images = data_uri_images(comparison)
    lost = [f for f in flips_by_concept(metrics, arrays, CHECKED, "zs", gallery.BECAME_WRONG).values() if f.total]
    first = lost[0].examples[0].thumbnail
    assert any(np.array_equal(image if image.ndim == 3 else np.repeat(image[..., None], 3, 2), first)
               for image in images)
    assert f"run {run_id}" in comparison and f"run {old}" in comparison
    assert gallery.NO_RECORDS in comparison  # the old run says why it has no images
    assert "train_s" in comparison and "mean zero-shot change" in comparison


def test_a_report_needs_at_least_one_run():
    with pytest.raises(ValueError):
        html_report([])


# -- the CLI ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_writes_the_report_of_finished_runs(store, real, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", real[0], "-o", str(out), "--store", str(store.root)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and figure_data(page) and data_uri_images(page)
    assert str(out) in capsys.readouterr().out


@pytest.mark.slow
def test_cli_refuses_bad_input_in_one_line_before_writing(store, real, tmp_path, capsys):
    queued = store.create(RunConfig(**TINY))
    out = tmp_path / "report.html"
    cases = {("report", "20990101-000000-nosuch", "-o", str(out)): "No run '20990101-000000-nosuch'",
             ("report", real[0], queued, "-o", str(out)): f"Run {queued} is queued",
             ("report", real[0], "-o", str(tmp_path / "missing" / "r.html")): "does not exist",
             ("report", real[0], "-o", str(tmp_path)): "is a folder"}
    for argv, message in cases.items():
        assert main([*argv, "--store", str(store.root)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
        assert not out.exists()
    with pytest.raises(Exception, match="is queued"):
        load_runs(store, [queued])


def report_figures(report: str) -> list[dict]:
    """The Plotly specs a report draws, in page order."""
    return [json.loads(spec.replace("<\\/", "</")) for spec in
            re.findall(r"<script type='application/json' id='figure-\d+-data'>(.*?)</script>", report, re.S)]


@pytest.fixture
def app_made_report(tmp_path, monkeypatch):
    """Two runs' report as the app's Compare tab makes it: in a process where Streamlit made its own template,
    whose colours are placeholders (#000001…) only its front end fills in, Plotly's default."""
    import plotly.io as pio
    import streamlit  # noqa: F401  registers the "streamlit" template

    monkeypatch.setattr(pio.templates, "default", "streamlit")
    store = RunStore(tmp_path / "runs")
    runs = [add_finished_run(store, objective="ce"), add_finished_run(store, objective="ldifs", lam=10.0)]
    return run_report(store, runs)


def test_a_report_made_in_the_app_carries_real_colours_not_streamlits_placeholders(app_made_report):
    assert not re.search(r"#0000[0-4][0-9]", app_made_report)
    for figure in report_figures(app_made_report):
        colorway = figure["layout"]["template"]["layout"]["colorway"]
        assert len(set(colorway)) > 5 and not any(color.startswith("#0000") for color in colorway)


def test_a_report_made_in_the_app_makes_room_for_its_axis_labels(app_made_report):
    """Concept names on the left of a bar chart and dataset names under the bars are never cut off."""
    for figure in report_figures(app_made_report):
        template = figure["layout"]["template"]["layout"]
        for axis in ("xaxis", "yaxis"):
            assert figure["layout"].get(axis, {}).get("automargin", template[axis].get("automargin")), axis


def test_the_reports_configuration_names_each_setting_once(app_made_report):
    config = app_made_report.split("<h4>Configuration</h4>")[1].split("</table>")[0]
    keys = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", config)
    names = [key for key, _ in keys]
    assert len(names) == len(set(names)), [name for name in names if names.count(name) > 1]
    assert dict(keys)["model"] == "LabCLIP-ViT-28-p7 (test)" and dict(keys)["device"] == "CPU (test) (asked: auto)"
