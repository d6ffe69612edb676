"""`model_stock`: not a way to train but a run made after training: two finished runs of the same settings
(other seeds) merged with θ₀ layer by layer (Jang, Yun & Han, ECCV 2024; ldifs_core/model_stock.py), then
evaluated like any run. Made by `python -m ldifs_core model-stock RUN_A RUN_B` or the Runs page
(ldifs_core/merging.py; runner.execute hands such a config there); registered so that every page, table and plot
shows such runs with their own name, colour and symbol."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ldifs_core.objectives.base import Objective
from ldifs_core.settings import option

if TYPE_CHECKING:
    from ldifs_core.config import RunConfig


class ModelStock(Objective):
    """Two finished runs' weights merged per tensor: w = t·(w₁ + w₂)/2 + (1 − t)·θ₀, t from their deltas' angle."""

    name = "model_stock"
    summary = ("Model Stock: two finished runs (other seeds) merged with θ₀ layer by layer after training, like "
               "WiSE-FT (`model-stock RUN_A RUN_B`)")
    label = "Model Stock — merge of two finished runs"
    order = 12
    trained = False
    options = (option("model_stock_runs", str, "", help="the two finished runs merged, their ids joined by a comma",
                      flag=""),)
    color, symbol = "#ad494a", "hourglass"

    @classmethod
    def problems(cls, cfg: RunConfig) -> list[str]:
        runs = [run for run in cfg.model_stock_runs.split(",") if run.strip()]
        if len(runs) != 2:
            return ["model_stock is not trained: it merges two finished runs of the same settings and other seeds "
                    "(python -m ldifs_core model-stock RUN_A RUN_B, or the Runs page's WiSE-FT tab)"]
        return []

    @classmethod
    def made(cls, cfg: RunConfig, store, run_id: str | None, hooks) -> str:
        from ldifs_core.merging import execute_merge

        return execute_merge(cfg, store, run_id, hooks)


OBJECTIVE = ModelStock
