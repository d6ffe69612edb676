"""The forgetting-over-training science (scripts/science_curves.py) on fabricated curves: the summary's means and
spreads per point, and when the forgetting happens as a share of each seed's final drop."""
import pytest

from ldifs_core.curve_records import Curve, CurvePoint
from scripts.science_curves import FLAT_DROP, summarise, table


def curve(drops: list[float], task: list[float]) -> Curve:
    """A run measured every 10 steps; `drops[i]` points lost on both checked datasets after 10·i steps."""
    points = [CurvePoint(10 * i, {"mnist": task[i], "cifar10": 80.0 - drop, "svhn": 50.0 - drop})
              for i, drop in enumerate(drops)]
    return Curve("mnist", 10, {"mnist": 200, "cifar10": 200, "svhn": 200}, points)


def test_the_share_of_the_final_drop_is_read_at_ten_and_twentyfive_percent_of_the_steps():
    # 40 steps: 10 % is step 4 (nearest point: step 0), 25 % is step 10; one seed forgets early, the other late
    early, late = curve([0, 6, 7, 8, 8], [20, 40, 60, 70, 80]), curve([0, 2, 4, 6, 8], [20, 30, 50, 60, 70])
    summary = summarise("mnist", "ce", [0, 1], [early, late])
    assert summary.steps == [0, 10, 20, 30, 40]
    assert summary.change[-1] == (-8.0, 0.0)
    assert summary.task[-1][0] == 75.0 and summary.task[-1][1] == pytest.approx(7.071, abs=1e-3)
    assert summary.reached["10%"] == (0.0, 0.0)
    assert summary.reached["25%"][0] == pytest.approx((6 / 8 + 2 / 8) / 2)


def test_a_run_that_hardly_forgets_has_no_share_of_a_drop():
    flat = curve([0, 0.2, 0.1, 0.3, FLAT_DROP / 2], [20, 30, 40, 50, 60])
    summary = summarise("mnist", "ldifs λ=10", [0], [flat])
    assert summary.reached == {"10%": None, "25%": None}
    assert "| — | — |" in table([summary])


def test_seeds_measured_at_other_steps_are_refused():
    with pytest.raises(ValueError, match="different steps"):
        summarise("mnist", "ce", [0, 1], [curve([0, 1, 2], [1, 2, 3]), curve([0, 1, 2, 3], [1, 2, 3, 4])])


def test_the_docs_table_is_the_one_the_script_makes_from_the_committed_summary():
    import json

    from scripts.science_curves import DOCS, TABLE_END, TABLE_START, CurveSummary

    summaries = [CurveSummary(**row) for row in json.loads((DOCS / "science_curves.json").read_text())]
    committed = (DOCS / "science.md").read_text().split(TABLE_START)[1].split(TABLE_END)[0]
    assert committed == table(summaries)
    assert (DOCS / "science_curves.png").stat().st_size > 10_000
