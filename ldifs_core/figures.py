"""The Plotly figures of a run's metrics that both the app and the HTML report draw (report.py): accuracy before and
after per dataset, the concepts most surely forgotten, and runs side by side. Every bar carries its 95 % interval
and n, and every axis makes room for its labels (automargin) whichever template draws it; the forgetting-over-training
curve too. Pure functions: plain metrics in, a figure out.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from ldifs_core import metrics_tables as tables

BEFORE_COLOR = "#9aa5b1"
AFTER_COLOR = "#2f4b7c"
GAIN_COLOR = "#2e7d32"
LOSS_COLOR = "#c62828"


def change_colors(changes) -> list[str]:
    """Green for a gain, red for a loss: the colour says which way each change went."""
    return [GAIN_COLOR if change >= 0 else LOSS_COLOR for change in changes]


def interval_bars(values, lows, highs) -> dict:
    """Plotly error bars drawing each value's 95 % interval [low, high]."""
    values, lows, highs = (np.asarray(v, dtype=float) for v in (values, lows, highs))
    return dict(type="data", symmetric=False, array=highs - values, arrayminus=values - lows, thickness=1.2,
                color="rgba(40, 40, 40, 0.7)")


def accuracy_change(metrics: dict, probe: str = "zs") -> go.Figure:
    """Before vs after per dataset, each bar with its 95 % interval and each change written on its bar: the
    fine-tuning gain beside the losses."""
    rows = tables.accuracy_rows(metrics, probe)
    labels = [f"{d}<br>({tables.ROLE_NAMES[role]})" for d, role in zip(rows["dataset"], rows["role"])]
    hover = ("%{x}<br>%{fullData.name}: %{y:.1f}% (95 % CI %{customdata[1]:.1f} to %{customdata[2]:.1f})"
             "<br>n = %{customdata[0]} test images<extra></extra>")
    fig = go.Figure()
    for name, key, color in (("before fine-tuning", "before", BEFORE_COLOR), ("after fine-tuning", "after", AFTER_COLOR)):
        fig.add_bar(name=name, x=labels, y=rows[key], marker_color=color, hovertemplate=hover,
                    error_y=interval_bars(rows[key], rows[f"{key}_ci_low"], rows[f"{key}_ci_high"]),
                    customdata=np.stack([rows["n"], rows[f"{key}_ci_low"], rows[f"{key}_ci_high"]], axis=1))
    after = fig.data[1]
    after.update(text=[tables.signed(c) for c in rows["change"]], textposition="outside",
                 textfont=dict(color=change_colors(rows["change"]), size=14))
    fig.update_layout(barmode="group", title=f"Accuracy before and after fine-tuning ({tables.PROBES[probe]})",
                      yaxis=dict(title="accuracy (%), bars with 95 % intervals", range=[0, 110], automargin=True),
                      xaxis=dict(automargin=True),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def class_drops(metrics: dict, dataset: str, limit: int = 20, probe: str = "zs", min_n: int = 1) -> go.Figure:
    """The `limit` concepts most surely forgotten (ranked by the upper end of the change's 95 % interval), the
    first at the top, each with its n and interval; concepts with fewer than `min_n` test images are left out."""
    changes = tables.class_changes(metrics, dataset, probe, min_n).head(limit).iloc[::-1]
    fig = go.Figure(go.Bar(
        name="accuracy change", orientation="h", x=changes["change"],
        y=[f"{name} (n={n})" for name, n in zip(changes["class_name"], changes["n"])],
        marker_color=change_colors(changes["change"]),
        error_x=interval_bars(changes["change"], changes["change_ci_low"], changes["change_ci_high"]),
        customdata=changes[["class_name", "n", "before", "after", "change_ci_low", "change_ci_high"]].to_numpy(object),
        hovertemplate="<b>%{customdata[0]}</b> (n = %{customdata[1]} test images)<br>before: %{customdata[2]:.1f}%"
                      "<br>after: %{customdata[3]:.1f}%<br>change: %{x:+.1f} points "
                      "(95 % CI %{customdata[4]:+.1f} to %{customdata[5]:+.1f})<extra></extra>",
    ))
    title = f"Concepts of {dataset} ranked by accuracy drop ({tables.measured_with(metrics, dataset, probe)})"
    if changes.empty:
        title += f": no concept has at least {min_n} test images"
    fig.update_layout(title=title, xaxis_title="change (accuracy points), bars with 95 % intervals",
                      height=max(300, 22 * len(changes) + 120), yaxis=dict(type="category", automargin=True),
                      xaxis=dict(automargin=True))
    return fig


def run_comparison(runs: dict[str, dict]) -> go.Figure:
    """Accuracy change per dataset for several runs (name → metrics) side by side."""
    table = tables.comparison(runs)
    fig = go.Figure()
    for name in runs:
        fig.add_bar(name=name, x=table["dataset"], y=table[name], text=[tables.signed(c) for c in table[name]],
                    textposition="outside", hovertemplate="%{x}: %{y:+.1f} points<extra>%{fullData.name}</extra>")
    fig.update_layout(barmode="group", title="Accuracy change per dataset (fine-tuning task first)",
                      yaxis=dict(title="change (accuracy points)", automargin=True), xaxis=dict(automargin=True),
                      legend=dict(orientation="h", y=-0.2))
    return fig


TASK_LINE_COLOR = "#111111"


def forgetting_curve(curve, title: str = "Zero-shot accuracy while fine-tuning") -> go.Figure:
    """The forgetting-over-training curve (curve_records.Curve): one line per dataset, the task's drawn thick and
    dark, each named with its n; a sequence's stage boundaries as dotted lines."""
    fig = go.Figure()
    others = iter(qualitative.Plotly)
    for name in curve.datasets():
        steps, accuracy = curve.line(name)
        task = name == curve.task
        fig.add_scatter(x=steps, y=accuracy, mode="lines+markers", name=f"{name}{' (task)' if task else ''}, "
                        f"n = {curve.n[name]}", line=dict(width=4 if task else 1.8,
                                                         color=TASK_LINE_COLOR if task else next(others)),
                        marker=dict(size=6 if task else 4),
                        hovertemplate=f"{name}<br>step %{{x}}: %{{y:.1f}}% (n = {curve.n[name]})<extra></extra>")
    for start in curve.stage_starts or ():
        fig.add_vline(x=start, line=dict(dash="dot", color="#777777", width=1))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title="zero-shot accuracy (%)",
                      yaxis_range=[0, 100], legend_title_text="dataset", margin=dict(t=50))
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig
