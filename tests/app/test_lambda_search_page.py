"""The λ finder on Runs & sweeps: "Find λ" starts a `find-lambda` process with the form's settings, and the page
follows the search it keeps in the store trial by trial, says when it ended without an answer or its process died.

The process is replaced by a recorder; the kept search is written with the finder's own `save_search`
(tests/test_lambda_finder.py runs the real search on a fabricated objective)."""
from __future__ import annotations

import socket
import subprocess

import pytest

from app import lambda_search
from ldifs_core import lambda_finder, ownership
from ldifs_core.lambda_finder import SearchResult, TrialResult, save_search
from tests.app.conftest import open_page


def trial(lam, accuracy, forgetting) -> TrialResult:
    return TrialResult(lam, f"run-{lam}", accuracy, [accuracy - 1, accuracy + 1], forgetting,
                       [forgetting - 0.5, forgetting + 0.5])


@pytest.fixture
def started(monkeypatch) -> list[tuple]:
    calls = []
    monkeypatch.setattr(lambda_search, "start_search", lambda *args: calls.append(args) or 4242)
    return calls


def expanders(app) -> list[str]:
    return [expander.label for expander in app.expander if expander.label.startswith("λ search")]


def test_find_lambda_starts_a_search_with_the_forms_settings_and_says_so(app, store, started):
    open_page(app, "runs")
    next(n for n in app.number_input if n.label == "Tolerance (points below CE)").set_value(2.0)
    next(b for b in app.button if b.label == "Find λ").click().run()
    ((root, dataset, tolerance, budget, address),) = started
    assert (root, dataset, tolerance, budget) == (str(store.root), "mnist", 2.0, 8)
    assert any("The λ search started (process 4242)" in success.value for success in app.success)


def test_a_running_search_shows_each_lambda_as_it_ends_then_its_answer(app, store):
    search = SearchResult("mnist", "ldifs", 1.0, trial(None, 90.0, 10.0), [trial(1000.0, 80.0, 1.0)])
    path = save_search(store, search)  # kept by this process, which is alive: still searching
    open_page(app, "runs")
    assert expanders(app) == ["λ search: ldifs on mnist, tolerance 1 → searching (2 runs so far)"]
    assert app.get("plotly_chart")  # the λ tried so far, drawn
    search.tried.append(trial(0.01, 89.5, 9.0))
    lambda_finder.settle(search, lambda_finder.Bisection(0.01, 1000.0))
    save_search(store, search, path)
    app.run()
    assert expanders(app) == ["λ search: ldifs on mnist, tolerance 1 → λ = 0.01"]


def test_a_search_whose_process_died_says_it_stopped(app, store, monkeypatch):
    gone = subprocess.Popen(["true"])
    gone.wait()
    monkeypatch.setattr(ownership, "current_owner",
                        lambda: {"owner_host": socket.gethostname(), "owner_pid": gone.pid, "owner_started": None})
    save_search(store, SearchResult("mnist", "ldifs", 1.0, trial(None, 90.0, 10.0)))
    open_page(app, "runs")
    assert expanders(app) == ["λ search: ldifs on mnist, tolerance 1 → stopped before it finished"]
    assert any("ended before the search did" in warning.value for warning in app.warning)
