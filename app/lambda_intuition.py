"""Learn's "Instant λ intuition": a slider over the precomputed λ grid (assets/lambda_grid.json), so the trade-off
shows in seconds, with nothing trained. The numbers and the curve come from ldifs_core.lambda_grid and the same
pure table and plot functions the Runs page's λ sweep uses."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import display, figure_cache, tables
from ldifs_core import lambda_grid
from ldifs_core.config import DEFAULT_LAMBDA
from ldifs_core.errors import LambdaGridUnreadable

@st.cache_resource(show_spinner=False)
def _grid_at(path: str, version: int) -> lambda_grid.LambdaGrid:
    """Parsed once per file version (`version`: its mtime), shared read-only: the grid is a frozen dataclass."""
    return lambda_grid.load_grid(path)


def current_grid() -> lambda_grid.LambdaGrid:
    path = Path(lambda_grid.GRID_PATH)
    return _grid_at(str(path), path.stat().st_mtime_ns if path.exists() else 0)


def lambda_label(lam: float) -> str:
    return "0 (CE)" if lam == 0 else f"{lam:g}"


def plus_minus(spread: lambda_grid.Spread) -> str:
    """' ± std' over the seeds; nothing for a single seed, which has no spread to show."""
    return f" ± {spread.std:.1f}" if spread.n > 1 else ""


def percent_text(spread: lambda_grid.Spread) -> str:
    return f"{spread.mean:.1f}%{plus_minus(spread)}"


def points_text(spread: lambda_grid.Spread) -> str:
    return f"{tables.signed(spread.mean)}{plus_minus(spread)} points"


def versus_ce(chosen: lambda_grid.Spread, ce: lambda_grid.Spread | None) -> str | None:
    """The metric's delta: the difference to CE, None for CE itself."""
    return None if ce is None else display.metric_delta(chosen.mean - ce.mean, "points vs CE")


def headline_metrics(task: str, cell: lambda_grid.GridCell, ce: lambda_grid.GridCell | None) -> None:
    """Task accuracy and both forgetting measures at the chosen λ, each with its difference to CE."""
    compared = None if cell.is_ce else ce
    accuracy, zero_shot, probe = st.columns(3)
    accuracy.metric(f"Accuracy on {task}", percent_text(cell.accuracy),
                    versus_ce(cell.accuracy, compared and compared.accuracy))
    zero_shot.metric("Mean zero-shot change elsewhere", points_text(cell.zs_delta),
                     versus_ce(cell.zs_delta, compared and compared.zs_delta))
    probe.metric("Mean linear-probe change elsewhere", points_text(cell.lp_delta),
                 versus_ce(cell.lp_delta, compared and compared.lp_delta))
    over = (f"Mean ± standard deviation over n = {cell.accuracy.n} seeds ({', '.join(map(str, cell.seeds))})"
            if cell.accuracy.n > 1 else f"A single seed ({cell.seeds[0]}) so far: no spread to show")
    versus = "This is plain CE." if cell.is_ce else "The small numbers compare with CE (λ = 0)."
    st.caption(f"{over}; zero-shot accuracy on {task} before fine-tuning: {cell.zero_shot_before:.1f}%. {versus}")


def forgotten_table(cell: lambda_grid.GridCell) -> None:
    st.markdown(f"**Most-forgotten concepts at λ = {lambda_label(cell.lam)}** (zero-shot, per checked dataset)")
    percent = st.column_config.NumberColumn(format="%.1f%%")
    st.dataframe(tables.forgotten_concepts(cell), hide_index=True, column_config={
        "before": percent, "after": percent, "change": st.column_config.NumberColumn(format="%+.1f"),
        "± std over seeds": st.column_config.NumberColumn(format="%.1f")})
    st.caption("Averaged over the seeds, which all score the same n test images per concept. Ranked by how surely "
               "each concept was lost (the upper end of its 95 % interval, averaged over the seeds), not by the raw "
               "fall; still, read a concept resting on two or three images (as on quickdraw) with its n in mind.")


def lambda_intuition() -> None:
    st.subheader("Instant λ intuition")
    try:
        grid = current_grid()
    except LambdaGridUnreadable as err:
        st.warning(str(err), icon=":material/grid_off:")
        return
    tasks = [task for task in grid.tasks if grid.cells_for(task)]
    if not tasks:
        st.warning(f"The λ grid holds no finished runs yet: regenerate it with `{lambda_grid.REGENERATE}`.",
                   icon=":material/grid_off:")
        return
    st.markdown(f"Precomputed on the embedded model ({grid.settings.get('steps', '?')} steps, seeds "
                f"{', '.join(map(str, grid.seeds))}): move λ and see what the task gains and what the other datasets "
                "lose — no training, the runs were done ahead of time.")
    task = st.radio("Fine-tuning task", tasks, horizontal=True, key="learn-lambda-task")
    cells = grid.cells_for(task)
    by_lambda = {cell.lam: cell for cell in cells}
    start = DEFAULT_LAMBDA["ldifs"] if DEFAULT_LAMBDA["ldifs"] in by_lambda else cells[-1].lam
    lam = st.select_slider("λ (LDIFS weight; 0 is plain CE)", list(by_lambda), value=start, format_func=lambda_label,
                           key=f"learn-lambda-{task}",
                           help="Only the λ values of the precomputed grid: its numbers exist for these alone. Any "
                                "λ ≥ 0 can be typed on the Launch page (or swept on Runs & sweeps).")
    headline_metrics(task, by_lambda[lam], by_lambda.get(0.0))
    curve = figure_cache.lambda_sweep(tables.grid_sweep(cells), f"LDIFS on {task}: accuracy and forgetting against λ "
                                      "(precomputed)", chosen=lam)
    st.plotly_chart(curve, key="learn-lambda-curve")
    missing = grid.missing_lambdas(task)
    if missing:
        st.caption(f"Not in the grid yet: λ = {', '.join(f'{m:g}' for m in missing)} (regenerate with "
                   f"`{lambda_grid.REGENERATE}`).")
    forgotten_table(by_lambda[lam])
