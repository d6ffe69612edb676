"""When does forgetting happen? The forgetting-over-training curves of `ce` and `ldifs` (λ 1 and 10) on each task,
over several seeds: mean ± std of every point, the fraction of the final zero-shot drop already reached at 10 % and
25 % of the steps, and a figure.

Run `python -m scripts.science_curves` (3 methods × 2 tasks × 3 seeds = 18 default runs without UMAP, about 20 min on
2 idle cores; finished runs in the store are reused, so an interrupted batch resumes). It prints the table, and
writes the summary (docs/science_curves.json), the figure (docs/science_curves.png, drawn by headless Chromium) and
the table in docs/science.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ldifs_core.config import RunConfig
from ldifs_core.curve_records import Curve
from ldifs_core.metrics import RunMetrics
from ldifs_core.reuse import finished_run
from ldifs_core.runner import execute
from ldifs_core.store import RunStore

DOCS = Path(__file__).resolve().parent.parent / "docs"
METHODS = {"ce": ("ce", None), "ldifs λ=1": ("ldifs", 1.0), "ldifs λ=10": ("ldifs", 10.0)}
COLOURS = {"ce": "#d62728", "ldifs λ=1": "#ff7f0e", "ldifs λ=10": "#1f77b4"}
FRACTIONS = (0.10, 0.25)
TABLE_START, TABLE_END = "<!-- curves-table:start -->\n", "\n<!-- curves-table:end -->"
FLAT_DROP = 1.0  # points: below this final drop a "fraction of the drop" is noise over noise, and is not given


@dataclass
class CurveSummary:
    """One (task, method) over its seeds. `change` is the mean zero-shot change (points) on the checked datasets
    since step 0; `reached` the fraction of a seed's final drop reached at each of FRACTIONS of the steps."""
    dataset: str
    method: str
    seeds: list[int]
    steps: list[int]
    task: list[tuple[float, float]]  # (mean, std) of the task's zero-shot accuracy (%) per step
    change: list[tuple[float, float]]  # (mean, std) per step
    reached: dict[str, tuple[float, float] | None]  # "10%" -> (mean, std) over the seeds with a real drop


def curve_run(store: RunStore, dataset: str, method: str, seed: int) -> str:
    objective, lam = METHODS[method]
    cfg = RunConfig(dataset=dataset, objective=objective, lam=lam, seed=seed, umap_points=0).validate()
    return finished_run(store, cfg) or execute(cfg, store)


def change_elsewhere(curve: Curve) -> list[float]:
    """Per point, the mean over the checked datasets of the zero-shot change since the first point."""
    others = [name for name in curve.datasets() if name != curve.task]
    start = curve.points[0].accuracy
    return [statistics.fmean(point.accuracy[name] - start[name] for name in others) for point in curve.points]


def reached(curve: Curve, change: list[float], fraction: float) -> float | None:
    """The share of the final drop already lost at `fraction` of the steps (the nearest point); None when the run
    hardly forgets (final drop under FLAT_DROP points)."""
    final_drop = -change[-1]
    if final_drop < FLAT_DROP:
        return None
    target = fraction * curve.points[-1].step
    nearest = min(range(len(curve.points)), key=lambda i: abs(curve.points[i].step - target))
    return -change[nearest] / final_drop


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(dataset: str, method: str, seeds: list[int], curves: list[Curve]) -> CurveSummary:
    steps = [point.step for point in curves[0].points]
    if any([point.step for point in curve.points] != steps for curve in curves):
        raise ValueError(f"{dataset} {method}: the seeds' curves were measured at different steps")
    changes = [change_elsewhere(curve) for curve in curves]
    tasks = [curve.line(curve.task)[1] for curve in curves]
    shares = {f"{fraction:.0%}": [share for curve, change in zip(curves, changes)
                                  if (share := reached(curve, change, fraction)) is not None]
              for fraction in FRACTIONS}
    return CurveSummary(dataset, method, seeds, steps, [mean_std(list(point)) for point in zip(*tasks)],
                        [mean_std(list(point)) for point in zip(*changes)],
                        {key: mean_std(values) if values else None for key, values in shares.items()})


def table(summaries: list[CurveSummary]) -> str:
    def cell(pair):
        return "—" if pair is None else f"{pair[0]:.2f} ± {pair[1]:.2f}"
    header = ("| task | method | seeds | task zero-shot at the end (%) | zero-shot change elsewhere at the end (points) "
              "| share of that drop at 10 % of the steps | at 25 % |")
    rows = [f"| {s.dataset} | {s.method} | {len(s.seeds)} | {s.task[-1][0]:.1f} ± {s.task[-1][1]:.1f} "
            f"| {s.change[-1][0]:+.1f} ± {s.change[-1][1]:.1f} | {cell(s.reached['10%'])} "
            f"| {cell(s.reached['25%'])} |" for s in summaries]
    return "\n".join([header, "|" + "---|" * 7, *rows])


