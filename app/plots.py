"""Every chart of the app as a pure function: plain data (metrics dicts, history lists, arrays, tables) in,
a Plotly figure out. Pages only place them, tests check their traces.

Why one module over 350 lines: one small pure function per chart, found in one place; the figures the HTML
report shares live in ldifs_core/figures.py.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from app import tables
from ldifs_core.config import REGULARISED, parse_ldifs_taps
# The figures the HTML report also draws live in ldifs_core.figures; pages reach them through this module.
from ldifs_core.figures import (AFTER_COLOR, BEFORE_COLOR, GAIN_COLOR, LOSS_COLOR, accuracy_change,  # noqa: F401
                                change_colors, class_drops, forgetting_curve, interval_bars, run_comparison)
from ldifs_core.objectives import OBJECTIVE_TYPES

CLASS_PALETTE = qualitative.Dark24 + qualitative.Light24
OBJECTIVE_COLORS = {name: kind.color for name, kind in OBJECTIVE_TYPES.items()}  # as each plugin declares
OBJECTIVE_SYMBOLS = {name: kind.symbol for name, kind in OBJECTIVE_TYPES.items()}
PART_NAMES = {"ce": "CE", "ldifs": "λ·LDIFS", "l2sp": "λ·L2-SP", "contrastive": "contrastive (FLYP)",
              "lipsum": "λ·Lipsum", "zscl": "λ·ZSCL KL"}
DATASET_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "star")
NOT_LOSS_PARTS = {"step", "loss", "lr", "images_per_s"}
SHOW_BEFORE, SHOW_AFTER, SHOW_BOTH = "before", "after", "both"


def loss_parts(history: Sequence[dict]) -> list[str]:
    """The loss parts a history records, in first-seen order (e.g. ce, ldifs)."""
    parts: dict[str, None] = {}
    for entry in history:
        parts.update({key: None for key in entry if key not in NOT_LOSS_PARTS})
    return list(parts)


def training_curves(history: Sequence[dict]) -> go.Figure:
    """Total loss and its parts per step, so CE and the λ-weighted regulariser can be told apart."""
    steps = [h["step"] for h in history]
    fig = go.Figure()
    fig.add_scatter(name="total loss", x=steps, y=[h["loss"] for h in history], mode="lines",
                    line=dict(color="black", width=2))
    for part in loss_parts(history):
        fig.add_scatter(name=PART_NAMES.get(part, part), x=steps, y=[h.get(part) for h in history], mode="lines")
    fig.update_layout(title="Training loss", xaxis_title="step", yaxis_title="loss", height=320,
                      margin=dict(t=40, b=40), legend=dict(orientation="h", y=-0.3))
    return fig


# -- feature drift picture (Feature drift page) -----------------------------------------------------------------

SHOW_SIDE = "side"
OTHER_CONCEPTS = "other concepts"
OTHER_COLOR = "#d4d4d4"
MAX_COLOURED = len(qualitative.Dark24)  # beyond that, colours stop being tellable apart
TRAIL_OPACITY = 0.5


def concept_colors(coloured: Sequence[str], class_names: Sequence[str]) -> dict[str, str]:
    """Colours of the concepts in `coloured` (the first MAX_COLOURED, in the order given), each chosen by its
    concept's class index in the dataset (`class_names`), so a concept keeps its colour across runs of the same
    dataset and when the ranking changes; on a palette clash (classes beyond the palette) the next free colour.
    Every concept not in the result is drawn in grey."""
    colors: dict[str, str] = {}
    for name in list(dict.fromkeys(coloured))[:MAX_COLOURED]:
        slot = list(class_names).index(name) if name in class_names else len(colors)
        taken = set(colors.values())
        colors[name] = next(color for k in range(len(CLASS_PALETTE))
                            if (color := CLASS_PALETTE[(slot + k) % len(CLASS_PALETTE)]) not in taken)
    return colors


def padded_range(values: np.ndarray, pad: float = 0.05) -> list[float]:
    low, high = float(np.min(values)), float(np.max(values))
    margin = pad * (high - low or 1.0)
    return [low - margin, high + margin]


def feature_map(pre: np.ndarray, post: np.ndarray, labels: np.ndarray, class_names: Sequence[str], ids: np.ndarray,
                show: str = SHOW_BOTH, colors: dict[str, str] | None = None,
                trail_classes: Sequence[str] = (), reduction: str = "UMAP") -> go.Figure:
    """The joint 2-D projection (`reduction`: UMAP or PCA) of pre- and post-fine-tuning features (point i of `pre`
    and of `post` is test image `ids[i]`), concepts in `colors` in their colour with a legend entry each, the rest
    in grey.

    `show` picks the before points, the after points, both overlaid with pre → post trails (in their concept's
    colour) for `trail_classes`, or before | after side by side. Every view has the same axis ranges, so views
    compare; a concept's points and trail share a legend group, so hiding it hides its trails too. Each point's
    customdata is (concept, position, before / after) for clicked_position. One trace per concept and panel, built
    as plain dicts and validated once: one add_scatter per concept and side cost the page ~0.2 s on quickdraw.
    """
    colors = colors or {}
    names = np.array([class_names[int(label)] for label in labels])
    panels = {SHOW_BEFORE: [("before", pre, "x")], SHOW_AFTER: [("after", post, "x")],
              SHOW_BOTH: [("before", pre, "x"), ("after", post, "x")],
              SHOW_SIDE: [("before", pre, "x"), ("after", post, "x2")]}[show]
    axes = list(dict.fromkeys(xaxis for _, _, xaxis in panels))
    customdata = np.array(list(zip(names.tolist(), np.asarray(ids).tolist())), dtype=object).reshape(-1, 2)
    traces = []

    def add_points(name: str, members: np.ndarray, color: str) -> None:
        """One trace per panel, its after points first (so the key shows a filled marker)."""
        for xaxis in axes:
            parts = [(when, coords) for when, coords, axis in panels if axis == xaxis][::-1]
            count = int(members.sum())
            whens = np.repeat([when for when, _ in parts], count)
            traces.append(dict(
                type="scatter", name=name, legendgroup=name, showlegend=xaxis == axes[-1], xaxis=xaxis, yaxis="y",
                x=np.concatenate([coords[members, 0] for _, coords in parts]),
                y=np.concatenate([coords[members, 1] for _, coords in parts]), mode="markers",
                customdata=np.column_stack([np.tile(customdata[members], (len(parts), 1)), whens]),
                marker=dict(color=color, size=np.where(whens == "before", 7, 6),
                            symbol=np.where(whens == "before", "circle-open", "circle")),
                selected=dict(marker=dict(size=14)), unselected=dict(marker=dict(opacity=0.6)),
                hovertemplate="<b>%{customdata[0]}</b><br>test image #%{customdata[1]}, %{customdata[2]} fine-tuning"
                              "<br>click to see the image<extra></extra>"))

    grey = ~np.isin(names, list(colors))
    if grey.any():
        add_points(OTHER_CONCEPTS, grey, OTHER_COLOR)
    for concept, color in colors.items():
        members = names == concept
        if not members.any():
            continue
        if show == SHOW_BOTH and concept in trail_classes:
            gaps = np.full(members.sum(), np.nan)
            traces.append(dict(type="scatter", name=f"{concept} trails", legendgroup=concept, showlegend=False,
                               mode="lines", x=np.stack([pre[members, 0], post[members, 0], gaps], axis=1).ravel(),
                               y=np.stack([pre[members, 1], post[members, 1], gaps], axis=1).ravel(),
                               line=dict(color=color, width=1), opacity=TRAIL_OPACITY, hoverinfo="skip"))
        add_points(concept, members, color)
    both = np.concatenate([pre, post])
    axis = dict(showticklabels=False, title="", range=padded_range(both[:, 0]))
    layout = dict(title=f"Joint {reduction} of image features (open = before, filled = after)", height=560,
                  showlegend=True,
                  legend=dict(title="concept (click to hide)", itemsizing="constant"), xaxis=axis,
                  yaxis=dict(showticklabels=False, title="", range=padded_range(both[:, 1])))
    if show == SHOW_SIDE:  # two panels sharing the y axis; zooming one zooms the other
        layout.update(xaxis={**axis, "domain": [0, 0.49]}, xaxis2={**axis, "domain": [0.51, 1], "matches": "x"},
                      annotations=[dict(text=f"{when} fine-tuning", x=x, y=1, xref="paper", yref="paper",
                                        xanchor="center", yanchor="bottom", showarrow=False)
                                   for when, x in (("before", 0.245), ("after", 0.755))])
    return go.Figure(data=traces, layout=layout)


def clicked_position(event) -> int | None:
    """The test-image position of the first point picked in a feature_map chart's selection event (Streamlit's
    on_select state: {"selection": {"points": [{"customdata": [concept, position, when], ...}]}}), or None."""
    points = ((event or {}).get("selection") or {}).get("points") or []
    for point in points:
        custom = point.get("customdata")
        if custom is not None and len(custom) == 3:
            return int(custom[1])
    return None


# -- end of the feature drift picture ------------------------------------------------------------------------


def tap_names(count: int, taps: int | str = 4) -> list[str]:
    """Axis names of `count` tapped layers chosen by `taps` (a count, or groups such as "stem+blocks")."""
    spec = parse_ldifs_taps(taps)
    if isinstance(spec, int):
        return ["stem"] + [f"tap {i}" for i in range(1, count)]
    head = ["stem"] if "stem" in spec else []
    tail = ["embedding"] if "embedding" in spec else []
    inner = count - len(head) - len(tail)
    middle = [f"block {i}" for i in range(1, inner + 1)] if "blocks" in spec else ["last block"] * inner
    return head + middle + tail


def layer_distances(metrics: dict) -> go.Figure:
    """Mean LDIFS distance per tapped layer and dataset: where in the encoder the features moved."""
    fig = go.Figure()
    for report in metrics["forgetting"]:
        distances = report["layer_distance"]
        fig.add_scatter(name=report["dataset"], x=tap_names(len(distances), metrics["config"].get("ldifs_taps", 4)),
                        y=distances, mode="lines+markers")
    fig.update_layout(title="Feature distance per layer (pre-trained vs fine-tuned)",
                      xaxis_title="tapped layer (input → output)", yaxis_title="mean LDIFS distance", height=360)
    return fig


def spread_coincident(x: Sequence[float], y: Sequence[float], x_span: float, y_span: float,
                      radius: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Positions at which no marker hides another: points closer than `radius` of the axis spans (on both axes)
    are grouped, and each group of k > 1 is laid on a small ring of that radius around its centre, starting at
    the top and in the given order; lone points stay where they are. Deterministic, so a rerun looks the same."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx, dy = radius * max(x_span, 1e-9), radius * max(y_span, 1e-9)
    groups: list[list[int]] = []
    for i in range(len(x)):
        near = next((g for g in groups if abs(x[g[0]] - x[i]) < dx and abs(y[g[0]] - y[i]) < dy), None)
        if near is None:
            groups.append([i])
        else:
            near.append(i)
    shown_x, shown_y = x.copy(), y.copy()
    for group in (g for g in groups if len(g) > 1):
        angles = np.pi / 2 + 2 * np.pi * np.arange(len(group)) / len(group)
        shown_x[group] = x[group].mean() + dx * np.cos(angles)
        shown_y[group] = y[group].mean() + dy * np.sin(angles)
    return shown_x, shown_y


ROW_GAP_PX = 120  # between stacked panels: the upper one's tick labels and axis title, then the lower one's title
FACET_MARGIN = dict(t=80, b=60)


def facet_grid(titles: Sequence[str], columns: int = 2, row_height: int = 420):
    """An empty figure of one panel per title, `columns` wide, each panel with axes of its own; stacked panels
    ROW_GAP_PX apart, so a panel's title never runs into the axis title of the panel above."""
    cols = max(1, min(columns, len(titles)))
    rows = max(1, -(-len(titles) // cols))
    height = row_height * rows
    gap = ROW_GAP_PX / (height - FACET_MARGIN["t"] - FACET_MARGIN["b"]) if rows > 1 else 0.0
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.09,
                        vertical_spacing=gap)
    fig.update_layout(height=height, margin=FACET_MARGIN)
    return fig, [(k // cols + 1, k % cols + 1) for k in range(len(titles))]


def lambda_labels(runs: pd.DataFrame) -> list[str]:
    """"λ=…" on the most accurate run of each λ only, so seeds of one λ share one label instead of stacking it."""
    labelled = set(runs.sort_values("accuracy after", ascending=False).drop_duplicates("λ").index)
    return [f"λ={lam:g}" if index in labelled else "" for index, lam in runs["λ"].items()]


MIN_ACCURACY_SPAN = 10.0  # points of accuracy a trade-off panel shows at least: a 1-point gap stays small


def accuracy_span(points: pd.DataFrame) -> float:
    """The height (accuracy points) of every trade-off panel: the widest task's spread with room, at least
    MIN_ACCURACY_SPAN, so one point is the same length in every panel."""
    widest = points.groupby("dataset")["accuracy after"].agg(np.ptp).max() if len(points) else 0.0
    return max(MIN_ACCURACY_SPAN, 1.2 * float(widest))


def tradeoff(points: pd.DataFrame) -> go.Figure:
    """Downstream accuracy against mean forgetting, one panel per fine-tuning task (accuracies of different tasks
    do not compare), one colour and symbol per objective, regularised runs labelled with their λ. The panels share
    their scales: one forgetting axis (0 = none included) and accuracy axes of one height. Coincident points are
    nudged apart on a small ring (the hover gives the exact numbers and the run)."""
    tasks = sorted(points["dataset"].unique())
    fig, cells = facet_grid([f"fine-tuned on {task}" for task in tasks])
    x_range = padded_range(np.append(points["mean zero-shot Δ"].to_numpy(float), 0.0))
    y_span = accuracy_span(points)
    in_legend: set[str] = set()
    for task, (row, col) in zip(tasks, cells):
        runs = points[points["dataset"] == task].sort_values(["objective", "λ", "run"]).reset_index(drop=True)
        x, y = runs["mean zero-shot Δ"], runs["accuracy after"]
        shown_x, shown_y = spread_coincident(x, y, x_range[1] - x_range[0], y_span)
        for objective, group in runs.groupby("objective", sort=True):
            regularised = objective in REGULARISED
            fig.add_scatter(
                name=objective, legendgroup=objective, showlegend=objective not in in_legend, row=row, col=col,
                x=shown_x[group.index], y=shown_y[group.index], mode="markers+text" if regularised else "markers",
                text=lambda_labels(group) if regularised else None, textposition="top center",
                marker=dict(size=11, color=OBJECTIVE_COLORS.get(objective), symbol=OBJECTIVE_SYMBOLS.get(objective),
                            opacity=0.9, line=dict(width=1.5, color="white")),
                customdata=np.stack([group["run"], group["λ"], group["seed"], group["model"],
                                     group["accuracy after"], group["mean zero-shot Δ"]], axis=1),
                hovertemplate=f"<b>{objective}</b> λ=%{{customdata[1]:g}}, seed %{{customdata[2]}}<br>"
                              "run %{customdata[0]} · %{customdata[3]}<br>accuracy after: %{customdata[4]:.1f}%"
                              "<br>mean zero-shot change: %{customdata[5]:+.1f} points<extra></extra>")
            in_legend.add(objective)
        middle = (float(y.min()) + float(y.max())) / 2
        fig.update_xaxes(title_text="mean zero-shot change elsewhere (points)", range=x_range, row=row, col=col)
        fig.update_yaxes(title_text="task accuracy (%)" if col == 1 else None,
                         range=[middle - y_span / 2, middle + y_span / 2], row=row, col=col)
    fig.update_layout(title="Trade-off: downstream accuracy vs forgetting elsewhere", legend_title="objective")
    return fig


def objectives_pareto(points: pd.DataFrame, title: str = "Task accuracy vs forgetting, per objective") -> go.Figure:
    """One marker per objective and task: mean accuracy against mean zero-shot change over its runs, ± one standard
    deviation, n in the hover; one symbol per task, and per task a dashed line through its Pareto front (the
    objectives no other one beats on both accuracy and forgetting)."""
    summary = tables.objective_summary(points)
    fig = go.Figure()
    datasets = list(dict.fromkeys(summary["dataset"]))
    for row in summary.itertuples():
        fig.add_scatter(
            name=f"{row.objective} · {row.dataset}", legendgroup=row.objective, x=[row.forgetting], y=[row.accuracy],
            mode="markers+text", text=[row.objective], textposition="top center",
            error_x=dict(type="data", array=[row.forgetting_std], thickness=1),
            error_y=dict(type="data", array=[row.accuracy_std], thickness=1),
            marker=dict(size=12, color=OBJECTIVE_COLORS.get(row.objective),
                        symbol=DATASET_SYMBOLS[datasets.index(row.dataset) % len(DATASET_SYMBOLS)],
                        line=dict(width=2, color="black") if row.pareto else dict(width=0)),
            hovertemplate=(f"{row.objective} on {row.dataset} (n = {row.n} runs)<br>accuracy: %{{y:.1f}}% ± "
                           f"{row.accuracy_std:.1f}<br>mean zero-shot change: %{{x:+.1f}} ± {row.forgetting_std:.1f}"
                           f"{'<br>on the Pareto front' if row.pareto else ''}<extra></extra>"))
    for dataset in datasets:
        front = summary[(summary["dataset"] == dataset) & summary["pareto"]].sort_values("forgetting")
        fig.add_scatter(name=f"Pareto front · {dataset}", x=front["forgetting"], y=front["accuracy"], mode="lines",
                        line=dict(dash="dash", color="rgba(60, 60, 60, 0.6)"), hoverinfo="skip")
    fig.update_layout(title=title, height=520,
                      xaxis_title="mean zero-shot change on other datasets (points; right = less forgetting)",
                      yaxis_title="accuracy on the fine-tuning task (%)", legend=dict(font=dict(size=10)))
    return fig


def wise_ft_path(mixes: dict[float, dict], chosen: float | None = None) -> go.Figure:
    """WiSE-FT mixes (α → metrics) from α=0 (pre-trained) to α=1 (the run) as one path in the trade-off plane,
    with the chosen α marked. A check that named no task has no task accuracy: its path runs up α instead."""
    alphas = sorted(mixes)
    task = all("downstream" in mixes[a] for a in alphas)
    height = (lambda a: mixes[a]["downstream"]["accuracy_after"]) if task else (lambda a: a)
    x = [mixes[a]["mean_zs_delta"] for a in alphas]
    fig = go.Figure(go.Scatter(
        name="WiSE-FT", x=x, y=[height(a) for a in alphas], mode="lines+markers+text",
        text=[f"α={a:g}" for a in alphas], textposition="top center",
        hovertemplate="%{text}<br>" + ("accuracy: %{y:.1f}%<br>" if task else "") + "mean zero-shot change: "
                      "%{x:+.1f} points<extra></extra>",
    ))
    if chosen in mixes:
        fig.add_scatter(name=f"α = {chosen:g}", x=[mixes[chosen]["mean_zs_delta"]], y=[height(chosen)],
                        mode="markers", hoverinfo="skip",
                        marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(color=LOSS_COLOR, width=3)))
    fig.update_layout(title="WiSE-FT: weight mixing between the pre-trained and the fine-tuned model",
                      xaxis_title="mean zero-shot change on other datasets (points)",
                      yaxis_title="accuracy on the fine-tuning task (%)" if task else "α (0: the base, 1: the tuned "
                                                                                       "checkpoint)",
                      height=380, showlegend=False)
    return fig


# -- λ sweeps: accuracy and forgetting against λ (tables.lambda_sweep / tables.grid_sweep) ----------------------

SWEEP_SERIES = (("accuracy", "task accuracy", 1, AFTER_COLOR), ("zs", "mean zero-shot Δ", 2, "#d62728"),
                ("lp", "mean linear-probe Δ", 2, "#ff7f0e"))
CE_TICK = "CE (λ=0)"


def ce_position(lams: Sequence[float]) -> float:
    """Where a log λ axis draws CE (λ = 0, which a log axis cannot hold): a notch left of the smallest λ."""
    positive = [lam for lam in lams if lam > 0]
    return min(positive) / 5 if positive else 1.0


def lambda_sweep(sweep: pd.DataFrame, title: str, chosen: float | None = None) -> go.Figure:
    """Task accuracy (top) and mean zero-shot / linear-probe change elsewhere (bottom) against λ on a log axis,
    CE drawn apart at the left; each point the mean over its runs with ± one std as error bars and n in the
    hover. `chosen` (a λ of the sweep, 0 = CE) is ringed."""
    sweep = sweep.sort_values("λ")
    ce_x = ce_position(sweep["λ"])
    x = np.where(sweep["λ"] > 0, sweep["λ"], ce_x)
    is_ce = (sweep["λ"] == 0).to_numpy()
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=["accuracy on the fine-tuning task (%)",
                                        "mean change on the other datasets (points; below 0 = forgotten)"])
    for key, label, row, color in SWEEP_SERIES:
        hover = np.stack([sweep["n"], sweep["seeds"], sweep[f"{key}_std"],
                          np.where(is_ce, "CE (λ = 0)", [f"λ = {lam:g}" for lam in sweep["λ"]])], axis=1)
        template = (f"%{{customdata[3]}}<br>{label}: %{{y:.1f}} ± %{{customdata[2]:.1f}} (std)"
                    "<br>n = %{customdata[0]} run(s), seeds %{customdata[1]}<extra></extra>")
        for part, name, mode, symbol in ((~is_ce, label, "lines+markers", "circle"),
                                         (is_ce, f"CE · {label}", "markers", "square")):
            if not part.any():
                continue
            fig.add_scatter(name=name, legendgroup=key, showlegend=not name.startswith("CE"), row=row, col=1,
                            x=x[part], y=sweep[key].to_numpy()[part], mode=mode, customdata=hover[part],
                            hovertemplate=template, line=dict(color=color), marker=dict(size=9, symbol=symbol,
                                                                                        color=color),
                            error_y=dict(type="data", array=sweep[f"{key}_std"].to_numpy()[part], thickness=1.2,
                                         visible=True))
    if chosen is not None and (sweep["λ"] == chosen).any():
        at = sweep[sweep["λ"] == chosen].iloc[0]
        for key, label, row, _ in SWEEP_SERIES:
            fig.add_scatter(name=f"chosen λ = {chosen:g}", showlegend=key == "accuracy", row=row, col=1,
                            x=[ce_x if chosen == 0 else chosen], y=[at[key]], mode="markers", hoverinfo="skip",
                            marker=dict(size=20, color="rgba(0,0,0,0)", line=dict(color=LOSS_COLOR, width=3)))
    ticks = [ce_x if lam == 0 else lam for lam in sweep["λ"]]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[CE_TICK if lam == 0 else f"{lam:g}" for lam in sweep["λ"]])
    fig.update_xaxes(title_text="λ (log scale; CE = plain cross-entropy, λ = 0)", row=2, col=1)
    fig.update_layout(title=title, height=560, legend=dict(orientation="h", y=-0.18))
    return fig


