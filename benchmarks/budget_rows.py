"""One line per figure: the measured value, its budget and their ratio, formatted alike by every benchmark that
prints through it (seconds below 1 as ms; bytes as MB)."""
from __future__ import annotations


def measured(value: float, unit: str = "s") -> str:
    if unit == "MB":
        return f"{value / 1e6:8.2f} MB"
    return f"{value * 1000:8.0f} ms" if value < 1 else f"{value:8.2f} s "


def limit(budget: float, unit: str = "s") -> str:
    if unit == "MB":
        return f"{budget / 1e6:.0f} MB"
    return f"{budget * 1000:.0f} ms" if budget < 1 else f"{budget:.0f} s"


def budget_row(name: str, value: float, budget: float | None, unit: str = "s", width: int = 46) -> str:
    if budget is None:
        return f"  {name:<{width}}{measured(value, unit)}   (no budget)"
    return (f"  {name:<{width}}{measured(value, unit)}   budget {limit(budget, unit):>6}   "
            f"ratio {value / budget:4.2f}")