def figure(summaries: list[CurveSummary]) -> go.Figure:
    """Per task (columns): the task's zero-shot accuracy (top) and the mean change elsewhere (bottom), mean over
    seeds with a ± std band, one colour per method."""
    datasets = list(dict.fromkeys(s.dataset for s in summaries))
    fig = make_subplots(rows=2, cols=len(datasets), shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"fine-tuned on {d}" for d in datasets])
    for s in summaries:
        col = datasets.index(s.dataset) + 1
        for row, values in ((1, s.task), (2, s.change)):
            means, stds = [m for m, _ in values], [sd for _, sd in values]
            upper, lower = [m + sd for m, sd in values], [m - sd for m, sd in values]
            colour = COLOURS[s.method]
            fig.add_scatter(x=s.steps + s.steps[::-1], y=upper + lower[::-1], fill="toself", fillcolor=colour,
                            opacity=0.15, line=dict(width=0), hoverinfo="skip", showlegend=False, row=row, col=col)
            fig.add_scatter(x=s.steps, y=means, mode="lines+markers", line=dict(color=colour, width=2),
                            marker=dict(size=4), name=s.method, legendgroup=s.method,
                            showlegend=row == 1 and col == 1, row=row, col=col,
                            customdata=stds, hovertemplate="step %{x}: %{y:.1f} ± %{customdata:.1f}<extra></extra>")
    fig.update_yaxes(title_text="task zero-shot accuracy (%)", row=1, col=1)
    fig.update_yaxes(title_text="zero-shot change elsewhere (points)", row=2, col=1)
    fig.update_xaxes(title_text="training step", row=2)
    fig.update_layout(template="plotly_white", width=1100, height=720, margin=dict(t=100, l=70, r=20, b=60),
                      legend=dict(orientation="h", y=1.1, x=1, xanchor="right"),
                      title=dict(text=f"Forgetting over training, mean ± std over {len(summaries[0].seeds)} seeds "
                                      f"({summaries[0].steps[-1]} steps)", x=0.01))
    return fig


def save_png(fig: go.Figure, path: Path, chromium: str = "/usr/bin/chromium") -> None:
    """The figure as a PNG, drawn by headless Chromium (plotly.js inlined: no network)."""
    from playwright.sync_api import sync_playwright

    html = fig.to_html(include_plotlyjs=True, full_html=True, config={"staticPlot": True})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": fig.layout.width, "height": fig.layout.height})
        page.set_content(html, wait_until="load")
        page.wait_for_selector(".main-svg")
        page.screenshot(path=str(path))
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mnist,fashion_mnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--store", type=Path, help="run store (default: $LDIFS_STORE or ./runs)")
    parser.add_argument("--json", type=Path, default=DOCS / "science_curves.json", help="where the summary goes")
    parser.add_argument("--figure", type=Path, default=DOCS / "science_curves.png", help="where the figure goes")
    parser.add_argument("--page", default=str(DOCS / "science.md"), help="the page whose curves table is "
                        "rewritten ('' for none)")
    args = parser.parse_args(argv)
    datasets, seeds = [d for d in args.datasets.split(",") if d], [int(s) for s in args.seeds.split(",")]
    store = RunStore(args.store)
    summaries = []
    for dataset in datasets:
        for method in METHODS:
            curves = []
            for seed in seeds:
                curve = RunMetrics.from_json(store.metrics(curve_run(store, dataset, method, seed))).curve
                if curve is None:
                    parser.error(f"the {method} run of {dataset}, seed {seed} has no curve: it was stored with "
                                 f"--curve-points 0")
                curves.append(curve)
                print(f"{dataset} {method} seed {seed}: done", flush=True)
            summaries.append(summarise(dataset, method, seeds, curves))
    args.json.write_text(json.dumps([s.__dict__ for s in summaries], indent=1))
    save_png(figure(summaries), args.figure)
    if args.page:
        write_table(Path(args.page), table(summaries))
    print(table(summaries))
    return 0


def write_table(page: Path, text: str) -> None:
    """Put the table between the page's curves-table markers (tests/test_science_curves.py checks it is current)."""
    before, rest = page.read_text().split(TABLE_START, 1)
    page.write_text(before + TABLE_START + text + TABLE_END + rest.split(TABLE_END, 1)[1])


if __name__ == "__main__":
    sys.exit(main())
