"""A report to share: one self-contained HTML file for a finished run, or several side by side, that opens offline
in any current browser (for teaching, or to attach to a write-up).

It holds each run's configuration, timings and headline numbers, the accuracy change per dataset and the concepts
most surely forgotten (every number with its n and 95 % interval), drawn with the app's own figures (figures.py),
and the concept gallery's thumbnails (gallery.py) as PNG data URIs.

plotly.js is embedded once. It is 4.8 MB as text, so it travels gzip-compressed and base64-encoded (2.3 MB)
and the browser's own DecompressionStream unpacks it when the page opens: a report of two runs stays near 2.5 MB
instead of passing 5.
"""
from __future__ import annotations

import base64
import functools
import gzip
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import plotly.io as pio
from plotly.offline import get_plotlyjs

from ldifs_core import figures, gallery, metrics_tables
from ldifs_core.config import RunConfig
from ldifs_core.errors import RunNotFound
from ldifs_core.image_records import png_base64
from ldifs_core.metrics import RunMetrics
from ldifs_core.store import RunStore

TOP_CONCEPTS = 12  # bars in each "most surely forgotten" chart
GALLERY_CONCEPTS = 3  # concepts per dataset whose flipped images are shown
GALLERY_IMAGES = 8  # images per concept
# The template every report figure is written with: a figure carries its own colours and margins whichever front
# end made it (in the app's process Plotly's default is Streamlit's, whose colours are placeholders like #000001
# that only Streamlit's front end fills in, and whose axes leave no room for long labels).
REPORT_TEMPLATE = "plotly"


@dataclass(frozen=True)
class ReportRun:
    """What a report needs of one finished run: its metrics.json and its stored arrays (image records)."""

    run_id: str
    metrics: dict  # as the figures and the gallery read it; the tables read `record`
    arrays: dict[str, np.ndarray]

    @functools.cached_property
    def record(self) -> RunMetrics:
        return RunMetrics.from_json(self.metrics)


def load_runs(store: RunStore, run_ids: Sequence[str]) -> list[ReportRun]:
    """Every run read before any HTML is made: RunNotFound names an unknown or unfinished run, RunUnreadable a
    damaged one."""
    for run_id in run_ids:
        record = store.get(run_id)
        if record.status not in ("done", "unreadable"):  # an unreadable one says why when it is read
            reason = f" ({record.message})" if record.message else ""
            raise RunNotFound(f"Run {run_id} is {record.status}{reason}: a report shows finished runs; pick them "
                              f"from `python -m ldifs_core list --status done`.")
    return [ReportRun(run_id, store.metrics(run_id), store.arrays(run_id)) for run_id in run_ids]


def run_report(store: RunStore, run_ids: Sequence[str]) -> str:
    """The HTML report of the given finished runs of `store` (one run, or a comparison of several)."""
    return html_report(load_runs(store, run_ids))


def html_report(runs: Sequence[ReportRun], created: datetime | None = None) -> str:
    """One HTML document: for several runs a comparison first, then one section per run."""
    if not runs:
        raise ValueError("a report needs at least one run")
    page = _Page()
    created = created or datetime.now()
    title = (f"LDIFS Lab report: run {runs[0].run_id}" if len(runs) == 1 else
             f"LDIFS Lab report: {len(runs)} runs compared")
    page.add(f"<h1>{_text(title)}</h1>")
    page.add(f"<p class='note'>Made {created:%Y-%m-%d %H:%M} by LDIFS Lab. Accuracies are of the image encoder "
             f"before and after fine-tuning; zero-shot heads always come from the original text tower. Every number "
             f"carries its n (test images) and a 95 % interval: a change whose interval spans 0 may be noise.</p>")
    names = {run.run_id: f"{chr(ord('A') + i)} · {_config(run).describe()}" for i, run in enumerate(runs)}
    if len(runs) > 1:
        page.add("<h2>Comparison</h2>")
        page.add(_headline_table(runs, names))
        page.figure(figures.run_comparison({names[run.run_id]: run.metrics for run in runs}))
    for run in runs:
        _run_section(page, run, names[run.run_id] if len(runs) > 1 else None)
    return page.document(title)


