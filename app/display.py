"""How values are written into Streamlit's elements, whose text is markdown: what a user named (a run label, a
folder path, a concept of their folder) as plain text; a change as a metric delta whose arrow and colour follow its
sign; the interval and sample size under a metric that already shows its number."""
from __future__ import annotations

import re

from ldifs_core.metrics_tables import signed

# The characters that give text a meaning in the middle of a line of Streamlit's markdown: links and images ([ ]),
# autolinks (< > and the colon of https:), emphasis and strike-through, code, math, tables, :emoji: and
# :material/icon:. CommonMark lets each be backslash-escaped; the rest of a label or path stays as it is.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~$:])")


def plain(text: object) -> str:
    """`text` escaped so that Streamlit's markdown shows it as typed: `[Open](https://…)` stays those characters,
    never a link, and a folder named `**x**` is not bold."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def metric_delta(change: float, words: str = "points") -> str:
    """st.metric's delta for a change: an ASCII sign first, which is how st.metric tells a loss (red ↓) from a gain
    (green ↑); the page's typographic minus (−) would read as a gain."""
    return f"{change:+.1f} {words}".rstrip()


def interval(ci, unit: str = "points") -> str:
    """'95 % CI −3.1 to −1.7 points': the caption under a metric that already shows the number itself."""
    low, high = ci
    return f"95 % CI {signed(low)} to {signed(high)} {unit}".rstrip()


def sample_sizes(counts) -> str:
    """'n = 300' when every count is the same, else 'n = 140–209'."""
    low, high = min(counts), max(counts)
    return f"n = {low}" if low == high else f"n = {low}–{high}"
