"""The science table's Pareto picture as a standalone HTML page (docs/pareto.html), drawn by the same pure plot
function the Runs page uses for the user's own runs.

Run: `.venv/bin/python -m app.science_figure docs/science_rows.json [more rows JSON ...] [--seeds 0] --out docs/pareto.html`
(rows as written by `python -m scripts.experiments --rows`). The page loads plotly.js from its CDN.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from app import plots


def science_points(rows: list[dict]) -> pd.DataFrame:
    """Experiment rows (one per dataset, seed and method) as the plot's points."""
    return pd.DataFrame({"run": [f"{r['dataset']} seed {r['seed']}" for r in rows],
                         "objective": [r["method"] for r in rows], "λ": [float("nan")] * len(rows),
                         "dataset": [r["dataset"] for r in rows],
                         "accuracy after": [r["accuracy_after"] for r in rows],
                         "mean zero-shot Δ": [r["mean_zs_delta"] for r in rows]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", type=Path, help="rows JSON files of the science table")
    parser.add_argument("--out", type=Path, default=Path("docs/pareto.html"))
    parser.add_argument("--seeds", help="comma list: keep only these seeds (default: every seed in the rows)")
    args = parser.parse_args(argv)
    keep = None if args.seeds is None else {int(seed) for seed in args.seeds.split(",")}
    rows = [row for path in args.rows for row in json.loads(path.read_text()) if keep is None or row["seed"] in keep]
    seeds = sorted({row["seed"] for row in rows})
    fig = plots.objectives_pareto(science_points(rows), f"Science table: task accuracy vs mean zero-shot forgetting "
                                                        f"per objective at its defaults (mean ± std over seeds "
                                                        f"{', '.join(map(str, seeds))})")
    fig.write_html(args.out, include_plotlyjs="cdn")
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