def _run_section(page: _Page, run: ReportRun, name: str | None) -> None:
    metrics, cfg = run.metrics, _config(run)
    page.add(f"<h2>{_text(name or cfg.describe())} <span class='id'>run {_text(run.run_id)}</span></h2>")
    if cfg.label:
        page.add(f"<p>Label: “{_text(cfg.label)}”</p>")
    page.add(_headline(run.record))
    page.add("<div class='columns'>" + _settings_table(run.record, cfg) + _timings_table(run.record) + "</div>")
    page.add("<h3>Accuracy before and after, per dataset</h3>")
    page.add(_accuracy_table(metrics))
    for probe in metrics_tables.PROBES:
        page.figure(figures.accuracy_change(metrics, probe))
    if (curve := run.record.curve) is not None:
        page.add("<h3>Forgetting over training</h3>")
        page.add(f"<p class='note'>Zero-shot accuracy of the image tower every {curve.every} steps, on a fixed "
                 f"subset of each dataset (n in the legend), with the original text tower's heads.</p>")
        page.figure(figures.forgetting_curve(curve))
    page.add("<h3>Which concepts were forgotten</h3>")
    page.add("<p class='note'>Ranked by the upper end of each change's 95 % interval: first come the concepts that "
             "surely lost most; one resting on a few test images ranks lower than its bare change suggests. Below "
             "each chart, the test images of its top concepts that were right before and wrong after fine-tuning, "
             "each captioned with what the model now predicts.</p>")
    for dataset in metrics_tables.concept_datasets(metrics, "zs"):
        _concepts(page, run, dataset)


def _concepts(page: _Page, run: ReportRun, dataset: str) -> None:
    """A dataset's most surely forgotten concepts as a chart, and the flipped images of the top ones; for the
    fine-tuning task the concepts that gained most and the images that became right."""
    metrics = run.metrics
    task = dataset == metrics_tables.task_dataset(metrics)
    page.add(f"<h4>{_text(dataset)} ({'fine-tuning task' if task else 'checked for forgetting'}, "
             f"{_text(metrics_tables.measured_with(metrics, dataset))})</h4>")
    if not task:
        page.figure(figures.class_drops(metrics, dataset, TOP_CONCEPTS, "zs"))
    if not gallery.has_image_records(run.arrays, dataset):
        page.add(f"<p class='note'>{_text(gallery.NO_RECORDS)}</p>")
        return
    # the task's story is what it learnt: the concepts that surely gained most, and their images that became right
    changes = (metrics_tables.class_gains if task else metrics_tables.class_changes)(metrics, dataset, "zs")
    direction = gallery.BECAME_RIGHT if task else gallery.BECAME_WRONG
    shown = 0
    for concept in changes["class_name"]:
        flips = gallery.flipped_examples(run.arrays, metrics, dataset, concept, "zs", direction, GALLERY_IMAGES)
        if flips.total == 0:
            continue
        page.add(_gallery_block(flips))
        shown += 1
        if shown == GALLERY_CONCEPTS:
            break
    if shown == 0:
        page.add(f"<p class='note'>No test image of {_text(dataset)} {_text(direction)}.</p>")


def _gallery_block(flips: gallery.ConceptFlips) -> str:
    row = flips.row
    numbers = (f"{row['before']:.1f}% → {row['after']:.1f}%, change "
               f"{metrics_tables.with_interval(row['change'], row['change_ci'])}, n = {row['n']} test images")
    more = f", showing {len(flips.examples)}" if len(flips.examples) < flips.total else ""
    head = (f"<p><b>{_text(flips.concept)}</b>: {_text(numbers)}. {flips.total} image(s) {_text(flips.direction)}"
            f"{more}.</p>")
    cells = []
    for image in flips.examples:
        caption = (f"now: {image.predicted_after}" if flips.direction == gallery.BECAME_WRONG
                   else f"was: {image.predicted_before}")
        side = image.thumbnail.shape[0] * gallery.display_scale(image.thumbnail.shape[0])
        cells.append(f"<figure><img src='data:image/png;base64,{png_base64(image.thumbnail)}' width='{side}' "
                     f"height='{side}' alt='{_text(image.true_class)}, test image #{image.position}'>"
                     f"<figcaption>{_text(caption)}</figcaption></figure>")
    return head + "<div class='gallery'>" + "".join(cells) + "</div>"


# -- tables --------------------------------------------------------------------------------------------------


def _headline(record: RunMetrics) -> str:
    task = record.downstream
    lines = [f"Accuracy on {task.dataset} (the fine-tuning task): {task.zero_shot_before:.1f}% zero-shot before "
             f"→ {task.accuracy_after:.1f}% after, {metrics_tables.with_interval(task.change, task.change_ci)}"
             f", n = {task.n} test images" if task else "No task given: forgetting only"]
    lines += [f"Mean {metrics_tables.PROBES[probe]} change on the other datasets: "
              f"{metrics_tables.with_interval(*record.mean_delta(probe))}" for probe in metrics_tables.PROBES]
    return "<ul class='headline'>" + "".join(f"<li>{_text(line)}</li>" for line in lines) + "</ul>"


def _headline_table(runs: Sequence[ReportRun], names: dict[str, str]) -> str:
    rows = [[names[run.run_id], run.run_id, metrics_tables.task_accuracy(run.metrics),
             *(metrics_tables.with_interval(*run.record.mean_delta(probe)) for probe in metrics_tables.PROBES)]
            for run in runs]
    return _table(["run", "id", "task accuracy after", "mean zero-shot change", "mean linear-probe change"], rows)