# -- continual fine-tuning: the forgetting matrix of a sequence (its JSON, SequenceState.to_dict) --------------


def stage_labels(summary: dict) -> list[str]:
    """Row names of a sequence's matrix: θ₀, then "after k. task" for each finished stage."""
    done = len(summary["matrix"]["zs"])
    return ["θ₀ (before)"] + [f"after {k + 1}. {task}" for k, task in enumerate(summary["tasks"][:done])]


def column_labels(matrix: dict) -> list[str]:
    return [f"{d} (task {matrix['tasks'].index(d) + 1})" if d in matrix["tasks"] else f"{d} (never trained)"
            for d in matrix["datasets"]]


MIN_HEATMAP_HEIGHT = 320  # a matrix of two or three rows still gets a colour bar one can read


def forgetting_heatmap(summary: dict, probe: str = "zs") -> go.Figure:
    """accuracy[stage][dataset] as a heatmap, θ₀ on top, each cell written with its accuracy and n in the hover;
    the colour bar spans the whole height."""
    matrix = summary["matrix"]
    rows = [matrix["before"][probe], *matrix[probe]]
    labels = stage_labels(summary)
    text = [[f"{value:.1f}" for value in row] for row in rows]
    fig = go.Figure(go.Heatmap(
        z=rows, x=column_labels(matrix), y=labels, text=text, texttemplate="%{text}", colorscale="Blues",
        zmin=0, zmax=100, colorbar=dict(title="accuracy (%)", len=1, thickness=14),
        customdata=[[n for n in matrix["n"]] for _ in rows],
        hovertemplate="%{y} · %{x}<br>accuracy %{z:.1f}% on n = %{customdata} test images<extra></extra>"))
    fig.update_layout(title=f"Forgetting matrix ({tables.PROBES[probe]} accuracy, %)",
                      height=max(MIN_HEATMAP_HEIGHT, 120 + 48 * len(rows)),
                      yaxis=dict(autorange="reversed"), xaxis=dict(side="top"))
    return fig


def matrix_lines(summary: dict, probe: str = "zs") -> go.Figure:
    """One line per dataset across the stages (θ₀ first), each point with its 95 % interval; dashed lines are
    datasets never trained on."""
    matrix = summary["matrix"]
    labels = stage_labels(summary)
    fig = go.Figure()
    for column, (dataset, label) in enumerate(zip(matrix["datasets"], column_labels(matrix))):
        values = [matrix["before"][probe][column]] + [row[column] for row in matrix[probe]]
        intervals = [[values[0], values[0]]] + [ci[column] for ci in matrix[f"{probe}_ci"]]
        fig.add_scatter(name=label, x=labels, y=values, mode="lines+markers",
                        line=dict(dash="solid" if dataset in matrix["tasks"] else "dash"),
                        error_y=interval_bars(values, [low for low, _ in intervals], [high for _, high in intervals]),
                        hovertemplate="%{x}: %{y:.1f}%<extra>%{fullData.name}</extra>")
    fig.update_layout(title=f"Accuracy of each dataset across the stages ({tables.PROBES[probe]})",
                      yaxis=dict(title="accuracy (%), with 95 % intervals", range=[0, 105]), height=380,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def sequences_average(summaries: dict[str, dict], probe: str = "zs") -> go.Figure:
    """Average accuracy over the tasks seen so far, per stage, for several sequences (name → JSON)."""
    fig = go.Figure()
    for name, summary in summaries.items():
        average = summary["avg_accuracy"][probe] if summary["avg_accuracy"] else []
        fig.add_scatter(name=name, x=[f"after stage {k + 1}" for k in range(len(average))], y=average,
                        mode="lines+markers", hovertemplate="%{x}: %{y:.1f}%<extra>%{fullData.name}</extra>")
    fig.update_layout(title=f"Average accuracy over the tasks seen so far ({tables.PROBES[probe]})",
                      yaxis_title="accuracy (%)", height=340, legend=dict(orientation="h", y=-0.3))
    return fig


def lambda_search(search: dict) -> go.Figure:
    """A λ finder's search (lambda_finder.SearchResult.to_dict): task accuracy and mean zero-shot forgetting of each
    λ tried, with their 95 % intervals, CE's accuracy minus the tolerance as the floor, and the chosen λ ringed."""
    tried = sorted((trial for trial in search["tried"] if not trial["stopped"]), key=lambda trial: trial["lam"])
    floor = search["ce"]["task_accuracy"] - search["tolerance"]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Task accuracy (%)", "Mean zero-shot forgetting (points)"))
    lams = [trial["lam"] for trial in tried]
    for row, key, ci, color in ((1, "task_accuracy", "task_ci", AFTER_COLOR), (2, "forgetting", "forgetting_ci",
                                                                              LOSS_COLOR)):
        values = [trial[key] for trial in tried]
        fig.add_scatter(x=lams, y=values, mode="lines+markers", name=key.replace("_", " "), row=row, col=1,
                        line=dict(color=color), error_y=interval_bars(values, [t[ci][0] for t in tried],
                                                                      [t[ci][1] for t in tried]))
    fig.add_hline(y=floor, line=dict(dash="dash", color="#777777"), row=1, col=1,
                  annotation_text=f"CE {search['ce']['task_accuracy']:.1f}% − {search['tolerance']:g}")
    if search["chosen"] is not None:
        chosen = search["chosen"]
        for row, key in ((1, "task_accuracy"), (2, "forgetting")):
            fig.add_scatter(x=[chosen["lam"]], y=[chosen[key]], mode="markers", name=f"chosen λ = {chosen['lam']:.3g}",
                            marker=dict(size=16, symbol="circle-open", color="#111111", line=dict(width=2)),
                            showlegend=row == 1, row=row, col=1)
    fig.update_xaxes(type="log", title_text="λ", row=2, col=1)
    fig.update_layout(title=f"λ search: {search['objective']} on {search['dataset']}", height=520, showlegend=True)
    return fig