def _accuracy_table(metrics: dict) -> str:
    rows = []
    for probe in metrics_tables.PROBES:
        table = metrics_tables.accuracy_rows(metrics, probe)
        for row in table.itertuples():
            if probe == "lp" and row.role == "downstream":
                continue  # the task has one pair of numbers, listed with the zero-shot rows
            how = metrics_tables.measured_with(metrics, row.dataset, probe)
            rows.append([row.dataset, metrics_tables.ROLE_NAMES[row.role], how, row.n,
                         f"{row.before:.1f}% [{row.before_ci_low:.1f}, {row.before_ci_high:.1f}]",
                         f"{row.after:.1f}% [{row.after_ci_low:.1f}, {row.after_ci_high:.1f}]",
                         metrics_tables.with_interval(row.change, (row.change_ci_low, row.change_ci_high))])
    return _table(["dataset", "role", "measured with", "n", "before (95 % CI)", "after (95 % CI)", "change"], rows)


def _settings_table(record: RunMetrics, cfg: RunConfig) -> str:
    """Each setting once: the model as the run named it (None in the config means the embedded one), the device
    it ran on beside the one asked for."""
    settings = cfg.to_dict()
    settings["model"] = record.model or cfg.model or "embedded"
    if record.device and record.device != cfg.device:
        settings["device"] = f"{record.device} (asked: {cfg.device})"
    rows = [[key, json.dumps(value) if isinstance(value, (list, dict)) else value] for key, value in settings.items()]
    return "<div><h4>Configuration</h4>" + _table(["setting", "value"], rows) + "</div>"


def _timings_table(record: RunMetrics) -> str:
    rows = [[key, f"{value:g}"] for key, value in record.timings.measured().items()]
    return "<div><h4>Timings</h4>" + _table(["measure", "value (s, or ms per step)"], rows) + "</div>"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_text(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_text(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _config(run: ReportRun) -> RunConfig:
    return run.record.run_config()


# -- the page ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def plotly_bundle() -> str:
    """plotly.js, gzip-compressed and base64-encoded: computed once per process. The fastest level packs it in a
    third of the time of the default for 15 % more bytes (1.7 MB instead of 1.5 MB)."""
    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=1, mtime=0)).decode("ascii")


class _Page:
    """The body of the document as it is built; each figure is a div plus its JSON, drawn once plotly.js is
    unpacked."""

    def __init__(self):
        self.parts: list[str] = []
        self.figures = 0

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)

    def figure(self, fig) -> None:
        self.figures += 1
        figure_id = f"figure-{self.figures}"
        fig.update_layout(template=REPORT_TEMPLATE)
        data = pio.to_json(fig, validate=False).replace("</", "<\\/")  # JSON text may not close its script tag
        self.parts.append(f"<div class='figure' id='{figure_id}'></div>"
                          f"<script type='application/json' id='{figure_id}-data'>{data}</script>"
                          f"<script>draw('{figure_id}');</script>")

    def document(self, title: str) -> str:
        return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
                f"<meta name='viewport' content='width=device-width, initial-scale=1'>\n<title>{_text(title)}</title>\n"
                f"<style>{STYLE}</style>\n"
                f"<script type='application/octet-stream' id='plotly-js-gzip'>{plotly_bundle()}</script>\n"
                f"<script>{LOADER}</script>\n</head>\n<body>\n" + "\n".join(self.parts) + "\n</body>\n</html>\n")


LOADER = """
// plotly.js travels gzip-compressed in #plotly-js-gzip; the browser unpacks it, then every figure is drawn.
const plotlyReady = (async () => {
  const packed = Uint8Array.from(atob(document.getElementById("plotly-js-gzip").textContent), c => c.charCodeAt(0));
  const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
  const script = document.createElement("script");
  script.textContent = await new Response(stream).text();
  document.head.appendChild(script);
})();
function draw(id) {
  const figure = JSON.parse(document.getElementById(id + "-data").textContent);
  plotlyReady.then(
    () => Plotly.newPlot(id, figure.data, figure.layout, {responsive: true, displaylogo: false}),
    () => { document.getElementById(id).textContent =
              "This browser cannot unpack the charts (it needs DecompressionStream: Chrome 80, Firefox 113, " +
              "Safari 16.4 or later); the numbers are in the tables."; });
}
"""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h2 { border-top: 2px solid #2f4b7c; padding-top: .6em; margin-top: 2em; }
.id { font-size: .6em; color: #777; font-weight: normal; }
.note { color: #555; font-size: .92em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border-bottom: 1px solid #ddd; padding: .2em .6em; text-align: left; vertical-align: top; }
th { background: #f3f5f8; }
.columns { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
.figure { min-height: 420px; }
.gallery { display: flex; flex-wrap: wrap; gap: .6em; margin-bottom: 1.2em; }
.gallery figure { margin: 0; text-align: center; font-size: .78em; max-width: 110px; }
.gallery img { image-rendering: pixelated; border: 1px solid #ccc; display: block; margin: 0 auto; }
"""
